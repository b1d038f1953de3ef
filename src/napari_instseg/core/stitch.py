"""Tiles with a halo, and stitching of per-tile objects into one set without seams.

A large image is cut into a grid of *cores* (``tile_px`` square, the last row / column
smaller); each core is processed inside its *window*, the core grown by ``halo_px`` on every
side (clipped to the image). An object lies in several windows when it is near a seam, so:

1. each tile keeps the *whole* objects (not touching a window edge inside the image) whose
   *anchor* (the centre of their bounding box) lies in its own core: an object smaller than
   the halo is whole in the window of the core holding its anchor and is kept exactly once;
2. each tile also keeps every *cut* object (touching a window edge inside the image: a
   fragment of something larger than the halo), whatever its anchor;
3. objects of different tiles are one when their intersection covers at least
   ``merge_overlap`` of the smaller one's part inside the pixels both tiles saw (the
   windows' intersection): fragments of an object of any size match on the halo overlap and
   are united (union-find); a cut fragment that matches nothing is kept only when anchored in
   its own core.

The result depends only on the input objects and the settings (tiles are visited in row-major
order, objects in their given order; ties keep the earlier one), never on the order in which
tiles finished.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from napari_instseg.core.edits import CroppedMask

__all__ = [
    "AutoObject",
    "Kept",
    "SeamBuffer",
    "Tile",
    "anchored",
    "cut_edges",
    "is_cut",
    "kept_objects",
    "merge_kept",
    "objects_from_labels",
    "pack_kept",
    "paint_objects",
    "same_object",
    "stitch",
    "tile_grid",
    "unpack_kept",
]

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


def cut_edges(tile: Tile, shape_yx: tuple[int, int]) -> tuple[bool, bool, bool, bool]:
    """Which edges (top, left, bottom, right) of the tile's window lie inside the image: an
    object touching one of them is cut there (a fragment of something larger)."""
    y0, x0, y1, x1 = tile.window_yx
    return y0 > 0, x0 > 0, y1 < shape_yx[0], x1 < shape_yx[1]


def is_cut(obj: AutoObject, tile: Tile, shape_yx: tuple[int, int]) -> bool:
    """Whether ``obj`` (image coordinates) touches a cut edge of the tile's window."""
    top, left, bottom, right = cut_edges(tile, shape_yx)
    y0, x0, y1, x1 = obj.mask.bbox_yx
    wy0, wx0, wy1, wx1 = tile.window_yx
    return (top and y0 <= wy0) or (left and x0 <= wx0) or (bottom and y1 >= wy1) or (right and x1 >= wx1)


@dataclass(frozen=True)
class Kept:
    """An object a tile keeps for stitching (image coordinates).

    Attributes
    ----------
    obj : AutoObject
    tile : Tile
        The tile that found it.
    cut : bool
        It touches a cut edge of the tile's window (a fragment of a larger object): kept
        whatever its anchor, merged with the other tiles' fragments, and dropped again when it
        matches nothing and its anchor lies outside the tile's core.
    """

    obj: AutoObject
    tile: Tile
    cut: bool


def kept_objects(tile: Tile, objects: Sequence[AutoObject], shape_yx: tuple[int, int]) -> list[Kept]:
    """What a tile contributes to stitching: its objects (window coordinates) moved to image
    coordinates; whole ones when anchored in its core, cut ones always (see :class:`Kept`)."""
    dy, dx = tile.origin_yx
    out = []
    for obj in objects:
        moved = obj.shifted(dy, dx)
        cut = is_cut(moved, tile, shape_yx)
        if cut or _inside(moved.anchor_yx, tile.core_yx):
            out.append(Kept(moved, tile, cut))
    return out


def _overlap_px(a: CroppedMask, b: CroppedMask) -> int:
    y0, x0 = max(a.bbox_yx[0], b.bbox_yx[0]), max(a.bbox_yx[1], b.bbox_yx[1])
    y1, x1 = min(a.bbox_yx[2], b.bbox_yx[2]), min(a.bbox_yx[3], b.bbox_yx[3])
    if y1 <= y0 or x1 <= x0:
        return 0
    ca = a.mask[y0 - a.bbox_yx[0] : y1 - a.bbox_yx[0], x0 - a.bbox_yx[1] : x1 - a.bbox_yx[1]]
    cb = b.mask[y0 - b.bbox_yx[0] : y1 - b.bbox_yx[0], x0 - b.bbox_yx[1] : x1 - b.bbox_yx[1]]
    return int(np.count_nonzero(ca & cb))


def _area_in(mask: CroppedMask, region: Region) -> int:
    """Pixels of ``mask`` inside ``region`` (y0, x0, y1, x1)."""
    y0, x0 = max(mask.bbox_yx[0], region[0]), max(mask.bbox_yx[1], region[1])
    y1, x1 = min(mask.bbox_yx[2], region[2]), min(mask.bbox_yx[3], region[3])
    if y1 <= y0 or x1 <= x0:
        return 0
    by0, bx0 = mask.bbox_yx[:2]
    return int(np.count_nonzero(mask.mask[y0 - by0 : y1 - by0, x0 - bx0 : x1 - bx0]))


def _shared_window(a: Tile, b: Tile) -> Region:
    wa, wb = a.window_yx, b.window_yx
    return max(wa[0], wb[0]), max(wa[1], wb[1]), min(wa[2], wb[2]), min(wa[3], wb[3])


def same_object(a: Kept, b: Kept, merge_overlap: float = 0.5) -> bool:
    """Whether two objects of different tiles are one: their intersection covers at least
    ``merge_overlap`` of the smaller one's part inside the pixels both tiles saw (the windows'
    intersection), so fragments of an object of any size match on the halo overlap."""
    shared = _overlap_px(a.obj.mask, b.obj.mask)
    if not shared:
        return False
    both = _shared_window(a.tile, b.tile)
    smaller = min(_area_in(a.obj.mask, both), _area_in(b.obj.mask, both))
    return shared >= merge_overlap * max(smaller, 1)


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


def stitch(
    tiled: Sequence[tuple[Tile, Sequence[AutoObject]]],
    *,
    merge_overlap: float = 0.5,
    shape_yx: tuple[int, int] | None = None,
) -> list[AutoObject]:
    """Stitch per-tile objects (in window coordinates) into one list in image coordinates.

    Parameters
    ----------
    tiled : sequence of (Tile, sequence of AutoObject)
        Each tile with the objects found in its window (window coordinates).
    merge_overlap : float
        Objects of different tiles are one when their intersection covers at least this
        fraction of the smaller one's part inside both windows (:func:`same_object`).
    shape_yx : tuple of int, optional
        The image's shape (default: the extent of the windows); window edges inside it are
        cut edges.

    Returns
    -------
    list of AutoObject
        In tile order, then the tile's own order; merged objects take the earliest place.
    """
    ordered = sorted(tiled, key=lambda pair: pair[0].index_yx)
    if shape_yx is None:
        windows = [t.window_yx for t, _ in ordered] or [(0, 0, 0, 0)]
        shape_yx = (max(w[2] for w in windows), max(w[3] for w in windows))
    kept = [k for tile, objects in ordered for k in kept_objects(tile, objects, shape_yx)]
    return [merged for merged in merge_kept(kept, merge_overlap) if merged is not None]


def merge_kept(kept: Sequence[Kept], merge_overlap: float = 0.5) -> list[AutoObject | None]:
    """Merge the kept objects of several tiles into objects (see :func:`stitch`).

    Returns one entry per group of matched objects, in the order of each group's first member;
    None for a cut fragment that matched nothing and is anchored outside its tile's core (the
    tile holding its anchor sees it whole).
    """
    return [_merged(kept, members) for members in _groups(kept, merge_overlap)]


def _groups(kept: Sequence[Kept], merge_overlap: float) -> list[list[int]]:
    """Indices of the objects that are one (union-find over matching pairs), sorted."""
    parent = list(range(len(kept)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in _box_pairs([k.obj for k in kept]):
        if kept[i].tile.index_yx != kept[j].tile.index_yx and same_object(kept[i], kept[j], merge_overlap):
            ri, rj = find(i), find(j)
            if ri != rj:
                parent[max(ri, rj)] = min(ri, rj)
    groups: dict[int, list[int]] = {}
    for i in range(len(kept)):
        groups.setdefault(find(i), []).append(i)
    return sorted(groups.values())


def _merged(kept: Sequence[Kept], members: Sequence[int]) -> AutoObject | None:
    if len(members) > 1:
        return _union([kept[i].obj for i in members])
    only = kept[members[0]]
    return only.obj if not only.cut or _inside(only.obj.anchor_yx, only.tile.core_yx) else None


class SeamBuffer:
    """Stitching for tiles that finish one at a time (a slide: tiles on dask, one writer).

    Objects kept by a finished tile (:func:`kept_objects`) wait here until every tile whose
    window reaches them has finished; then they are merged exactly as :func:`stitch` merges
    them and handed out, so a slide is stitched like one image, whatever order tiles finish in.

    Parameters
    ----------
    tile_px, halo_px : int
        The grid (tile (row, col) has its core at ``row * tile_px, col * tile_px``).
    expected : collection of (row, col)
        The tiles that will run (others, e.g. without tissue, are never waited for).
    pending : sequence of Kept
        Objects still waiting from an interrupted run (:meth:`pending`).
    merge_overlap : float
    """

    def __init__(
        self,
        tile_px: int,
        halo_px: int,
        expected: Collection[tuple[int, int]],
        pending: Sequence[Kept] = (),
        merge_overlap: float = 0.5,
    ) -> None:
        self._tile_px, self._halo_px = tile_px, halo_px
        self._expected = set(expected)
        self._merge_overlap = merge_overlap
        self.pending: list[Kept] = list(pending)

    def _waits(self, kept: Kept, done: Collection[tuple[int, int]]) -> bool:
        """Whether a tile still to run has a window reaching the object's box."""
        y0, x0, y1, x1 = kept.obj.mask.bbox_yx
        t, h = self._tile_px, self._halo_px
        for row in range(max(y0 - h, 0) // t, (y1 - 1 + h) // t + 1):
            for col in range(max(x0 - h, 0) // t, (x1 - 1 + h) // t + 1):
                if (row, col) in self._expected and (row, col) not in done:
                    return True
        return False

    def add(self, kept: Sequence[Kept], done: Collection[tuple[int, int]]) -> list[AutoObject]:
        """Add a finished tile's kept objects; return the objects now complete (merged).

        ``done`` holds every finished tile, the one just added included.
        """
        self.pending.extend(kept)
        ready: list[AutoObject] = []
        waiting: list[Kept] = []
        for members in _groups(self.pending, self._merge_overlap):
            if any(self._waits(self.pending[i], done) for i in members):
                waiting.extend(self.pending[i] for i in members)
                continue
            merged = _merged(self.pending, members)
            if merged is not None:
                ready.append(merged)
        self.pending = waiting
        return ready


def pack_kept(kept: Sequence[Kept]) -> dict[str, NDArray[Any]]:
    """Kept objects as plain arrays (for ``numpy.savez``); :func:`unpack_kept` reverses it."""
    boxes = np.array([k.obj.mask.bbox_yx for k in kept], dtype=np.int64).reshape(-1, 4)
    tiles = np.array([(*k.tile.index_yx, *k.tile.core_yx, *k.tile.window_yx) for k in kept], dtype=np.int64).reshape(
        -1, 10
    )
    values = np.array([(k.obj.score, k.obj.predicted_iou, k.obj.stability, k.cut) for k in kept], np.float64)
    bits = [k.obj.mask.mask.ravel() for k in kept]
    return {
        "boxes": boxes,
        "tiles": tiles,
        "values": values.reshape(-1, 4),
        "bits": np.packbits(np.concatenate(bits)) if bits else np.zeros(0, np.uint8),
    }


def unpack_kept(arrays: Mapping[str, NDArray[Any]]) -> list[Kept]:
    """Inverse of :func:`pack_kept`."""
    boxes, tiles, values = arrays["boxes"], arrays["tiles"], arrays["values"]
    sizes = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    bits = np.unpackbits(arrays["bits"], count=int(sizes.sum())).astype(bool)
    out, start = [], 0
    for box, tile, value, size in zip(boxes.tolist(), tiles.tolist(), values.tolist(), sizes.tolist(), strict=True):
        mask = bits[start : start + size].reshape(box[2] - box[0], box[3] - box[1])
        start += size
        obj = AutoObject(CroppedMask(tuple(box), mask), value[0], value[1], value[2])
        out.append(Kept(obj, Tile((tile[0], tile[1]), tuple(tile[2:6]), tuple(tile[6:10])), bool(value[3])))
    return out


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
