"""Compositing amodal masks by depth, visible / occluded fractions and occlusion tiers.

Front to back: a larger ``z_order`` is nearer the viewer and owns the pixels where instances
overlap. Under the amodal rule every instance keeps its full outline; the visible label image
is the composite of those outlines.

The one compositing rule of the project (:func:`paint_order`), used wherever a contested pixel
gets an owner (session, store, COCO and GeoJSON import):

1. the larger ``z_order`` owns the pixel (nearer the viewer);
2. on equal ``z_order``, the smaller full (amodal) area owns it, so an object nested inside
   another (a cell inside a region annotation) keeps its pixels;
3. on equal area too, the smaller instance id (the earlier one) owns it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["composite_by_depth", "occluded_fraction", "occluded_fractions", "paint_order"]


def paint_order(z_order: ArrayLike, area: ArrayLike, ids: ArrayLike) -> NDArray[np.intp]:
    """Indices of the instances from back to front: paint in this order and later ones win.

    Parameters
    ----------
    z_order : array-like of int, shape (n,)
        Depth order; larger is nearer the viewer.
    area : array-like of int or float, shape (n,)
        Full (amodal, or own mask) area in pixels of each instance.
    ids : array-like of int, shape (n,)
        Instance ids.

    Returns
    -------
    numpy.ndarray of intp, shape (n,)
        A permutation of ``range(n)``; the last index is the front-most instance. The rule is
        the module's: larger ``z_order``, then smaller ``area``, then smaller id in front.
    """
    z = np.asarray(z_order, dtype=np.int64)
    a = np.asarray(area, dtype=np.float64)
    i = np.asarray(ids, dtype=np.int64)
    if not (z.shape == a.shape == i.shape and z.ndim == 1):
        raise ValueError(f"paint_order needs three 1-D arrays of one length; got {z.shape}, {a.shape}, {i.shape}.")
    # lexsort: last key is primary. Back to front = z ascending, area descending, id descending.
    return np.lexsort((-i, -a, z)).astype(np.intp)


def composite_by_depth(
    amodal_masks: Sequence[NDArray[np.bool_]] | NDArray[np.bool_],
    ids: ArrayLike,
    z_order: ArrayLike,
) -> NDArray[np.uint32]:
    """Composite full-outline masks into a visible label image, front (largest z) on top.

    Parameters
    ----------
    amodal_masks : array of bool, shape (n, height, width)
        One full (amodal) mask per instance.
    ids : array-like of int, shape (n,)
        Instance ids (> 0), one per mask.
    z_order : array-like of int, shape (n,)
        Depth order; larger is nearer. Ties follow :func:`paint_order` (smaller area, then
        smaller id, in front).

    Returns
    -------
    numpy.ndarray of uint32, shape (height, width)
        Visible labels, 0 where no instance is.
    """
    masks = np.asarray(amodal_masks, dtype=bool)
    ids = np.asarray(ids, dtype=np.int64)
    z = np.asarray(z_order, dtype=np.int64)
    if masks.ndim != 3 or masks.shape[0] != ids.size or z.size != ids.size:
        raise ValueError(
            f"Expected masks of shape (n, height, width) with n ids and n z-orders; got masks "
            f"{masks.shape}, {ids.size} ids, {z.size} z-orders."
        )
    labels = np.zeros(masks.shape[1:], dtype=np.uint32)
    area = masks.reshape(masks.shape[0], -1).sum(axis=1)
    for k in paint_order(z, area, ids):  # back to front: nearer instances overwrite
        labels[masks[k]] = ids[k]
    return labels


def occluded_fraction(visible_area: ArrayLike, amodal_area: ArrayLike) -> NDArray[np.float64]:
    """The occluded fraction ``1 - visible_area / amodal_area`` (NaN for an empty outline).

    The one definition of the project: the visible area is counted inside the amodal outline.

    Parameters
    ----------
    visible_area, amodal_area : array-like of int or float
        Visible pixels of each instance inside its outline, and its outline's pixels.

    Returns
    -------
    numpy.ndarray of float64
        One fraction per instance (a 0-d array for scalar inputs).
    """
    visible = np.asarray(visible_area, dtype=np.float64)
    amodal = np.asarray(amodal_area, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = 1.0 - visible / amodal
    return np.where(amodal > 0, fraction, np.nan)


def occluded_fractions(
    labels_yx: NDArray[np.uint32], amodal_masks: NDArray[np.bool_], ids: ArrayLike
) -> NDArray[np.float64]:
    """Return ``1 - visible_area / amodal_area`` for each instance (NaN for an empty outline)."""
    masks = np.asarray(amodal_masks, dtype=bool)
    ids = np.asarray(ids, dtype=np.int64)
    amodal_area = masks.reshape(masks.shape[0], -1).sum(axis=1)
    visible_area = [np.count_nonzero(labels_yx[m] == i) for m, i in zip(masks, ids, strict=False)]
    return occluded_fraction(visible_area, amodal_area)
