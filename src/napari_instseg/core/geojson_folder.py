"""QuPath GeoJSON import folders, and export that writes unedited objects back as they came.

Layout of ``napari-instseg import X.geojson -o OUTDIR``::

    OUTDIR/
      protocol.json            the given protocol, or one built from the file's classes and colours
      geojson_source.json      every feature as it came in (file order), the instance id of each
                               area feature (null for Points, LineStrings...), the container,
                               the image size and origin, and whether categories came from the
                               class names (no protocol given) or from category_id
      <stem>_labels.tif        visible labels: the composite of the own masks (paint_order)
      <stem>_instances.csv     instance table
      <stem>_overlaps.csv      per instance: own area, visible area, what covers it, what it covers

:func:`export_geojson` compares the current labels with a replay of the import (deterministic):
an object whose pixels did not change is written as its original feature (``id``, ``name``,
``objectType``, ``classification``, ``measurements``, ``isLocked``, ``nucleusGeometry``,
geometry), with only the table values changed since the import written over it; an edited one
keeps its feature and gets the polygons of its edited visible mask; a deleted one is left out;
non-area features are written back unchanged, in their places; new instances come last.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from napari_instseg.core._io import atomic_write_text
from napari_instseg.core.coco._fields import json_scalar
from napari_instseg.core.geojson import (
    GeoJSONError,
    GeoJSONImport,
    classification_of,
    import_geojson,
    instance_boxes,
    instance_geometry,
    new_feature,
)
from napari_instseg.core.instances import table_for_ids
from napari_instseg.core.protocol import AnnotationProtocol, load_protocol

if TYPE_CHECKING:
    import pandas as pd
else:
    from napari_instseg.core._lazy import pd

__all__ = ["SOURCE_NAME", "export_geojson", "export_geojson_folder", "is_geojson_folder", "write_geojson_folder"]

SOURCE_NAME = "geojson_source.json"
_FORMAT = "napari-instseg geojson import"


def is_geojson_folder(path: str | os.PathLike[str]) -> bool:
    """True for a folder written by :func:`write_geojson_folder`."""
    return (Path(path) / SOURCE_NAME).is_file()


def overlap_report(imported: GeoJSONImport) -> pd.DataFrame:
    """Per instance: own area, visible area and what it covers / what covers it."""
    from napari_instseg.core.coco._import import ImportedImage

    image = {"id": 0, "height": imported.labels_yx.shape[0], "width": imported.labels_yx.shape[1]}
    proxy = ImportedImage(
        image, imported.labels_yx, imported.table, 0, (), masks=imported.masks, overlaps=imported.overlaps
    )
    report: pd.DataFrame = proxy.overlap_report().drop(columns="annotation_id")
    ids = dict(zip(imported.instance_ids, (f.get("id") for f in imported.features), strict=True))
    report.insert(0, "feature_id", [ids.get(int(i)) for i in report.index])
    return report


def write_geojson_folder(
    imported: GeoJSONImport, outdir: str | os.PathLike[str], stem: str, *, source: str = "GeoJSON"
) -> None:
    """Write labels, table, overlap report, protocol and the original features to ``outdir``."""
    from napari_instseg.core.io import write_labels_tiff, write_table_csv

    folder = Path(outdir)
    folder.mkdir(parents=True, exist_ok=True)
    write_labels_tiff(folder / f"{stem}_labels.tif", imported.labels_yx)
    write_table_csv(folder / f"{stem}_instances.csv", imported.table)
    atomic_write_text(folder / f"{stem}_overlaps.csv", overlap_report(imported).to_csv(index_label="id"))
    imported.protocol.save(folder / "protocol.json")
    record = {
        "format": _FORMAT,
        "version": 1,
        "source": source,
        "stem": stem,
        "shape_yx": list(imported.labels_yx.shape),
        "origin_yx": list(imported.origin_yx),
        "container": imported.container,
        "features": imported.features,
        "instance_ids": imported.instance_ids,
        "by_class_name": imported.by_class_name,
    }
    atomic_write_text(folder / SOURCE_NAME, json.dumps(record, allow_nan=False))


def export_geojson_folder(outdir: str | os.PathLike[str], protocol: AnnotationProtocol | None = None) -> Any:
    """The GeoJSON of an import folder (FeatureCollection, or a plain array as it came in)."""
    from napari_instseg.core.io import read_labels, read_table_csv

    folder = Path(outdir)
    path = folder / SOURCE_NAME
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise GeoJSONError(f"{path}: cannot be read as JSON ({exc}).") from exc
    if not isinstance(record, dict) or record.get("format") != _FORMAT:
        raise GeoJSONError(f"{path}: not a {SOURCE_NAME} written by napari-instseg import.")
    protocol = protocol or load_protocol(folder / "protocol.json")
    stem = record["stem"]
    labels = read_labels(folder / f"{stem}_labels.tif")
    table = read_table_csv(folder / f"{stem}_instances.csv", protocol)
    original = GeoJSONImport(
        labels_yx=np.zeros(tuple(record["shape_yx"]), np.uint32),
        table=table.iloc[:0],
        protocol=protocol,
        features=record["features"],
        instance_ids=record["instance_ids"],
        container=record["container"],
        origin_yx=(int(record["origin_yx"][0]), int(record["origin_yx"][1])),
        by_class_name=bool(record.get("by_class_name", False)),
    )
    return export_geojson(labels, table, protocol, original)


def export_geojson(
    labels_yx: NDArray[np.uint32], table: pd.DataFrame | None, protocol: AnnotationProtocol, original: GeoJSONImport
) -> Any:
    """GeoJSON of the current labels and table, keeping what was not edited since ``original``.

    Parameters
    ----------
    labels_yx : numpy.ndarray of uint32
        The current label image (same frame as the import).
    table : DataFrame or None
        The current instance table.
    protocol : AnnotationProtocol
        Taxonomy (class names and colours of changed categories).
    original : GeoJSONImport
        The import (only ``features``, ``instance_ids``, ``container`` and ``origin_yx`` are used).
    """
    replay = import_geojson(
        original.features if original.container is None else {**original.container, "features": original.features},
        labels_yx.shape,
        protocol,
        origin_yx=original.origin_yx,
        source="import replay",
        by_class_name=original.by_class_name,
    )
    diff = labels_yx != replay.labels_yx
    edited = (set(np.unique(labels_yx[diff]).tolist()) | set(np.unique(replay.labels_yx[diff]).tolist())) - {0}
    present_ids = np.unique(labels_yx).astype(np.int64)
    present = set(present_ids.tolist()) - {0}
    boxes = instance_boxes(labels_yx, present_ids[present_ids > 0])  # one pass, not one per instance
    in_table = set() if table is None else {int(i) for i in table.index}
    features = []
    for feature, instance_id in zip(original.features, original.instance_ids, strict=True):
        if instance_id is None:
            features.append(copy.deepcopy(feature))
            continue
        if instance_id not in in_table and instance_id not in present:
            continue  # deleted
        out = copy.deepcopy(feature)
        if instance_id in edited:
            box = boxes.get(instance_id)
            geometry = None if box is None else instance_geometry(labels_yx, instance_id, original.origin_yx, box=box)
            if geometry is None:
                continue  # erased
            out["geometry"] = geometry
        if table is not None and instance_id in in_table:
            _overlay(out, table.loc[instance_id], replay.table.loc[instance_id], protocol)
        features.append(out)
    known = {i for i in original.instance_ids if i is not None}
    new_ids = sorted(present - known)
    rows = table_for_ids(new_ids, table, defaults={"category_id": protocol.categories[0].id})
    for instance_id in new_ids:
        row = rows.loc[instance_id]
        generated = new_feature(labels_yx, instance_id, row, protocol, original.origin_yx, box=boxes[instance_id])
        if generated is not None:
            features.append(generated)
    if original.container is None:
        return features
    return {**original.container, "features": features}


def _same(a: Any, b: Any) -> bool:
    a, b = json_scalar(a), json_scalar(b)
    if isinstance(a, float) and isinstance(b, float):
        return bool(np.isclose(a, b, rtol=0, atol=1e-12))
    return bool(a == b)


def _overlay(feature: dict[str, Any], row: pd.Series, imported: pd.Series, protocol: AnnotationProtocol) -> None:
    """Write over a feature's properties the table values that changed since the import."""
    properties = dict(feature.get("properties") or {})
    for column, value in row.items():
        name = str(column)
        if name in imported.index and _same(value, imported[name]):
            continue
        if name == "category_id":
            category_id = int(value)
            category = next((c for c in protocol.categories if c.id == category_id), None)
            classification = classification_of(category, category_id)
            was_string = isinstance(properties.get("classification"), str)
            properties["classification"] = classification["name"] if was_string else classification
        else:  # our tags (and extra columns) as properties of their own name
            properties[name] = json_scalar(value)
    feature["properties"] = properties
