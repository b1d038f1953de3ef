"""The folder ``napari-instseg import`` writes, and its export back to one COCO file.

Layout (``<stem>`` is each image's file name without its suffix)::

    OUTDIR/
      protocol.json              taxonomy built from the file's categories (or its info.protocol)
      coco_source.json           everything as it came in: top-level entries (info, licenses,
                                 categories...), every image record, and every annotation record
                                 (own full mask, ids, attributes) by instance id
      <stem>_labels.tif          visible labels: the z-order composite of the own masks
      <stem>_instances.csv       instance table (edit it, or the labels, freely)
      <stem>_overlaps.csv        per instance: own area, visible area, what covers it, what it covers

:func:`export_import_folder` writes one COCO file for all images: unedited instances exactly
as they came in, edited ones with their edited masks (see :mod:`napari_instseg.core.coco._keep`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from napari_instseg.core._io import atomic_write_text
from napari_instseg.core.coco._export import AnnotatedImage, CocoExport, export_coco
from napari_instseg.core.coco._import import CocoImport
from napari_instseg.core.errors import CocoFormatError
from napari_instseg.core.protocol import AnnotationProtocol, load_protocol

__all__ = ["SOURCE_NAME", "export_import_folder", "is_import_folder", "write_import_folder"]

SOURCE_NAME = "coco_source.json"
"""The file of an import folder that keeps the COCO input as it came in."""

_FORMAT = "napari-instseg coco import"


def is_import_folder(path: str | os.PathLike[str]) -> bool:
    """True for a folder written by :func:`write_import_folder`."""
    return (Path(path) / SOURCE_NAME).is_file()


def image_stems(imported: CocoImport, source: str) -> list[str]:
    """Output file stems of the images; raise when two images would share one."""
    stems = [Path(str(im.image.get("file_name") or f"image_{im.image['id']}")).stem for im in imported.images]
    clashes = sorted({s for s in stems if stems.count(s) > 1})
    if clashes:
        raise CocoFormatError(f"{source}: several images share the file stem(s) {clashes}; outputs would collide.")
    return stems


def write_import_folder(imported: CocoImport, outdir: str | os.PathLike[str], *, source: str = "COCO data") -> None:
    """Write labels, tables, overlap reports, the protocol and the original records to ``outdir``."""
    from napari_instseg.core.io import write_labels_tiff, write_table_csv

    stems = image_stems(imported, source)
    folder = Path(outdir)
    folder.mkdir(parents=True, exist_ok=True)
    for stem, item in zip(stems, imported.images, strict=True):
        write_labels_tiff(folder / f"{stem}_labels.tif", item.labels_yx)
        write_table_csv(folder / f"{stem}_instances.csv", item.table)
        atomic_write_text(folder / f"{stem}_overlaps.csv", item.overlap_report().to_csv(index_label="id"))
    imported.protocol.save(folder / "protocol.json")
    record = {
        "format": _FORMAT,
        "version": 1,
        "source": source,
        "top": imported.top,
        "images": [
            {
                "stem": stem,
                "image": item.image,
                "instance_ids": list(item.annotations),
                "annotations": list(item.annotations.values()),
            }
            for stem, item in zip(stems, imported.images, strict=True)
        ],
    }
    atomic_write_text(folder / SOURCE_NAME, json.dumps(record, allow_nan=False, separators=(",", ":")))


def _read_source(folder: Path) -> dict[str, Any]:
    path = folder / SOURCE_NAME
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CocoFormatError(f"{path}: cannot be read as JSON ({exc}).") from exc
    if not isinstance(record, dict) or record.get("format") != _FORMAT or not isinstance(record.get("images"), list):
        raise CocoFormatError(f"{path}: not a {SOURCE_NAME} written by napari-instseg import.")
    return record


def export_import_folder(
    outdir: str | os.PathLike[str],
    protocol: AnnotationProtocol | None = None,
    *,
    segmentation: str = "rle",
) -> CocoExport:
    """One COCO dict for every image of an import folder (the folder's protocol by default).

    Raises
    ------
    CocoFormatError
        When ``coco_source.json`` is missing or not ours, or a labels / table file is missing.
    """
    from napari_instseg.core.io import read_labels, read_table_csv

    folder = Path(outdir)
    record = _read_source(folder)
    protocol = protocol or load_protocol(folder / "protocol.json")
    items = []
    for entry in record["images"]:
        image = dict(entry["image"])
        stem = entry["stem"]
        labels_path, table_path = folder / f"{stem}_labels.tif", folder / f"{stem}_instances.csv"
        for path in (labels_path, table_path):
            if not path.is_file():
                raise CocoFormatError(f"{folder}: {path.name} is missing (image {image.get('id')}, {stem}).")
        originals = {int(i): a for i, a in zip(entry["instance_ids"], entry["annotations"], strict=True)}
        extra = {k: v for k, v in image.items() if k not in ("id", "file_name", "height", "width")}
        items.append(
            AnnotatedImage(
                read_labels(labels_path),
                read_table_csv(table_path, protocol),
                str(image.get("file_name", "")),
                int(image["id"]),
                extra,
                originals=originals,
            )
        )
    exported = export_coco(items, protocol, segmentation=segmentation)
    summary = exported.summary
    if segmentation == "polygon":  # annotations kept as they came in are no holes written as RLE
        summary = dataclasses.replace(summary, n_holes_as_rle=len(_regenerated_rle(exported.coco, record)))
    return CocoExport(coco=_with_original_top(exported.coco, record.get("top") or {}, protocol), summary=summary)


def _regenerated_rle(coco: dict[str, Any], record: dict[str, Any]) -> list[Any]:
    """Ids of the non-crowd RLE annotations that were not written as they came in (in polygon
    mode: the instances whose visible mask has holes)."""
    original = {a.get("id"): a.get("segmentation") for e in record["images"] for a in e["annotations"]}
    return [
        a["id"]
        for a in coco["annotations"]
        if isinstance(a["segmentation"], dict) and not a.get("iscrowd") and original.get(a["id"]) != a["segmentation"]
    ]


def _with_original_top(coco: dict[str, Any], top: dict[str, Any], protocol: AnnotationProtocol) -> dict[str, Any]:
    """Write back the input's top-level entries: categories unless the protocol changed them,
    licenses, other keys, and ``info`` with our protocol added."""
    out = dict(coco)
    categories = top.get("categories")
    if isinstance(categories, list) and _same_taxonomy(categories, protocol):
        out["categories"] = categories
    for key, value in top.items():
        if key in ("categories", "info"):
            continue
        out[key] = value
    info = top.get("info")
    if isinstance(info, dict):
        out["info"] = {**info, "protocol": coco["info"]["protocol"], "tool": coco["info"]["tool"]}
    return {k: out[k] for k in _key_order(top, out)}


def _same_taxonomy(categories: list[Any], protocol: AnnotationProtocol) -> bool:
    given = [(c.get("id"), c.get("name")) for c in categories if isinstance(c, dict)]
    return given == [(c.id, c.name) for c in protocol.categories]


def _key_order(top: dict[str, Any], out: dict[str, Any]) -> list[str]:
    first = [k for k in top if k in out]
    return first + [k for k in out if k not in first]
