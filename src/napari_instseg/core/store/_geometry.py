"""Regions, chunks, boxes, and moving edits between window and slide coordinates."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from napari_instseg.core.edits import CroppedMask, Edit
from napari_instseg.core.store._base import StoreError

__all__ = ["boxes_of", "checked_region", "chunk_ranges", "label_boxes", "shift_edit", "shift_side"]

Region = tuple[int, int, int, int]


def chunk_ranges(region: Region, chunk_yx: tuple[int, int]) -> Iterator[tuple[tuple[int, int], Region]]:
    """((cy, cx), the part of ``region`` inside that chunk) for every chunk it touches."""
    y0, x0, y1, x1 = region
    ch, cw = chunk_yx
    for cy in range(y0 // ch, (y1 - 1) // ch + 1):
        for cx in range(x0 // cw, (x1 - 1) // cw + 1):
            yield (cy, cx), (max(y0, cy * ch), max(x0, cx * cw), min(y1, (cy + 1) * ch), min(x1, (cx + 1) * cw))


def label_boxes(labels: NDArray[np.uint32], origin_yx: tuple[int, int] = (0, 0)) -> dict[int, Region]:
    """Bounding box of every non-zero id in ``labels`` (shifted by ``origin_yx``)."""
    from scipy import ndimage

    present = labels > 0
    if not present.any():
        return {}
    low, high = int(labels[present].min()), int(labels.max())
    if high - low < 1 << 20:  # ids in a compact range (tiles, edits): no sort needed
        dense = np.where(present, labels.astype(np.int64) - (low - 1), 0)
        ids = range(low, high + 1)
    else:
        unique, inverse = np.unique(labels, return_inverse=True)
        dense = inverse.reshape(labels.shape).astype(np.int64) + (0 if unique[0] == 0 else 1)
        ids = unique[unique > 0].tolist() if unique[0] == 0 else unique.tolist()
    oy, ox = origin_yx
    out = {}
    for instance_id, found in zip(ids, ndimage.find_objects(dense), strict=False):
        if found is not None:
            ys, xs = found
            out[int(instance_id)] = (ys.start + oy, xs.start + ox, ys.stop + oy, xs.stop + ox)
    return out


def _union(a: Region | None, b: Region) -> Region:
    return b if a is None else (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def boxes_of(
    region: Region | None, labels: NDArray[np.uint32] | None, sides: dict[str, dict[int, Any]]
) -> dict[int, Region]:
    """Boxes an applied action gives instances: their pixels in ``labels`` (at ``region``)
    and their side records (proposals, amodal masks)."""
    from napari_instseg.core.records import PrelabelRecord

    boxes: dict[int, Region] = {}
    if region is not None and labels is not None:
        boxes.update(label_boxes(labels, (region[0], region[1])))
    for values in sides.values():
        for instance_id, value in values.items():
            if value is None:
                continue
            mask = value.proposal if isinstance(value, PrelabelRecord) else value
            if mask.area_px:
                boxes[instance_id] = _union(boxes.get(instance_id), tuple(int(v) for v in mask.bbox_yx))  # type: ignore[arg-type]
    return boxes


def shift_side(value: Any, dy: int, dx: int, shape_yx: tuple[int, int] | None = None) -> Any:
    """A proposal / outline moved by (dy, dx); None when ``shape_yx`` is given and it leaves it."""
    from napari_instseg.core.records import PrelabelRecord

    if value is None:
        return None
    mask = value.proposal if isinstance(value, PrelabelRecord) else value
    y0, x0, y1, x1 = mask.bbox_yx
    box = (y0 + dy, x0 + dx, y1 + dy, x1 + dx)
    if shape_yx is not None and (box[0] < 0 or box[1] < 0 or box[2] > shape_yx[0] or box[3] > shape_yx[1]):
        return None
    moved = CroppedMask(box, mask.mask)
    return PrelabelRecord(moved, value.source, value.score) if isinstance(value, PrelabelRecord) else moved


def shift_edit(edit: Edit, dy: int, dx: int) -> Edit:
    """The same edit with (dy, dx) added (window -> slide coordinates)."""
    region = (
        None
        if edit.region_yx is None
        else (edit.region_yx[0] + dy, edit.region_yx[1] + dx, edit.region_yx[2] + dy, edit.region_yx[3] + dx)
    )

    def side(values: dict[int, Any]) -> dict[int, Any]:
        return {i: shift_side(v, dy, dx) for i, v in values.items()}

    return Edit(
        edit.op,
        edit.ids,
        region,
        edit.labels_before,
        edit.labels_after,
        edit.rows_before,
        edit.rows_after,
        side(edit.prelabels_before),
        side(edit.prelabels_after),
        side(edit.amodal_before),
        side(edit.amodal_after),
        edit.next_id,
    )


def checked_region(region_yx: Region, shape_yx: tuple[int, int], path: Path) -> Region:
    """``region_yx`` as ints; raises :class:`StoreError` when it is empty or outside the labels."""
    y0, x0, y1, x1 = (int(v) for v in region_yx)
    if not (0 <= y0 < y1 <= shape_yx[0] and 0 <= x0 < x1 <= shape_yx[1]):
        raise StoreError(f"{path}: region (y0, x0, y1, x1) {region_yx} is empty or outside the labels {shape_yx}.")
    return (y0, x0, y1, x1)
