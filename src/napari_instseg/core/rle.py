"""Run-length encoding in COCO's layout, computed for all instances in one pass.

COCO RLE (pycocotools ``mask.py``) walks a binary mask of shape (height, width) in
column-major (Fortran) order and stores alternating run lengths of 0s and 1s, starting with
0s. Here a whole label image is scanned once into vertical runs of equal label
value; the runs of every instance then give its RLE without ever building a full-frame mask
per instance. The reverse direction paints runs into a label image.

Positions ("flat index") are ``x * height + y``: the index of pixel (y, x) in that order.
"""

from __future__ import annotations

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
    starts, lengths : numpy.ndarray of int32 (images under 2**31 pixels) or int64
        Flat start index and length of every run, grouped by id, ascending within an id.
    """

    shape_yx: tuple[int, int]
    ids: NDArray[np.uint32]
    offsets: NDArray[np.int64]
    starts: NDArray[np.signedinteger]
    lengths: NDArray[np.signedinteger]

    @property
    def area_px(self) -> NDArray[np.int64]:
        """Pixel count of every instance, aligned with :attr:`ids`."""
        if self.ids.size == 0:
            return np.zeros(0, np.int64)
        return np.add.reduceat(self.lengths, self.offsets[:-1], dtype=np.int64)


def _flat_index_dtype(n: int) -> type[np.signedinteger]:
    """The integer type for flat indices and counts up to ``n``: int32 where it fits (half the memory)."""
    return np.int32 if n < 1 << 31 else np.int64


def label_runs(labels_yx: NDArray[np.integer]) -> LabelRuns:
    """Scan a 2-D label image once and return the runs of every instance.

    Vertical runs are found with row-wise (cache-friendly) comparisons of each row with the
    row above, which lists them in row-major order. Two stable counting sorts then order
    them: by column (a transpose of the sparse (row, column) matrix of run starts, where each
    run ends where the next one starts), and by id (grouping the foreground runs, in position
    order, by instance). Runs that continue from the bottom of one column into the top of the
    next are joined.

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
    position, values = _runs_in_column_major_order(labels_yx)
    ends = np.empty_like(position)
    ends[:-1] = position[1:]
    ends[-1] = height * width
    ids, offsets, starts, ends = _grouped_by_id(values, position, ends)
    return _joined_across_columns(LabelRuns((height, width), ids, offsets, starts, ends - starts))


def _runs_in_column_major_order(
    labels_yx: NDArray[np.integer],
) -> tuple[NDArray[np.signedinteger], NDArray[np.integer]]:
    """Flat column-major start (``x * height + y``) and label value of every vertical run.

    Background runs are included, so each run ends where the next one starts.
    """
    from scipy import sparse

    height, width = labels_yx.shape
    index_dtype = _flat_index_dtype(height * width)
    differs = np.empty(labels_yx.shape, dtype=bool)
    differs[0] = True
    np.not_equal(labels_yx[1:], labels_yx[:-1], out=differs[1:])
    starts_c = np.flatnonzero(differs)  # row-major order
    del differs
    values = labels_yx.ravel()[starts_c]
    row_bounds = np.searchsorted(starts_c, np.arange(height + 1, dtype=np.int64) * width).astype(index_dtype)
    column = np.empty(starts_c.size, dtype=index_dtype)
    np.remainder(starts_c, width, out=column, casting="unsafe")  # its row is implied by row_bounds
    del starts_c
    # a CSR -> CSC conversion is a stable counting sort by column, in compiled code
    by_column = sparse.csr_array((values, column, row_bounds), shape=(height, width)).tocsc()
    del column, values
    position = np.repeat(np.arange(width, dtype=index_dtype) * index_dtype(height), np.diff(by_column.indptr))
    position += by_column.indices
    return position, by_column.data


def _grouped_by_id(
    values: NDArray[np.integer], position: NDArray[np.signedinteger], ends: NDArray[np.signedinteger]
) -> tuple[NDArray[np.uint32], NDArray[np.int64], NDArray[np.signedinteger], NDArray[np.signedinteger]]:
    """Runs given in position order, grouped by id (stable), background left out: ids, offsets, starts, ends.

    The grouping is a stable counting sort by id: the transpose of the sparse matrix with one
    row per run and its id (or, for ids too large to count, its rank among the ids) as column.
    The background's runs land in column 0 and are dropped there (cheaper than leaving them
    out beforehand).
    """
    from scipy import sparse

    n = values.size
    top = int(values.max(initial=0))
    if top == 0:
        return np.zeros(0, dtype=np.uint32), np.zeros(1, dtype=np.int64), position[:0], ends[:0]
    index_dtype = _flat_index_dtype(max(n, top + 1))
    unique = None
    if top < 4 * n + (1 << 16):  # counting by the ids themselves: few empty columns
        column, n_columns = values.astype(index_dtype), top + 1
    else:
        unique, column = np.unique(values, return_inverse=True)
        n_columns = unique.size
    rows = np.arange(n + 1, dtype=index_dtype)
    grouped = sparse.csr_array((position, column, rows), shape=(n, n_columns)).tocsc()
    del column, rows
    per_column = np.diff(grouped.indptr)
    background = 0
    if unique is None or unique[0] == 0:  # column 0 is the background
        per_column[0] = 0
        background = int(grouped.indptr[1])
    present = np.flatnonzero(per_column)
    ids = present if unique is None else unique[present]
    offsets = np.zeros(present.size + 1, dtype=np.int64)
    np.cumsum(per_column[present], out=offsets[1:])
    return ids.astype(np.uint32), offsets, grouped.data[background:], ends[grouped.indices[background:]]


def _joined_across_columns(runs: LabelRuns) -> LabelRuns:
    """Merge runs of one id where one ends exactly where the next starts (a column wrap)."""
    starts, lengths, offsets = runs.starts, runs.lengths, runs.offsets
    if starts.size < 2:
        return runs
    ends = starts + lengths
    joined = starts[1:] == ends[:-1]
    joined[offsets[1:-1] - 1] = False  # never across two ids
    if not joined.any():
        return runs
    first = np.flatnonzero(np.r_[True, ~joined])
    last = np.r_[first[1:] - 1, starts.size - 1]
    new_offsets = np.searchsorted(first, offsets)  # the first kept run of each id
    return LabelRuns(runs.shape_yx, runs.ids, new_offsets, starts[first], ends[last] - starts[first])


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
        out += [{"size": size, "counts": text} for text in _encoded_strings(*_count_deltas(block))]
    return out


_ENCODE_BLOCK = 20_000
"""Instances encoded per vectorised block."""


def _count_deltas(runs: LabelRuns) -> tuple[NDArray[np.signedinteger], NDArray[np.int64]]:
    """The values ``rleToString`` encodes for every instance, concatenated, and how many each has.

    An instance's COCO counts are (gap, length) per run, then the trailing zeros if there are
    any (pycocotools writes no trailing 0). From the fourth count on, each is stored as its
    difference to the count two places back: a gap minus the previous gap, a length minus
    the previous length, the trailing zeros minus the last gap.
    """
    height, width = runs.shape_yx
    starts, lengths, offsets = runs.starts, runs.lengths, runs.offsets
    first, last = offsets[:-1], offsets[1:] - 1
    n_runs = np.diff(offsets)
    second = first[n_runs > 1] + 1
    ends = starts + lengths
    gaps = np.empty_like(starts)
    gaps[1:] = starts[1:] - ends[:-1]
    gaps[first] = starts[first]  # the first run of each id follows the image start
    tails = height * width - ends[last]
    gap_deltas = np.empty_like(gaps)
    gap_deltas[1:] = gaps[1:] - gaps[:-1]
    gap_deltas[first], gap_deltas[second] = gaps[first], gaps[second]
    length_deltas = np.empty_like(lengths)
    length_deltas[1:] = lengths[1:] - lengths[:-1]
    length_deltas[first] = lengths[first]
    has_tail = tails > 0
    per_instance = 2 * n_runs + has_tail
    values = np.empty(int(per_instance.sum()), dtype=_flat_index_dtype(height * width))
    tail_slot = np.cumsum(per_instance)[has_tail] - 1
    is_run = np.ones(values.size, dtype=bool)
    is_run[tail_slot] = False
    values[is_run] = np.stack([gap_deltas, length_deltas], axis=1).ravel()
    values[tail_slot] = np.where(n_runs > 1, tails - gaps[last], tails)[has_tail]
    return values, per_instance


def _encoded_strings(values: NDArray[np.signedinteger], per_instance: NDArray[np.int64]) -> list[str]:
    """pycocotools' ``rleToString`` of many instances at once, one string per instance.

    A value takes the fewest 5-bit groups that hold it in two's complement; each group is
    written as a character (48 + group, + 32 if another group follows). Most values need one
    character, so the buffer (all instances, a separator after each) is first filled with every
    value's first character repeated to its length, and the rarer later characters and the
    separators are then written in place. It is split once at the end.
    """
    if values.size == 0:
        return [""] * per_instance.size
    magnitude = values ^ (values >> (8 * values.itemsize - 1))  # v, or -v - 1 for v < 0
    n_chars = (magnitude >= 16).view(np.uint8) + np.uint8(1)
    long = np.flatnonzero(magnitude >= 512)  # three characters or more: few
    threshold = 512
    while threshold <= int(magnitude[long].max(initial=0)):
        n_chars[long] += magnitude[long] >= threshold
        threshold <<= 5
    del magnitude
    first = values.astype(np.uint8) & np.uint8(0x1F)  # the low 5 bits: only the last byte matters
    first |= (n_chars > 1).view(np.uint8) << np.uint8(5)
    first += np.uint8(48)
    last_value = np.cumsum(per_instance) - 1
    n_written = n_chars.copy()
    n_written[last_value] += 1  # room for the separator
    text = np.repeat(first, n_written)
    del first
    char_end = np.cumsum(n_written, dtype=np.int64)
    text[char_end[last_value] - 1] = ord(_SEPARATOR)
    for group in range(1, int(n_chars.max())):
        which = np.flatnonzero(n_chars > group)
        chars = ((values[which] >> (5 * group)) & 0x1F).astype(np.uint8)
        chars |= (n_chars[which] > group + 1).view(np.uint8) << np.uint8(5)  # another group follows
        chars += np.uint8(48)
        text[char_end[which] - n_written[which] + group] = chars
    return text.tobytes().decode("ascii").split(_SEPARATOR)[:-1]


_SEPARATOR = ","
"""Between instances in the encoding buffer: outside pycocotools' alphabet ('0'..'o')."""


def bboxes_xywh(runs: LabelRuns) -> NDArray[np.float64]:
    """COCO ``[x, y, width, height]`` of every instance from its runs (as pycocotools' toBbox).

    A run that continues from one column into the next spans every row (toBbox's rule).
    """
    height = runs.shape_yx[0]
    if runs.ids.size == 0:
        return np.zeros((0, 4), dtype=np.float64)
    first, last = runs.offsets[:-1], runs.offsets[1:] - 1
    x0 = runs.starts[first] // height
    x1 = (runs.starts[last] + runs.lengths[last] - 1) // height
    y_low = runs.starts % height
    y_high = y_low + runs.lengths
    y_high -= 1
    wraps = y_high >= height
    y_low[wraps] = 0
    y_high[wraps] = height - 1
    y0 = np.minimum.reduceat(y_low, first)
    y1 = np.maximum.reduceat(y_high, first)
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
