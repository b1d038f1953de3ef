"""Undoable edits: the unit of change of an annotation session, of its undo / redo and of
its on-disk journal.

An :class:`Edit` records, for one action, the label-image region it changed (before and
after), the instance-table rows (before and after; None = no row), and the per-instance side
data (pre-label proposals, amodal masks). Applying ``after`` redoes it, applying ``before``
undoes it; both are idempotent, which is what crash recovery relies on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "SIDE_KINDS",
    "CroppedMask",
    "Edit",
    "EditTarget",
    "Region",
    "apply_edit",
    "bbox_of",
    "describe_edit",
    "region_union",
    "update_records",
]

Region = tuple[int, int, int, int]
"""(y0, x0, y1, x1) in pixels, end-exclusive."""


@dataclass(frozen=True)
class CroppedMask:
    """A boolean mask stored as its bounding box and the crop inside it."""

    bbox_yx: Region
    mask: NDArray[np.bool_]

    @classmethod
    def from_full(cls, mask_yx: NDArray[np.bool_]) -> CroppedMask:
        """Crop a full-frame mask to its bounding box (an empty mask gives an empty crop)."""
        box = bbox_of(mask_yx)
        if box is None:
            return cls((0, 0, 0, 0), np.zeros((0, 0), bool))
        y0, x0, y1, x1 = box
        return cls(box, np.array(mask_yx[y0:y1, x0:x1], dtype=bool))

    def full(self, shape_yx: tuple[int, int]) -> NDArray[np.bool_]:
        """The mask in a full frame of ``shape_yx``."""
        out = np.zeros(shape_yx, dtype=bool)
        y0, x0, y1, x1 = self.bbox_yx
        out[y0:y1, x0:x1] = self.mask
        return out

    @property
    def area_px(self) -> int:
        """Number of pixels in the mask."""
        return int(np.count_nonzero(self.mask))


def bbox_of(mask_yx: NDArray[np.bool_]) -> Region | None:
    """Bounding box (y0, x0, y1, x1) of a mask, or None when it is empty."""
    rows = np.flatnonzero(mask_yx.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask_yx.any(axis=0))
    return (int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1)


def region_union(a: Region | None, b: Region | None) -> Region | None:
    """The smallest region holding both (None is empty)."""
    if a is None:
        return b
    if b is None:
        return a
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


@dataclass(frozen=True)
class Edit:
    """One undoable action.

    Attributes
    ----------
    op : str
        What the action was (``commit``, ``accept``, ``reject``, ``retag``, ``paint``,
        ``refine``, ``delete``, ``reorder``, ``amodal``).
    ids : tuple of int
        The instances it concerns.
    region_yx : Region or None
        Changed label region; None when the label image did not change.
    labels_before, labels_after : numpy.ndarray of uint32 or None
        The label image inside ``region_yx`` before and after.
    rows_before, rows_after : dict
        Instance-table rows (column -> value) by id, None where there was no row.
    prelabels_before, prelabels_after : dict
        Pre-label proposals by id (CroppedMask plus ``source`` and ``score``), None = none.
    amodal_before, amodal_after : dict
        Amodal (full-outline) masks by id, None = none.
    next_id : int
        The id allocator's next id after the action (never lowered by an undo).
    """

    op: str
    ids: tuple[int, ...]
    region_yx: Region | None = None
    labels_before: NDArray[np.uint32] | None = None
    labels_after: NDArray[np.uint32] | None = None
    rows_before: dict[int, dict[str, Any] | None] = field(default_factory=dict)
    rows_after: dict[int, dict[str, Any] | None] = field(default_factory=dict)
    prelabels_before: dict[int, Any] = field(default_factory=dict)
    prelabels_after: dict[int, Any] = field(default_factory=dict)
    amodal_before: dict[int, CroppedMask | None] = field(default_factory=dict)
    amodal_after: dict[int, CroppedMask | None] = field(default_factory=dict)
    next_id: int = 1


def describe_edit(edit: Edit, *, max_ids: int = 5) -> str:
    """A short description of an action for the user: its kind and the instances it concerns.

    Parameters
    ----------
    edit : Edit
        The action.
    max_ids : int
        At most this many ids are listed; the count says how many there are.

    Returns
    -------
    str
        For example ``"commit-many of 26 instance(s) (1, 2, 3, 4, 5, ...)"``.
    """
    shown = ", ".join(str(i) for i in edit.ids[:max_ids])
    more = ", ..." if len(edit.ids) > max_ids else ""
    return f"{edit.op} of {len(edit.ids)} instance(s) ({shown}{more})"


SIDE_KINDS = ("prelabel", "amodal")
"""The per-instance side records an :class:`Edit` carries, by kind."""


class EditTarget(Protocol):
    """Where an edit is applied: a session's memory or a store on disk.

    :func:`apply_edit` decides what an edit changes; a target only writes it.
    """

    def write_labels(self, region_yx: Region, labels: NDArray[np.uint32]) -> None:
        """Write ``labels`` (the region's new content) into the label image at ``region_yx``."""

    def write_rows(self, rows: dict[int, dict[str, Any] | None]) -> None:
        """Replace, add or (value None) remove instance-table rows by id."""

    def write_side(self, kind: str, values: dict[int, Any]) -> None:
        """Replace, add or (value None) remove side records of ``kind`` (see :data:`SIDE_KINDS`)."""


def apply_edit(edit: Edit, target: EditTarget, *, after: bool) -> None:
    """Put ``target`` in the state after (``after=True``, do / redo) or before (undo) ``edit``.

    The one place that says what applying an edit means, shared by the session (in memory)
    and the store (on disk). Idempotent: applying twice is applying once, which crash
    recovery relies on.

    Parameters
    ----------
    edit : Edit
        The action.
    target : EditTarget
        Receives the label region, the rows and the side records to write.
    after : bool
        True for the state after the action, False for the state before it.
    """
    labels = edit.labels_after if after else edit.labels_before
    if edit.region_yx is not None and labels is not None:
        target.write_labels(edit.region_yx, labels)
    rows = edit.rows_after if after else edit.rows_before
    if rows:
        target.write_rows(rows)
    sides = (
        ("prelabel", edit.prelabels_after if after else edit.prelabels_before),
        ("amodal", edit.amodal_after if after else edit.amodal_before),
    )
    for kind, values in sides:
        if values:
            target.write_side(kind, dict(values))


def update_records(records: dict[int, Any], values: dict[int, Any]) -> None:
    """Apply side-record changes to an in-memory dict (value None removes the id)."""
    for instance_id, value in values.items():
        if value is None:
            records.pop(instance_id, None)
        else:
            records[instance_id] = value
