"""Coordinate conventions and every conversion between them, in one place.

- napari and numpy index images as (row, column) = (y, x): ``points_yx``, ``shape_yx``.
- SAM 2 takes points as (x, y) and boxes as ``box_xyxy`` = [x0, y0, x1, y1].
- COCO boxes are ``bbox_xywh`` = [x, y, width, height]; COCO polygons are flat lists
  [x0, y0, x1, y1, ...] in continuous coordinates where pixel (y, x) covers [x, x+1) x [y, y+1),
  so its centre is (x + 0.5, y + 0.5).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "bbox_xywh_to_slices",
    "box_corners_to_xyxy",
    "contour_yx_to_coco_polygon",
    "points_yx_to_xy",
    "slices_to_bbox_xywh",
]


def points_yx_to_xy(points_yx: ArrayLike) -> NDArray[np.float64]:
    """Swap (y, x) points, shape (n, 2), to (x, y) as SAM 2 expects."""
    points = np.asarray(points_yx, dtype=np.float64).reshape(-1, 2)
    return points[:, ::-1].copy()


def box_corners_to_xyxy(corners_yx: ArrayLike) -> NDArray[np.float64]:
    """Return ``[x0, y0, x1, y1]`` (x0 <= x1, y0 <= y1) from any corners given as (y, x).

    Parameters
    ----------
    corners_yx : array-like, shape (k, 2), k >= 2
        Corner points of a box in any order (a napari Shapes rectangle has 4; two opposite
        corners suffice), so a box dragged in any direction gives the same result.
    """
    corners = np.asarray(corners_yx, dtype=np.float64).reshape(-1, 2)
    if corners.shape[0] < 2:
        raise ValueError(f"A box needs at least 2 corners (y, x), got shape {corners.shape}.")
    y0, x0 = corners.min(axis=0)
    y1, x1 = corners.max(axis=0)
    return np.array([x0, y0, x1, y1])


def slices_to_bbox_xywh(slices_yx: Sequence[slice]) -> list[float]:
    """Return the COCO ``[x, y, width, height]`` box of a (y, x) pair of slices."""
    ys, xs = slices_yx
    return [float(xs.start), float(ys.start), float(xs.stop - xs.start), float(ys.stop - ys.start)]


def bbox_xywh_to_slices(bbox_xywh: Sequence[float], shape_yx: Sequence[int]) -> tuple[slice, slice]:
    """Return (y, x) slices covering every pixel a COCO box touches, clipped to ``shape_yx``."""
    x, y, w, h = (float(v) for v in bbox_xywh)
    height, width = shape_yx
    y0, x0 = max(int(np.floor(y)), 0), max(int(np.floor(x)), 0)
    y1, x1 = min(int(np.ceil(y + h)), height), min(int(np.ceil(x + w)), width)
    return slice(y0, max(y0, y1)), slice(x0, max(x0, x1))


def contour_yx_to_coco_polygon(contour_yx: ArrayLike, origin_yx: Sequence[float] = (0.0, 0.0)) -> list[float]:
    """Turn a contour in pixel-index (y, x) coordinates into a flat COCO polygon.

    Parameters
    ----------
    contour_yx : array-like, shape (n, 2)
        Contour vertices as (row, column) indices, pixel centres at integers (as
        ``skimage.measure.find_contours`` returns them), relative to ``origin_yx``.
    origin_yx : pair of float
        Offset of the contour's frame in the image (the top-left of a crop).

    Returns
    -------
    list of float
        ``[x0, y0, x1, y1, ...]`` in COCO continuous coordinates (pixel centre + 0.5).
    """
    contour = np.asarray(contour_yx, dtype=np.float64).reshape(-1, 2)
    xy = contour[:, ::-1] + np.array([origin_yx[1], origin_yx[0]]) + 0.5
    return [round(float(v), 3) for v in xy.ravel()]
