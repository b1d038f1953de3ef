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

The session is a facade over modules with one responsibility each:
:mod:`~napari_instseg.core.candidates` (prompt state), :mod:`~napari_instseg.core.commit_rules`
(commit and review rules), :mod:`~napari_instseg.core.paint` (paint diffing),
:mod:`~napari_instseg.core.activetime` (the active-time clock),
:mod:`~napari_instseg.core.compositing` (depth compositing and occlusion) and
:mod:`~napari_instseg.core.history` (undo / redo and the persistence sink).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from napari_instseg.core.activetime import IDLE_CAP_S
from napari_instseg.core.commit_rules import (
    MODEL_SOURCES,
    combine_edits,
    commit_edit,
    depth_edit,
    depth_step_z_order,
    removal_edit,
    review_changes,
)
from napari_instseg.core.edits import CroppedMask, Edit, bbox_of, region_union
from napari_instseg.core.history import EditSink
from napari_instseg.core.instances import IdAllocator, row_of
from napari_instseg.core.paint import paint_edit
from napari_instseg.core.prompting.base import Candidates, ImageKey, Prompt
from napari_instseg.core.records import CommitError, CommitResult, PrelabelRecord, iou
from napari_instseg.core.session_state import SessionState

__all__ = [
    "IDLE_CAP_S",
    "MODEL_SOURCES",
    "AnnotationSession",
    "CommitError",
    "CommitResult",
    "EditSink",
    "PrelabelRecord",
    "iou",
]


class AnnotationSession(SessionState):
    """Annotation state of one image: labels, instance table, pre-labels, amodal masks.

    Parameters
    ----------
    labels_yx : array-like, shape (height, width)
        Existing labels (copied to uint32 if needed; edited in place otherwise).
    table : DataFrame, optional
        Instance table of the existing labels (rows are added for ids it lacks).
    protocol : AnnotationProtocol, optional
        Taxonomy and rules; defaults to :meth:`AnnotationProtocol.default`.
    annotator : str
        Who is annotating (written into every row this session creates or reviews).
    prompter : Prompter, optional
        The backend used by :meth:`prompt`.
    clock : callable
        Seconds as a float (``time.monotonic``); injectable for tests.
    sink : EditSink, optional
        Persists every edit (an :class:`~napari_instseg.core.store.AnnotationStore`).
    """

    # -- prompting ---------------------------------------------------------------------
    def set_image(self, image: NDArray[np.generic], key: ImageKey | None = None) -> None:
        """Give the prompter the image (SAM 2 encodes it, or loads it from its cache)."""
        if image.shape[:2] != self.shape_yx:
            raise CommitError(f"Image shape {image.shape[:2]} does not match the labels {self.shape_yx}.")
        self._require_prompter().set_image(image, key)

    def predict(
        self,
        points_yx: ArrayLike | None = None,
        point_labels: ArrayLike | None = None,
        box_xyxy: ArrayLike | None = None,
        mask_yx: ArrayLike | None = None,
        *,
        multimask: bool = True,
    ) -> Candidates:
        """Ask the prompter for candidate masks without changing the session (safe in a
        worker thread); show them with :meth:`show_candidates` on the owning thread."""
        prompt = Prompt.make(points_yx, point_labels, box_xyxy, mask_yx)
        return self._require_prompter().predict(prompt, multimask=multimask)

    def show_candidates(self, candidates: Candidates) -> Candidates:
        """Make ``candidates`` the current ones (the best first); their time accrues to the
        object until it is committed."""
        self.active_time.accrue()
        self.prompt_state.set(candidates)
        return candidates

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
        return self.show_candidates(self.predict(points_yx, point_labels, box_xyxy, mask_yx, multimask=multimask))

    def refine_mask(self, instance_id: int) -> NDArray[np.bool_]:
        """The mask :meth:`refine` prompts with (the instance's visible mask).

        Raises
        ------
        CommitError
            When the instance has no pixels.
        """
        mask = self.mask_of(instance_id)
        if not mask.any():
            raise CommitError(f"Instance {instance_id} has no pixels to refine.")
        return mask

    def refine(
        self, instance_id: int, points_yx: ArrayLike | None = None, point_labels: ArrayLike | None = None
    ) -> Candidates:
        """Re-predict an existing instance with its current mask (and optional clicks) as prompt."""
        mask = self.refine_mask(instance_id)
        return self.prompt(points_yx, point_labels, mask_yx=mask, multimask=False)

    def next_candidate(self) -> int:
        """Cycle to the next candidate (by descending score); return its index."""
        return self.prompt_state.next()

    def clear(self) -> None:
        """Drop the current candidates (and the active time of the unfinished object)."""
        self.prompt_state.clear()
        self.active_time.drop_pending()

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
        reviewed: bool = False,
    ) -> CommitResult:
        """Commit a mask (default: the current candidate) as a new instance with a new id.

        Without ``in_front`` only background pixels are written: committed instances are
        never overwritten (front-to-back annotation: a later object lies behind). With
        ``in_front`` the mask is written whole and gets a ``z_order`` above every other
        instance. With ``amodal`` the mask is the object's full outline: it is kept, and the
        visible labels are recomposited by ``z_order`` (the occluded fraction and tier follow).
        Masks from a model start as ``pre-label`` and their proposal is kept, unless
        ``reviewed``: a person committed the candidate they saw, so it is ``accepted`` by
        them at once and is no pre-label (no proposal is kept; QA's pre-label figures leave
        it out).

        Raises
        ------
        CommitError
            When there is no mask, or (without ``amodal``) no pixel of it would be visible.
        """
        edit, result = commit_edit(
            self,
            self._mask_to_commit(mask_yx),
            mask_yx is None,
            category=category,
            in_front=in_front,
            iscrowd=iscrowd,
            occlusion=occlusion,
            source=source,
            amodal=amodal,
            reviewed=reviewed,
        )
        self._do(edit, refresh_occlusion=True)
        self.prompt_state.clear()
        return result

    def commit_many(
        self,
        masks: Iterable[ArrayLike | CroppedMask],
        *,
        scores: Iterable[float] | None = None,
        estimates: Iterable[Mapping[str, float]] | None = None,
        **kwargs: Any,
    ) -> tuple[list[CommitResult], int]:
        """Commit masks one after the other (the same rules as :meth:`commit`) as ONE action:
        one undo step and one save. A mask is full-frame or a :class:`CroppedMask` (written
        inside its box only: many small objects in a large image). ``scores`` (one per mask) are the model's own quality
        estimates, kept with the pre-label proposals; ``estimates`` (one mapping per mask, e.g.
        ``predicted_iou`` and ``stability_score``) are kept as the pre-labels' row values.
        Returns the results and how many masks fell entirely on earlier instances (skipped)."""
        labels_before = self.labels_yx.copy()
        ids_before = IdAllocator(self.ids.next_id)  # restored when the save fails
        edits, results, covered = [], [], 0
        score_of = iter(scores) if scores is not None else None
        estimate_of = iter(estimates) if estimates is not None else None
        try:
            for mask in masks:
                score = next(score_of, None) if score_of is not None else None
                extra = next(estimate_of, None) if estimate_of is not None else None
                checked = self._mask_or_crop_to_commit(mask)  # a malformed mask raises, never counts as covered
                try:
                    edit, result = commit_edit(self, checked, False, score=score, estimates=extra, **kwargs)
                except CommitError:
                    covered += 1
                    continue
                if edit.region_yx is not None and edit.labels_after is not None:  # later masks see it
                    y0, x0, y1, x1 = edit.region_yx
                    self.labels_yx[y0:y1, x0:x1] = edit.labels_after
                self.ids.observe([edit.next_id - 1])
                edits.append(edit)
                results.append(result)
            combined = combine_edits(edits, labels_before, self.labels_yx) if edits else None
        finally:
            self.labels_yx[...] = labels_before  # applied below, after the save, as one edit
        if combined is not None:
            try:
                self._do(combined, refresh_occlusion=True)
            except BaseException:
                self.ids = ids_before
                raise
        return results, covered

    def accept(self, instance_id: int) -> str:
        """Review a pre-label: ``accepted`` if unchanged, else ``corrected`` with its IoU stored.

        Returns the new review state.
        """
        self._require_row(instance_id)
        changes = review_changes(self, instance_id)
        changes.setdefault("review", "accepted")
        changes["annotator"] = self._reviewer(instance_id)
        self._retag_rows("accept", {instance_id: changes})
        return str(self.table.at[instance_id, "review"])

    def reject(self, instance_id: int) -> None:
        """Reject an instance: its pixels are cleared; its row stays, counted as ``rejected``."""
        self._require_row(instance_id)
        row = self.changed_row(instance_id, review="rejected", annotator=self._reviewer(instance_id))
        self._do(removal_edit(self, "reject", instance_id, row))

    def delete(self, instance_id: int) -> None:
        """Delete an instance: pixels, row, proposal and amodal mask (its id is not reused)."""
        self._require_row(instance_id)
        self._do(removal_edit(self, "delete", instance_id, None))

    def labels_edited(self, instance_ids: Iterable[int] = ()) -> Edit | None:
        """Record painting / erasing done outside the session (napari's tools) as one edit.

        The changed pixels are found by comparing with the labels as last recorded. Model
        instances whose mask now differs from their proposal become ``corrected`` with
        ``prelabel_iou``; ids painted without a row get a ``manual`` row. Returns the edit,
        or None when nothing changed.
        """
        edit = paint_edit(self, self._painted.diff(self.labels_yx, instance_ids))
        if edit is not None:
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
            changes["category_id"] = self.category_id(category)
        if occlusion is not None:
            changes.update(occlusion=occlusion, occlusion_manual=True)
        if iscrowd is not None:
            changes["iscrowd"] = bool(iscrowd)
        self._retag_rows("retag", {instance_id: changes})

    def set_z_order(self, instance_id: int, z_order: int) -> None:
        """Move an instance in depth. Where instances have amodal masks the visible labels are
        recomposited (the nearer one owns the overlap), else only the row changes."""
        self._require_row(instance_id)
        row = self.changed_row(instance_id, z_order=int(z_order))
        self._do(depth_edit(self, instance_id, {instance_id: row}, {}), refresh_occlusion=True)

    def bring_forward(self, instance_id: int) -> None:
        """Move an instance one step nearer the viewer, as one action: strictly in front of
        the nearest instance it overlaps that is drawn in front of it (it takes the overlap
        at once); ``z_order`` + 1 when none is."""
        self._require_row(instance_id)
        self.set_z_order(instance_id, depth_step_z_order(self, instance_id, forward=True))

    def send_backward(self, instance_id: int) -> None:
        """Move an instance one step further from the viewer, as one action: strictly behind
        the nearest instance it overlaps that is drawn behind it (which takes the overlap at
        once); ``z_order`` - 1 when none is."""
        self._require_row(instance_id)
        self.set_z_order(instance_id, depth_step_z_order(self, instance_id, forward=False))

    def set_amodal(self, instance_id: int, mask_yx: ArrayLike) -> None:
        """Give an instance its full (amodal) outline; the visible labels are recomposited by
        ``z_order`` and the occluded fraction and tier follow (a manual tier is kept)."""
        self._require_row(instance_id)
        outline = CroppedMask.from_full(self._mask_to_commit(mask_yx))
        self._do(depth_edit(self, instance_id, {}, {instance_id: outline}), refresh_occlusion=True)

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
        self.prompt_state.clear()
        before = self.labels_yx[y0:y1, x0:x1].copy()
        self.labels_yx[y0:y1, x0:x1] = after  # then recorded like a paint stroke
        try:
            self.labels_edited([instance_id])
        except BaseException:
            self.labels_yx[y0:y1, x0:x1] = before  # not saved: the labels stay as they were
            raise

    def _retag_rows(self, op: str, changes: dict[int, dict[str, Any]]) -> None:
        rows_before = {i: row_of(self.table, i) for i in changes}
        rows_after: dict[int, dict[str, Any] | None] = {i: self.changed_row(i, **c) for i, c in changes.items()}
        edit = Edit(op, tuple(changes), rows_before=rows_before, rows_after=rows_after, next_id=self.ids.next_id)
        self._do(edit, refresh_occlusion=True)
