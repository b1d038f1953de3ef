# mypy: disable-error-code="no-untyped-call"
"""Joining the pieces of one bright-field nucleus by where its blob centre lies (classic mode).

The splitting steps of the classic automatic mode (distance watershed, component-tree split)
cut some nuclei into pieces, above all vesicular, textured nuclei of H&E tissue. A piece of a
nucleus has no centre of its own: the scale-normalised Laplacian-of-Gaussian (LoG) blob
response of the hematoxylin signal, at scales around the nucleus radius, peaks at the centre
of the whole nucleus, which lies on or next to the cut. Two touching nuclei each peak inside
themselves, and the response falls between them. :func:`blob_merge` joins two touching
objects when the response on their contact reaches ``_MERGE_RATIO`` of the weaker object's
own peak, as long as the joined object stays within ``_MERGE_MAX_AREA`` times the image's
area-weighted median object (the size of its nuclei, measured on the image).

Radial-symmetry voting (each strong-gradient pixel voting up its gradient at distances around
the radius) gives a similar map; it was measured and lost to the LoG (``docs/classic_auto.md``).
Chosen on the calibration images of ``tests/core/test_auto_classic.py`` (with five TCGA crops
as extra calibration); used by :mod:`napari_instseg.core.prompting.auto_classic`.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["blob_merge", "blob_response"]

_BLOB_SIGMAS = (0.6, 0.7, 0.8)  # radii: scales of the LoG blob response (a disc of radius R: sigma = R / sqrt 2)
_MERGE_RATIO = 0.9  # join two objects when the response on their contact reaches this share of the weaker's peak
_MERGE_MAX_AREA = 1.0  # ... and the joined object is at most this many area-weighted median objects


def blob_response(signal_yx: NDArray[np.float64], radius_px: float) -> NDArray[np.float64]:
    """Scale-normalised blob response of a signal whose nuclei are high (bright blobs positive).

    Parameters
    ----------
    signal_yx : numpy.ndarray of float, shape (height, width)
        Nuclei signal (high inside nuclei), e.g. the hematoxylin optical density.
    radius_px : float
        Nucleus radius in pixels.

    Returns
    -------
    numpy.ndarray of float64, shape (height, width)
        The maximum over the scales ``sigma = _BLOB_SIGMAS * radius_px`` of ``-sigma**2`` times
        the Laplacian of Gaussian: high at the centres of blobs about a nucleus wide.
    """
    from scipy import ndimage

    signal = np.asarray(signal_yx, dtype=np.float64)
    response = np.full(signal.shape, -np.inf)
    for factor in _BLOB_SIGMAS:
        sigma = max(factor * radius_px, 1.0)
        response = np.maximum(response, -(sigma**2) * ndimage.gaussian_laplace(signal, sigma))
    return response


def _contacts(
    labels_yx: NDArray[np.uint32], values_yx: NDArray[np.float64]
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Touching id pairs (8-connected, ``a < b``, shape (n, 2)) and the highest value on either
    side of each contact (shape (n,))."""
    height, width = labels_yx.shape
    n_ids = int(labels_yx.max()) + 1
    padded_labels = np.pad(labels_yx, 1)
    padded_values = np.pad(values_yx, 1)
    keys, highs = [], []
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
        other = padded_labels[1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width]
        other_values = padded_values[1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width]
        touching = (labels_yx > 0) & (other > 0) & (labels_yx != other)
        first, second = labels_yx[touching].astype(np.int64), other[touching].astype(np.int64)
        keys.append(np.minimum(first, second) * n_ids + np.maximum(first, second))
        highs.append(np.maximum(values_yx[touching], other_values[touching]))
    unique, inverse = np.unique(np.concatenate(keys), return_inverse=True)
    high = np.full(unique.size, -np.inf)
    np.maximum.at(high, inverse, np.concatenate(highs))
    return np.stack([unique // n_ids, unique % n_ids], axis=1), high


def _reference_area(areas: NDArray[np.float64]) -> float:
    """Area-weighted median of the object areas (half of the objects' pixels lie in smaller ones):
    fragments and specks do not pull it down."""
    ordered = np.sort(areas[areas > 0])
    cumulative = np.cumsum(ordered)
    return float(ordered[np.searchsorted(cumulative, cumulative[-1] / 2)])


def _root(parent: NDArray[np.int64], node: int) -> int:
    while parent[node] != node:
        parent[node] = parent[parent[node]]
        node = int(parent[node])
    return node


def blob_merge(labels_yx: NDArray[np.uint32], signal_yx: NDArray[np.float64], radius_px: float) -> NDArray[np.uint32]:
    """Join touching objects that are pieces of one nucleus by its blob response.

    Parameters
    ----------
    labels_yx : numpy.ndarray of uint32, shape (height, width)
        Objects (ids 1..n, 0 = background); not modified.
    signal_yx : numpy.ndarray of float, shape (height, width)
        Nuclei signal (high inside nuclei), as for :func:`blob_response`.
    radius_px : float
        Nucleus radius in pixels.

    Returns
    -------
    numpy.ndarray of uint32, shape (height, width)
        Ids 1..m again. Two touching objects are joined when the blob response on their contact
        reaches ``_MERGE_RATIO`` of the lower of their two peaks (the weaker piece has no centre
        of its own), the pairs with the highest ratio first, and a joined object never exceeds
        ``_MERGE_MAX_AREA`` times the area-weighted median object.
    """
    from skimage import segmentation

    labels = np.asarray(labels_yx, dtype=np.uint32)
    n_ids = int(labels.max())
    if n_ids < 2:
        return np.array(labels, dtype=np.uint32)
    response = blob_response(signal_yx, radius_px)
    pairs, contact = _contacts(labels, response)
    if pairs.size == 0:
        return np.array(labels, dtype=np.uint32)
    peak = np.full(n_ids + 1, -np.inf)
    np.maximum.at(peak, labels.ravel(), response.ravel())
    weaker = np.minimum(peak[pairs[:, 0]], peak[pairs[:, 1]])
    ratio = np.where(weaker > 0, contact / np.where(weaker > 0, weaker, 1.0), -np.inf)
    area = np.bincount(labels.ravel(), minlength=n_ids + 1).astype(np.float64)
    largest = _MERGE_MAX_AREA * _reference_area(area[1:])
    parent = np.arange(n_ids + 1, dtype=np.int64)
    for index in np.argsort(-ratio, kind="stable"):
        if ratio[index] < _MERGE_RATIO:
            break
        first, second = _root(parent, int(pairs[index, 0])), _root(parent, int(pairs[index, 1]))
        if first != second and area[first] + area[second] <= largest:
            parent[second] = first
            area[first] += area[second]
    roots = np.array([_root(parent, i) for i in range(n_ids + 1)], dtype=np.int64)
    relabelled, _, _ = segmentation.relabel_sequential(roots[labels])
    return np.asarray(relabelled, dtype=np.uint32)
