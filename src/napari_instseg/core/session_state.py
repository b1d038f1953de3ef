"""The state of an annotation session and the helpers every action uses.

:class:`SessionState` holds the label image, the instance table, the side records (pre-label
proposals, amodal outlines), the id allocator, the prompt state, the active-time clock and the
edit history; :class:`~napari_instseg.core.session.AnnotationSession` adds the actions.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from napari_instseg.core.activetime import ActiveTimeClock
from napari_instseg.core.candidates import CandidateState
from napari_instseg.core.commit_rules import prelabel_proposals
from napari_instseg.core.compositing import with_occlusion
from napari_instseg.core.edits import CroppedMask, Edit, Region, update_records
from napari_instseg.core.history import EditHistory, EditSink
from napari_instseg.core.instances import (
    IdAllocator,
    apply_rows,
    empty_table,
    now_iso,
    row_of,
    table_for_ids,
    validate_table,
)
from napari_instseg.core.labels import as_label_image
from napari_instseg.core.paint import PaintRecorder
from napari_instseg.core.prompting.base import Candidates, Prompter
from napari_instseg.core.records import CommitError, OverlapCounts, PrelabelRecord

if TYPE_CHECKING:
    from napari_instseg.core.protocol import AnnotationProtocol

__all__ = ["SessionState"]


class SessionState:
    """Annotation state of one image: labels, instance table, pre-labels, amodal masks.

    The base of :class:`~napari_instseg.core.session.AnnotationSession`, which adds the
    actions and documents the parameters (the same here).
    """

    def __init__(
        self,
        labels_yx: ArrayLike,
        table: pd.DataFrame | None = None,
        protocol: AnnotationProtocol | None = None,
        *,
        annotator: str = "",
        prompter: Prompter | None = None,
        clock: Callable[[], float] = time.monotonic,
        sink: EditSink | None = None,
        prelabels: Mapping[int, PrelabelRecord] | None = None,
    ) -> None:
        from napari_instseg.core.protocol import AnnotationProtocol

        self.labels_yx = as_label_image(labels_yx, name="session labels")
        self.protocol = protocol or AnnotationProtocol.default()
        present = np.unique(self.labels_yx)
        present = present[present > 0]
        base = empty_table() if table is None else validate_table(table)
        ids = np.union1d(base.index.to_numpy(), present)
        self.table = table_for_ids(ids, base, defaults={"category_id": self.protocol.categories[0].id})
        self.ids = IdAllocator()
        self.ids.observe(ids.tolist())
        self.annotator = annotator
        self.prompter = prompter
        stored = dict(prelabels or {})  # proposals saved elsewhere (a store); the others come from the labels
        self.prelabels: dict[int, PrelabelRecord] = {
            **prelabel_proposals(self.labels_yx, self.table, known=stored),
            **stored,
        }
        # counts of the proposals' objects outside this session's labels (a slide window's
        # crossing objects: AnnotationStore.window_session), added when reviewing them
        self.prelabel_outside: Mapping[int, OverlapCounts] = {}
        self.amodal: dict[int, CroppedMask] = {}
        self.prompt_state = CandidateState()
        self.active_time = ActiveTimeClock(clock)
        self.history = EditHistory(_SessionTarget(self), sink)
        self._painted = PaintRecorder(self.labels_yx)
        self._checked_rows: tuple[Any, pd.DataFrame] | None = None  # rows of the action being done, validated

    # -- state shared with callers ---------------------------------------------------------
    @property
    def shape_yx(self) -> tuple[int, int]:
        """(height, width) of the label image."""
        return (int(self.labels_yx.shape[0]), int(self.labels_yx.shape[1]))

    @property
    def sink(self) -> EditSink | None:
        """Persists every edit before the action returns (None: nothing is saved)."""
        return self.history.sink

    @sink.setter
    def sink(self, value: EditSink | None) -> None:
        self.history.sink = value

    @property
    def undo_stack(self) -> list[Edit]:
        """The actions :meth:`undo` can undo, oldest first."""
        return self.history.undo_stack

    @undo_stack.setter
    def undo_stack(self, value: list[Edit]) -> None:
        self.history.undo_stack = value

    @property
    def redo_stack(self) -> list[Edit]:
        """The actions :meth:`redo` can redo, most recently undone last."""
        return self.history.redo_stack

    @redo_stack.setter
    def redo_stack(self, value: list[Edit]) -> None:
        self.history.redo_stack = value

    @property
    def candidates(self) -> Candidates | None:
        """The candidates of the last prompt (best first), or None."""
        return self.prompt_state.candidates

    @candidates.setter
    def candidates(self, value: Candidates | None) -> None:
        self.prompt_state.set(value)

    @property
    def candidate_index(self) -> int:
        """Index of the current candidate in :attr:`candidates`."""
        return self.prompt_state.index

    @candidate_index.setter
    def candidate_index(self, value: int) -> None:
        self.prompt_state.index = int(value)

    @property
    def candidate(self) -> NDArray[np.bool_] | None:
        """The current candidate mask, or None."""
        return self.prompt_state.current

    @property
    def _clock(self) -> Callable[[], float]:
        return self.active_time.clock

    def mask_of(self, instance_id: int) -> NDArray[np.bool_]:
        """The visible mask of an instance (full frame)."""
        mask: NDArray[np.bool_] = self.labels_yx == instance_id
        return mask

    def category_id(self, category: int | str | None) -> int:
        """The protocol's category id for a name or id (None: the first category).

        Raises
        ------
        ProtocolError
            When the protocol has no such category.
        """
        if category is None:
            return self.protocol.categories[0].id
        if isinstance(category, str):
            return self.protocol.category_by_name(category).id
        return self.protocol.category(int(category)).id

    def crop(self, region: Region | None) -> NDArray[np.uint32] | None:
        """A copy of the labels inside ``region`` (None for None)."""
        if region is None:
            return None
        y0, x0, y1, x1 = region
        crop: NDArray[np.uint32] = self.labels_yx[y0:y1, x0:x1].copy()
        return crop

    # -- undo / redo -----------------------------------------------------------------------
    def undo(self) -> Edit | None:
        """Undo the last action (commit, delete, retag, reorder, paint...); None if none."""
        return self._observed(self.history.undo())

    def redo(self) -> Edit | None:
        """Redo the last undone action; None if none."""
        return self._observed(self.history.redo())

    def _observed(self, edit: Edit | None) -> Edit | None:
        if edit is not None:
            self.ids.observe([edit.next_id - 1])
        return edit

    # -- helpers -------------------------------------------------------------------------
    # -- helpers -------------------------------------------------------------------------
    def _do(self, edit: Edit, *, refresh_occlusion: bool = False) -> None:
        if refresh_occlusion:
            edit = with_occlusion(edit, self.labels_yx, self.table, self.amodal, self.protocol.tiers)
        rows = {i: r for i, r in edit.rows_after.items() if r is not None}
        if rows:  # a bad value is refused before anything is saved; applying reuses the check
            checked = validate_table(
                pd.DataFrame.from_dict(rows, orient="index"), source=f"{edit.op} of {list(rows)[:5]}"
            )
            self._checked_rows = (edit.rows_after, checked)
        try:
            self.history.do(edit)
        finally:
            self._checked_rows = None
        self.ids.observe([edit.next_id - 1])

    def changed_row(self, instance_id: int, **changes: Any) -> dict[str, Any]:
        row = row_of(self.table, instance_id) or {}
        row.update(changes)
        row["modified"] = now_iso()
        row["time_s"] = float(row.get("time_s", 0.0)) + self.active_time.book()
        return row

    def _require_prompter(self) -> Prompter:
        if self.prompter is None:
            raise CommitError("This session has no prompter: pass prompter=make_prompter(...).")
        return self.prompter

    def _require_row(self, instance_id: int) -> None:
        if instance_id not in self.table.index:
            raise CommitError(f"There is no instance {instance_id}; known ids: {self.table.index.tolist()[:20]}.")

    def _mask_or_crop_to_commit(self, mask_yx: ArrayLike | CroppedMask) -> NDArray[np.bool_] | CroppedMask:
        """A full-frame mask as :meth:`_mask_to_commit` checks it, or a crop inside the labels."""
        if isinstance(mask_yx, CroppedMask):
            y0, x0, y1, x1 = mask_yx.bbox_yx
            inside = 0 <= y0 <= y1 <= self.shape_yx[0] and 0 <= x0 <= x1 <= self.shape_yx[1]
            if not inside or mask_yx.mask.shape != (y1 - y0, x1 - x0):
                raise CommitError(
                    f"Cropped mask with box (y0, x0, y1, x1) {mask_yx.bbox_yx} and crop shape "
                    f"{mask_yx.mask.shape} does not lie inside the labels {self.shape_yx}."
                )
            return mask_yx
        return self._mask_to_commit(mask_yx)

    def _mask_to_commit(self, mask_yx: ArrayLike | None) -> NDArray[np.bool_]:
        if mask_yx is None:
            if self.candidate is None:
                raise CommitError("There is no candidate to commit: prompt first, or pass a mask.")
            return self.candidate
        mask = np.asarray(mask_yx, dtype=bool)
        if mask.shape != self.shape_yx:
            raise CommitError(f"Mask shape {mask.shape} does not match the labels {self.shape_yx}.")
        return mask

    def _reviewer(self, instance_id: int) -> str:
        return self.annotator or str(self.table.at[instance_id, "annotator"])


class _SessionTarget:
    """Applies edits to a session's memory (the :class:`~napari_instseg.core.edits.EditTarget`
    of its history)."""

    def __init__(self, session: SessionState) -> None:
        self.session = session

    def write_labels(self, region_yx: Region, labels: NDArray[np.uint32]) -> None:
        y0, x0, y1, x1 = region_yx
        self.session.labels_yx[y0:y1, x0:x1] = labels
        self.session._painted.recorded(region_yx, labels)

    def write_rows(self, rows: dict[int, dict[str, Any] | None]) -> None:
        checked = self.session._checked_rows
        validated = checked[1] if checked is not None and checked[0] is rows else None
        self.session.table = apply_rows(self.session.table, rows, source="session", validated=validated)

    def write_side(self, kind: str, values: dict[int, Any]) -> None:
        update_records(self.session.prelabels if kind == "prelabel" else self.session.amodal, values)
