"""Checks of untrusted GeoJSON features before they are rasterised.

:func:`napari_instseg.core.geojson.import_geojson` runs them on every feature it reads: the
shape of every feature (an object, a geometry object or null, properties an object or null),
and for area features (Polygon / MultiPolygon, the ones that become instances) their
coordinates and our tags. Non-area features (Points, LineStrings, ...) are only checked for
their shape: they are kept as they came. Every problem is named with where it is
(``features[3].geometry.coordinates[0][5]``) and what was found, and raised as
:class:`napari_instseg.core.geojson.GeoJSONError`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

from napari_instseg.core.labels import check_image_memory

__all__ = [
    "check_area_geometry",
    "check_area_properties",
    "check_feature",
    "check_instance_ids",
    "is_finite_number",
    "validate_feature_collection",
]

_UINT32_MAX = 2**32 - 1
_INT64_MAX = 2**63 - 1

SCALAR_TAGS = (
    "occlusion",
    "occlusion_manual",
    "occluded_fraction",
    "iscrowd",
    "source",
    "review",
    "annotator",
    "time_s",
    "prelabel_iou",
)
"""Our tags in ``properties`` that must be a string, number, boolean or null."""


def _error(message: str) -> Exception:
    from napari_instseg.core.geojson import GeoJSONError

    return GeoJSONError(message)


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


def is_finite_number(value: Any) -> bool:
    """An int or float (not a bool) that converts to a finite float."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an integer beyond the float range
        return False


def check_feature(feature: Any, where: str) -> None:
    """A Feature object whose ``geometry`` is an object or null and ``properties`` an object or null.

    Parameters
    ----------
    feature : object
        One element of the feature list.
    where : str
        Its place, e.g. ``"x.geojson: features[3]"``.
    """
    if not isinstance(feature, Mapping):
        raise _error(f"{where}: expected a Feature object, got {_short(feature)}.")
    geometry = feature.get("geometry")
    if geometry is not None and not isinstance(geometry, Mapping):
        raise _error(f"{where}.geometry: expected a geometry object or null, got {_short(geometry)}.")
    properties = feature.get("properties")
    if properties is not None and not isinstance(properties, Mapping):
        raise _error(f"{where}.properties: expected an object, got {_short(properties)}.")


def check_area_geometry(geometry: Mapping[str, Any], where: str) -> None:
    """Polygon / MultiPolygon coordinates: rings of 3+ ``[x, y]`` (or ``[x, y, z]``) finite numbers.

    ``where`` names the geometry, e.g. ``"x.geojson: features[3].geometry"``.
    """
    kind = geometry.get("type")
    coordinates = geometry.get("coordinates")
    if not isinstance(coordinates, list) or not coordinates:
        raise _error(f"{where}.coordinates: expected a non-empty list, got {_short(coordinates)}.")
    polygons: list[Any] = [coordinates] if kind == "Polygon" else coordinates
    for p, rings in enumerate(polygons):
        at = f"{where}.coordinates" + ("" if kind == "Polygon" else f"[{p}]")
        if not isinstance(rings, list) or not rings:
            raise _error(f"{at}: expected a non-empty list of rings, got {_short(rings)}.")
        for r, ring in enumerate(rings):
            if not isinstance(ring, list) or len(ring) < 3:
                raise _error(f"{at}[{r}]: a ring needs at least 3 [x, y] points, got {_short(ring)}.")
            for k, point in enumerate(ring):
                if not (isinstance(point, list) and len(point) in (2, 3) and all(is_finite_number(v) for v in point)):
                    raise _error(f"{at}[{r}][{k}]: expected [x, y] finite numbers, got {_short(point)}.")


def check_area_properties(properties: Mapping[str, Any], where: str, category_ids: Sequence[int] | None) -> None:
    """Our tags of an area feature: ``instance_id``, ``category_id``, ``classification``,
    ``z_order`` and the scalar tags (QuPath's own keys, ``measurements``, ``name``... pass).

    Parameters
    ----------
    properties : mapping
        The feature's properties.
    where : str
        The feature's place, e.g. ``"x.geojson: features[3]"``.
    category_ids : sequence of int, optional
        The given protocol's category ids (``category_id`` must be one of them); None when the
        protocol is built from the file's class names (``category_id`` must still be an integer).
    """
    at = f"{where}.properties"
    instance_id = properties.get("instance_id")
    if instance_id is not None and not (_is_int(instance_id) and 0 < instance_id <= _UINT32_MAX):
        raise _error(f"{at}.instance_id: expected an integer in [1, 2**32 - 1], got {_short(instance_id)}.")
    category_id = properties.get("category_id")
    if category_id is not None:
        if category_ids is not None and not (_is_int(category_id) and category_id in category_ids):
            raise _error(
                f"{at}.category_id: {_short(category_id)} is not a category of the protocol {list(category_ids)}."
            )
        if not (_is_int(category_id) and 0 <= category_id <= _INT64_MAX):
            raise _error(f"{at}.category_id: expected a non-negative integer, got {_short(category_id)}.")
    classification = properties.get("classification")
    if not (
        classification is None
        or isinstance(classification, str)
        or (isinstance(classification, Mapping) and isinstance(classification.get("name"), (str, type(None))))
    ):
        raise _error(
            f"{at}.classification: expected a class name or an object with a name, got {_short(classification)}."
        )
    z_order = properties.get("z_order")
    if z_order is not None and not (_is_int(z_order) and -_INT64_MAX - 1 <= z_order <= _INT64_MAX):
        raise _error(f"{at}.z_order: expected an integer (int64), got {_short(z_order)}.")
    for key in SCALAR_TAGS:
        value = properties.get(key)
        if not (value is None or isinstance(value, (str, bool, int, float))):
            raise _error(f"{at}.{key}: expected a string, number or boolean, got {_short(value)}.")


def check_instance_ids(given: Sequence[Any], where: Sequence[str]) -> None:
    """No two area features claim the same ``instance_id`` (None: none given)."""
    seen: dict[int, str] = {}
    for value, at in zip(given, where, strict=True):
        if value is None:
            continue
        if value in seen:
            raise _error(f"{at}.properties.instance_id: {value} is also the id of {seen[value]}.")
        seen[value] = at.rsplit(": ", 1)[-1]


def validate_feature_collection(
    collection: Any, shape_yx: tuple[int, int], category_ids: tuple[int, ...], *, source: str = "GeoJSON"
) -> None:
    """Strict check of a FeatureCollection of Polygon / MultiPolygon features only (our own
    export format); :func:`~napari_instseg.core.geojson.import_geojson` is more tolerant.

    Raises
    ------
    GeoJSONError
        For the first problem found, naming the feature, the field and the value.
    """
    from napari_instseg.core.errors import LabelImageError

    if not (isinstance(shape_yx, (tuple, list)) and len(shape_yx) == 2 and all(_is_size(n) for n in shape_yx)):
        raise _error(f"{source}: shape_yx must be two positive integers, got {_short(shape_yx)}.")
    try:
        check_image_memory(shape_yx, 6, what=f"{source}: label image")
    except LabelImageError as exc:
        raise _error(str(exc)) from exc
    if not isinstance(collection, Mapping) or collection.get("type") != "FeatureCollection":
        raise _error(f"{source}: expected a GeoJSON FeatureCollection, got {_short(collection)}.")
    features = collection.get("features", [])
    if not isinstance(features, list):
        raise _error(f"{source}: 'features' must be a list, got {type(features).__name__}.")
    places = [f"{source}: features[{i}]" for i in range(len(features))]
    for feature, where in zip(features, places, strict=True):
        check_feature(feature, where)
        geometry = feature.get("geometry")
        if not isinstance(geometry, Mapping):
            raise _error(f"{where}.geometry: expected a Polygon or MultiPolygon object, got {_short(geometry)}.")
        if geometry.get("type") not in ("Polygon", "MultiPolygon"):
            raise _error(f"{where}: geometry type {_short(geometry.get('type'))} is not Polygon or MultiPolygon.")
        check_area_geometry(geometry, f"{where}.geometry")
        check_area_properties(feature.get("properties") or {}, where, category_ids)
    check_instance_ids([(f.get("properties") or {}).get("instance_id") for f in features], places)
