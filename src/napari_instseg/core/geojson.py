"""QuPath-compatible GeoJSON, both ways, in level-0 pixel coordinates.

Import (:func:`import_geojson`) takes what QuPath writes: a FeatureCollection or a plain JSON
array of features; ``objectType`` annotation / detection / cell (with ``nucleusGeometry``);
``classification`` as an object (``name`` with ``color`` [r, g, b] or ``colorRGB``) or a
string. Every Polygon / MultiPolygon feature becomes an instance with its own full mask; the
label image is their composite by :func:`napari_instseg.core.occlusion.paint_order`, so a cell
nested in a region annotation (smaller, equal ``z_order``) keeps its pixels. Points,
LineStrings and every other non-area feature are kept as they came (never an error) and
written back on export. Without a protocol, one is built from the file's class names and
colours.

Export (:func:`labels_to_geojson`) writes one Feature per instance: a Polygon (outer ring plus
holes) or MultiPolygon, ``objectType``, ``classification`` with name and colour and our tags.
Given the import's original features (:func:`export_geojson`), unedited objects are written as
they came in (``id``, ``name``, ``objectType``, ``measurements``, ``isLocked``, geometry), with
only the table values changed since the import written over them.

Rings follow pixel edges (the COCO convention: pixel centres + 0.5), shifted by the window's
origin, so a window's instances land where they are on the slide.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from napari_instseg.core._io import atomic_write_text
from napari_instseg.core.coco._fields import json_scalar
from napari_instseg.core.errors import InstsegError, ProtocolError
from napari_instseg.core.instances import COLUMNS, make_rows, table_for_ids
from napari_instseg.core.labels import as_label_image, check_image_memory
from napari_instseg.core.protocol import AnnotationProtocol, Category

if TYPE_CHECKING:
    import pandas as pd
else:
    from napari_instseg.core._lazy import pd

__all__ = [
    "AREA_TYPES",
    "GeoJSONError",
    "GeoJSONImport",
    "area_bbox_yx",
    "geojson_to_labels",
    "import_geojson",
    "instance_boxes",
    "is_geojson_document",
    "labels_to_geojson",
    "load_geojson",
    "protocol_from_features",
    "save_geojson",
]

AREA_TYPES = ("Polygon", "MultiPolygon")
"""Geometry types that become instances; every other feature is passed through."""

UNCLASSIFIED = "Unclassified"

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
    """A GeoJSON document cannot be read as features (the message says where)."""


@dataclass(frozen=True)
class GeoJSONImport:
    """A GeoJSON document as label image, instance table and everything else it held.

    Attributes
    ----------
    labels_yx : numpy.ndarray of uint32, shape (height, width)
        Visible labels (the composite of the own masks), placed at ``origin_yx``.
    table : DataFrame
        Instance table indexed by instance id.
    protocol : AnnotationProtocol
        The protocol given, or the one built from the file's classes.
    features : list of dict
        Every feature of the file, as it came in, in file order.
    instance_ids : list of int or None
        Per feature: its instance id, or None for a non-area feature (kept, passed through).
    masks : dict of int to CroppedMask
        Own full mask of every instance (in the label image's frame).
    overlaps : DataFrame
        ``front_id`` covers ``pixels`` of ``back_id``'s own mask.
    container : dict or None
        The FeatureCollection's keys other than ``features`` (None for a plain array).
    origin_yx : (int, int)
        Level-0 position of the label image's top-left pixel.
    by_class_name : bool
        True when categories came from the class names (the protocol was built from the file);
        False when ``category_id`` decided where present (a protocol was given).
    """

    labels_yx: NDArray[np.uint32]
    table: pd.DataFrame
    protocol: AnnotationProtocol
    features: list[dict[str, Any]]
    instance_ids: list[int | None]
    masks: dict[int, Any] = field(default_factory=dict)
    overlaps: pd.DataFrame = field(default_factory=pd.DataFrame)
    container: dict[str, Any] | None = None
    origin_yx: tuple[int, int] = (0, 0)
    by_class_name: bool = False

    @property
    def passthrough(self) -> list[dict[str, Any]]:
        """The non-area features (Points, LineStrings...), as they came in."""
        return [f for f, i in zip(self.features, self.instance_ids, strict=True) if i is None]

    def points_yx(self) -> tuple[NDArray[np.float64], list[dict[str, Any]]]:
        """(y, x) of every Point / MultiPoint vertex (level 0) and the properties of each."""
        points: list[tuple[float, float]] = []
        properties: list[dict[str, Any]] = []
        for feature in self.passthrough:
            geometry = feature.get("geometry") or {}
            coords: Any = geometry.get("coordinates")
            vertices: Any = (
                [coords] if geometry.get("type") == "Point" else coords if geometry.get("type") == "MultiPoint" else []
            )
            for vertex in vertices if isinstance(vertices, list) else []:
                if not _is_xy(vertex):
                    continue  # a malformed point is passed through, not shown
                points.append((float(vertex[1]), float(vertex[0])))
                props = dict(feature.get("properties") or {})
                props["class"] = _class_name(props.get("classification")) or ""
                props["feature_id"] = str(feature.get("id", ""))
                properties.append(props)
        return np.asarray(points, dtype=float).reshape(-1, 2), properties


def _is_xy(vertex: Any) -> bool:
    from napari_instseg.core.geojson_checks import is_finite_number

    return isinstance(vertex, list) and len(vertex) >= 2 and all(is_finite_number(v) for v in vertex[:2])


def load_geojson(path: str | os.PathLike[str]) -> Any:
    """Parse a GeoJSON file; GeoJSONError naming the file and position when it is not JSON
    (the project's one JSON reader, :func:`~napari_instseg.core.coco._validate.read_json_file`)."""
    from napari_instseg.core.coco._validate import read_json_file

    try:
        return read_json_file(path, error=GeoJSONError, what="a GeoJSON file")
    except OSError as exc:
        raise GeoJSONError(f"{path}: cannot read the file: {exc}") from exc


def features_of(document: Any, source: str = "GeoJSON") -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The features of a FeatureCollection, a plain feature array or a single Feature.

    Returns the features and the collection's other keys (None for a plain array).

    Raises
    ------
    GeoJSONError
        When the document is none of these, ``features`` is not a list, or a feature is not an
        object with a geometry object (or null) and properties object (or null), naming it.
    """
    from napari_instseg.core.geojson_checks import check_feature

    features: Any
    container: dict[str, Any] | None
    if isinstance(document, list):
        features, container = document, None
    elif isinstance(document, Mapping) and document.get("type") == "FeatureCollection":
        features = document.get("features")
        container = {k: v for k, v in document.items() if k != "features"}
        if not isinstance(features, list):
            raise GeoJSONError(f"{source}: 'features' must be a list, got {type(features).__name__}.")
    elif isinstance(document, Mapping) and document.get("type") == "Feature":
        features, container = [document], {"type": "FeatureCollection"}
    else:
        kind = document.get("type") if isinstance(document, Mapping) else type(document).__name__
        raise GeoJSONError(
            f"{source}: expected a GeoJSON FeatureCollection, a Feature or a JSON array of features, got {kind!r}."
        )
    for i, feature in enumerate(features):
        check_feature(feature, f"{source}: features[{i}]")
    return [dict(f) for f in features], container


def is_geojson_document(document: Any) -> bool:
    """True for a FeatureCollection, a Feature, or a non-empty JSON array of Features."""
    if isinstance(document, Mapping):
        return document.get("type") in ("FeatureCollection", "Feature")
    return (
        isinstance(document, list)
        and bool(document)
        and all(isinstance(f, Mapping) and f.get("type") == "Feature" for f in document)
    )


def area_bbox_yx(features: Sequence[Mapping[str, Any]], source: str = "GeoJSON") -> tuple[int, int, int, int] | None:
    """(y0, x0, y1, x1) in whole level-0 pixels around every area feature (None if there is none).

    Raises
    ------
    GeoJSONError
        For malformed coordinates of an area feature, naming the feature and the point.
    """
    lows, highs = [], []
    for k, feature in enumerate(features):
        if not _is_area(feature):
            continue
        for rings in _rings_of(feature.get("geometry") or {}, f"{source}: features[{k}]"):
            for ring in rings:
                if ring.size:
                    lows.append(ring.min(axis=0))
                    highs.append(ring.max(axis=0))
    if not lows:
        return None
    x0, y0 = np.floor(np.min(lows, axis=0))
    x1, y1 = np.ceil(np.max(highs, axis=0))
    return int(y0), int(x0), int(y1), int(x1)


def _class_name(classification: Any) -> str | None:
    if isinstance(classification, str):
        return classification or None
    if isinstance(classification, Mapping) and isinstance(classification.get("name"), str):
        return str(classification["name"]) or None
    return None


def _class_color(classification: Any) -> str | None:
    """'#rrggbb' from QuPath's ``color`` [r, g, b] or packed ``colorRGB`` integer."""
    if not isinstance(classification, Mapping):
        return None
    color = classification.get("color")
    if isinstance(color, list) and len(color) >= 3 and all(isinstance(v, int) for v in color[:3]):
        return "#{:02x}{:02x}{:02x}".format(*(min(max(v, 0), 255) for v in color[:3]))
    packed = classification.get("colorRGB")
    if isinstance(packed, int) and not isinstance(packed, bool):
        return f"#{(packed >> 16) & 255:02x}{(packed >> 8) & 255:02x}{packed & 255:02x}"
    return None


def _is_area(feature: Mapping[str, Any]) -> bool:
    geometry = feature.get("geometry") or {}
    return isinstance(geometry, Mapping) and geometry.get("type") in AREA_TYPES


def protocol_from_features(features: Sequence[Mapping[str, Any]], *, name: str = "QuPath import") -> AnnotationProtocol:
    """A protocol with one category per class name of the area features (first seen first),
    with QuPath's colours; ``Unclassified`` is added when an area feature has no class."""
    colors: dict[str, str | None] = {}
    for feature in features:
        if not _is_area(feature):
            continue
        classification = (feature.get("properties") or {}).get("classification")
        class_name = _class_name(classification) or UNCLASSIFIED
        if class_name not in colors or colors[class_name] is None:
            colors[class_name] = _class_color(classification)
    if not colors:
        return AnnotationProtocol.default()
    categories = tuple(Category(i, n, "", c) for i, (n, c) in enumerate(colors.items(), start=1))
    return AnnotationProtocol(categories=categories, name=name)


def _category_of(properties: Mapping[str, Any], protocol: AnnotationProtocol, where: str, *, by_id: bool) -> int:
    """The category: ``category_id`` when ``by_id`` and present (checked before), else the class name."""
    category_id = properties.get("category_id")
    if by_id and category_id is not None:
        return int(category_id)
    class_name = _class_name(properties.get("classification"))
    if class_name is None:
        names = [c.name for c in protocol.categories]
        return protocol.category_by_name(UNCLASSIFIED).id if UNCLASSIFIED in names else protocol.categories[0].id
    try:
        return protocol.category_by_name(class_name).id
    except (ProtocolError, KeyError, ValueError) as exc:
        known = [c.name for c in protocol.categories]
        raise GeoJSONError(
            f"{where}.properties.classification: class {class_name!r} is not in the protocol (classes: {known})."
        ) from exc


def _rings_of(geometry: Mapping[str, Any], where: str) -> list[list[NDArray[np.float64]]]:
    """Polygons as lists of (n, 2) x, y rings; GeoJSONError naming the point for malformed
    coordinates (``where`` names the feature)."""
    from napari_instseg.core.geojson_checks import check_area_geometry

    check_area_geometry(geometry, f"{where}.geometry")
    coords = geometry["coordinates"]
    polygons = [coords] if geometry.get("type") == "Polygon" else coords
    return [[np.asarray(ring, dtype=float)[:, :2] for ring in polygon] for polygon in polygons]


def _own_mask(
    geometry: Mapping[str, Any], shape_yx: tuple[int, int], origin_yx: tuple[int, int], where: str
) -> NDArray[np.int64]:
    """Column-major flat pixel indices of a (Multi)Polygon: pixels whose centre lies inside."""
    from skimage.draw import polygon as draw_polygon

    height, width = shape_yx
    polygons = _rings_of(geometry, where)
    every = [ring for rings in polygons for ring in rings if ring.shape[0] >= 3]
    if not every:
        return np.zeros(0, dtype=np.int64)
    stacked = np.concatenate(every)
    x0 = int(np.clip(np.floor(stacked[:, 0].min()) - origin_yx[1] - 1, 0, width))
    x1 = int(np.clip(np.ceil(stacked[:, 0].max()) - origin_yx[1] + 1, 0, width))
    y0 = int(np.clip(np.floor(stacked[:, 1].min()) - origin_yx[0] - 1, 0, height))
    y1 = int(np.clip(np.ceil(stacked[:, 1].max()) - origin_yx[0] + 1, 0, height))
    if x1 <= x0 or y1 <= y0:
        return np.zeros(0, dtype=np.int64)
    crop = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    for rings in polygons:
        part = np.zeros_like(crop)
        for k, ring in enumerate(rings):
            if ring.shape[0] < 3:
                continue
            rr, cc = draw_polygon(
                ring[:, 1] - 0.5 - origin_yx[0] - y0, ring[:, 0] - 0.5 - origin_yx[1] - x0, crop.shape
            )
            part[rr, cc] = k == 0  # holes (later rings) are cut out of their polygon
        crop |= part
    ys, xs = np.nonzero(crop)
    return np.sort((xs + x0).astype(np.int64) * height + (ys + y0))


def _instance_ids(features: Sequence[Mapping[str, Any]], source: str) -> list[int | None]:
    """Per feature: its instance id (None for a non-area feature).

    ``properties.instance_id`` is kept where given (checked before: an integer in
    [1, 2**32 - 1]); two features with the same one are an error; area features without one
    are numbered after the largest given id, in file order.
    """
    from napari_instseg.core.geojson_checks import check_instance_ids

    given = [(f.get("properties") or {}).get("instance_id") if _is_area(f) else None for f in features]
    check_instance_ids(given, [f"{source}: features[{k}]" for k in range(len(features))])
    next_id = max((g for g in given if g is not None), default=0) + 1
    out: list[int | None] = []
    for feature, value in zip(features, given, strict=True):
        if not _is_area(feature):
            out.append(None)
        elif value is None:
            out.append(next_id)
            next_id += 1
        else:
            out.append(int(value))
    return out


def import_geojson(
    document: Any,
    shape_yx: tuple[int, int],
    protocol: AnnotationProtocol | None = None,
    *,
    origin_yx: tuple[int, int] = (0, 0),
    source: str = "GeoJSON",
    by_class_name: bool | None = None,
) -> GeoJSONImport:
    """Import QuPath GeoJSON into a label image of ``shape_yx`` placed at ``origin_yx``.

    Parameters
    ----------
    document : FeatureCollection, list of Feature, Feature, or path
        The parsed document (or a file path).
    shape_yx : (int, int)
        Size of the label image (the image's, or a window's).
    protocol : AnnotationProtocol, optional
        Maps class names to categories; default: built from the file
        (:func:`protocol_from_features`).
    origin_yx : (int, int)
        Level-0 position of the label image's top-left pixel.
    source : str
        Name used in error messages.
    by_class_name : bool, optional
        Categories from the class names only (``category_id`` is then only type-checked);
        default: when no protocol is given. A replay of an import passes the import's value.

    Raises
    ------
    GeoJSONError
        Naming the feature, the field and the value: when the document holds no feature list;
        a feature is not an object or its properties are not one; an area feature has
        malformed coordinates (null, not numbers, NaN / infinite, a ring of fewer than 3
        points, the wrong nesting depth), an ``instance_id`` that is not an integer in
        [1, 2**32 - 1] or is also another feature's, a ``z_order`` that is not an integer, a
        list or object where one of our scalar tags belongs, or - with a given protocol - a
        ``category_id`` or class the protocol lacks. Non-area features never fail the import.

    Notes
    -----
    ``properties.instance_id`` is kept where given; area features without one are numbered
    after the largest given id, in file order. With a given protocol, ``category_id`` (when
    present) decides the category, else the class name; without one, the class name does
    (``category_id`` must still be a non-negative integer).
    """
    from napari_instseg.core.coco._import import cropped_from_pixels, overlap_frame
    from napari_instseg.core.geojson_checks import check_area_properties
    from napari_instseg.core.occlusion import occluded_fraction
    from napari_instseg.core.rle import composite_pixels

    if isinstance(document, (str, os.PathLike)):
        source = str(document)
        document = load_geojson(document)
    features, container = features_of(document, source)
    _check_shape(shape_yx, source)
    by_class_name = protocol is None if by_class_name is None else by_class_name
    protocol = protocol or protocol_from_features(features)
    category_ids = None if by_class_name else protocol.category_ids
    for k, feature in enumerate(features):
        if _is_area(feature):
            check_area_properties(feature.get("properties") or {}, f"{source}: features[{k}]", category_ids)
    ids = _instance_ids(features, source)
    area = [(k, f) for k, f in enumerate(features) if ids[k] is not None]
    where = [f"{source}: features[{k}]" for k, _ in area]
    pixels = [_own_mask(f.get("geometry") or {}, shape_yx, origin_yx, w) for (_, f), w in zip(area, where, strict=True)]
    instance_ids = np.array([ids[k] for k, _ in area], dtype=np.int64)
    properties = [f.get("properties") or {} for _, f in area]
    z_order = np.array([_int_or(p.get("z_order"), 0) for p in properties], dtype=np.int64)
    composite = composite_pixels(pixels, instance_ids, z_order, shape_yx)
    areas = np.array([p.size for p in pixels], dtype=np.int64)
    fraction = occluded_fraction(areas - composite.lost_px, areas)
    tiers = protocol.tiers.tiers_of(fraction)
    rows = [
        _row_from(p, _category_of(p, protocol, w, by_id=not by_class_name), float(fr), str(t))
        for p, w, fr, t in zip(properties, where, fraction, tiers, strict=True)
    ]
    table = _table(instance_ids.tolist(), rows)
    return GeoJSONImport(
        labels_yx=composite.labels_yx,
        table=table,
        protocol=protocol,
        features=features,
        instance_ids=ids,
        masks={int(i): cropped_from_pixels(p, shape_yx[0]) for i, p in zip(instance_ids.tolist(), pixels, strict=True)},
        overlaps=overlap_frame(composite.front_ids, composite.back_ids, composite.pixels),
        container=container,
        origin_yx=(int(origin_yx[0]), int(origin_yx[1])),
        by_class_name=by_class_name,
    )


def _check_shape(shape_yx: Any, source: str) -> None:
    """Refuse a label-image size that is not two positive integers or does not fit in memory."""
    from napari_instseg.core.errors import LabelImageError

    if not (
        isinstance(shape_yx, (tuple, list))
        and len(shape_yx) == 2
        and all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n > 0 for n in shape_yx)
    ):
        raise GeoJSONError(f"{source}: shape_yx must be two positive integers, got {shape_yx!r}.")
    try:
        check_image_memory(tuple(int(n) for n in shape_yx), 6, what=f"{source}: label image")
    except LabelImageError as exc:
        raise GeoJSONError(str(exc)) from exc


def _int_or(value: Any, default: int) -> int:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else default


def _row_from(properties: Mapping[str, Any], category_id: int, fraction: float, tier: str) -> dict[str, Any]:
    row: dict[str, Any] = {"category_id": int(category_id)}
    for tag in TAGS:
        value = properties.get(tag)
        row[tag] = COLUMNS[tag].default if value is None else value
    if properties.get("occluded_fraction") is None and "occlusion" not in properties:
        row["occluded_fraction"] = fraction
    if "occlusion" not in properties:
        row["occlusion"] = tier if fraction > 0 and tier else "none"
    if "source" not in properties:
        row["source"] = "import"
    return row


def _table(ids: list[int], rows: list[dict[str, Any]]) -> pd.DataFrame:
    if not ids:
        return make_rows([])
    return make_rows(ids, **{c: [row[c] for row in rows] for c in rows[0]})


def geojson_to_labels(
    collection: Any,
    shape_yx: tuple[int, int],
    protocol: AnnotationProtocol | None = None,
    *,
    origin_yx: tuple[int, int] = (0, 0),
) -> tuple[NDArray[np.uint32], pd.DataFrame]:
    """Rasterise QuPath GeoJSON into a label image and instance table (see :func:`import_geojson`).

    Ids come from ``properties.instance_id`` (else 1, 2, ... in file order); categories from
    ``properties.category_id`` or the class name (through ``protocol``, default
    :meth:`AnnotationProtocol.default` here); overlaps follow ``paint_order``. Non-area features are
    skipped (use :func:`import_geojson` to keep them).
    """
    imported = import_geojson(collection, shape_yx, protocol or AnnotationProtocol.default(), origin_yx=origin_yx)
    return imported.labels_yx, imported.table


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
            contour = measure.find_contours((holes == h).astype(np.uint8), 0.5)[0]
            rings.append(_ring(contour, y0, x0))
        polygons.append(rings)
    return polygons


def _ring(contour_yx: NDArray[np.float64], y0: float, x0: float) -> list[list[float]]:
    xy = contour_yx[:, ::-1] + np.array([x0 + 0.5, y0 + 0.5])
    ring = [[round(float(x), 3), round(float(y), 3)] for x, y in xy]
    if ring[0] != ring[-1]:
        ring.append(ring[0])
    return ring


Box = tuple[slice, slice]


def instance_boxes(labels_yx: NDArray[np.integer], ids: NDArray[np.int64]) -> dict[int, Box]:
    """The (y, x) bounding box slices of every instance, in one pass over the label image.

    Parameters
    ----------
    labels_yx : numpy.ndarray, shape (height, width)
        Integer label image, 0 = background.
    ids : numpy.ndarray of int64
        The ids present in ``labels_yx``, ascending (``label_runs(labels).ids``).

    Returns
    -------
    dict
        Instance id -> ``(slice_y, slice_x)``, tight around its pixels.
    """
    from scipy import ndimage

    if ids.size == 0:
        return {}
    if int(ids[-1]) <= max(1 << 20, 4 * ids.size):
        slices = ndimage.find_objects(labels_yx)  # one entry per value up to the largest id
        return {int(i): slices[int(i) - 1] for i in ids.tolist()}
    dense = np.searchsorted(ids, labels_yx) + 1  # sparse ids (a project's id stride): 1..n
    dense[labels_yx == 0] = 0
    slices = ndimage.find_objects(dense)
    return {int(i): slices[k] for k, i in enumerate(ids.tolist())}


def instance_geometry(
    labels_yx: NDArray[np.uint32], instance_id: int, origin_yx: tuple[int, int], *, box: Box | None = None
) -> dict[str, Any] | None:
    """The visible mask of one instance as a GeoJSON Polygon / MultiPolygon (None if empty).

    ``box`` (from :func:`instance_boxes`) limits the search to the instance's bounding box;
    without it the whole image is scanned (slow when called once per instance).
    """
    if box is None:
        yy, xx = np.nonzero(labels_yx == instance_id)
        if yy.size == 0:
            return None
        ys, xs = slice(int(yy.min()), int(yy.max()) + 1), slice(int(xx.min()), int(xx.max()) + 1)
    else:
        ys, xs = box
    polygons = _rings(labels_yx[ys, xs] == instance_id, (origin_yx[0] + ys.start, origin_yx[1] + xs.start))
    if len(polygons) == 1:
        return {"type": "Polygon", "coordinates": polygons[0]}
    return {"type": "MultiPolygon", "coordinates": polygons}


def classification_of(category: Category | None, category_id: int) -> dict[str, Any]:
    """QuPath's ``classification`` object of a category."""
    classification: dict[str, Any] = {"name": category.name if category else str(category_id)}
    if category and category.color:
        classification["color"] = [int(category.color[i : i + 2], 16) for i in (1, 3, 5)]
    return classification


def labels_to_geojson(
    labels_yx: NDArray[np.integer],
    table: pd.DataFrame | None = None,
    protocol: AnnotationProtocol | None = None,
    *,
    origin_yx: tuple[int, int] = (0, 0),
) -> dict[str, Any]:
    """A FeatureCollection of every instance of ``labels_yx`` (placed at ``origin_yx``)."""
    from napari_instseg.core.rle import label_runs

    labels = as_label_image(labels_yx)
    protocol = protocol or AnnotationProtocol.default()
    ids = label_runs(labels).ids.astype(np.int64)
    rows = table_for_ids(ids, table, defaults={"category_id": protocol.categories[0].id})
    boxes = instance_boxes(labels, ids)
    features = [
        new_feature(labels, int(i), rows.loc[int(i)], protocol, origin_yx, box=boxes[int(i)]) for i in ids.tolist()
    ]
    return {"type": "FeatureCollection", "features": [f for f in features if f is not None]}


def new_feature(
    labels_yx: NDArray[np.uint32],
    instance_id: int,
    row: pd.Series,
    protocol: AnnotationProtocol,
    origin_yx: tuple[int, int],
    *,
    box: Box | None = None,
) -> dict[str, Any] | None:
    """The Feature we write for one instance (a detection with its class and our tags);
    ``box`` as in :func:`instance_geometry`."""
    geometry = instance_geometry(labels_yx, instance_id, origin_yx, box=box)
    if geometry is None:
        return None
    categories = {c.id: c for c in protocol.categories}
    category_id = int(row["category_id"])
    properties: dict[str, Any] = {
        "objectType": "detection",
        "classification": classification_of(categories.get(category_id), category_id),
        "isLocked": False,
        "instance_id": int(instance_id),
        "category_id": category_id,
    }
    properties.update({tag: json_scalar(row[tag]) for tag in TAGS})
    return {"type": "Feature", "id": f"instance-{instance_id}", "geometry": geometry, "properties": properties}


def save_geojson(collection: Any, path: str | os.PathLike[str]) -> None:
    """Write a FeatureCollection (or a plain feature array) atomically."""
    atomic_write_text(path, json.dumps(collection, allow_nan=False))
