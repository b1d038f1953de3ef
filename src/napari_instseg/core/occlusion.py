"""Compositing amodal masks by depth, visible / occluded fractions and occlusion tiers.

Front to back: a larger ``z_order`` is nearer the viewer and owns the pixels where instances
overlap. Under the amodal rule every instance keeps its full outline; the visible label image
is the composite of those outlines.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["composite_by_depth", "occluded_fractions"]


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
        Depth order; larger is nearer. Ties are broken by the order of ``ids`` (later wins).

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
    for k in np.argsort(z, kind="stable"):  # back to front: nearer instances overwrite
        labels[masks[k]] = ids[k]
    return labels


def occluded_fractions(
    labels_yx: NDArray[np.uint32], amodal_masks: NDArray[np.bool_], ids: ArrayLike
) -> NDArray[np.float64]:
    """Return ``1 - visible_area / amodal_area`` for each instance (NaN for an empty outline)."""
    masks = np.asarray(amodal_masks, dtype=bool)
    ids = np.asarray(ids, dtype=np.int64)
    amodal_area = masks.reshape(masks.shape[0], -1).sum(axis=1).astype(float)
    visible_area = np.array(
        [np.count_nonzero(labels_yx[m] == i) for m, i in zip(masks, ids, strict=False)], dtype=float
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = 1.0 - visible_area / amodal_area
    return np.where(amodal_area > 0, fraction, np.nan)
