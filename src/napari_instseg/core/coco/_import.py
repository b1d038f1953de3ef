"""Import a COCO instances file into per-image label images and instance tables."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from napari_instseg.core.coco._fields import ATTRIBUTE_COLUMNS
from napari_instseg.core.coco._validate import read_json_file, validate_coco
from napari_instseg.core.errors import CocoFormatError, ProtocolError
from napari_instseg.core.instances import COLUMNS, IdAllocator, make_rows, validate_table
from napari_instseg.core.labels import check_image_memory
from napari_instseg.core.occlusion import paint_order
from napari_instseg.core.protocol import AnnotationProtocol, Category
from napari_instseg.core.rle import counts_from_string, paint_runs, runs_from_counts

__all__ = ["CocoImport", "ImportedImage", "import_coco", "load_coco_json"]


@dataclass(frozen=True)
class ImportedImage:
    """One image of an imported COCO file.

    Attributes
    ----------
    image : dict
        The COCO image record, every key kept (``id``, ``file_name``, ``height``, ``width``...).
    labels_yx : numpy.ndarray of uint32, shape (height, width)
        Visible label image; where annotations overlap the higher ``z_order`` (then the
        smaller area, then the smaller id) owns the pixels (:func:`~napari_instseg.core.occlusion.paint_order`).
    table : DataFrame
        Instance table indexed by instance id.
    overlap_px : int
        Pixels claimed by more than one annotation (resolved by the rule above).
    hidden_ids : tuple of int
        Instances left with no visible pixel by that rule (their rows are kept).
    amodal : dict of int to CroppedMask
        Full outlines from ``amodal_segmentation``, by instance id.
    """

    image: dict[str, Any]
    labels_yx: NDArray[np.uint32]
    table: pd.DataFrame
    overlap_px: int
    hidden_ids: tuple[int, ...]
    amodal: dict[int, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CocoImport:
    """All images of a COCO file, with the protocol it carries (or one built from it)."""

    images: tuple[ImportedImage, ...]
    protocol: AnnotationProtocol

    @property
    def overlap_px(self) -> int:
        """Overlapping pixels resolved, over all images."""
        return sum(im.overlap_px for im in self.images)


def load_coco_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a JSON file; raise CocoFormatError naming the file and position when it is not JSON."""
    data: dict[str, Any] = read_json_file(path, error=CocoFormatError, what="a COCO instances file")
    return data


def import_coco(coco: Mapping[str, Any] | str | os.PathLike[str], *, source: str | None = None) -> CocoImport:
    """Import a COCO instances dict or file into label images and instance tables.

    The whole input is validated first; on any problem one :class:`CocoFormatError` lists
    what and where, and nothing is returned (callers write nothing). Polygons, compressed and
    uncompressed RLE are accepted, with or without our extra fields. Instance ids come from
    our ``instance_id`` field when present, else 1, 2, ... in annotation-id order.

    Parameters
    ----------
    coco : mapping or path
        A COCO dict, or the path of a COCO JSON file.
    source : str, optional
        Name used in error messages (defaults to the path).

    Returns
    -------
    CocoImport
    """
    if not isinstance(coco, Mapping):
        source = source or str(coco)
        coco = load_coco_json(coco)
    source = source or "COCO data"
    validate_coco(coco, source=source)
    protocol = _protocol_of(coco, source)
    by_image: dict[int, list[Mapping[str, Any]]] = {im["id"]: [] for im in coco["images"]}
    for ann in sorted(coco["annotations"], key=lambda a: a["id"]):
        by_image[ann["image_id"]].append(ann)
    images = tuple(_import_image(dict(im), by_image[im["id"]], source) for im in coco["images"])
    return CocoImport(images=images, protocol=protocol)


def _protocol_of(coco: Mapping[str, Any], source: str) -> AnnotationProtocol:
    info = coco.get("info")
    if isinstance(info, Mapping) and isinstance(info.get("protocol"), Mapping):
        protocol = AnnotationProtocol.from_dict(info["protocol"], source=f"{source}: info.protocol")
        missing = {c["id"] for c in coco["categories"]} - set(protocol.category_ids)
        if missing:
            raise CocoFormatError(f"{source}: categories {sorted(missing)} are not in info.protocol.")
        return protocol
    amodal = any("amodal_segmentation" in a for a in coco["annotations"])
    try:
        categories = tuple(
            Category(c["id"], c["name"], c.get("supercategory") or "", c.get("color")) for c in coco["categories"]
        )
        if not categories:
            return AnnotationProtocol.default()
        return AnnotationProtocol(categories=categories, occlusion_rule="amodal" if amodal else "visible")
    except ProtocolError as exc:
        raise CocoFormatError(f"{source}: categories do not form a valid taxonomy: {exc}") from exc


def _import_image(image: dict[str, Any], annotations: Sequence[Mapping[str, Any]], source: str) -> ImportedImage:
    height, width = int(image["height"]), int(image["width"])
    where = f"{source}: image {image['id']} ({image.get('file_name')})"
    check_image_memory((height, width), 12 + (4 if annotations else 0), what=where)  # flat, labels, copies
    runs = [_decode_runs(ann["segmentation"], height, width) for ann in annotations]
    areas = np.array([int(lengths.sum()) for _, lengths in runs], dtype=np.int64)
    ids = _instance_ids(annotations)
    z_order = np.array([int(ann.get("z_order", 0)) for ann in annotations], dtype=np.int64)
    priority = paint_order(z_order, areas, ids)[::-1]  # front first: paint_runs fills only background
    flat_xy = np.zeros(height * width, dtype=np.uint32)
    contested = []
    for k in priority:
        starts, lengths = runs[k]
        contested.append(paint_runs(flat_xy, starts, lengths, ids[k]))
    overlap_px = int(np.unique(np.concatenate(contested)).size) if contested else 0
    labels_yx = np.ascontiguousarray(flat_xy.reshape(width, height).T)
    table = _table(annotations, ids, f"{source}: image {image['id']} ({image.get('file_name')})")
    present = np.zeros(len(ids), dtype=bool)
    if ids.size:
        present = np.isin(ids, np.unique(labels_yx))
    return ImportedImage(
        image=image,
        labels_yx=labels_yx,
        table=table,
        overlap_px=overlap_px,
        hidden_ids=tuple(int(i) for i in ids[~present]),
        amodal=_amodal_masks(annotations, ids, height, width),
    )


def _amodal_masks(
    annotations: Sequence[Mapping[str, Any]], ids: NDArray[np.int64], height: int, width: int
) -> dict[int, Any]:
    from napari_instseg.core.edits import CroppedMask

    out = {}
    for ann, instance_id in zip(annotations, ids.tolist(), strict=False):
        if "amodal_segmentation" not in ann:
            continue
        starts, lengths = _decode_runs(ann["amodal_segmentation"], height, width)
        flat_xy = np.zeros(height * width, dtype=np.uint8)
        paint_runs(flat_xy, starts, lengths, 1)
        out[instance_id] = CroppedMask.from_full(flat_xy.reshape(width, height).T.astype(bool))
    return out


def _decode_runs(seg: Any, height: int, width: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    from pycocotools import mask as mask_utils

    if isinstance(seg, list):  # polygons: rasterise with pycocotools, merge the parts
        rle = mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
        counts = counts_from_string(rle["counts"])
    elif isinstance(seg["counts"], list):
        counts = np.asarray(seg["counts"], dtype=np.int64)
    else:
        counts = counts_from_string(seg["counts"])
    return runs_from_counts(counts)


def _instance_ids(annotations: Sequence[Mapping[str, Any]]) -> NDArray[np.int64]:
    given = [ann.get("instance_id") for ann in annotations]
    usable = [g for g in given if g is not None]
    if len(usable) != len(set(usable)):
        usable, given = [], [None] * len(given)  # duplicates in one image: renumber all
    return np.asarray(IdAllocator().assign(given), dtype=np.int64)


def _table(annotations: Sequence[Mapping[str, Any]], ids: NDArray[np.int64], source: str) -> pd.DataFrame:
    if not annotations:
        return make_rows([])
    records = [_row_of(ann) for ann in annotations]
    frame = pd.DataFrame.from_records(records, index=pd.Index(ids, name="id"))
    return validate_table(frame, source=source)


def _row_of(ann: Mapping[str, Any]) -> dict[str, Any]:
    attributes = ann.get("attributes") if isinstance(ann.get("attributes"), Mapping) else {}
    ours = "instance_id" in ann or "source" in attributes
    row: dict[str, Any] = {
        "category_id": ann["category_id"],
        "iscrowd": bool(ann.get("iscrowd", 0)),
        "z_order": ann.get("z_order", 0),
        "occluded_fraction": ann.get("occluded_fraction"),
        "occlusion": ann.get("occlusion") or ("partial" if attributes.get("occluded") else "none"),
        "source": "import",
    }
    if ours:
        row.update({k: attributes[k] for k in ATTRIBUTE_COLUMNS if k in attributes})
        row.update({k: v for k, v in attributes.items() if k not in COLUMNS and k != "occluded"})
    for key in ("occluded_fraction", "prelabel_iou"):
        if row.get(key) is None:
            row[key] = np.nan
    return row
