"""Objects crossing the edge of a slide window: what a window session needs of them.

A window session holds the labels of one region; an object crossing the region's edge has
pixels (and its proposal or outline may have pixels) the session does not hold. The store
keeps them whole:

- **Review** measures the whole object (:func:`~napari_instseg.core.commit_rules.review_changes`):
  the session gets the part of the saved proposal inside the window, and
  :class:`OutsideCounts` gives the counts of the part outside (the object's pixels, the
  proposal's, both), read from the store when a review asks for them - only that object's
  box is read beyond the window, so opening a window costs what it did.
- **Saved records stay whole** (:func:`whole_edit`): the session's clipped proposal is never
  saved (an undo restores the store's full proposal and outline); a ``reject`` or ``delete``
  of a crossing object clears its pixels outside the window too (a deleted object leaves no
  pixels without a row).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_instseg.core.compositing import crop_to
from napari_instseg.core.edits import CroppedMask, Edit, Region, region_union
from napari_instseg.core.records import OverlapCounts, PrelabelRecord

if TYPE_CHECKING:
    from napari_instseg.core.store._store import AnnotationStore

__all__ = ["REMOVALS", "OutsideCounts", "crossing_boxes", "whole_edit", "window_prelabels"]

REMOVALS = ("reject", "delete")
"""Session actions that clear an object's pixels (saved for the whole of a crossing object)."""


def _within(box: Region, region: Region) -> bool:
    return region[0] <= box[0] and region[1] <= box[1] and box[2] <= region[2] and box[3] <= region[3]


def crossing_boxes(
    region: Region, boxes: Mapping[int, Region | None], proposals: Mapping[int, PrelabelRecord]
) -> dict[int, Region]:
    """The store boxes (slide pixels) of the objects whose box or proposal leaves ``region``,
    grown to hold their proposals."""
    out = {}
    for instance_id, box in boxes.items():
        record = proposals.get(instance_id)
        proposal = record.proposal.bbox_yx if record is not None and record.proposal.area_px else None
        whole = region_union(box, proposal)
        if whole is not None and not _within(whole, region):
            out[int(instance_id)] = whole
    return out


def window_prelabels(region: Region, proposals: Mapping[int, PrelabelRecord]) -> dict[int, PrelabelRecord]:
    """The part inside ``region`` of each proposal (slide pixels), in window pixels (an empty
    crop where none of it is inside): what a window session reviews of a crossing object."""
    y0, x0, y1, x1 = region
    out = {}
    for instance_id, record in proposals.items():
        my0, mx0, my1, mx1 = record.proposal.bbox_yx
        top, left, bottom, right = max(my0, y0), max(mx0, x0), min(my1, y1), min(mx1, x1)
        part = CroppedMask((0, 0, 0, 0), np.zeros((0, 0), bool))
        if top < bottom and left < right:
            crop = CroppedMask.from_full(record.proposal.mask[top - my0 : bottom - my0, left - mx0 : right - mx0])
            if crop.area_px:
                cy0, cx0, cy1, cx1 = crop.bbox_yx
                dy, dx = top - y0, left - x0
                part = CroppedMask((cy0 + dy, cx0 + dx, cy1 + dy, cx1 + dx), crop.mask)
        out[int(instance_id)] = PrelabelRecord(part, record.source, record.score)
    return out


class OutsideCounts(Mapping[int, OverlapCounts]):
    """The counts of crossing objects' parts outside a window, read from the store on demand.

    Parameters
    ----------
    store : AnnotationStore
        The store the window is of.
    region : Region
        The window, (y0, x0, y1, x1) in slide pixels.
    boxes : mapping of int to Region
        The crossing objects' boxes (:func:`crossing_boxes`).
    proposals : mapping of int to PrelabelRecord
        Their saved proposals, in slide pixels. An object without one is measured against
        itself as it is outside the window (its proposal there: the object as it came in,
        like :func:`~napari_instseg.core.commit_rules.prelabel_proposals` inside).
    """

    def __init__(
        self,
        store: AnnotationStore,
        region: Region,
        boxes: Mapping[int, Region],
        proposals: Mapping[int, PrelabelRecord],
    ) -> None:
        self._store, self._region = store, region
        self._boxes = dict(boxes)
        self._proposals = {i: proposals[i] for i in self._boxes if i in proposals}

    def __getitem__(self, instance_id: int) -> OverlapCounts:
        box = self._boxes[int(instance_id)]  # KeyError: wholly inside the window
        own = self._store.read_labels(box) == int(instance_id)
        outside = np.ones(own.shape, bool)
        y0, x0, y1, x1 = self._region
        outside[max(y0 - box[0], 0) : max(y1 - box[0], 0), max(x0 - box[1], 0) : max(x1 - box[1], 0)] = False
        record = self._proposals.get(int(instance_id))
        if record is None:
            n = int(np.count_nonzero(own & outside))
            return OverlapCounts(n, n, n)
        proposal = crop_to(record.proposal, box) if record.proposal.area_px else None
        if proposal is None:
            return OverlapCounts.of(own & outside, np.zeros(own.shape, bool))
        return OverlapCounts.of(own & outside, proposal & outside)

    def __iter__(self) -> Iterator[int]:
        return iter(self._boxes)

    def __len__(self) -> int:
        return len(self._boxes)


def whole_edit(store: AnnotationStore, edit: Edit, boxes: Mapping[int, Region]) -> Edit:
    """``edit`` (slide pixels) as saved for a window whose crossing objects have ``boxes``.

    - The side records an edit replaces (its proposals' and outlines' "before", which its
      undo restores) are, for crossing objects, the store's whole records, not the window's
      part of them: a delete, or an outline drawn in the window, undoes to the full ones.
    - A ``reject`` / ``delete`` of a crossing object clears its pixels outside the window too.

    Any other edit is returned as it is.
    """
    changes: dict[str, Any] = {}
    for name, kind in (("prelabels_before", "prelabel"), ("amodal_before", "amodal")):
        values = getattr(edit, name)
        ids = [i for i in values if i in boxes]
        if ids:
            saved = store.read_side(kind, ids=ids)
            changes[name] = {**values, **{i: saved.get(i) for i in ids}}
    removed = [i for i in edit.ids if i in boxes] if edit.op in REMOVALS else []
    region = edit.region_yx
    for instance_id in removed:
        region = region_union(region, boxes[instance_id])
    if removed and region is not None:
        before = store.read_labels(region)
        after = before.copy()
        after[np.isin(before, removed)] = 0
        changes.update(region_yx=region, labels_before=before, labels_after=after)
    return dataclasses.replace(edit, **changes) if changes else edit
