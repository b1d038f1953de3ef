"""Export label images and instance tables to a COCO instances dict / JSON file."""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from napari_instseg import __version__
from napari_instseg.core._io import atomic_write_text
from napari_instseg.core.coco._fields import annotation_fields
from napari_instseg.core.coco._polygons import mask_to_polygons
from napari_instseg.core.errors import CocoFormatError, TableError
from napari_instseg.core.instances import table_for_ids
from napari_instseg.core.labels import as_label_image
from napari_instseg.core.protocol import Protocol
from napari_instseg.core.rle import LabelRuns, instance_rles, label_runs

__all__ = ["AnnotatedImage", "CocoExport", "ExportSummary", "export_coco", "save_coco"]

SEGMENTATION_FORMATS = ("rle", "polygon")

ProgressCallback = Callable[[int, int], None]
"""Called as ``progress(done, total)`` after each image."""


@dataclass(frozen=True)
class AnnotatedImage:
    """One annotated image to export.

    Parameters
    ----------
    labels_yx : numpy.ndarray, shape (height, width)
        Visible label image; 0 = background, other values = instance ids.
    table : DataFrame or None
        Instance table indexed by id (:mod:`napari_instseg.core.instances`). Instances without
        a row get the protocol's first category and default tags.
    file_name : str
        COCO ``file_name`` of the image (defaults to ``image_<id>.tif``).
    image_id : int or None
        COCO image id; None numbers images 1, 2, ... in order.
    metadata : mapping
        Extra keys for the COCO image record (``slide``, ``level``, ``tile_origin``...).
    amodal : mapping of int to CroppedMask
        Full (amodal) outlines by instance id, written as ``amodal_segmentation`` (RLE),
        ``amodal_bbox`` and ``amodal_area`` (KINS / COCOA style; ``segmentation`` stays the
        visible mask, so standard COCOeval scores visible masks).
    scores : mapping of int to float
        Model scores by instance id (pre-labels); when given, every annotation gets a
        ``score`` (1.0 where an instance has none), so ``qa`` can rank them.
    """

    labels_yx: NDArray[np.integer]
    table: pd.DataFrame | None = None
    file_name: str = ""
    image_id: int | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    amodal: Mapping[int, Any] = field(default_factory=dict)
    scores: Mapping[int, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ExportSummary:
    """What an export wrote.

    Attributes
    ----------
    n_images, n_annotations : int
        Images and annotations written.
    n_rle, n_polygon : int
        Annotations written with each segmentation form.
    n_holes_as_rle : int
        Instances with holes written as RLE in polygon mode (polygons cannot hold holes).
    n_crowd : int
        ``iscrowd`` annotations (always RLE).
    n_default_rows : int
        Instances that had no table row and got default tags.
    n_rows_without_pixels : int
        Table rows whose instance has no pixel in the label image (not exported).
    """

    n_images: int = 0
    n_annotations: int = 0
    n_rle: int = 0
    n_polygon: int = 0
    n_holes_as_rle: int = 0
    n_crowd: int = 0
    n_default_rows: int = 0
    n_rows_without_pixels: int = 0

    def __add__(self, other: ExportSummary) -> ExportSummary:
        return ExportSummary(**{k: getattr(self, k) + getattr(other, k) for k in self.__dataclass_fields__})

    def __str__(self) -> str:
        lines = [
            f"{self.n_annotations} annotations in {self.n_images} image(s): "
            f"{self.n_rle} RLE, {self.n_polygon} polygon, {self.n_crowd} crowd",
        ]
        if self.n_holes_as_rle:
            lines.append(f"{self.n_holes_as_rle} instance(s) with holes written as RLE")
        if self.n_default_rows:
            lines.append(f"{self.n_default_rows} instance(s) without a table row got default tags")
        if self.n_rows_without_pixels:
            lines.append(f"{self.n_rows_without_pixels} table row(s) without pixels were skipped")
        return "\n".join(lines)


@dataclass(frozen=True)
class CocoExport:
    """A COCO instances dict and the summary of what it holds."""

    coco: dict[str, Any]
    summary: ExportSummary


def export_coco(
    images: Sequence[AnnotatedImage],
    protocol: Protocol | None = None,
    *,
    segmentation: str = "rle",
    progress: ProgressCallback | None = None,
) -> CocoExport:
    """Export annotated images to a COCO instances dict.

    Each label image is scanned once (:func:`napari_instseg.core.rle.label_runs`); no
    full-frame mask is built per instance.

    Parameters
    ----------
    images : sequence of AnnotatedImage
        The images, each with its label image and instance table.
    protocol : Protocol, optional
        Taxonomy and rules (default :meth:`Protocol.default`); written to ``info.protocol``.
    segmentation : {'rle', 'polygon'}
        Compressed RLE (lossless, default) or polygons. In polygon mode every part of a
        multi-part instance is written; instances with holes, and crowd instances, are RLE.
    progress : callable, optional
        ``progress(done, total)`` after each image.

    Returns
    -------
    CocoExport

    Raises
    ------
    LabelImageError
        For a label image that is not 2-D non-negative integer.
    TableError
        For an instance whose category id is not in the protocol (naming image and id).
    """
    if segmentation not in SEGMENTATION_FORMATS:
        raise ValueError(f"segmentation must be one of {SEGMENTATION_FORMATS}, got {segmentation!r}.")
    protocol = protocol or Protocol.default()
    image_records, annotations = [], []
    summary = ExportSummary()
    used_ids = {int(im.image_id) for im in images if im.image_id is not None}
    next_image_id = 1
    for done, item in enumerate(images, start=1):
        image_id = item.image_id
        if image_id is None:
            while next_image_id in used_ids:
                next_image_id += 1
            image_id, next_image_id = next_image_id, next_image_id + 1
        record, anns, part = _export_one(item, int(image_id), protocol, segmentation, len(annotations) + 1)
        image_records.append(record)
        annotations.extend(anns)
        summary = summary + part
        if progress is not None:
            progress(done, len(images))
    coco = {
        "info": _info(protocol),
        "licenses": [],
        "images": image_records,
        "annotations": annotations,
        "categories": [_category_record(c) for c in protocol.categories],
    }
    return CocoExport(coco=coco, summary=summary)


def _info(protocol: Protocol) -> dict[str, Any]:
    now = _dt.datetime.now(_dt.timezone.utc)
    return {
        "description": f"Annotations of project {protocol.name!r}",
        "version": "1.0",
        "year": now.year,
        "date_created": now.replace(microsecond=0).isoformat(),
        "contributor": "",
        "url": "",
        "tool": f"napari-instseg {__version__}",
        "protocol": protocol.to_dict(),
    }


def _category_record(category: Any) -> dict[str, Any]:
    record = {"id": category.id, "name": category.name, "supercategory": category.supercategory}
    if category.color is not None:
        record["color"] = category.color
    return record


def _export_one(
    item: AnnotatedImage, image_id: int, protocol: Protocol, segmentation: str, first_ann_id: int
) -> tuple[dict[str, Any], list[dict[str, Any]], ExportSummary]:
    name = item.file_name or f"image_{image_id}.tif"
    labels_yx = as_label_image(item.labels_yx, name=f"labels of image {image_id} ({name})")
    height, width = labels_yx.shape
    runs = label_runs(labels_yx)
    ids = runs.ids.astype(np.int64)
    source = f"instance table of image {image_id} ({name})"
    table = table_for_ids(ids, item.table, defaults={"category_id": protocol.categories[0].id})
    _check_categories(table, protocol, source)
    table_ids = np.zeros(0, np.int64) if item.table is None else item.table.index.to_numpy()
    n_default = int((~np.isin(ids, table_ids)).sum())
    n_orphans = int((~np.isin(table_ids, ids)).sum())
    record = {"id": image_id, "file_name": name, "height": int(height), "width": int(width)}
    record.update({k: v for k, v in item.metadata.items() if k not in record})
    annotations, counts = _annotations(labels_yx, runs, table, image_id, first_ann_id, segmentation)
    _add_amodal(annotations, item.amodal, labels_yx.shape)
    for annotation in annotations if item.scores else ():
        annotation["score"] = float(item.scores.get(annotation["instance_id"], 1.0))
    summary = ExportSummary(
        n_images=1,
        n_annotations=len(annotations),
        n_default_rows=n_default,
        n_rows_without_pixels=n_orphans,
        **counts,
    )
    return record, annotations, summary


def _check_categories(table: pd.DataFrame, protocol: Protocol, source: str) -> None:
    known = np.asarray(protocol.category_ids)
    bad = ~np.isin(table["category_id"].to_numpy(), known)
    if bad.any():
        first = table.index[np.flatnonzero(bad)[0]]
        raise TableError(
            f"{source}: instance {first} has category_id {table.loc[first, 'category_id']}, "
            f"which is not in the protocol (known ids: {list(protocol.category_ids)})."
        )


def _annotations(
    labels_yx: NDArray[np.uint32],
    runs: LabelRuns,
    table: pd.DataFrame,
    image_id: int,
    first_ann_id: int,
    segmentation: str,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    from pycocotools import mask as mask_utils

    rles = instance_rles(runs)
    boxes = mask_utils.toBbox(rles).tolist() if rles else []
    areas = runs.area_px.tolist()
    fields = annotation_fields(table)  # table rows are in runs.ids order
    category_ids = table["category_id"].tolist()
    crowds = table["iscrowd"].tolist()
    counts = {"n_rle": 0, "n_polygon": 0, "n_holes_as_rle": 0, "n_crowd": 0}
    annotations = []
    for k, instance_id in enumerate(runs.ids.tolist()):
        crowd = bool(crowds[k])
        seg: Any = rles[k]
        if segmentation == "polygon" and not crowd:
            polygons = _polygons_or_none(labels_yx, boxes[k], instance_id)
            if polygons is None:
                counts["n_holes_as_rle"] += 1
            else:
                seg = polygons
        counts["n_polygon" if isinstance(seg, list) else "n_rle"] += 1
        counts["n_crowd"] += crowd
        annotation = {
            "id": first_ann_id + k,
            "image_id": image_id,
            "category_id": int(category_ids[k]),
            "segmentation": seg,
            "area": float(areas[k]),
            "bbox": [float(v) for v in boxes[k]],
            "iscrowd": int(crowd),
            "instance_id": int(instance_id),
        }
        annotation.update(fields[k])
        annotations.append(annotation)
    return annotations, counts


def _add_amodal(annotations: list[dict[str, Any]], amodal: Mapping[int, Any], shape_yx: tuple[int, int]) -> None:
    """Add ``amodal_segmentation`` / ``amodal_bbox`` / ``amodal_area`` where an outline exists."""
    from pycocotools import mask as mask_utils

    for annotation in annotations:
        outline = amodal.get(annotation["instance_id"])
        if outline is None or outline.area_px == 0:
            continue
        full = np.asfortranarray(outline.full(tuple(shape_yx)), dtype=np.uint8)
        encoded = mask_utils.encode(full)
        annotation["amodal_segmentation"] = {
            "size": [int(v) for v in encoded["size"]],
            "counts": encoded["counts"].decode("ascii"),
        }
        annotation["amodal_bbox"] = [float(v) for v in mask_utils.toBbox(encoded)]
        annotation["amodal_area"] = float(outline.area_px)


def _polygons_or_none(
    labels_yx: NDArray[np.uint32], bbox_xywh: list[float], instance_id: int
) -> list[list[float]] | None:
    x, y, w, h = (int(v) for v in bbox_xywh)
    crop = labels_yx[y : y + h, x : x + w] == instance_id
    return mask_to_polygons(crop, origin_yx=(y, x))


def save_coco(coco: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Write a COCO dict as JSON atomically (temporary file, then rename).

    Raises
    ------
    CocoFormatError
        When the dict holds values JSON cannot represent (nothing is written then).
    """
    try:
        text = json.dumps(coco, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise CocoFormatError(f"Cannot write {os.fspath(path)}: the COCO dict is not JSON-safe: {exc}") from exc
    atomic_write_text(path, text)
