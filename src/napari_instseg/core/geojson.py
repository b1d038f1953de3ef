"""QuPath-compatible GeoJSON: instances as a FeatureCollection in level-0 pixel coordinates.

Each instance is one Feature: a Polygon (outer ring plus its holes) or a MultiPolygon (one per
connected part), ``properties.objectType = "detection"``, ``properties.classification`` with
the category name and colour, and our tags (``instance_id``, ``occlusion``,
``occluded_fraction``, ``iscrowd``, ``z_order``, ``source``, ``review``, ``annotator``).
Rings follow pixel centres + 0.5 (the COCO convention), shifted by the window's origin, so a
window's instances land where they are on the slide. Import rasterises them back.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from napari_instseg.core._io import atomic_write_text
from napari_instseg.core.coco._fields import json_scalar
from napari_instseg.core.errors import InstsegError
from napari_instseg.core.geojson_checks import validate_feature_collection
from napari_instseg.core.instances import COLUMNS, IdAllocator, make_rows, table_for_ids
from napari_instseg.core.labels import as_label_image
from napari_instseg.core.occlusion import paint_order
from napari_instseg.core.protocol import AnnotationProtocol

__all__ = ["GeoJSONError", "geojson_to_labels", "labels_to_geojson", "save_geojson"]

TAGS = (
    "occlusion",
    "occlusion_manual",
    "occluded_fraction",
    "iscrowd",
    "z_order",
    "source",
    "review",
    "annotator",
    "time_s",
    "prelabel_iou",
)


class GeoJSONError(InstsegError, ValueError):
    """A GeoJSON file is not a FeatureCollection of polygons (the message says where)."""


def _rings(mask_yx: NDArray[np.bool_], origin_yx: tuple[float, float]) -> list[list[list[list[float]]]]:
    """Polygons (outer ring first, then holes) of every connected part of a mask."""
    from scipy import ndimage
    from skimage import measure

    polygons = []
    parts, _n = ndimage.label(mask_yx)
    for index, slices in enumerate(ndimage.find_objects(parts), start=1):
        part = np.pad(parts[slices] == index, 1)
        y0, x0 = slices[0].start - 1 + origin_yx[0], slices[1].start - 1 + origin_yx[1]
        filled = ndimage.binary_fill_holes(part)
        rings = [_ring(measure.find_contours(filled.astype(np.uint8), 0.5)[0], y0, x0)]
        holes, n_holes = ndimage.label(filled & ~part)
        for h in range(1, n_holes + 1):
            rings.append(_ring(measure.find_contours((holes == h).astype(np.uint8), 0.5)[0], y0, x0))
        polygons.append(rings)
    return polygons


def _ring(contour_yx: NDArray[np.float64], y0: float, x0: float) -> list[list[float]]:
    xy = contour_yx[:, ::-1] + np.array([x0 + 0.5, y0 + 0.5])
    ring = [[round(float(x), 3), round(float(y), 3)] for x, y in xy]
    if ring[0] != ring[-1]:
        ring.append(ring[0])
    return ring


def labels_to_geojson(
    labels_yx: NDArray[np.integer],
    table: pd.DataFrame | None = None,
    protocol: AnnotationProtocol | None = None,
    *,
    origin_yx: tuple[int, int] = (0, 0),
) -> dict[str, Any]:
    """A FeatureCollection of every instance of ``labels_yx`` (placed at ``origin_yx``)."""
    from scipy import ndimage

    from napari_instseg.core.rle import label_runs

    labels = as_label_image(labels_yx)
    protocol = protocol or AnnotationProtocol.default()
    ids = label_runs(labels).ids.astype(np.int64)
    rows = table_for_ids(ids, table, defaults={"category_id": protocol.categories[0].id})
    categories = {c.id: c for c in protocol.categories}
    features = []
    boxes = ndimage.find_objects(labels) if ids.size and ids.max() < 10_000_000 else None
    for instance_id in ids.tolist():
        if boxes is not None:
            ys, xs = boxes[instance_id - 1]
        else:  # sparse, huge ids: fall back to a search
            yy, xx = np.nonzero(labels == instance_id)
            ys, xs = slice(yy.min(), yy.max() + 1), slice(xx.min(), xx.max() + 1)
        crop = labels[ys, xs] == instance_id
        polygons = _rings(crop, (origin_yx[0] + ys.start, origin_yx[1] + xs.start))
        geometry = (
            {"type": "Polygon", "coordinates": polygons[0]}
            if len(polygons) == 1
            else {"type": "MultiPolygon", "coordinates": polygons}
        )
        row = rows.loc[instance_id]
        category = categories.get(int(row["category_id"]))
        classification: dict[str, Any] = {"name": category.name if category else str(row["category_id"])}
        if category and category.color:
            classification["color"] = [int(category.color[i : i + 2], 16) for i in (1, 3, 5)]
        properties = {
            "objectType": "detection",
            "classification": classification,
            "isLocked": False,
            "instance_id": int(instance_id),
            "category_id": int(row["category_id"]),
        }
        properties.update({tag: json_scalar(row[tag]) for tag in TAGS})
        features.append(
            {"type": "Feature", "id": f"instance-{instance_id}", "geometry": geometry, "properties": properties}
        )
    return {"type": "FeatureCollection", "features": features}


def save_geojson(collection: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Write a FeatureCollection atomically."""
    atomic_write_text(path, json.dumps(collection, allow_nan=False))


def geojson_to_labels(
    collection: Mapping[str, Any],
    shape_yx: tuple[int, int],
    protocol: AnnotationProtocol | None = None,
    *,
    origin_yx: tuple[int, int] = (0, 0),
) -> tuple[NDArray[np.uint32], pd.DataFrame]:
    """Rasterise a FeatureCollection into a label image of ``shape_yx`` placed at ``origin_yx``.

    Ids come from ``properties.instance_id`` (the others get new ids from an
    :class:`~napari_instseg.core.instances.IdAllocator`, above every given one); categories from
    ``properties.category_id`` or the classification name (through ``protocol``); where
    polygons overlap, :func:`~napari_instseg.core.occlusion.paint_order` decides (larger
    ``z_order``, then smaller area, then smaller id in front).

    Raises
    ------
    GeoJSONError
        For anything that is not a FeatureCollection of Polygon / MultiPolygon features.
    """
    from skimage.draw import polygon as draw_polygon

    protocol = protocol or AnnotationProtocol.default()
    validate_feature_collection(collection, shape_yx, protocol.category_ids)
    labels = np.zeros(shape_yx, np.uint32)
    rows: dict[int, dict[str, Any]] = {}
    pixels: list[NDArray[np.intp]] = []
    features = list(collection.get("features", []))
    given = [(f.get("properties") or {}).get("instance_id") or None for f in features]
    assigned = IdAllocator().assign(given)  # given ids first; the others get new ones
    for i, feature in enumerate(features):
        geometry = feature["geometry"]
        kind = geometry["type"]
        properties = feature.get("properties") or {}
        instance_id = assigned[i]
        if instance_id in rows:
            raise GeoJSONError(f"features[{i}]: instance id {instance_id} is already used by an earlier feature.")
        mask = np.zeros(shape_yx, bool)
        for rings in [geometry["coordinates"]] if kind == "Polygon" else geometry["coordinates"]:
            for k, ring in enumerate(rings):
                xy = np.asarray(ring, dtype=float)
                rr, cc = draw_polygon(xy[:, 1] - 0.5 - origin_yx[0], xy[:, 0] - 0.5 - origin_yx[1], shape_yx)
                mask[rr, cc] = k == 0  # holes (later rings) are cut out
        pixels.append(np.flatnonzero(mask))
        rows[instance_id] = _row_from(properties, protocol)
    # one compositing rule (occlusion.paint_order): front first, each fills only background
    flat = labels.reshape(-1)
    ids = list(rows)
    z_order = [int(rows[i].get("z_order") or 0) for i in ids]
    for k in paint_order(z_order, [p.size for p in pixels], ids)[::-1]:
        free = pixels[k][flat[pixels[k]] == 0]
        flat[free] = ids[k]
    table = make_rows(ids, **{c: [rows[i][c] for i in ids] for c in rows[ids[0]]}) if ids else make_rows([])
    return labels, table


def _row_from(properties: Mapping[str, Any], protocol: AnnotationProtocol) -> dict[str, Any]:
    category_id = properties.get("category_id")
    if category_id is None:
        name = (properties.get("classification") or {}).get("name")
        category_id = protocol.category_by_name(name).id if name else protocol.categories[0].id
    row = {"category_id": int(category_id)}
    for tag in TAGS:
        value = properties.get(tag)
        row[tag] = COLUMNS[tag].default if value is None else value
    return row
