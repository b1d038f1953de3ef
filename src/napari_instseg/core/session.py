"""The headless annotation session: the ONE place for the commit rules.

Prompt a backend, cycle through candidates, commit a mask as a new instance (never over a
committed one unless put in front, which raises its ``z_order``), review pre-labels (accept,
correct, reject), retag, and keep the pre-label history. Widgets, the CLI, scripts and batch
jobs all drive a session; none of them writes a rule of its own.

The session owns its label image and edits it in place, so a napari Labels layer can show the
same array; call :meth:`AnnotationSession.labels_edited` after painting outside the session.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from napari_instseg.core.errors import InstsegError
from napari_instseg.core.instances import IdAllocator, empty_table, make_rows, now_iso, validate_table
from napari_instseg.core.labels import as_label_image
from napari_instseg.core.prompting.base import Candidates, ImageKey, Prompt, Prompter

__all__ = ["AnnotationSession", "CommitError", "CommitResult", "PrelabelRecord"]

MODEL_SOURCES = ("sam2", "classic")
"""Sources whose instances start as pre-labels and need a person's review."""

IDLE_CAP_S = 60.0
"""Longer pauses between two actions on one instance are not counted as active time."""


class CommitError(InstsegError, ValueError):
    """A commit or review action cannot be carried out (the message says why)."""


@dataclass(frozen=True)
class CommitResult:
    """What a commit wrote."""

    instance_id: int
    painted_px: int
    skipped_px: int
    z_order: int


@dataclass(frozen=True)
class PrelabelRecord:
    """The mask a model proposed for an instance, kept for review and QA.

    ``mask`` is cropped to ``bbox_yx`` = (y0, x0, y1, x1) of the image.
    """

    bbox_yx: tuple[int, int, int, int]
    mask: NDArray[np.bool_]
    source: str
    score: float

    def full(self, shape_yx: tuple[int, int]) -> NDArray[np.bool_]:
        """The proposed mask in a full frame of ``shape_yx``."""
        out = np.zeros(shape_yx, dtype=bool)
        y0, x0, y1, x1 = self.bbox_yx
        out[y0:y1, x0:x1] = self.mask
        return out


def _crop(mask: NDArray[np.bool_]) -> tuple[tuple[int, int, int, int], NDArray[np.bool_]]:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return (0, 0, 0, 0), np.zeros((0, 0), bool)
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    return (int(y0), int(x0), int(y1), int(x1)), mask[y0:y1, x0:x1].copy()


def iou(a: NDArray[np.bool_], b: NDArray[np.bool_]) -> float:
    """Intersection over union of two masks (1.0 when both are empty)."""
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


class AnnotationSession:
    """Annotation state of one image: labels, instance table, pre-label history, prompting.

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
    ) -> None:
        from napari_instseg.core.instances import table_for_ids
        from napari_instseg.core.protocol import Protocol

        self.labels_yx = as_label_image(labels_yx, name="session labels")
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
        self.prelabels: dict[int, PrelabelRecord] = {}
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
        self._tick()
        self.candidates = self._require_prompter().predict(prompt, multimask=multimask)
        self.candidate_index = 0
        return self.candidates

    def refine(self, instance_id: int, points_yx: ArrayLike | None = None, point_labels: ArrayLike | None = None) -> Candidates:
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
        """Drop the current candidates (and the active-time clock of the unfinished object)."""
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
    ) -> CommitResult:
        """Commit a mask (default: the current candidate) as a new instance with a new id.

        Without ``in_front`` only background pixels are written: committed instances are
        never overwritten. With ``in_front`` the mask is written whole and gets a ``z_order``
        above every other instance. Masks from a model start as ``pre-label`` and their
        proposal is kept in :attr:`prelabels`.

        Raises
        ------
        CommitError
            When there is no mask, or (not in front) no background pixel is left to write.
        """
        from_candidates = mask_yx is None
        mask = self._mask_to_commit(mask_yx)
        source = source or (self.candidates.source if from_candidates and self.candidates else "manual")
        writable = mask if in_front else mask & (self.labels_yx == 0)
        painted = int(np.count_nonzero(writable))
        if painted == 0:
            raise CommitError(
                "The mask lies entirely on committed instances; nothing was written. "
                "Commit it 'in front' to make it the nearer object."
            )
        instance_id = self.ids.allocate()[0]
        z_order = self._front_z() + 1 if in_front else 0
        self.labels_yx[writable] = instance_id
        now = now_iso()
        row = make_rows(
            [instance_id],
            category_id=self._category_id(category),
            iscrowd=iscrowd,
            occlusion=occlusion or "none",
            occlusion_manual=occlusion is not None,
            z_order=z_order,
            source=source,
            review="pre-label" if source in MODEL_SOURCES else "accepted",
            annotator=self.annotator,
            time_s=self._active_time(),
            created=now,
            modified=now,
        )
        self.table = pd.concat([self.table, row]) if len(self.table) else row
        if source in MODEL_SOURCES:
            score = float(self.candidates.scores[self.candidate_index]) if from_candidates and self.candidates else float("nan")
            bbox, crop = _crop(writable)
            self.prelabels[instance_id] = PrelabelRecord(bbox, crop, source, score)
        self.clear()
        return CommitResult(instance_id, painted, int(np.count_nonzero(mask)) - painted, z_order)

    def accept(self, instance_id: int) -> str:
        """Review a pre-label: ``accepted`` if unchanged, else ``corrected`` with its IoU stored.

        Returns the new review state.
        """
        self._require_row(instance_id)
        state = self._reviewed_state(instance_id)
        self._update(instance_id, review=state, annotator=self._reviewer(instance_id))
        return state

    def reject(self, instance_id: int) -> None:
        """Reject an instance: its pixels are cleared; its row stays, counted as ``rejected``."""
        self._require_row(instance_id)
        self.labels_yx[self.labels_yx == instance_id] = 0
        self._update(instance_id, review="rejected", annotator=self._reviewer(instance_id))

    def labels_edited(self, instance_ids: Iterable[int]) -> None:
        """Record that these instances were painted / erased outside the session.

        Pre-labels (and accepted model instances) whose mask now differs from the proposal
        become ``corrected`` with ``prelabel_iou``; every touched row gets a new ``modified``.
        Ids that appear in the labels without a row get a default (manual) row.
        """
        for instance_id in {int(i) for i in instance_ids if int(i) != 0}:
            if instance_id not in self.table.index:
                self._add_manual_row(instance_id)
                continue
            changes: dict[str, Any] = {}
            if instance_id in self.prelabels and self.table.at[instance_id, "review"] in ("pre-label", "accepted", "corrected"):
                state = self._reviewed_state(instance_id)
                if state == "corrected":
                    changes["review"] = state
            self._update(instance_id, **changes)

    def retag(self, instance_id: int, *, category: int | str | None = None, occlusion: str | None = None,
              iscrowd: bool | None = None, z_order: int | None = None) -> None:
        """Change an instance's category, occlusion tier (marked manual), crowd bit or z-order."""
        self._require_row(instance_id)
        changes: dict[str, Any] = {}
        if category is not None:
            changes["category_id"] = self._category_id(category)
        if occlusion is not None:
            changes.update(occlusion=occlusion, occlusion_manual=True)
        if iscrowd is not None:
            changes["iscrowd"] = bool(iscrowd)
        if z_order is not None:
            changes["z_order"] = int(z_order)
        self._update(instance_id, **changes)

    def replace_mask(self, instance_id: int, mask_yx: ArrayLike) -> None:
        """Give an instance a new mask (a refinement): its old pixels outside the mask are
        cleared; the mask is written over background and its own pixels, never over others."""
        self._require_row(instance_id)
        mask = self._mask_to_commit(mask_yx)
        own = self.labels_yx == instance_id
        self.labels_yx[own & ~mask] = 0
        self.labels_yx[mask & ((self.labels_yx == 0) | own)] = instance_id
        self.candidates, self.candidate_index = None, 0
        self.labels_edited([instance_id])  # books the prompting time on this instance

    def mask_of(self, instance_id: int) -> NDArray[np.bool_]:
        """The visible mask of an instance (full frame)."""
        return self.labels_yx == instance_id

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

    def _reviewed_state(self, instance_id: int) -> str:
        record = self.prelabels.get(instance_id)
        if record is None:
            return "accepted"
        overlap = iou(self.mask_of(instance_id), record.full(self.shape_yx))
        self.table.loc[instance_id, "prelabel_iou"] = overlap
        return "accepted" if overlap == 1.0 else "corrected"

    def _reviewer(self, instance_id: int) -> str:
        return self.annotator or str(self.table.at[instance_id, "annotator"])

    def _update(self, instance_id: int, **changes: Any) -> None:
        changes["modified"] = now_iso()
        changes["time_s"] = float(self.table.at[instance_id, "time_s"]) + self._active_time()
        table = self.table.copy()
        for column, value in changes.items():
            table.loc[instance_id, column] = value
        self.table = validate_table(table, source=f"instance {instance_id}")

    def _add_manual_row(self, instance_id: int) -> None:
        now = now_iso()
        row = make_rows([instance_id], category_id=self.protocol.categories[0].id, annotator=self.annotator,
                        created=now, modified=now)
        self.table = pd.concat([self.table, row]) if len(self.table) else row
        self.ids.observe([instance_id])

    def _since_last_action(self) -> float:
        """Seconds since the previous action (pauses capped at :data:`IDLE_CAP_S`)."""
        now = self._clock()
        elapsed = 0.0 if self._last_action is None else min(now - self._last_action, IDLE_CAP_S)
        self._last_action = now
        return max(float(elapsed), 0.0)

    def _tick(self) -> None:
        """A prompt: the time goes to the object being prompted (not yet committed)."""
        self._pending_s += self._since_last_action()

    def _active_time(self) -> float:
        """Active seconds to book on the instance of the current action."""
        spent = self._pending_s + self._since_last_action()
        self._pending_s = 0.0
        return spent
