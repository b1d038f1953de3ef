"""The headless annotation session: the ONE place for the commit rules.

Prompt a backend, cycle through candidates, commit a mask as a new instance (never over a
committed one unless put in front, which raises its ``z_order``), review pre-labels (accept,
correct, reject), retag, reorder, delete, give instances amodal (full-outline) masks, and undo
or redo any of it. Widgets, the CLI, scripts and batch jobs all drive a session; none of them
writes a rule of its own.

Every action becomes an :class:`~napari_instseg.core.edits.Edit`; a sink (the on-disk
:class:`~napari_instseg.core.store.AnnotationStore`) persists it before the action returns.

The session owns its label image and edits it in place, so a napari Labels layer can show the
same array; call :meth:`AnnotationSession.labels_edited` after painting outside the session.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from napari_instseg.core.edits import CroppedMask, Edit, Region, bbox_of, region_union
from napari_instseg.core.errors import InstsegError
from napari_instseg.core.instances import (
    IdAllocator,
    apply_rows,
    empty_table,
    make_rows,
    new_row,
    now_iso,
    validate_table,
)
from napari_instseg.core.labels import as_label_image
from napari_instseg.core.prompting.base import Candidates, ImageKey, Prompt, Prompter

__all__ = ["AnnotationSession", "CommitError", "CommitResult", "EditSink", "PrelabelRecord", "iou"]

MODEL_SOURCES = ("sam2", "classic", "sam2-auto", "classic-auto")
"""Sources whose instances start as pre-labels and need a person's review."""

IDLE_CAP_S = 60.0
"""Longer pauses between two actions on one instance are not counted as active time."""


class CommitError(InstsegError, ValueError):
    """A commit or review action cannot be carried out (the message says why)."""


class EditSink(Protocol):
    """Receives every edit before the action returns (the store persists it)."""

    def record(self, kind: str, edit: Edit) -> None:
        """``kind`` is ``do``, ``undo`` or ``redo``."""


@dataclass(frozen=True)
class CommitResult:
    """What a commit wrote."""

    instance_id: int
    painted_px: int
    skipped_px: int
    z_order: int


@dataclass(frozen=True)
class PrelabelRecord:
    """The mask a model proposed for an instance, kept for review and QA."""

    proposal: CroppedMask
    source: str
    score: float

    def full(self, shape_yx: tuple[int, int]) -> NDArray[np.bool_]:
        """The proposed mask in a full frame of ``shape_yx``."""
        return self.proposal.full(shape_yx)


def iou(a: NDArray[np.bool_], b: NDArray[np.bool_]) -> float:
    """Intersection over union of two masks (1.0 when both are empty)."""
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


def _row_dict(table: pd.DataFrame, instance_id: int) -> dict[str, Any] | None:
    if instance_id not in table.index:
        return None
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in table.loc[instance_id].items()}


class AnnotationSession:
    """Annotation state of one image: labels, instance table, pre-labels, amodal masks.

    Parameters
    ----------
    labels_yx : array-like, shape (height, width)
        Existing labels (copied to uint32 if needed; edited in place otherwise).
    table : DataFrame, optional
        Instance table of the existing labels (rows are added for ids it lacks).
    protocol : Protocol, optional
        Taxonomy and rules; defaults to :meth:`Protocol.default`.
    annotator : str
        Who is annotating (written into every row this session creates or reviews).
    prompter : Prompter, optional
        The backend used by :meth:`prompt`.
    clock : callable
        Seconds as a float (``time.monotonic``); injectable for tests.
    sink : EditSink, optional
        Persists every edit (an :class:`~napari_instseg.core.store.AnnotationStore`).
    """

    def __init__(
        self,
        labels_yx: ArrayLike,
        table: pd.DataFrame | None = None,
        protocol: Any = None,
        *,
        annotator: str = "",
        prompter: Prompter | None = None,
        clock: Callable[[], float] = time.monotonic,
        sink: EditSink | None = None,
    ) -> None:
        from napari_instseg.core.instances import table_for_ids
        from napari_instseg.core.protocol import Protocol

        self.labels_yx = as_label_image(labels_yx, name="session labels")
        self._shadow = self.labels_yx.copy()  # the labels as last recorded: the 'before' of paint
        self.protocol = protocol or Protocol.default()
        present = np.unique(self.labels_yx)
        present = present[present > 0]
        base = empty_table() if table is None else validate_table(table)
        ids = np.union1d(base.index.to_numpy(), present)
        self.table = table_for_ids(ids, base, defaults={"category_id": self.protocol.categories[0].id})
        self.ids = IdAllocator()
        self.ids.observe(ids)
        self.annotator = annotator
        self.prompter = prompter
        self.sink = sink
        self.prelabels: dict[int, PrelabelRecord] = {}
        self.amodal: dict[int, CroppedMask] = {}
        self.undo_stack: list[Edit] = []
        self.redo_stack: list[Edit] = []
        self.candidates: Candidates | None = None
        self.candidate_index = 0
        self._clock = clock
        self._last_action: float | None = None
        self._pending_s = 0.0

    # -- prompting ---------------------------------------------------------------------
    @property
    def shape_yx(self) -> tuple[int, int]:
        """(height, width) of the label image."""
        return (int(self.labels_yx.shape[0]), int(self.labels_yx.shape[1]))

    def set_image(self, image: NDArray[np.generic], key: ImageKey | None = None) -> None:
        """Give the prompter the image (SAM 2 encodes it, or loads it from its cache)."""
        if image.shape[:2] != self.shape_yx:
            raise CommitError(f"Image shape {image.shape[:2]} does not match the labels {self.shape_yx}.")
        self._require_prompter().set_image(image, key)

    def prompt(
        self,
        points_yx: ArrayLike | None = None,
        point_labels: ArrayLike | None = None,
        box_xyxy: ArrayLike | None = None,
        mask_yx: ArrayLike | None = None,
        *,
        multimask: bool = True,
    ) -> Candidates:
        """Ask the prompter for candidate masks; the best becomes the current candidate."""
        prompt = Prompt.make(points_yx, point_labels, box_xyxy, mask_yx)
        self._pending_s += self._since_last_action()
        self.candidates = self._require_prompter().predict(prompt, multimask=multimask)
        self.candidate_index = 0
        return self.candidates

    def refine(
        self, instance_id: int, points_yx: ArrayLike | None = None, point_labels: ArrayLike | None = None
    ) -> Candidates:
        """Re-predict an existing instance with its current mask (and optional clicks) as prompt."""
        mask = self.mask_of(instance_id)
        if not mask.any():
            raise CommitError(f"Instance {instance_id} has no pixels to refine.")
        return self.prompt(points_yx, point_labels, mask_yx=mask, multimask=False)

    @property
    def candidate(self) -> NDArray[np.bool_] | None:
        """The current candidate mask, or None."""
        if self.candidates is None or len(self.candidates) == 0:
            return None
        return self.candidates.masks_yx[self.candidate_index]

    def next_candidate(self) -> int:
        """Cycle to the next candidate (by descending score); return its index."""
        if self.candidates is None or len(self.candidates) == 0:
            raise CommitError("There are no candidates: prompt first.")
        self.candidate_index = (self.candidate_index + 1) % len(self.candidates)
        return self.candidate_index

    def clear(self) -> None:
        """Drop the current candidates (and the active time of the unfinished object)."""
        self.candidates = None
        self.candidate_index = 0
        self._pending_s = 0.0

    # -- commit and review ---------------------------------------------------------------
    def commit(
        self,
        mask_yx: ArrayLike | None = None,
        *,
        category: int | str | None = None,
        in_front: bool = False,
        iscrowd: bool = False,
        occlusion: str | None = None,
        source: str | None = None,
        amodal: bool = False,
    ) -> CommitResult:
        """Commit a mask (default: the current candidate) as a new instance with a new id.

        Without ``in_front`` only background pixels are written: committed instances are
        never overwritten (front-to-back annotation: a later object lies behind). With
        ``in_front`` the mask is written whole and gets a ``z_order`` above every other
        instance. With ``amodal`` the mask is the object's full outline: it is kept, and the
        visible labels are recomposited by ``z_order`` (the occluded fraction and tier follow).
        Masks from a model start as ``pre-label`` and their proposal is kept.

        Raises
        ------
        CommitError
            When there is no mask, or (without ``amodal``) no pixel of it would be visible.
        """
        from_candidates = mask_yx is None
        edit, result = self._commit_edit(
            self._mask_to_commit(mask_yx),
            from_candidates,
            category=category,
            in_front=in_front,
            iscrowd=iscrowd,
            occlusion=occlusion,
            source=source,
            amodal=amodal,
        )
        self._do(edit, refresh_occlusion=True)
        self.candidates, self.candidate_index = None, 0
        return result

    def commit_many(
        self, masks: Iterable[ArrayLike], *, scores: Iterable[float] | None = None, **kwargs: Any
    ) -> tuple[list[CommitResult], int]:
        """Commit masks one after the other (the same rules as :meth:`commit`) as ONE action:
        one undo step and one save. ``scores`` (one per mask) are the model's own quality
        estimates, kept with the pre-label proposals. Returns the results and how many masks
        fell entirely on earlier instances (skipped)."""
        labels_before = self.labels_yx.copy()
        edits, results, covered = [], [], 0
        score_of = iter(scores) if scores is not None else None
        try:
            for mask in masks:
                score = next(score_of, None) if score_of is not None else None
                try:
                    edit, result = self._commit_edit(self._mask_to_commit(mask), False, score=score, **kwargs)
                except CommitError:
                    covered += 1
                    continue
                if edit.region_yx is not None:  # later masks see this one's pixels
                    y0, x0, y1, x1 = edit.region_yx
                    self.labels_yx[y0:y1, x0:x1] = edit.labels_after
                self.ids.observe([edit.next_id - 1])
                edits.append(edit)
                results.append(result)
            combined = _combine(edits, labels_before, self.labels_yx) if edits else None
        finally:
            self.labels_yx[...] = labels_before  # applied below, after the save, as one edit
        if combined is not None:
            self._do(combined, refresh_occlusion=True)
        return results, covered

    def _commit_edit(
        self,
        mask: NDArray[np.bool_],
        from_candidates: bool,
        *,
        category: int | str | None = None,
        in_front: bool = False,
        iscrowd: bool = False,
        occlusion: str | None = None,
        source: str | None = None,
        amodal: bool = False,
        score: float | None = None,
    ) -> tuple[Edit, CommitResult]:
        """The edit a commit of ``mask`` makes (the commit rules live here), not yet applied."""
        source = source or (self.candidates.source if from_candidates and self.candidates else "manual")
        instance_id = self.ids.next_id
        z_order = self._front_z() + 1 if in_front else (self._back_z() - 1 if amodal else 0)
        now = now_iso()
        row = new_row(
            category_id=self._category_id(category),
            iscrowd=iscrowd,
            occlusion=occlusion or "none",
            occlusion_manual=occlusion is not None,
            z_order=z_order,
            source=source,
            review="pre-label" if source in MODEL_SOURCES else "accepted",
            annotator=self.annotator,
            created=now,
            modified=now,
        )
        rows = {instance_id: row}
        amodal_after = {instance_id: CroppedMask.from_full(mask)} if amodal else {}
        if amodal:
            region, after = self._composite(bbox_of(mask), rows, amodal_after)
        else:
            writable = mask if in_front else mask & (self.labels_yx == 0)
            region = bbox_of(writable)
            after = None
            if region is not None:
                y0, x0, y1, x1 = region
                after = self.labels_yx[y0:y1, x0:x1].copy()
                after[writable[y0:y1, x0:x1]] = instance_id
        painted = 0 if after is None else int(np.count_nonzero(after == instance_id))
        if painted == 0 and not amodal:  # a fully hidden object is legitimate only with its outline
            raise CommitError(
                "The mask lies entirely on committed instances; nothing was written. "
                "Commit it 'in front' to make it the nearer object."
            )
        row["time_s"] = self._active_time()
        prelabels = {}
        if source in MODEL_SOURCES:
            if score is None:
                score = (
                    float(self.candidates.scores[self.candidate_index])
                    if from_candidates and self.candidates
                    else float("nan")
                )
            proposal = CroppedMask((0, 0, 0, 0), np.zeros((0, 0), bool))
            if region is not None:
                y0, x0, _, _ = region
                crop = CroppedMask.from_full(after == instance_id)
                cy0, cx0, cy1, cx1 = crop.bbox_yx
                proposal = CroppedMask((cy0 + y0, cx0 + x0, cy1 + y0, cx1 + x0), crop.mask)
            prelabels[instance_id] = PrelabelRecord(proposal, source, score)
        edit = Edit(
            "commit",
            (instance_id,),
            region,
            self._crop(region),
            after,
            {instance_id: None},
            rows,
            {instance_id: None} if prelabels else {},
            prelabels,
            {instance_id: None} if amodal else {},
            amodal_after,
            instance_id + 1,
        )
        return edit, CommitResult(instance_id, painted, int(np.count_nonzero(mask)) - painted, z_order)

    def accept(self, instance_id: int) -> str:
        """Review a pre-label: ``accepted`` if unchanged, else ``corrected`` with its IoU stored.

        Returns the new review state.
        """
        self._require_row(instance_id)
        changes = self._review_changes(instance_id)
        changes.setdefault("review", "accepted")
        changes["annotator"] = self._reviewer(instance_id)
        self._retag_rows("accept", {instance_id: changes})
        return str(self.table.at[instance_id, "review"])

    def reject(self, instance_id: int) -> None:
        """Reject an instance: its pixels are cleared; its row stays, counted as ``rejected``."""
        self._require_row(instance_id)
        region, after = self._without(instance_id)
        rows = {instance_id: self._changed_row(instance_id, review="rejected", annotator=self._reviewer(instance_id))}
        self._do(
            Edit(
                "reject",
                (instance_id,),
                region,
                self._crop(region),
                after,
                {instance_id: _row_dict(self.table, instance_id)},
                rows,
                next_id=self.ids.next_id,
            )
        )

    def delete(self, instance_id: int) -> None:
        """Delete an instance: pixels, row, proposal and amodal mask (its id is not reused)."""
        self._require_row(instance_id)
        region, after = self._without(instance_id)
        edit = Edit(
            "delete",
            (instance_id,),
            region,
            self._crop(region),
            after,
            {instance_id: _row_dict(self.table, instance_id)},
            {instance_id: None},
            {instance_id: self.prelabels.get(instance_id)},
            {instance_id: None},
            {instance_id: self.amodal.get(instance_id)},
            {instance_id: None},
            self.ids.next_id,
        )
        self._do(edit)

    def labels_edited(self, instance_ids: Iterable[int] = ()) -> Edit | None:
        """Record painting / erasing done outside the session (napari's tools) as one edit.

        The changed pixels are found by comparing with the labels as last recorded. Model
        instances whose mask now differs from their proposal become ``corrected`` with
        ``prelabel_iou``; ids painted without a row get a ``manual`` row. Returns the edit,
        or None when nothing changed.
        """
        changed = self.labels_yx != self._shadow
        region = bbox_of(changed)
        touched = {int(i) for i in instance_ids if int(i) != 0}
        if region is not None:
            y0, x0, y1, x1 = region
            inside = changed[y0:y1, x0:x1]
            touched |= set(np.unique(self._shadow[y0:y1, x0:x1][inside]).tolist())
            touched |= set(np.unique(self.labels_yx[y0:y1, x0:x1][inside]).tolist())
        touched.discard(0)
        if region is None and not touched:
            return None
        self.ids.observe(touched)
        rows_before = {i: _row_dict(self.table, i) for i in touched}
        rows_after = {}
        for instance_id in sorted(touched):
            if rows_before[instance_id] is None:
                now = now_iso()
                rows_after[instance_id] = _row_dict(
                    make_rows(
                        [instance_id],
                        category_id=self.protocol.categories[0].id,
                        annotator=self.annotator,
                        created=now,
                        modified=now,
                    ),
                    instance_id,
                )
            else:
                rows_after[instance_id] = self._changed_row(
                    instance_id, **self._review_changes(instance_id, only_corrected=True)
                )
        edit = Edit(
            "paint",
            tuple(sorted(touched)),
            region,
            None if region is None else self._shadow[y0:y1, x0:x1].copy(),
            None if region is None else self.labels_yx[y0:y1, x0:x1].copy(),
            rows_before,
            rows_after,
            next_id=self.ids.next_id,
        )
        self._do(edit, refresh_occlusion=True)
        return edit

    def retag(
        self,
        instance_id: int,
        *,
        category: int | str | None = None,
        occlusion: str | None = None,
        iscrowd: bool | None = None,
    ) -> None:
        """Change an instance's category, occlusion tier (then marked manual) or crowd bit."""
        self._require_row(instance_id)
        changes: dict[str, Any] = {}
        if category is not None:
            changes["category_id"] = self._category_id(category)
        if occlusion is not None:
            changes.update(occlusion=occlusion, occlusion_manual=True)
        if iscrowd is not None:
            changes["iscrowd"] = bool(iscrowd)
        self._retag_rows("retag", {instance_id: changes})

    def set_z_order(self, instance_id: int, z_order: int) -> None:
        """Move an instance in depth. Where instances have amodal masks the visible labels are
        recomposited (the nearer one owns the overlap), else only the row changes."""
        self._require_row(instance_id)
        rows = {instance_id: self._changed_row(instance_id, z_order=int(z_order))}
        region = self.amodal[instance_id].bbox_yx if instance_id in self.amodal else None
        region, after = self._composite(region, rows, {}) if region else (None, None)
        self._do(
            Edit(
                "reorder",
                (instance_id,),
                region,
                self._crop(region),
                after,
                {instance_id: _row_dict(self.table, instance_id)},
                rows,
                next_id=self.ids.next_id,
            ),
            refresh_occlusion=True,
        )

    def bring_forward(self, instance_id: int) -> None:
        """Raise ``z_order`` by one (nearer the viewer)."""
        self.set_z_order(instance_id, int(self.table.at[instance_id, "z_order"]) + 1)

    def send_backward(self, instance_id: int) -> None:
        """Lower ``z_order`` by one (further from the viewer)."""
        self.set_z_order(instance_id, int(self.table.at[instance_id, "z_order"]) - 1)

    def set_amodal(self, instance_id: int, mask_yx: ArrayLike) -> None:
        """Give an instance its full (amodal) outline; the visible labels are recomposited by
        ``z_order`` and the occluded fraction and tier follow (a manual tier is kept)."""
        self._require_row(instance_id)
        mask = self._mask_to_commit(mask_yx)
        new = CroppedMask.from_full(mask)
        old = self.amodal.get(instance_id)
        region = region_union(new.bbox_yx if new.area_px else None, old.bbox_yx if old else None)
        region, after = self._composite(region, {}, {instance_id: new})
        self._do(
            Edit(
                "amodal",
                (instance_id,),
                region,
                self._crop(region),
                after,
                amodal_before={instance_id: old},
                amodal_after={instance_id: new},
                next_id=self.ids.next_id,
            ),
            refresh_occlusion=True,
        )

    def replace_mask(self, instance_id: int, mask_yx: ArrayLike) -> None:
        """Give an instance a new visible mask (a refinement): its old pixels outside the mask
        are cleared; the mask is written over background and its own pixels, never others."""
        self._require_row(instance_id)
        mask = self._mask_to_commit(mask_yx)
        own = self.labels_yx == instance_id
        region = region_union(bbox_of(own), bbox_of(mask))
        if region is None:
            return
        y0, x0, y1, x1 = region
        after = self.labels_yx[y0:y1, x0:x1].copy()
        own_r, mask_r = own[y0:y1, x0:x1], mask[y0:y1, x0:x1]
        after[own_r & ~mask_r] = 0
        after[mask_r & ((after == 0) | own_r)] = instance_id
        self.candidates, self.candidate_index = None, 0
        self.labels_yx[y0:y1, x0:x1] = after  # then recorded like a paint stroke
        self.labels_edited([instance_id])

    def mask_of(self, instance_id: int) -> NDArray[np.bool_]:
        """The visible mask of an instance (full frame)."""
        return self.labels_yx == instance_id

    # -- undo / redo -----------------------------------------------------------------------
    def undo(self) -> Edit | None:
        """Undo the last action (commit, delete, retag, reorder, paint...); None if none."""
        return self._step("undo", self.undo_stack, self.redo_stack, after=False)

    def redo(self) -> Edit | None:
        """Redo the last undone action; None if none."""
        return self._step("redo", self.redo_stack, self.undo_stack, after=True)

    def _step(self, kind: str, source: list[Edit], target: list[Edit], *, after: bool) -> Edit | None:
        if not source:
            return None
        edit = source[-1]
        self._persist(kind, edit)
        source.pop()
        self._apply(edit, after=after)
        target.append(edit)
        return edit

    # -- applying edits ----------------------------------------------------------------------
    def _do(self, edit: Edit, *, refresh_occlusion: bool = False) -> None:
        if refresh_occlusion:
            edit = self._with_occlusion(edit)
        rows = {i: r for i, r in edit.rows_after.items() if r is not None}
        if rows:  # a bad value is refused before anything is saved
            validate_table(pd.DataFrame.from_dict(rows, orient="index"), source=f"{edit.op} of {list(rows)[:5]}")
        self._persist("do", edit)
        self._apply(edit, after=True)
        self.undo_stack.append(edit)
        self.redo_stack.clear()

    def _persist(self, kind: str, edit: Edit) -> None:
        """Hand the action to the sink first: if it cannot be saved, the session is unchanged."""
        if self.sink is not None:
            self.sink.record(kind, edit)

    def _apply(self, edit: Edit, *, after: bool) -> None:
        """Put the session in the state before or after ``edit`` (idempotent)."""
        labels = edit.labels_after if after else edit.labels_before
        if edit.region_yx is not None and labels is not None:
            y0, x0, y1, x1 = edit.region_yx
            self.labels_yx[y0:y1, x0:x1] = labels
            self._shadow[y0:y1, x0:x1] = labels
        self._set_rows(edit.rows_after if after else edit.rows_before)
        for store, values in (
            (self.prelabels, edit.prelabels_after if after else edit.prelabels_before),
            (self.amodal, edit.amodal_after if after else edit.amodal_before),
        ):
            for instance_id, value in values.items():
                if value is None:
                    store.pop(instance_id, None)
                else:
                    store[instance_id] = value
        self.ids.observe([edit.next_id - 1])

    def _set_rows(self, rows: dict[int, dict[str, Any] | None]) -> None:
        self.table = apply_rows(self.table, rows, source="session")

    def _retag_rows(self, op: str, changes: dict[int, dict[str, Any]]) -> None:
        rows_before = {i: _row_dict(self.table, i) for i in changes}
        rows_after = {i: self._changed_row(i, **c) for i, c in changes.items()}
        self._do(
            Edit(op, tuple(changes), rows_before=rows_before, rows_after=rows_after, next_id=self.ids.next_id),
            refresh_occlusion=True,
        )

    def _changed_row(self, instance_id: int, **changes: Any) -> dict[str, Any]:
        row = _row_dict(self.table, instance_id) or {}
        row.update(changes)
        row["modified"] = now_iso()
        row["time_s"] = float(row.get("time_s", 0.0)) + self._active_time()
        return row

    def _crop(self, region: Region | None) -> NDArray[np.uint32] | None:
        if region is None:
            return None
        y0, x0, y1, x1 = region
        return self.labels_yx[y0:y1, x0:x1].copy()

    def _without(self, instance_id: int) -> tuple[Region | None, NDArray[np.uint32] | None]:
        region = bbox_of(self.labels_yx == instance_id)
        if region is None:
            return None, None
        after = self._crop(region)
        after[after == instance_id] = 0
        return region, after

    # -- amodal compositing and occlusion -------------------------------------------------------
    def _composite(
        self, region: Region | None, rows: dict[int, dict[str, Any] | None], amodal: dict[int, CroppedMask]
    ) -> tuple[Region | None, NDArray[np.uint32] | None]:
        """Visible labels inside ``region`` after a change of z-orders (``rows``) or amodal
        masks (``amodal``): every instance's extent is its amodal mask if it has one, else its
        current visible pixels; the largest ``z_order`` owns each pixel (ties: the earlier)."""
        if region is None:
            return None, None
        y0, x0, y1, x1 = region
        current = self.labels_yx[y0:y1, x0:x1]
        masks = dict(self.amodal)
        masks.update(amodal)
        extents: dict[int, NDArray[np.bool_]] = {}
        for instance_id in np.unique(current).tolist():
            if instance_id and instance_id not in masks:
                extents[instance_id] = current == instance_id
        for instance_id, cropped in masks.items():
            part = _crop_to(cropped, region)
            if part is not None and part.any():
                extents[instance_id] = part

        def z_of(i: int) -> int:
            row = rows.get(i) or _row_dict(self.table, i) or {"z_order": 0}
            return int(row["z_order"])

        after = np.zeros_like(current)
        for instance_id in sorted(extents, key=lambda i: (z_of(i), -i)):
            after[extents[instance_id]] = instance_id
        return region, after

    def _with_occlusion(self, edit: Edit) -> Edit:
        """Add the derived occluded fraction / tier of every instance with an amodal mask whose
        visible area this edit may change."""
        affected = set(edit.ids)
        if edit.region_yx is not None:
            affected |= set(np.unique(edit.labels_before).tolist()) | set(np.unique(edit.labels_after).tolist())
        amodal = dict(self.amodal)
        amodal.update({i: m for i, m in edit.amodal_after.items() if m is not None})
        affected = {i for i in affected if i in amodal}
        if not affected:
            return edit
        rows_after = dict(edit.rows_after)
        rows_before = dict(edit.rows_before)
        for instance_id in affected:
            row = dict(rows_after.get(instance_id) or _row_dict(self.table, instance_id) or {})
            if not row:
                continue
            rows_before.setdefault(instance_id, _row_dict(self.table, instance_id))
            fraction = _occluded_fraction(
                self._labels_after(edit, amodal[instance_id].bbox_yx), amodal[instance_id], instance_id
            )
            row["occluded_fraction"] = fraction
            if not row.get("occlusion_manual"):
                row["occlusion"] = self.protocol.tiers.tier_of(fraction) or "none"
            rows_after[instance_id] = row
        return Edit(
            edit.op,
            edit.ids,
            edit.region_yx,
            edit.labels_before,
            edit.labels_after,
            rows_before,
            rows_after,
            edit.prelabels_before,
            edit.prelabels_after,
            edit.amodal_before,
            edit.amodal_after,
            edit.next_id,
        )

    def _labels_after(self, edit: Edit, region: Region) -> NDArray[np.uint32]:
        """The labels inside ``region`` as they will be once ``edit`` is applied (a crop, not
        a full-frame copy)."""
        y0, x0, y1, x1 = region
        out = self.labels_yx[y0:y1, x0:x1].copy()
        if edit.region_yx is not None:
            ey0, ex0, ey1, ex1 = edit.region_yx
            iy0, ix0, iy1, ix1 = max(y0, ey0), max(x0, ex0), min(y1, ey1), min(x1, ex1)
            if iy0 < iy1 and ix0 < ix1:
                out[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] = edit.labels_after[
                    iy0 - ey0 : iy1 - ey0, ix0 - ex0 : ix1 - ex0
                ]
        return out

    # -- helpers -------------------------------------------------------------------------
    def _require_prompter(self) -> Prompter:
        if self.prompter is None:
            raise CommitError("This session has no prompter: pass prompter=make_prompter(...).")
        return self.prompter

    def _require_row(self, instance_id: int) -> None:
        if instance_id not in self.table.index:
            raise CommitError(f"There is no instance {instance_id}; known ids: {self.table.index.tolist()[:20]}.")

    def _mask_to_commit(self, mask_yx: ArrayLike | None) -> NDArray[np.bool_]:
        if mask_yx is None:
            if self.candidate is None:
                raise CommitError("There is no candidate to commit: prompt first, or pass a mask.")
            return self.candidate
        mask = np.asarray(mask_yx, dtype=bool)
        if mask.shape != self.shape_yx:
            raise CommitError(f"Mask shape {mask.shape} does not match the labels {self.shape_yx}.")
        return mask

    def _category_id(self, category: int | str | None) -> int:
        if category is None:
            return self.protocol.categories[0].id
        if isinstance(category, str):
            return self.protocol.category_by_name(category).id
        return self.protocol.category(int(category)).id

    def _front_z(self) -> int:
        return int(self.table["z_order"].max()) if len(self.table) else 0

    def _back_z(self) -> int:
        return int(self.table["z_order"].min()) if len(self.table) else 0

    def _review_changes(self, instance_id: int, *, only_corrected: bool = False) -> dict[str, Any]:
        """``review`` / ``prelabel_iou`` for an instance measured against its proposal."""
        record = self.prelabels.get(instance_id)
        if record is None or self.table.at[instance_id, "review"] == "rejected":
            return {}
        overlap = iou(self.mask_of(instance_id), record.full(self.shape_yx))
        state = "accepted" if overlap == 1.0 else "corrected"
        if only_corrected and state == "accepted":
            return {"prelabel_iou": overlap}
        return {"review": state, "prelabel_iou": overlap}

    def _reviewer(self, instance_id: int) -> str:
        return self.annotator or str(self.table.at[instance_id, "annotator"])

    def _since_last_action(self) -> float:
        """Seconds since the previous action (pauses capped at :data:`IDLE_CAP_S`)."""
        now = self._clock()
        elapsed = 0.0 if self._last_action is None else min(now - self._last_action, IDLE_CAP_S)
        self._last_action = now
        return max(float(elapsed), 0.0)

    def _active_time(self) -> float:
        """Active seconds to book on the instance of the current action."""
        spent = self._pending_s + self._since_last_action()
        self._pending_s = 0.0
        return spent


def _combine(edits: list[Edit], labels_before: NDArray[np.uint32], labels_after: NDArray[np.uint32]) -> Edit:
    """Several consecutive edits as one (the earliest 'before', the latest 'after')."""
    region = None
    for edit in edits:
        region = region_union(region, edit.region_yx)
    merged: dict[str, dict[int, Any]] = {
        name: {}
        for name in (
            "rows_before",
            "rows_after",
            "prelabels_before",
            "prelabels_after",
            "amodal_before",
            "amodal_after",
        )
    }
    for edit in edits:
        for name, values in merged.items():
            source = getattr(edit, name)
            if name.endswith("_before"):
                for key, value in source.items():
                    values.setdefault(key, value)
            else:
                values.update(source)
    before = after = None
    if region is not None:
        y0, x0, y1, x1 = region
        before, after = labels_before[y0:y1, x0:x1].copy(), labels_after[y0:y1, x0:x1].copy()
    ids = tuple(sorted({i for edit in edits for i in edit.ids}))
    return Edit(
        "commit-many",
        ids,
        region,
        before,
        after,
        merged["rows_before"],
        merged["rows_after"],
        merged["prelabels_before"],
        merged["prelabels_after"],
        merged["amodal_before"],
        merged["amodal_after"],
        edits[-1].next_id,
    )


def _crop_to(mask: CroppedMask, region: Region) -> NDArray[np.bool_] | None:
    """The part of ``mask`` inside ``region``, as a (region-sized) array; None if disjoint."""
    ry0, rx0, ry1, rx1 = region
    my0, mx0, my1, mx1 = mask.bbox_yx
    y0, x0, y1, x1 = max(ry0, my0), max(rx0, mx0), min(ry1, my1), min(rx1, mx1)
    if y0 >= y1 or x0 >= x1:
        return None
    out = np.zeros((ry1 - ry0, rx1 - rx0), dtype=bool)
    out[y0 - ry0 : y1 - ry0, x0 - rx0 : x1 - rx0] = mask.mask[y0 - my0 : y1 - my0, x0 - mx0 : x1 - mx0]
    return out


def _occluded_fraction(labels_in_bbox: NDArray[np.uint32], amodal: CroppedMask, instance_id: int) -> float:
    """``1 - visible / amodal`` area; ``labels_in_bbox`` is the label image cropped to the
    outline's bounding box, and visible pixels are counted inside the outline."""
    if amodal.area_px == 0:
        return float("nan")
    visible = np.count_nonzero((labels_in_bbox == instance_id) & amodal.mask)
    return float(1.0 - visible / amodal.area_px)
