# mypy: disable-error-code="no-untyped-call"
"""Redrawing bright-field outlines at each object's own level (classic automatic mode).

:func:`redraw_outlines`: pale and dark nuclei of one image each get the outline of their own
contrast. An outline may grow past the watershed's (its foreground misses the pale rim of
many nuclei) but hardly shrink: inside the watershed's object, what lies below the object's
level is mostly pale nucleoplasm between chromatin (vesicular nuclei), not background, and
carving it left pieces of nuclei that no longer matched them, or nothing of small ones.

Chosen on the calibration images of ``tests/core/test_auto_classic.py`` and five TCGA H&E
crops (see ``docs/classic_auto.md``); used by
:mod:`napari_instseg.core.prompting.auto_classic`.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["redraw_outlines"]

_OUTLINE_LEVEL = 0.3  # a bright-field nucleus ends where its signal falls to 30 % above its ring
_OUTLINE_GROWTH = 0.3  # radii: how far a redrawn outline may move out past the first one
_OUTLINE_SHRINK = 0.1  # radii: how far it may move in (pixels deeper inside always stay)
_OUTLINE_CORE_PERCENTILE = 75.0  # the object's own level: this percentile of its signal


def redraw_outlines(
    labels_yx: NDArray[np.uint32],
    signal_yx: NDArray[np.float64],
    radius_px: float,
    min_fraction: float,
) -> NDArray[np.uint32]:
    """Each bright-field object redrawn at its own level between its ring and its core.

    Parameters
    ----------
    labels_yx : numpy.ndarray of uint32, shape (height, width)
        The objects (0 = background, ids 1..n).
    signal_yx : numpy.ndarray of float64, shape (height, width)
        The nucleus signal (nuclei high), e.g. hematoxylin scaled to [0, 1].
    radius_px : float
        Nucleus radius in pixels.
    min_fraction : float
        Objects left smaller than this fraction of a disc of radius ``radius_px`` are dropped.

    Returns
    -------
    numpy.ndarray of uint32, shape (height, width)
        The redrawn objects, ids 1..n again. Every object keeps the pixels of its share above
        ``ring + _OUTLINE_LEVEL * (core - ring)``, its core being its
        ``_OUTLINE_CORE_PERCENTILE`` percentile and its ring the median of its surroundings (up
        to one radius away, farther than ``0.3 r`` from every object). It may grow by
        ``_OUTLINE_GROWTH`` radii (never into a neighbour's share) and keeps every pixel more
        than ``_OUTLINE_SHRINK`` radii inside its first outline; holes are filled and only its
        part that overlaps the first object most is kept.
    """
    from scipy import ndimage
    from skimage import measure, segmentation

    share = segmentation.expand_labels(labels_yx, max(_OUTLINE_GROWTH * radius_px, 1.0))
    surroundings = segmentation.expand_labels(labels_yx, max(radius_px, 3.0))
    far = ~ndimage.binary_dilation(labels_yx > 0, iterations=max(int(0.3 * radius_px), 2))
    refined = np.zeros_like(labels_yx)
    pad = int(radius_px) + 2
    for region in measure.regionprops(labels_yx):
        y0, x0, y1, x1 = region.bbox
        window = (slice(max(y0 - pad, 0), y1 + pad), slice(max(x0 - pad, 0), x1 + pad))
        crop = signal_yx[window]
        own = labels_yx[window] == region.label
        ring = (surroundings[window] == region.label) & far[window]
        ring_level = float(np.median(crop[ring])) if ring.sum() > 5 else float(np.percentile(crop, 10))
        core_level = float(np.percentile(crop[own], _OUTLINE_CORE_PERCENTILE))
        level = ring_level + _OUTLINE_LEVEL * (core_level - ring_level)
        above = ndimage.binary_opening((share[window] == region.label) & (crop > level))
        deep = ndimage.distance_transform_edt(own) > _OUTLINE_SHRINK * radius_px
        kept = _main_part(ndimage.binary_fill_holes(above | deep), own)
        refined[window][kept] = region.label
    min_area = max(int(min_fraction * np.pi * radius_px**2), 4)
    refined[np.bincount(refined.ravel())[refined] < min_area] = 0
    relabelled, _, _ = segmentation.relabel_sequential(refined)
    return np.asarray(relabelled, dtype=np.uint32)


def _main_part(mask: NDArray[np.bool_], own: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """The connected part of ``mask`` that overlaps ``own`` most (``mask`` when in one part,
    nothing when no part overlaps ``own``)."""
    from scipy import ndimage

    parts, n = ndimage.label(mask)
    if n <= 1:
        return mask
    counts = np.bincount(parts[own], minlength=n + 1)
    counts[0] = 0
    if counts.max() == 0:  # no part overlaps the object
        return np.zeros_like(mask)
    return np.asarray(parts == counts.argmax(), dtype=bool)
