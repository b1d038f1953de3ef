"""Coordinate conventions and every conversion between them, in one place.

- napari and numpy index images as (row, column) = (y, x): ``points_yx``, ``shape_yx``.
- SAM 2 takes points as (x, y) and boxes as ``box_xyxy`` = [x0, y0, x1, y1].
- COCO boxes are ``bbox_xywh`` = [x, y, width, height]; COCO polygons are flat lists
  [x0, y0, x1, y1, ...] in continuous coordinates where pixel (y, x) covers [x, x+1) x [y, y+1),
  so its centre is (x + 0.5, y + 0.5).
- A slide tile exported as a COCO image carries ``tile_origin`` = [y, x] (level-0 pixels of its
  top-left corner) with ``tile_origin_axes`` = ``"yx"``; files from 0.1.0 wrote [x, y] without
  the marker, and :func:`tile_origin_yx` reads both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "TILE_ORIGIN_AXES",
    "box_corners_to_xyxy",
    "contour_yx_to_coco_polygon",
    "points_yx_to_xy",
    "tile_origin_record",
    "tile_origin_yx",
]

TILE_ORIGIN_AXES = "yx"
"""Axis order of ``tile_origin`` in the COCO image records we write (level-0 pixels)."""


def points_yx_to_xy(points_yx: ArrayLike) -> NDArray[np.float64]:
    """Swap (y, x) points, shape (n, 2), to (x, y) as SAM 2 expects."""
    points = np.asarray(points_yx, dtype=np.float64).reshape(-1, 2)
    result: NDArray[np.float64] = points[:, ::-1].copy()
    return result


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


def tile_origin_record(origin_yx: Sequence[int]) -> dict[str, object]:
    """The COCO image fields that place a tile in its slide: ``tile_origin`` [y, x] and
    ``tile_origin_axes`` ``"yx"``."""
    y0, x0 = (int(v) for v in origin_yx)
    return {"tile_origin": [y0, x0], "tile_origin_axes": TILE_ORIGIN_AXES}


def tile_origin_yx(image: Mapping[str, Any]) -> tuple[int, int]:
    """The (y, x) level-0 origin of a tile's COCO image record.

    Records with ``tile_origin_axes`` ``"yx"`` (written since 0.2.0) hold [y, x]; records
    without it (0.1.0) hold [x, y].

    Raises
    ------
    ValueError
        When ``tile_origin`` is missing, not two numbers, or the axes marker is unknown.
    """
    origin = image.get("tile_origin")
    if not isinstance(origin, (list, tuple)) or len(origin) != 2:
        raise ValueError(f"Image {image.get('id')!r}: tile_origin must be two numbers, got {origin!r}.")
    axes = image.get("tile_origin_axes", "xy")
    if axes not in ("yx", "xy"):
        raise ValueError(f"Image {image.get('id')!r}: tile_origin_axes must be 'yx' or 'xy', got {axes!r}.")
    a, b = (int(v) for v in origin)
    return (a, b) if axes == "yx" else (b, a)
