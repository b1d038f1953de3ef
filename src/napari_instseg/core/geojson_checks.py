"""Validation of untrusted GeoJSON FeatureCollections before they are rasterised.

Every problem is named with where it is (``features[3].geometry.coordinates[0][5]``) and what
was found, and raised as :class:`napari_instseg.core.geojson.GeoJSONError`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

from napari_instseg.core.labels import check_image_memory

__all__ = ["validate_feature_collection"]

_UINT32_MAX = 2**32 - 1


def _short(value: Any, limit: int = 60) -> str:
    try:
        text = repr(value)
    except (RecursionError, ValueError):
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_size(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and int(value) > 0


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def validate_feature_collection(
    collection: Any, shape_yx: tuple[int, int], category_ids: tuple[int, ...], *, source: str = "GeoJSON"
) -> None:
    """Check a FeatureCollection of Polygon / MultiPolygon features before rasterising it.

    Parameters
    ----------
    collection : object
        The parsed GeoJSON.
    shape_yx : (int, int)
        Size of the label image it will be rasterised into (checked against memory).
    category_ids : tuple of int
        Category ids of the protocol (``properties.category_id`` must be one of them).
    source : str
        Name used in messages (a file name).

    Raises
    ------
    GeoJSONError
        For the first problem found, naming the feature, the field and the value.
    """
    from napari_instseg.core.errors import LabelImageError
    from napari_instseg.core.geojson import GeoJSONError

    if not (isinstance(shape_yx, (tuple, list)) and len(shape_yx) == 2 and all(_is_size(n) for n in shape_yx)):
        raise GeoJSONError(f"{source}: shape_yx must be two positive integers, got {_short(shape_yx)}.")
    try:
        check_image_memory(shape_yx, 6, what=f"{source}: label image")
    except LabelImageError as exc:
        raise GeoJSONError(str(exc)) from exc
    if not isinstance(collection, Mapping) or collection.get("type") != "FeatureCollection":
        raise GeoJSONError(f"{source}: expected a GeoJSON FeatureCollection, got {_short(collection)}.")
    features = collection.get("features", [])
    if not isinstance(features, list):
        raise GeoJSONError(f"{source}: 'features' must be a list, got {type(features).__name__}.")
    seen: dict[int, int] = {}
    for i, feature in enumerate(features):
        where = f"{source}: features[{i}]"
        if not isinstance(feature, Mapping):
            raise GeoJSONError(f"{where}: expected a Feature object, got {_short(feature)}.")
        _check_geometry(feature.get("geometry"), f"{where}.geometry", GeoJSONError)
        properties = feature.get("properties")
        if properties is None:
            continue
        if not isinstance(properties, Mapping):
            raise GeoJSONError(f"{where}.properties: expected an object, got {_short(properties)}.")
        instance_id = properties.get("instance_id")
        if instance_id is not None:
            if not (_is_int(instance_id) and 0 < instance_id <= _UINT32_MAX):
                raise GeoJSONError(
                    f"{where}.properties.instance_id: expected an integer in [1, 2**32 - 1], got {_short(instance_id)}."
                )
            if instance_id in seen:
                raise GeoJSONError(
                    f"{where}.properties.instance_id: {instance_id} is also the id of features[{seen[instance_id]}]."
                )
            seen[instance_id] = i
        category_id = properties.get("category_id")
        if category_id is not None and not (_is_int(category_id) and category_id in category_ids):
            raise GeoJSONError(
                f"{where}.properties.category_id: {_short(category_id)} is not a category of the protocol "
                f"{list(category_ids)}."
            )
        classification = properties.get("classification")
        if classification is not None and not (
            isinstance(classification, Mapping) and isinstance(classification.get("name", ""), (str, type(None)))
        ):
            raise GeoJSONError(
                f"{where}.properties.classification: expected an object with a name, got {_short(classification)}."
            )
        if "z_order" in properties and properties["z_order"] is not None and not _is_int(properties["z_order"]):
            raise GeoJSONError(f"{where}.properties.z_order: expected an integer, got {_short(properties['z_order'])}.")
        for key, value in properties.items():
            if key not in ("classification", "measurements", "metadata") and not (
                value is None or isinstance(value, (str, bool, int, float))
            ):
                raise GeoJSONError(
                    f"{where}.properties.{key}: expected a string, number or boolean, got {_short(value)}."
                )


def _check_geometry(geometry: Any, where: str, error: type[Exception]) -> None:
    if not isinstance(geometry, Mapping):
        raise error(f"{where}: expected a Polygon or MultiPolygon object, got {_short(geometry)}.")
    kind = geometry.get("type")
    if kind not in ("Polygon", "MultiPolygon"):
        raise error(f"{where.removesuffix('.geometry')}: geometry type {_short(kind)} is not Polygon or MultiPolygon.")
    coordinates = geometry.get("coordinates")
    polygons = [coordinates] if kind == "Polygon" else coordinates
    if not isinstance(polygons, list) or not polygons:
        raise error(f"{where}.coordinates: expected a non-empty list, got {_short(coordinates)}.")
    for p, rings in enumerate(polygons):
        at = f"{where}.coordinates" + ("" if kind == "Polygon" else f"[{p}]")
        if not isinstance(rings, list) or not rings:
            raise error(f"{at}: expected a non-empty list of rings, got {_short(rings)}.")
        for r, ring in enumerate(rings):
            if not isinstance(ring, list) or len(ring) < 3:
                raise error(f"{at}[{r}]: a ring needs at least 3 [x, y] points, got {_short(ring)}.")
            for k, point in enumerate(ring):
                if not (isinstance(point, list) and len(point) in (2, 3) and all(_is_number(v) for v in point)):
                    raise error(f"{at}[{r}][{k}]: expected [x, y] finite numbers, got {_short(point)}.")
