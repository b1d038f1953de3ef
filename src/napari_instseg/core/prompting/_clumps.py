# mypy: disable-error-code="no-untyped-call"
"""Splitting bright-field objects that hold several touching nuclei (classic automatic mode).

:func:`tree_split`: where the component tree of an object's hematoxylin signal shows several
darker cores, cut it by a watershed from them, when the pieces fit ellipses better than the
whole object (nuclei are near-convex ellipses). :func:`ellipse_fit` also serves the mode's
score. (Cutting clumps between the concave points of their outline was measured and left
out: ``docs/classic_auto.md``.)

Chosen on the calibration images of ``tests/core/test_auto_classic.py`` (see
``docs/classic_auto.md``); used by :mod:`napari_instseg.core.prompting.auto_classic`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["ellipse_fit", "tree_split"]

_TREE_LEVELS = 40  # bright-field component tree: threshold levels over each image's objects
_TREE_CORE_AREA = 0.02  # a core (a component at some level) counts from this fraction of a disc r
_TREE_CORE_DEPTH = 0.05  # ... when its peak rises this share of its object's range above the level
_TREE_PIECE_AREA = 0.25  # a split never leaves a piece under this fraction of a disc r
_TREE_MIN_GAIN = 0.02  # a cut's pieces must fit ellipses at least this much better than the whole
_TREE_MAX_ELONGATION = 4.0  # objects longer than this (major / minor axis) are not cut


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
