"""Tiles with a halo, and stitching of per-tile objects into one set without seams.

A large image is cut into a grid of *cores* (``tile_px`` square, the last row / column
smaller); each core is processed inside its *window*, the core grown by ``halo_px`` on every
side (clipped to the image). An object lies in several windows when it is near a seam, so:

1. each tile keeps the objects whose *anchor* (the centre of their bounding box, in image
   pixels) lies in its own core: an object smaller than the halo is whole in the window of the
   core holding its anchor and is kept exactly once;
2. objects kept by different tiles that still overlap (an object larger than the halo, cut at
   a window edge, is anchored once per side) are merged into one: pairs whose intersection
   covers at least ``merge_overlap`` of the smaller one are united (union-find, in tile order).

The result depends only on the input objects and the settings (tiles are visited in row-major
order, objects in their given order; ties keep the earlier one), never on the order in which
tiles finished.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from napari_instseg.core.edits import CroppedMask

__all__ = ["AutoObject", "Tile", "anchored", "objects_from_labels", "paint_objects", "stitch", "tile_grid"]

Region = tuple[int, int, int, int]


@dataclass(frozen=True)
class Tile:
    """One tile of a grid.

    Attributes
    ----------
    index_yx : tuple of int
        (row, column) of the tile in the grid.
    core_yx : tuple of int
        (y0, x0, y1, x1) of the pixels this tile is responsible for.
    window_yx : tuple of int
        (y0, x0, y1, x1) of the pixels it is processed on: the core plus the halo, clipped.
    """

    index_yx: tuple[int, int]
    core_yx: Region
    window_yx: Region

    @property
    def origin_yx(self) -> tuple[int, int]:
        """(y, x) of the window's first pixel in the image."""
        return self.window_yx[0], self.window_yx[1]

    @property
    def slices(self) -> tuple[slice, slice]:
        """Slices of the window in the image."""
        y0, x0, y1, x1 = self.window_yx
        return slice(y0, y1), slice(x0, x1)


@dataclass(frozen=True)
class AutoObject:
    """An automatically found object in image coordinates.

    Attributes
    ----------
    mask : CroppedMask
        Bounding box (y0, x0, y1, x1) in image pixels and the boolean mask inside it.
    score : float
        Ranking score in [0, 1] (SAM 2: predicted IoU; classic: shape and contrast).
    predicted_iou : float
        SAM 2's predicted IoU (NaN for the classic backend).
    stability : float
        SAM 2's stability score (NaN for the classic backend).
    """

    mask: CroppedMask
    score: float
    predicted_iou: float = float("nan")
    stability: float = float("nan")

    def shifted(self, dy: int, dx: int) -> AutoObject:
        """The same object moved by (dy, dx) pixels."""
        y0, x0, y1, x1 = self.mask.bbox_yx
        moved = CroppedMask((y0 + dy, x0 + dx, y1 + dy, x1 + dx), self.mask.mask)
        return AutoObject(moved, self.score, self.predicted_iou, self.stability)

    @property
    def anchor_yx(self) -> tuple[float, float]:
        """Centre of the bounding box (y, x)."""
        y0, x0, y1, x1 = self.mask.bbox_yx
        return (y0 + y1 - 1) / 2.0, (x0 + x1 - 1) / 2.0


def tile_grid(shape_yx: tuple[int, int], tile_px: int, halo_px: int) -> list[Tile]:
    """Tiles covering an image of ``shape_yx`` in row-major order.

    Raises
    ------
    ValueError
        For a tile size below 1 or a negative halo.
    """
    if tile_px < 1 or halo_px < 0:
        raise ValueError(f"Tiles need tile_px >= 1 and halo_px >= 0, got tile_px={tile_px}, halo_px={halo_px}.")
    height, width = int(shape_yx[0]), int(shape_yx[1])
    tiles = []
    for row, y0 in enumerate(range(0, height, tile_px)):
        for col, x0 in enumerate(range(0, width, tile_px)):
            y1, x1 = min(y0 + tile_px, height), min(x0 + tile_px, width)
            window = (max(y0 - halo_px, 0), max(x0 - halo_px, 0), min(y1 + halo_px, height), min(x1 + halo_px, width))
            tiles.append(Tile((row, col), (y0, x0, y1, x1), window))
    return tiles


def _inside(point_yx: tuple[float, float], region: Region) -> bool:
    y, x = point_yx
    return region[0] <= y < region[2] and region[1] <= x < region[3]


def anchored(tile: Tile, objects: Sequence[AutoObject]) -> list[AutoObject]:
    """The tile's objects moved to image coordinates, those anchored in its core."""
    dy, dx = tile.origin_yx
    moved = (obj.shifted(dy, dx) for obj in objects)
    return [obj for obj in moved if _inside(obj.anchor_yx, tile.core_yx)]


def _overlap_px(a: CroppedMask, b: CroppedMask) -> int:
    y0, x0 = max(a.bbox_yx[0], b.bbox_yx[0]), max(a.bbox_yx[1], b.bbox_yx[1])
    y1, x1 = min(a.bbox_yx[2], b.bbox_yx[2]), min(a.bbox_yx[3], b.bbox_yx[3])
    if y1 <= y0 or x1 <= x0:
        return 0
    ca = a.mask[y0 - a.bbox_yx[0] : y1 - a.bbox_yx[0], x0 - a.bbox_yx[1] : x1 - a.bbox_yx[1]]
    cb = b.mask[y0 - b.bbox_yx[0] : y1 - b.bbox_yx[0], x0 - b.bbox_yx[1] : x1 - b.bbox_yx[1]]
    return int(np.count_nonzero(ca & cb))


def _union(objects: Sequence[AutoObject]) -> AutoObject:
    """One object from several (mask union, best score)."""
    boxes = np.array([o.mask.bbox_yx for o in objects])
    y0, x0 = boxes[:, :2].min(axis=0)
    y1, x1 = boxes[:, 2:].max(axis=0)
    mask = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    for obj in objects:
        by0, bx0, by1, bx1 = obj.mask.bbox_yx
        mask[by0 - y0 : by1 - y0, bx0 - x0 : bx1 - x0] |= obj.mask.mask
    best = max(objects, key=lambda o: o.score)
    return AutoObject(
        CroppedMask((int(y0), int(x0), int(y1), int(x1)), mask), best.score, best.predicted_iou, best.stability
    )


def stitch(tiled: Sequence[tuple[Tile, Sequence[AutoObject]]], *, merge_overlap: float = 0.5) -> list[AutoObject]:
    """Stitch per-tile objects (in window coordinates) into one list in image coordinates.

    Parameters
    ----------
    tiled : sequence of (Tile, sequence of AutoObject)
        Each tile with the objects found in its window (window coordinates).
    merge_overlap : float
        Objects of different tiles whose overlap covers at least this fraction of the smaller
        one are the same object and are merged.

    Returns
    -------
    list of AutoObject
        In tile order, then the tile's own order; merged objects take the earliest place.
    """
    ordered = sorted(tiled, key=lambda pair: pair[0].index_yx)
    objects: list[AutoObject] = []
    owner: list[int] = []
    for k, (tile, tile_objects) in enumerate(ordered):
        kept = anchored(tile, tile_objects)
        objects.extend(kept)
        owner.extend([k] * len(kept))
    parent = list(range(len(objects)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    areas = [o.mask.area_px for o in objects]
    for i, j in _box_pairs(objects):
        if owner[i] == owner[j]:
            continue
        shared = _overlap_px(objects[i].mask, objects[j].mask)
        if shared and shared >= merge_overlap * max(min(areas[i], areas[j]), 1):
            ri, rj = find(i), find(j)
            if ri != rj:
                parent[max(ri, rj)] = min(ri, rj)
    groups: dict[int, list[int]] = {}
    for i in range(len(objects)):
        groups.setdefault(find(i), []).append(i)
    return [objects[g[0]] if len(g) == 1 else _union([objects[i] for i in g]) for g in sorted(groups.values())]


def _box_pairs(objects: Sequence[AutoObject]) -> list[tuple[int, int]]:
    """Index pairs (i < j) of objects whose bounding boxes intersect (sweep over y)."""
    if not objects:
        return []
    boxes = np.array([o.mask.bbox_yx for o in objects])
    order = np.argsort(boxes[:, 0], kind="stable")
    pairs = []
    active: list[int] = []
    for i in order.tolist():
        y0, x0, _, x1 = boxes[i]
        active = [j for j in active if boxes[j, 2] > y0]
        for j in active:
            if boxes[j, 1] < x1 and x0 < boxes[j, 3]:
                pairs.append((min(i, j), max(i, j)))
        active.append(i)
    return sorted(pairs)


def objects_from_labels(labels_yx: NDArray[np.integer], scores: dict[int, float] | None = None) -> list[AutoObject]:
    """One object per label value (ascending ids) of a label image; ``scores`` by label id."""
    from scipy import ndimage

    objects = []
    for label_id, slices in enumerate(ndimage.find_objects(np.asarray(labels_yx)), start=1):
        if slices is None:
            continue
        ys, xs = slices
        mask = np.asarray(labels_yx[ys, xs]) == label_id
        score = 1.0 if scores is None else float(scores.get(label_id, 1.0))
        objects.append(AutoObject(CroppedMask((ys.start, xs.start, ys.stop, xs.stop), mask), score))
    return objects


def paint_objects(objects: Sequence[AutoObject], shape_yx: tuple[int, int]) -> NDArray[np.uint32]:
    """A label image of ``objects``: ids 1..n in descending score, earlier objects in front.

    Pixels already painted are never overwritten (the commit rule: a later object lies behind).
    """
    labels = np.zeros(shape_yx, dtype=np.uint32)
    order = sorted(range(len(objects)), key=lambda i: -objects[i].score)
    next_id = 1
    for i in order:
        y0, x0, y1, x1 = objects[i].mask.bbox_yx
        view = labels[y0:y1, x0:x1]
        free = objects[i].mask.mask & (view == 0)
        if free.any():
            view[free] = next_id
            next_id += 1
    return labels
