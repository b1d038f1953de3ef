"""Import a COCO instances file into per-image label images and instance tables."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from napari_instseg.core.coco._fields import ATTRIBUTE_COLUMNS, REJECTED_KEY
from napari_instseg.core.coco._validate import read_json_file, validate_coco
from napari_instseg.core.errors import CocoFormatError, ProtocolError
from napari_instseg.core.instances import COLUMNS, SCORE_COLUMN, IdAllocator, make_rows, validate_table
from napari_instseg.core.labels import check_image_memory
from napari_instseg.core.occlusion import occluded_fraction
from napari_instseg.core.prompting.registry import IMPORTED_MODEL_SOURCE
from napari_instseg.core.protocol import AnnotationProtocol, Category
from napari_instseg.core.rle import (
    composite_pixels,
    counts_from_string,
    paint_runs,
    pixels_from_runs,
    runs_from_counts,
)

if TYPE_CHECKING:
    import pandas as pd
else:
    from napari_instseg.core._lazy import pd

__all__ = [
    "CocoImport",
    "ImportedImage",
    "cropped_from_pixels",
    "import_coco",
    "import_image",
    "load_coco_json",
    "overlap_frame",
]


@dataclass(frozen=True)
class ImportedImage:
    """One image of an imported COCO file: nothing of it is lost.

    Attributes
    ----------
    image : dict
        The COCO image record, every key kept (``id``, ``file_name``, ``height``, ``width``...).
    labels_yx : numpy.ndarray of uint32, shape (height, width)
        Visible label image: the composite of the instances' own masks in
        :func:`napari_instseg.core.occlusion.paint_order` (larger ``z_order``, then smaller
        area, then smaller id in front).
    table : DataFrame
        Instance table indexed by instance id. For files without our fields,
        ``occluded_fraction`` is the share of the instance's own mask covered by instances in
        front of it, and ``occlusion`` its tier under the protocol's thresholds. Where any
        annotation of the image carries a ``score`` (a model's results, our export of
        pre-labels), a ``score`` column holds it (NaN for annotations without one); pre-labels
        take it as their proposal's score, and export writes it back as ``score``.
    overlap_px : int
        Pixels claimed by more than one annotation (resolved by the rule above).
    hidden_ids : tuple of int
        Instances left with no visible pixel by that rule (their rows are kept).
    amodal : dict of int to CroppedMask
        Full outlines from ``amodal_segmentation``, by instance id.
    masks : dict of int to CroppedMask
        Every instance's own full mask exactly as it came in (``segmentation`` decoded), by
        instance id, overlapping parts included.
    annotations : dict of int to dict
        The COCO annotation record of every instance exactly as it came in, by instance id.
    overlaps : DataFrame
        One row per (front, back) pair of instances that overlap: ``front_id`` covers
        ``pixels`` pixels of ``back_id``'s own mask.
    """

    image: dict[str, Any]
    labels_yx: NDArray[np.uint32]
    table: pd.DataFrame
    overlap_px: int
    hidden_ids: tuple[int, ...]
    amodal: dict[int, Any] = field(default_factory=dict)
    masks: dict[int, Any] = field(default_factory=dict)
    annotations: dict[int, dict[str, Any]] = field(default_factory=dict)
    overlaps: pd.DataFrame = field(default_factory=lambda: overlap_frame([], [], []))

    def overlap_report(self) -> pd.DataFrame:
        """Per instance: own area, visible area, and what it covers / what covers it.

        Returns
        -------
        DataFrame
            Indexed by instance id with columns ``annotation_id``, ``area_px``, ``visible_px``,
            ``lost_px``, ``covered_by`` and ``covers`` (``"id:pixels"`` pairs separated by
            spaces, empty when none).
        """
        ids = [int(i) for i in self.table.index]
        visible = dict(zip(*np.unique(self.labels_yx, return_counts=True), strict=False))
        area = {i: (self.masks[i].area_px if i in self.masks else int(visible.get(i, 0))) for i in ids}
        covered_by: dict[int, list[str]] = {i: [] for i in ids}
        covers: dict[int, list[str]] = {i: [] for i in ids}
        for front, back, pixels in self.overlaps.itertuples(index=False):
            covered_by.setdefault(int(back), []).append(f"{front}:{pixels}")
            covers.setdefault(int(front), []).append(f"{back}:{pixels}")
        rows = {
            "annotation_id": [self.annotations.get(i, {}).get("id") for i in ids],
            "area_px": [area[i] for i in ids],
            "visible_px": [int(visible.get(i, 0)) for i in ids],
            "lost_px": [area[i] - int(visible.get(i, 0)) for i in ids],
            "covered_by": [" ".join(covered_by[i]) for i in ids],
            "covers": [" ".join(covers[i]) for i in ids],
        }
        report: pd.DataFrame = pd.DataFrame(rows, index=pd.Index(ids, name="id"))
        return report

    def __repr__(self) -> str:
        """A one-line summary (file name, shape, counts), never the arrays."""
        height, width = self.labels_yx.shape
        return (
            f"ImportedImage(file_name={self.image.get('file_name')!r}, shape_yx=({height}, {width}), "
            f"instances={len(self.table)}, amodal={len(self.amodal)}, overlap_px={self.overlap_px}, "
            f"hidden={len(self.hidden_ids)})"
        )


def overlap_frame(front: Sequence[int], back: Sequence[int], pixels: Sequence[int]) -> pd.DataFrame:
    frame: pd.DataFrame = pd.DataFrame(
        {
            "front_id": np.asarray(front, dtype=np.int64),
            "back_id": np.asarray(back, dtype=np.int64),
            "pixels": np.asarray(pixels, dtype=np.int64),
        }
    )
    return frame


@dataclass(frozen=True)
class CocoImport:
    """All images of a COCO file, with the protocol it carries (or one built from it).

    ``top`` holds the file's other top-level entries as they came in (``info``,
    ``licenses``, ``categories`` and any others but ``images`` / ``annotations``), so that an
    export can write them back.
    """

    images: tuple[ImportedImage, ...]
    protocol: AnnotationProtocol
    top: dict[str, Any] = field(default_factory=dict)

    @property
    def overlap_px(self) -> int:
        """Overlapping pixels resolved, over all images."""
        return sum(im.overlap_px for im in self.images)

    def __repr__(self) -> str:
        """A short summary (counts and shapes), never the mask arrays."""
        shapes = ", ".join(f"{im.labels_yx.shape[0]}x{im.labels_yx.shape[1]}" for im in self.images[:5])
        more = f", ... ({len(self.images) - 5} more)" if len(self.images) > 5 else ""
        instances = sum(len(im.table) for im in self.images)
        return (
            f"CocoImport(images={len(self.images)} [{shapes}{more}], instances={instances}, "
            f"categories={len(self.protocol.categories)}, overlap_px={self.overlap_px})"
        )


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
    rejected = _rejected_by_image(coco, set(by_image), source)
    images = tuple(
        import_image(dict(im), by_image[im["id"]], protocol, source=source, rejected=rejected.get(im["id"], ()))
        for im in coco["images"]
    )
    top = {k: v for k, v in coco.items() if k not in ("images", "annotations", REJECTED_KEY)}
    return CocoImport(images=images, protocol=protocol, top=top)


def _rejected_by_image(coco: Mapping[str, Any], image_ids: set[int], source: str) -> dict[int, list[Mapping[str, Any]]]:
    """The records of the file's rejected instances (:data:`REJECTED_KEY`), by image id."""
    records = coco.get(REJECTED_KEY, [])
    if not isinstance(records, list):
        raise CocoFormatError(f"{source}: {REJECTED_KEY!r} must be a list, got {type(records).__name__}.")
    out: dict[int, list[Mapping[str, Any]]] = {}
    for k, record in enumerate(records):
        where = f"{source}: {REJECTED_KEY}[{k}]"
        if not isinstance(record, Mapping):
            raise CocoFormatError(f"{where}: expected an object, got {type(record).__name__}.")
        for key in ("image_id", "instance_id", "category_id"):
            if not isinstance(record.get(key), int) or isinstance(record.get(key), bool):
                raise CocoFormatError(f"{where}: {key!r} must be an integer, got {record.get(key)!r}.")
        if record["image_id"] not in image_ids:
            raise CocoFormatError(f"{where}: image_id {record['image_id']} is not in 'images'.")
        out.setdefault(record["image_id"], []).append(record)
    return out


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
            Category(c["id"], c["name"], str(c.get("supercategory") or ""), _color_or_none(c.get("color")))
            for c in coco["categories"]
        )
        if not categories:
            return AnnotationProtocol.default()
        return AnnotationProtocol(categories=categories, occlusion_rule="amodal" if amodal else "visible")
    except ProtocolError as exc:
        raise CocoFormatError(f"{source}: categories do not form a valid taxonomy: {exc}") from exc


def _color_or_none(value: Any) -> str | None:
    """A category colour we can keep ("#rrggbb", or an [r, g, b] list), else None."""
    if isinstance(value, str) and len(value) == 7 and value.startswith("#"):
        try:
            int(value[1:], 16)
        except ValueError:
            return None
        return value.lower()
    if isinstance(value, list) and len(value) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in value):
        return "#{:02x}{:02x}{:02x}".format(*value)
    return None


def import_image(
    image: Mapping[str, Any],
    annotations: Sequence[Mapping[str, Any]],
    protocol: AnnotationProtocol,
    *,
    source: str = "COCO data",
    rejected: Sequence[Mapping[str, Any]] = (),
) -> ImportedImage:
    """Import the (validated) annotations of one image, keeping every instance's own mask.

    Parameters
    ----------
    image : mapping
        The COCO image record (``id``, ``height``, ``width``, ``file_name``...).
    annotations : sequence of mapping
        Its annotations, in the order that numbers instances without ``instance_id``.
    protocol : AnnotationProtocol
        Gives the tier thresholds for the derived occlusion tiers.
    source : str
        Name used in error messages.
    rejected : sequence of mapping
        Records of the image's rejected instances (our export's ``instseg_rejected``): each
        becomes a row in review state ``rejected`` with no pixels.

    Returns
    -------
    ImportedImage
        The same input always gives the same result (export relies on it to tell edited
        instances from unedited ones).
    """
    image = dict(image)
    height, width = int(image["height"]), int(image["width"])
    where = f"{source}: image {image['id']} ({image.get('file_name')})"
    check_image_memory((height, width), 12 + (4 if annotations else 0), what=where)  # flat, labels, copies
    pixels = [pixels_from_runs(*_decode_runs(ann["segmentation"], height, width)) for ann in annotations]
    areas = np.array([p.size for p in pixels], dtype=np.int64)
    ids = _instance_ids(annotations)
    z_order = np.array([int(ann.get("z_order", 0)) for ann in annotations], dtype=np.int64)
    composite = composite_pixels(pixels, ids, z_order, (height, width))
    fraction = occluded_fraction(areas - composite.lost_px, areas)  # visible / own area
    tiers = protocol.tiers.tiers_of(fraction)
    table = _table(annotations, ids, fraction, tiers, where)
    if rejected:
        table = _with_rejected(table, rejected, where)
    labels_yx = composite.labels_yx
    present = np.isin(ids, np.unique(labels_yx)) if ids.size else np.zeros(0, dtype=bool)
    return ImportedImage(
        image=image,
        labels_yx=labels_yx,
        table=table,
        overlap_px=composite.overlap_px,
        hidden_ids=tuple(int(i) for i in ids[~present]),
        amodal=_amodal_masks(annotations, ids, height, width),
        masks={int(i): cropped_from_pixels(p, height) for i, p in zip(ids.tolist(), pixels, strict=True)},
        annotations={int(i): dict(ann) for i, ann in zip(ids.tolist(), annotations, strict=True)},
        overlaps=overlap_frame(composite.front_ids, composite.back_ids, composite.pixels),
    )


def cropped_from_pixels(pixels_xy: NDArray[np.int64], height: int) -> Any:
    """A CroppedMask from column-major flat pixel indices."""
    from napari_instseg.core.edits import CroppedMask

    if pixels_xy.size == 0:
        return CroppedMask((0, 0, 0, 0), np.zeros((0, 0), bool))
    y, x = pixels_xy % height, pixels_xy // height
    y0, x0, y1, x1 = int(y.min()), int(x.min()), int(y.max()) + 1, int(x.max()) + 1
    crop = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    crop[y - y0, x - x0] = True
    return CroppedMask((y0, x0, y1, x1), crop)


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


def _table(
    annotations: Sequence[Mapping[str, Any]],
    ids: NDArray[np.int64],
    fraction: NDArray[np.float64],
    tiers: NDArray[np.str_],
    source: str,
) -> pd.DataFrame:
    if not annotations:
        return make_rows([])
    records = [_row_of(ann, float(f), str(t)) for ann, f, t in zip(annotations, fraction, tiers, strict=True)]
    frame = pd.DataFrame.from_records(records, index=pd.Index(ids, name="id"))
    if SCORE_COLUMN in frame.columns:  # some annotations are scored: one float column, NaN = none
        frame[SCORE_COLUMN] = frame[SCORE_COLUMN].astype("float64")
    return validate_table(frame, source=source)


def _with_rejected(table: pd.DataFrame, rejected: Sequence[Mapping[str, Any]], source: str) -> pd.DataFrame:
    """``table`` with a row (review ``rejected``, no pixels) for each rejected record; ids
    already in the table (or repeated) get new ones."""
    taken = {int(i) for i in table.index}
    given: list[int | None] = []
    for record in rejected:
        instance_id = int(record["instance_id"])
        given.append(None if instance_id in taken or instance_id < 1 else instance_id)
        taken.add(instance_id)
    allocator = IdAllocator()
    allocator.observe(taken)
    ids = allocator.assign(given)
    rows = [{**_row_of(r, 0.0, "none"), "review": "rejected"} for r in rejected]
    frame = pd.DataFrame.from_records(rows, index=pd.Index(ids, name="id"))
    if SCORE_COLUMN in frame.columns:
        frame[SCORE_COLUMN] = frame[SCORE_COLUMN].astype("float64")
    both = pd.concat([table, frame]) if len(table) else frame
    return validate_table(both, source=source)


def _row_of(ann: Mapping[str, Any], derived_fraction: float, derived_tier: str) -> dict[str, Any]:
    """The table row of one annotation; occlusion derived from the overlap unless the file says."""
    raw_attributes = ann.get("attributes")
    attributes: Mapping[str, Any] = raw_attributes if isinstance(raw_attributes, Mapping) else {}
    ours = "instance_id" in ann or "source" in attributes
    occluded = derived_fraction > 0 or bool(attributes.get("occluded"))
    tier = derived_tier if derived_fraction > 0 and derived_tier else ("partial" if occluded else "none")
    row: dict[str, Any] = {
        "category_id": ann["category_id"],
        "iscrowd": bool(ann.get("iscrowd", 0)),
        "z_order": ann.get("z_order", 0),
        "occluded_fraction": ann.get("occluded_fraction", derived_fraction),
        "occlusion": ann.get("occlusion") or tier,
        "source": "import",
    }
    if ours:
        row.update({k: attributes[k] for k in ATTRIBUTE_COLUMNS if k in attributes})
        row.update({k: v for k, v in attributes.items() if k not in COLUMNS and k != "occluded"})
    row.pop(SCORE_COLUMN, None)  # only the top-level score (validated finite) is the model's score
    if "score" in ann:
        row[SCORE_COLUMN] = float(ann["score"])
        if not ours:  # another tool's model result: a pre-label to review, never taken silently
            row.update(source=IMPORTED_MODEL_SOURCE, review="pre-label")
    for key in ("occluded_fraction", "prelabel_iou"):
        if row.get(key) is None:
            row[key] = np.nan
    return row
