# mypy: disable-error-code="no-untyped-call"
"""Splitting bright-field objects that hold several touching nuclei (classic automatic mode).

Two steps, both judged by shape, since nuclei are near-convex ellipses:

- :func:`tree_split`: where the component tree of an object's hematoxylin signal shows several
  darker cores, cut it by a watershed from them, when the pieces fit ellipses better than the
  whole object;
- :func:`split_clumps`: cut objects that are still clumps (low solidity) along the straight
  line between two concave points of their outline.

Chosen on the calibration images of ``tests/core/test_auto_classic.py`` (see
``docs/classic_auto.md``); used by :mod:`napari_instseg.core.prompting.auto_classic`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["ellipse_fit", "split_clumps", "tree_split"]

_TREE_LEVELS = 40  # bright-field component tree: threshold levels over each image's objects
_TREE_CORE_AREA = 0.02  # a core (a component at some level) counts from this fraction of a disc r
_TREE_CORE_DEPTH = 0.05  # ... when its peak rises this share of its object's range above the level
_TREE_PIECE_AREA = 0.25  # a split never leaves a piece under this fraction of a disc r
_TREE_MIN_GAIN = 0.02  # a cut's pieces must fit ellipses at least this much better than the whole
_TREE_MAX_ELONGATION = 4.0  # objects longer than this (major / minor axis) are not cut
_CLUMP_SOLIDITY = 0.93  # a bright-field object less convex than this may be a clump of nuclei
_CONCAVITY_DEPTH = 0.25  # radii: a concave point lies this far inside the convex hull ...
_CONCAVITY_MIN_PX = 3.0  # ... and at least this many pixels (deeper than the outline's own noise)
_CUT_MAX_LENGTH = 3.0  # radii: the longest cut
_CUT_MIN_PART = 0.1  # a cut leaves parts of at least this fraction of a disc of radius r
_CUT_GAIN = 0.03  # a cut must raise the (area-weighted) solidity by this much
_CUT_MAX_LEVELS = 4  # recursive cuts per object: at most 2**4 parts


def _moments(labels: NDArray[np.integer], n: int) -> tuple[NDArray[Any], ...]:
    """Per-pixel ids, offsets from their centroid (dy, dx) and per-id area and second moments
    (syy, sxx, sxy, each with a pixel's own extent) of ids 0..n, vectorised with ``bincount``."""
    flat = labels.ravel()
    index = np.flatnonzero(flat)
    ids = flat[index]
    y, x = np.divmod(index, labels.shape[1])
    area = np.bincount(ids, minlength=n + 1).astype(np.float64)
    count = np.maximum(area, 1.0)
    dy = y - (np.bincount(ids, y, n + 1) / count)[ids]
    dx = x - (np.bincount(ids, x, n + 1) / count)[ids]
    syy = np.bincount(ids, dy * dy, n + 1) / count + 1 / 12
    sxx = np.bincount(ids, dx * dx, n + 1) / count + 1 / 12
    sxy = np.bincount(ids, dx * dy, n + 1) / count
    return ids, dy, dx, area, syy, sxx, sxy


def ellipse_fit(labels: NDArray[np.integer], n: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Area and fit to an ellipse (IoU with the ellipse of its own second moments) of ids 0..n.

    Vectorised over all ids (id 0, the background, included and meaningless): a pixel lies
    inside its object's ellipse where its Mahalanobis distance to the centroid is at most 2 (a
    uniform ellipse's edge).
    """
    ids, dy, dx, area, syy, sxx, sxy = _moments(labels, n)
    det = np.maximum(syy * sxx - sxy**2, 1e-9)
    mahalanobis = (sxx[ids] * dy * dy - 2 * sxy[ids] * dx * dy + syy[ids] * dx * dx) / det[ids]
    inside = np.bincount(ids, mahalanobis <= 4.0, n + 1)
    ellipse = 4 * np.pi * np.sqrt(det)
    return area, inside / np.maximum(area + ellipse - inside, 1.0)


def _elongation(labels: NDArray[np.integer], n: int) -> NDArray[np.float64]:
    """Major over minor axis (of the moment ellipse) of ids 0..n."""
    _, _, _, _, syy, sxx, sxy = _moments(labels, n)
    half = np.sqrt(((syy - sxx) / 2) ** 2 + sxy**2)
    major, minor = (syy + sxx) / 2 + half, np.maximum((syy + sxx) / 2 - half, 1e-9)
    return np.asarray(np.sqrt(major / minor), dtype=np.float64)


def _owners(parts: NDArray[np.integer], n: int, labels: NDArray[np.uint32]) -> NDArray[np.int64]:
    """The object of ``labels`` each part 1..n lies in (read at one pixel of it; 0 for id 0)."""
    flat = parts.ravel()
    index = np.flatnonzero(flat)
    first = np.zeros(n + 1, dtype=np.int64)
    first[flat[index][::-1]] = index[::-1]  # repeated assignments keep the last: the first pixel
    owners = labels.ravel()[first].astype(np.int64)
    owners[0] = 0
    return owners


def tree_split(labels: NDArray[np.uint32], signal: NDArray[np.float64], radius: float) -> NDArray[np.uint32]:
    """Split bright-field objects where the component tree of their signal shows several nuclei.

    The signal inside the objects is thresholded at ``_TREE_LEVELS`` levels; the components at
    each level form a tree by containment. At every level, an object holding two or more cores
    (components of at least ``_TREE_CORE_AREA`` of a disc of radius ``r``, peaking at least
    ``_TREE_CORE_DEPTH`` of the object's range above the level) is cut by a watershed of the
    signal from those cores, and the cut is scored by how well its pieces fit ellipses
    (area-weighted IoU with their moment ellipses). Each object takes the cut of the level
    whose pieces fit best, when they fit at least ``_TREE_MIN_GAIN`` better than the whole
    object, none is under ``_TREE_PIECE_AREA`` of a disc and the object is not longer than
    ``_TREE_MAX_ELONGATION``: touching nuclei part where their darker cores part, while a
    nucleus whose chromatin breaks into blobs stays whole (its pieces fit ellipses no better
    than it does). Ids 1..n again.
    """
    from scipy import ndimage
    from skimage import segmentation

    n_objects = int(labels.max())
    if n_objects == 0:
        return labels
    disc = np.pi * radius**2
    _, whole_fit = ellipse_fit(labels, n_objects)
    elongation = _elongation(labels, n_objects)
    inner = (labels > 0) & ~segmentation.find_boundaries(labels, mode="inner")
    values = signal[inner]
    if values.size == 0:
        return labels
    ids = np.arange(1, n_objects + 1)
    contrast = np.zeros(n_objects + 1)  # each object's own range of signal
    contrast[1:] = np.asarray(ndimage.maximum(signal, labels, ids)) - np.asarray(ndimage.minimum(signal, labels, ids))
    best = np.zeros(n_objects + 1)  # fit gained by the best cut so far, per object
    cut = labels.astype(np.int64)  # each object's best cut, ids unique over all levels
    next_id = n_objects + 1
    for level in np.linspace(np.percentile(values, 5), np.percentile(values, 99), _TREE_LEVELS):
        cores, n = ndimage.label((signal > level) & inner)
        if n < 2:
            continue
        owners = _owners(cores, n, labels)
        area = np.bincount(cores.ravel(), minlength=n + 1)
        deep = np.zeros(n + 1, dtype=bool)  # its peak rises _TREE_CORE_DEPTH of its object's range
        deep[cores[signal >= level + _TREE_CORE_DEPTH * contrast[labels]]] = True
        kept = (area >= _TREE_CORE_AREA * disc) & deep & (owners > 0)
        several = np.bincount(owners[kept], minlength=n_objects + 1) >= 2
        kept &= several[owners]
        if not kept.any():
            continue
        pieces = segmentation.watershed(-signal, np.where(kept[cores], cores, 0), mask=several[labels])
        piece_area, piece_fit = ellipse_fit(pieces, n)
        real = kept & (piece_area > 0)
        weighted = np.bincount(owners[real], (piece_area * piece_fit)[real], minlength=n_objects + 1)
        fit = weighted / np.maximum(np.bincount(owners[real], piece_area[real], minlength=n_objects + 1), 1.0)
        small = np.zeros(n_objects + 1, dtype=bool)
        small[owners[real & (piece_area < _TREE_PIECE_AREA * disc)]] = True
        gain = np.where(several & ~small & (elongation <= _TREE_MAX_ELONGATION), fit - whole_fit, -1.0)
        better = (gain > best) & (gain > _TREE_MIN_GAIN)
        if not better.any():
            continue
        best[better] = gain[better]
        where = better[labels] & (pieces > 0)
        cut[where] = pieces[where] + next_id
        next_id += n + 1
    relabelled, _, _ = segmentation.relabel_sequential(cut)
    return np.asarray(relabelled, dtype=np.uint32)


def _outline(mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """Pixels of ``mask`` with a 4-neighbour outside it (``mask`` has an empty border)."""
    inner = mask.copy()
    inner[1:-1, 1:-1] &= mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
    return np.asarray(mask & ~inner, dtype=bool)


def _solidity(mask: NDArray[np.bool_]) -> float:
    """Pixel count over the pixel count of the convex hull (1 for a convex shape).

    The hull's pixels are counted from the hull polygon of the outline's pixel centres by Pick's
    theorem (area + half the perimeter + 1): close to the count of
    ``skimage.morphology.convex_hull_image``, in a fraction of its time.
    """
    from scipy import spatial

    points_yx = np.argwhere(_outline(mask)).astype(np.float64)
    if len(points_yx) < 3 or np.linalg.matrix_rank(points_yx - points_yx.mean(axis=0)) < 2:
        return 1.0  # a line of pixels: no hull to compare with
    hull = spatial.ConvexHull(points_yx)
    return float(min(mask.sum() / (hull.volume + hull.area / 2 + 1), 1.0))


def _concave_points(mask: NDArray[np.bool_], radius: float) -> list[tuple[int, int, float]]:
    """Deepest point (y, x, depth px) of every notch between ``mask`` and its convex hull.

    A notch counts when it reaches ``_CONCAVITY_DEPTH`` radii (and ``_CONCAVITY_MIN_PX``) inside
    the hull; the point lies in the notch, just outside the object.
    """
    from scipy import ndimage
    from skimage import morphology

    hull = morphology.convex_hull_image(mask)
    depth = ndimage.distance_transform_edt(hull)
    notches, _ = ndimage.label(hull & ~mask)
    min_depth = max(_CONCAVITY_DEPTH * radius, _CONCAVITY_MIN_PX)
    points = []
    for index, box in enumerate(ndimage.find_objects(notches), start=1):
        if box is None:
            continue
        notch_depth = np.where(notches[box] == index, depth[box], 0.0)
        y, x = np.unravel_index(int(np.argmax(notch_depth)), notch_depth.shape)
        if notch_depth[y, x] >= min_depth:
            points.append((int(y + box[0].start), int(x + box[1].start), float(notch_depth[y, x])))
    return points


def _parts_solidity(parts: list[NDArray[np.bool_]]) -> float:
    """Area-weighted mean solidity of ``parts``."""
    areas = np.asarray([part.sum() for part in parts], dtype=np.float64)
    return float(np.sum(areas * np.asarray([_solidity(part) for part in parts])) / areas.sum())


def _best_cut(mask: NDArray[np.bool_], radius: float) -> tuple[NDArray[np.bool_], NDArray[np.bool_]] | None:
    """The straight cut between two concave points that most raises the solidity, or None.

    A cut is at most ``_CUT_MAX_LENGTH`` radii long, leaves two parts of ``_CUT_MIN_PART``
    discs or more, and must raise the area-weighted solidity of the parts by ``_CUT_GAIN``.
    """
    from scipy import ndimage
    from skimage import draw, segmentation

    area = int(mask.sum())
    solidity = _solidity(mask)
    if solidity >= _CLUMP_SOLIDITY:
        return None
    points = _concave_points(mask, radius)
    best_score, best_parts = solidity + _CUT_GAIN, None
    for i, start in enumerate(points):
        for end in points[i + 1 :]:
            length = float(np.hypot(start[0] - end[0], start[1] - end[1]))
            if length > _CUT_MAX_LENGTH * radius:
                continue
            cut = mask.copy()
            cut[draw.line(start[0], start[1], end[0], end[1])] = False
            parts, n = ndimage.label(cut)
            if n < 2:
                continue
            sizes = np.bincount(parts.ravel())[1:]
            first, second = np.argsort(sizes)[::-1][:2] + 1
            if (
                sizes[second - 1] < _CUT_MIN_PART * np.pi * radius**2
                or sizes.sum() - sizes[[first - 1, second - 1]].sum() > 0.05 * area
            ):
                continue  # a sliver, or more than two parts
            score = _parts_solidity([parts == first, parts == second])
            if score > best_score:
                best_score, best_parts = score, np.where(parts == first, 1, 0) + np.where(parts == second, 2, 0)
    if best_parts is None:
        return None
    halves = segmentation.expand_labels(best_parts, 2) * mask  # the cut line goes to its nearer part
    return halves == 1, halves == 2


def _cut_recursively(mask: NDArray[np.bool_], radius: float, level: int = 0) -> list[NDArray[np.bool_]]:
    """``mask`` cut into nuclei by :func:`_best_cut`, again on each half, ``_CUT_MAX_LEVELS`` deep."""
    halves = None if level >= _CUT_MAX_LEVELS else _best_cut(mask, radius)
    if halves is None:
        return [mask]
    return [part for half in halves for part in _cut_recursively(half, radius, level + 1)]


def split_clumps(labels: NDArray[np.uint32], radius: float) -> tuple[NDArray[np.uint32], NDArray[np.int64]]:
    """Bright-field objects that are clumps of nuclei, cut between their concave points.

    Nuclei are nearly convex: an object with solidity under ``_CLUMP_SOLIDITY`` is cut
    (recursively, :func:`_best_cut`) along the straight line between two concave points of its
    outline that most raises the area-weighted solidity of its parts.

    Parameters
    ----------
    labels : numpy.ndarray of uint32, shape (height, width)
        Objects (0 = background).
    radius : float
        Nucleus radius in pixels.

    Returns
    -------
    labels : numpy.ndarray of uint32, shape (height, width)
        Ids 1..n again.
    cut_ids : numpy.ndarray of int64
        Ids of the parts of the objects that were cut.
    """
    from skimage import measure

    if not labels.any():
        return labels, np.zeros(0, dtype=np.int64)
    out = np.zeros_like(labels)
    next_id = 1
    cut_ids: list[int] = []
    for region in measure.regionprops(labels):
        y0, x0, y1, x1 = region.bbox
        padded = np.pad(region.image, 2)
        parts = _cut_recursively(padded, radius)
        for part in parts:
            out[y0:y1, x0:x1][part[2:-2, 2:-2]] = next_id
            if len(parts) > 1:
                cut_ids.append(next_id)
            next_id += 1
    return out, np.asarray(cut_ids, dtype=np.int64)
