"""Run-length encoding in COCO's layout, computed for all instances in one pass.

COCO RLE (pycocotools ``mask.py``) walks a binary mask of shape (height, width) in
column-major (Fortran) order and stores alternating run lengths of 0s and 1s, starting with
0s. Here a whole label image is scanned once into vertical runs of equal label
value; the runs of every instance then give its RLE without ever building a full-frame mask
per instance. The reverse direction paints runs into a label image.

Positions ("flat index") are ``x * height + y``: the index of pixel (y, x) in that order.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "Composite",
    "LabelRuns",
    "bboxes_xywh",
    "composite_pixels",
    "counts_from_string",
    "instance_rles",
    "label_runs",
    "paint_runs",
    "pixels_from_runs",
    "runs_from_counts",
]


@dataclass(frozen=True)
class LabelRuns:
    """Maximal runs of one non-zero label value in column-major order.

    Attributes
    ----------
    shape_yx : tuple of int
        (height, width) of the label image.
    ids : numpy.ndarray of uint32, shape (n,)
        Instance ids, ascending.
    offsets : numpy.ndarray of int64, shape (n + 1,)
        Runs of ``ids[i]`` are ``starts[offsets[i]:offsets[i + 1]]`` (and ``lengths``).
    starts, lengths : numpy.ndarray of int64
        Flat start index and length of every run, grouped by id, ascending within an id.
    """

    shape_yx: tuple[int, int]
    ids: NDArray[np.uint32]
    offsets: NDArray[np.int64]
    starts: NDArray[np.int64]
    lengths: NDArray[np.int64]

    @property
    def area_px(self) -> NDArray[np.int64]:
        """Pixel count of every instance, aligned with :attr:`ids`."""
        return np.add.reduceat(self.lengths, self.offsets[:-1]) if self.ids.size else np.zeros(0, np.int64)


def label_runs(labels_yx: NDArray[np.integer]) -> LabelRuns:
    """Scan a 2-D label image once and return the runs of every instance.

    Vertical runs are found with row-wise (cache-friendly) comparisons of each row with the
    row above. A stable radix sort by column puts them in column-major order, where each run
    ends where the next one starts; one sort by (id, position) then groups them by instance,
    and runs that continue from the bottom of one column into the top of the next are joined.

    Parameters
    ----------
    labels_yx : numpy.ndarray, shape (height, width)
        Integer label image, 0 = background.

    Returns
    -------
    LabelRuns
    """
    height, width = labels_yx.shape
    labels_yx = np.ascontiguousarray(labels_yx)
    starts_c = _vertical_run_starts(labels_yx)
    values = labels_yx.ravel()[starts_c]  # gathered in memory order, before the reordering
    row, column = np.divmod(starts_c, width)
    del starts_c
    by_column = np.argsort(column.astype(np.uint16 if width <= 1 << 16 else np.uint32), kind="stable")
    column *= height
    column += row
    del row
    position = column[by_column]  # ascending: column-major order
    values = values[by_column]
    del column, by_column
    ends = np.empty_like(position)
    ends[:-1] = position[1:]
    ends[-1] = height * width
    foreground = values != 0
    values, position, ends = values[foreground], position[foreground], ends[foreground]
    ids, starts, ends = _grouped_by_id(values, position, ends, height * width)
    ids, starts, ends = _join_across_columns(ids, starts, ends)
    first = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]) if ids.size else np.zeros(0, np.int64)
    return LabelRuns(
        shape_yx=(height, width),
        ids=ids[first].astype(np.uint32),
        offsets=np.append(first, ids.size).astype(np.int64),
        starts=starts,
        lengths=ends - starts,
    )


def _vertical_run_starts(labels_yx: NDArray[np.integer]) -> NDArray[np.int64]:
    """C-order flat indices of the first pixel of every vertical run of one value (background too)."""
    differs = np.empty(labels_yx.shape, dtype=bool)
    differs[0] = True
    np.not_equal(labels_yx[1:], labels_yx[:-1], out=differs[1:])
    return np.flatnonzero(differs).astype(np.int64)


def _grouped_by_id(
    values: NDArray[np.integer], position: NDArray[np.int64], ends: NDArray[np.int64], n_pixels: int
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """Runs ordered by (id, position), given in position order.

    A stable sort by id keeps each id's runs in position order. It is done as a least
    significant digit radix sort on 16-bit digits (numpy's stable sort of 16-bit keys is a
    radix sort): one pass for ids below 2**16, two below 2**32 — several times faster than a
    comparison sort of packed (id, position) keys.
    """
    del n_pixels  # the order needs no position bits: the input is in position order already
    order = np.argsort((values & 0xFFFF).astype(np.uint16), kind="stable")
    high = values >> 16
    for shift in (0, 16):
        digit = ((high >> shift) & 0xFFFF).astype(np.uint16)
        if digit.any():
            order = order[np.argsort(digit[order], kind="stable")]
    return values[order].astype(np.int64), position[order], ends[order]


def _join_across_columns(
    ids: NDArray[np.int64], starts: NDArray[np.int64], ends: NDArray[np.int64]
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """Merge runs of one id where one ends exactly where the next starts (a column wrap)."""
    if ids.size < 2:
        return ids, starts, ends
    joined = (starts[1:] == ends[:-1]) & (ids[1:] == ids[:-1])
    if not joined.any():
        return ids, starts, ends
    first = np.flatnonzero(np.r_[True, ~joined])
    last = np.r_[first[1:] - 1, ids.size - 1]
    return ids[first], starts[first], ends[last]


def _uncompressed_counts(runs: LabelRuns) -> list[NDArray[np.int64]]:
    """COCO counts (0s, 1s, 0s, ...) of every instance, as int64 arrays."""
    height, width = runs.shape_yx
    total = height * width
    ends = runs.starts + runs.lengths
    prev_end = np.empty_like(ends)
    prev_end[1:] = ends[:-1]
    prev_end[runs.offsets[:-1]] = 0  # the first run of each id follows the image start
    gaps = runs.starts - prev_end
    interleaved = np.empty(2 * runs.starts.size, dtype=np.int64)
    interleaved[0::2] = gaps
    interleaved[1::2] = runs.lengths
    counts = []
    for i in range(runs.ids.size):
        lo, hi = runs.offsets[i], runs.offsets[i + 1]
        tail = total - ends[hi - 1]
        own = interleaved[2 * lo : 2 * hi]
        counts.append(np.append(own, tail) if tail else own)  # no trailing 0, as pycocotools
    return counts


def instance_rles(runs: LabelRuns) -> list[dict[str, Any]]:
    """Return the compressed COCO RLE of every instance, aligned with ``runs.ids``.

    The counts of all instances are encoded in one vectorised pass into pycocotools' string
    format (``rleToString``: differences against the count two places back from the fourth
    count on, 5-bit groups with a continuation bit, offset by 48), byte for byte what
    ``pycocotools.mask.encode`` writes.

    Returns
    -------
    list of dict
        ``{"size": [height, width], "counts": str}`` as pycocotools writes to JSON.
    """
    height, width = runs.shape_yx
    if runs.ids.size == 0:
        return []
    size = [int(height), int(width)]
    out: list[dict[str, Any]] = []
    for lo in range(0, runs.ids.size, _ENCODE_BLOCK):  # blocks of instances bound the memory
        hi = min(lo + _ENCODE_BLOCK, runs.ids.size)
        block = LabelRuns(
            runs.shape_yx,
            runs.ids[lo:hi],
            runs.offsets[lo : hi + 1] - runs.offsets[lo],
            runs.starts[runs.offsets[lo] : runs.offsets[hi]],
            runs.lengths[runs.offsets[lo] : runs.offsets[hi]],
        )
        counts, first = _all_counts(block)
        text, offsets = _encode_counts(counts, first)
        bounds = offsets.tolist()
        out += [{"size": size, "counts": text[a:b]} for a, b in itertools.pairwise(bounds)]
    return out


_ENCODE_BLOCK = 20_000
"""Instances encoded per vectorised block."""


def _all_counts(runs: LabelRuns) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """COCO counts of every instance, concatenated, and where each instance's counts start."""
    height, width = runs.shape_yx
    total = height * width
    n_runs = runs.starts.size
    ends = runs.starts + runs.lengths
    prev_end = np.empty_like(ends)
    prev_end[1:] = ends[:-1]
    prev_end[runs.offsets[:-1]] = 0  # the first run of each id follows the image start
    last = runs.offsets[1:] - 1
    tail = total - ends[last]  # trailing zeros of each instance (no trailing 0 count, as pycocotools)
    n_per = 2 * np.diff(runs.offsets) + (tail > 0)
    first = np.zeros(runs.ids.size + 1, dtype=np.int64)
    np.cumsum(n_per, out=first[1:])
    counts = np.empty(int(first[-1]), dtype=np.int64)
    run_index = np.arange(n_runs)
    instance_of_run = np.repeat(np.arange(runs.ids.size), np.diff(runs.offsets))
    slot = first[instance_of_run] + 2 * (run_index - runs.offsets[instance_of_run])
    counts[slot] = runs.starts - prev_end
    counts[slot + 1] = runs.lengths
    has_tail = tail > 0
    counts[first[1:][has_tail] - 1] = tail[has_tail]
    return counts, first


def _encode_counts(counts: NDArray[np.int64], first: NDArray[np.int64]) -> tuple[str, NDArray[np.int64]]:
    """pycocotools' ``rleToString`` of many count arrays at once.

    Returns the concatenated ASCII text and the character offset of every instance in it.
    """
    position = np.arange(counts.size) - np.repeat(first[:-1], np.diff(first))
    small = counts.size == 0 or int(counts.max()) < 2**31  # half the memory traffic below
    values = counts.astype(np.int32) if small else counts.copy()
    delta = position > 2
    values[delta] -= values[np.flatnonzero(delta) - 2] if small else counts[np.flatnonzero(delta) - 2]
    # 5-bit groups until the rest is 0 (or -1, for negative values) and the sign bit agrees;
    # each round handles only the values that still need a character
    rounds = max(2, (int(np.abs(values).max(initial=0)).bit_length() + 1) // 5 + 2)
    chars = np.zeros((values.size, rounds), dtype=np.uint8)
    n_chars = np.zeros(values.size, dtype=np.int64)
    index = np.arange(values.size)
    rest = values
    for r in range(rounds):
        if index.size == 0:
            break
        group = rest & 0x1F
        rest = rest >> 5
        more = np.where(group & 0x10, rest != -1, rest != 0)
        chars[index, r] = (group | (more.astype(np.int64) << 5)) + 48
        n_chars[index] += 1
        index, rest = index[more], rest[more]
    encoded = chars[np.arange(rounds)[None, :] < n_chars[:, None]]
    value_end = np.cumsum(n_chars)
    offsets = np.concatenate(([0], value_end[first[1:] - 1])).astype(np.int64)
    return encoded.tobytes().decode("ascii"), offsets


def bboxes_xywh(runs: LabelRuns) -> NDArray[np.float64]:
    """COCO ``[x, y, width, height]`` of every instance from its runs (as pycocotools' toBbox)."""
    height = runs.shape_yx[0]
    if runs.ids.size == 0:
        return np.zeros((0, 4), dtype=np.float64)
    ends = runs.starts + runs.lengths - 1  # last pixel of each run
    column_start, column_end = runs.starts // height, ends // height
    wraps = column_end != column_start
    y_low = np.where(wraps, 0, runs.starts % height)
    y_high = np.where(wraps, height - 1, ends % height)
    lo = runs.offsets[:-1]
    x0 = column_start[lo]
    x1 = column_end[runs.offsets[1:] - 1]
    y0 = np.minimum.reduceat(y_low, lo)
    y1 = np.maximum.reduceat(y_high, lo)
    return np.stack([x0, y0, x1 - x0 + 1, y1 - y0 + 1], axis=1).astype(np.float64)


def counts_from_string(encoded: str | bytes) -> NDArray[np.int64]:
    """Decode pycocotools' compressed RLE string (``rleFrString``) into counts, vectorised."""
    raw = encoded.encode("ascii") if isinstance(encoded, str) else bytes(encoded)
    c = np.frombuffer(raw, dtype=np.uint8).astype(np.int64) - 48
    if c.size == 0:
        return np.zeros(0, dtype=np.int64)
    if c.min() < 0 or c.max() > 63:
        raise ValueError("RLE counts string has characters outside pycocotools' alphabet ('0'..'o').")
    last = (c & 0x20) == 0
    if not last[-1]:
        raise ValueError("RLE counts string is truncated: its last value is unfinished.")
    value_id = np.concatenate(([0], np.cumsum(last[:-1])))
    first = np.flatnonzero(np.r_[True, last[:-1]])
    k = np.arange(c.size) - first[value_id]
    x = np.add.reduceat((c & 0x1F) << (5 * k), first)
    n_chars = np.diff(np.append(first, c.size))
    negative = (c[last] & 0x10) != 0
    x = np.where(negative, x - (np.int64(1) << (5 * n_chars)), x)
    counts = x.copy()
    counts[3::2] = np.cumsum(x[1::2])[1:]  # odd positions: running sum from index 1
    counts[2::2] = np.cumsum(x[2::2])  # even positions: running sum from index 2
    return np.asarray(counts, dtype=np.int64)


@dataclass(frozen=True)
class Composite:
    """Own masks composited into one label image, with who covers whom.

    Attributes
    ----------
    labels_yx : numpy.ndarray of uint32, shape (height, width)
        Visible labels.
    lost_px : numpy.ndarray of int64, shape (n,)
        Pixels of each own mask that instances in front own.
    overlap_px : int
        Pixels claimed by more than one instance.
    front_ids, back_ids, pixels : list of int
        One entry per overlapping (front, back) pair: ``front`` covers ``pixels`` of ``back``.
    """

    labels_yx: NDArray[np.uint32]
    lost_px: NDArray[np.int64]
    overlap_px: int
    front_ids: list[int]
    back_ids: list[int]
    pixels: list[int]


def composite_pixels(
    pixels_xy: list[NDArray[np.int64]],
    ids: NDArray[np.int64],
    z_order: NDArray[np.int64],
    shape_yx: tuple[int, int],
) -> Composite:
    """Composite own masks, given as column-major flat pixel indices (``x * height + y``).

    Who owns a contested pixel follows :func:`napari_instseg.core.occlusion.paint_order`
    (larger ``z_order``, then smaller own area, then smaller id in front).
    """
    from napari_instseg.core.occlusion import paint_order

    height, width = shape_yx
    areas = np.array([p.size for p in pixels_xy], dtype=np.int64)
    flat_xy = np.zeros(height * width, dtype=np.uint32)
    front: list[int] = []
    back: list[int] = []
    counts: list[int] = []
    lost = np.zeros(len(pixels_xy), dtype=np.int64)
    contested = [np.zeros(0, dtype=np.int64)]
    for k in paint_order(z_order, areas, ids)[::-1]:  # front to back: the first painter owns a pixel
        owners = flat_xy[pixels_xy[k]]
        free = owners == 0
        flat_xy[pixels_xy[k][free]] = ids[k]
        if not free.all():
            contested.append(pixels_xy[k][~free])
            by, n = np.unique(owners[~free], return_counts=True)
            front += by.tolist()
            back += [int(ids[k])] * by.size
            counts += n.tolist()
            lost[k] = int(n.sum())
    labels_yx = np.ascontiguousarray(flat_xy.reshape(width, height).T)
    overlap_px = int(np.unique(np.concatenate(contested)).size)
    return Composite(labels_yx, lost, overlap_px, front, back, counts)


def pixels_from_runs(starts: NDArray[np.int64], lengths: NDArray[np.int64]) -> NDArray[np.int64]:
    """Column-major flat indices of every pixel of the runs (ascending)."""
    if starts.size == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.cumsum(lengths) - lengths
    run_of_pixel = np.repeat(np.arange(starts.size), lengths)
    return starts[run_of_pixel] + (np.arange(int(lengths.sum())) - offsets[run_of_pixel])


def runs_from_counts(counts: NDArray[np.integer]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Return (starts, lengths) of the runs of 1s described by COCO ``counts``."""
    counts = np.asarray(counts, dtype=np.int64)
    bounds = np.cumsum(counts)
    starts = bounds[0::2][: counts[1::2].size]
    lengths = counts[1::2]
    nonempty = lengths > 0
    return np.asarray(starts[nonempty], dtype=np.int64), np.asarray(lengths[nonempty], dtype=np.int64)


def paint_runs(
    flat_xy: NDArray[Any], starts: NDArray[np.int64], lengths: NDArray[np.int64], value: int
) -> NDArray[np.int64]:
    """Write ``value`` into the runs of a column-major flat label buffer, only where it is 0.

    Parameters
    ----------
    flat_xy : numpy.ndarray, shape (width * height,)
        The label image in column-major order (``labels_yx.T.ravel()`` of a C array, which
        a C-ordered (x, y) buffer gives as a view).
    starts, lengths : numpy.ndarray of int64
        Runs, from :func:`runs_from_counts`.
    value : int
        Instance id to write.

    Returns
    -------
    numpy.ndarray of int64
        Flat indices of this instance's pixels that another instance already owned (these
        are left unchanged).
    """
    if starts.size == 0:
        return np.zeros(0, dtype=np.int64)
    total = int(lengths.sum())
    run_of_pixel = np.repeat(np.arange(starts.size), lengths)
    offsets = np.cumsum(lengths) - lengths
    index = starts[run_of_pixel] + (np.arange(total) - offsets[run_of_pixel])
    taken = flat_xy[index] != 0
    flat_xy[index[~taken]] = value
    return np.asarray(index[taken], dtype=np.int64)
