"""Binary masks to COCO polygons: every part, and a clear 'no' for masks with holes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from napari_instseg.core.coords import contour_yx_to_coco_polygon

__all__ = ["has_holes", "mask_to_polygons"]


def has_holes(mask_yx: NDArray[np.bool_]) -> bool:
    """Return True when the mask encloses background (a hole), in 4-connectivity."""
    from scipy import ndimage

    return bool((ndimage.binary_fill_holes(mask_yx) != mask_yx).any())


def mask_to_polygons(
    mask_yx: NDArray[np.bool_], origin_yx: Sequence[float] = (0, 0), *, tolerance_px: float = 0.0
) -> list[list[float]] | None:
    """Return one COCO polygon per connected part of ``mask_yx``, or None if it has holes.

    Parameters
    ----------
    mask_yx : numpy.ndarray of bool, shape (h, w)
        The instance, usually cropped to its bounding box.
    origin_yx : pair of float
        Position of the crop's top-left pixel in the image.
    tolerance_px : float
        Douglas-Peucker simplification tolerance in pixels (0 keeps every vertex).

    Returns
    -------
    list of list of float, or None
        Flat ``[x0, y0, x1, y1, ...]`` polygons in image coordinates; None when the mask has
        a hole (a polygon cannot represent it: write RLE instead).
    """
    from skimage import measure

    mask_yx = np.asarray(mask_yx, dtype=bool)
    if has_holes(mask_yx):
        return None
    padded = np.pad(mask_yx, 1)
    polygons = []
    for contour in measure.find_contours(padded.astype(np.uint8), 0.5):
        if tolerance_px > 0:
            contour = measure.approximate_polygon(contour, tolerance_px)
        if len(contour) > 1 and np.allclose(contour[0], contour[-1]):
            contour = contour[:-1]  # COCO polygons are implicitly closed
        if len(contour) < 3:
            continue
        polygons.append(contour_yx_to_coco_polygon(contour - 1.0, origin_yx))
    return polygons or None
