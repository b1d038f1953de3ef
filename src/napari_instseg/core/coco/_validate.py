"""Validation of COCO instances dicts: every problem named with where it is."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from napari_instseg.core.errors import CocoFormatError
from napari_instseg.core.protocol import OCCLUSION_TIERS

__all__ = ["MAX_LISTED", "validate_coco"]

MAX_LISTED = 20
"""At most this many problems are listed in one error message."""

_BBOX_TOLERANCE_PX = 1e-3


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class _Problems:
    """Collects problems; raises one CocoFormatError listing them."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.items: list[str] = []

    def add(self, where: str, what: str) -> None:
        self.items.append(f"{where}: {what}")

    def raise_if_any(self) -> None:
        if not self.items:
            return
        shown = self.items[:MAX_LISTED]
        more = len(self.items) - len(shown)
        lines = [f"{self.source} is not a valid COCO instances file ({len(self.items)} problem(s)):"]
        lines += [f"  - {item}" for item in shown]
        if more:
            lines.append(f"  ... and {more} more")
        raise CocoFormatError("\n".join(lines))


def validate_coco(coco: Any, *, source: str = "COCO data") -> None:
    """Check a COCO instances dict; raise one error listing every problem found.

    Checks the top-level lists; image ids, sizes and names; category ids; and for every
    annotation its id (unique), ``image_id`` and ``category_id`` (known), ``segmentation``
    (polygons of at least 3 points, or RLE whose ``size`` matches its image and whose
    uncompressed counts sum to height x width), ``bbox`` (inside its image), ``iscrowd`` and our
    optional fields.

    Raises
    ------
    CocoFormatError
        Listing up to :data:`MAX_LISTED` problems, each with its location, e.g.
        ``annotations[3] (id 17): 'bbox' [..] extends outside image 2 (640 x 480)``.
    """
    problems = _Problems(source)
    if not isinstance(coco, Mapping):
        problems.add("top level", f"expected a JSON object, got {type(coco).__name__}")
        problems.raise_if_any()
    for key in ("images", "annotations", "categories"):
        if not isinstance(coco.get(key), list):
            problems.add("top level", f"missing list {key!r}" if key not in coco else f"{key!r} is not a list")
    problems.raise_if_any()
    images = _check_images(coco["images"], problems)
    categories = _check_categories(coco["categories"], problems)
    _check_annotations(coco["annotations"], images, categories, problems)
    problems.raise_if_any()


def _check_images(images: list[Any], problems: _Problems) -> dict[int, tuple[int, int]]:
    sizes: dict[int, tuple[int, int]] = {}
    for i, image in enumerate(images):
        where = f"images[{i}]"
        if not isinstance(image, Mapping):
            problems.add(where, "expected an object")
            continue
        image_id = image.get("id")
        where = f"images[{i}] (id {image_id})"
        if not _is_int(image_id):
            problems.add(where, f"'id' must be an integer, got {image_id!r}")
            continue
        if image_id in sizes:
            problems.add(where, f"duplicate image id {image_id}")
        height, width = image.get("height"), image.get("width")
        if not (_is_int(height) and _is_int(width) and height > 0 and width > 0):
            problems.add(where, f"'height' and 'width' must be positive integers, got {height!r} x {width!r}")
            continue
        if not isinstance(image.get("file_name"), str):
            problems.add(where, f"'file_name' must be a string, got {image.get('file_name')!r}")
        sizes[image_id] = (height, width)
    return sizes


def _check_categories(categories: list[Any], problems: _Problems) -> set[int]:
    ids: set[int] = set()
    for i, category in enumerate(categories):
        where = f"categories[{i}]"
        if not isinstance(category, Mapping) or not _is_int(category.get("id")):
            problems.add(where, "expected an object with an integer 'id'")
            continue
        if category["id"] in ids:
            problems.add(where, f"duplicate category id {category['id']}")
        if not isinstance(category.get("name"), str):
            problems.add(where, f"'name' must be a string, got {category.get('name')!r}")
        ids.add(category["id"])
    return ids


def _check_annotations(
    annotations: list[Any], images: dict[int, tuple[int, int]], categories: set[int], problems: _Problems
) -> None:
    seen: set[int] = set()
    for i, ann in enumerate(annotations):
        if not isinstance(ann, Mapping):
            problems.add(f"annotations[{i}]", "expected an object")
            continue
        where = f"annotations[{i}] (id {ann.get('id')!r})"
        for key in ("id", "image_id", "category_id", "segmentation"):
            if key not in ann:
                problems.add(where, f"missing key {key!r}")
        if not all(k in ann for k in ("id", "image_id", "category_id", "segmentation")):
            continue
        if not _is_int(ann["id"]):
            problems.add(where, f"'id' must be an integer, got {ann['id']!r}")
        elif ann["id"] in seen:
            problems.add(where, f"duplicate annotation id {ann['id']}")
        else:
            seen.add(ann["id"])
        if ann["category_id"] not in categories:
            problems.add(where, f"'category_id' {ann['category_id']!r} is not a known category id")
        size = images.get(ann["image_id"]) if _is_int(ann["image_id"]) else None
        if size is None:
            problems.add(where, f"'image_id' {ann['image_id']!r} is not a known image id")
            continue
        _check_segmentation(ann["segmentation"], size, ann["image_id"], where, problems)
        if "amodal_segmentation" in ann:
            _check_segmentation(ann["amodal_segmentation"], size, ann["image_id"], f"{where} (amodal)", problems)
        _check_bbox(ann.get("bbox"), size, ann["image_id"], where, problems)
        _check_extras(ann, where, problems)


def _check_segmentation(seg: Any, size: tuple[int, int], image_id: int, where: str, problems: _Problems) -> None:
    field = f"{where}: 'segmentation'"
    if isinstance(seg, list):
        if not seg:
            problems.add(field, "polygon list is empty")
        for k, poly in enumerate(seg):
            if not isinstance(poly, list) or not all(_is_number(v) for v in poly):
                problems.add(field, f"polygon {k} must be a flat list of numbers [x0, y0, x1, y1, ...]")
            elif len(poly) % 2 or len(poly) < 6:
                problems.add(
                    field, f"polygon {k} has {len(poly) / 2:g} points; a polygon needs at least 3 (x, y) pairs"
                )
        return
    if not isinstance(seg, Mapping) or "counts" not in seg or "size" not in seg:
        problems.add(field, "expected a list of polygons or an RLE object with 'size' and 'counts'")
        return
    rle_size = seg["size"]
    if not (isinstance(rle_size, list) and len(rle_size) == 2 and list(rle_size) == list(size)):
        problems.add(
            field, f"RLE size {rle_size!r} does not match image {image_id} (height x width = {size[0]} x {size[1]})"
        )
        return
    _check_counts(seg["counts"], size, field, problems)


def _check_counts(counts: Any, size: tuple[int, int], field: str, problems: _Problems) -> None:
    from napari_instseg.core.rle import counts_from_string

    total = size[0] * size[1]
    if isinstance(counts, list):
        if not all(_is_int(c) and c >= 0 for c in counts):
            problems.add(field, "uncompressed RLE 'counts' must be non-negative integers")
            return
        decoded_sum = sum(counts)
    elif isinstance(counts, (str, bytes)):
        try:
            decoded = counts_from_string(counts)
        except (ValueError, UnicodeEncodeError) as exc:
            problems.add(field, f"compressed RLE 'counts' cannot be decoded: {exc}")
            return
        if decoded.size and decoded.min() < 0:
            problems.add(field, "compressed RLE 'counts' decode to a negative run length")
            return
        decoded_sum = int(decoded.sum())
    else:
        problems.add(field, f"RLE 'counts' must be a string or a list of integers, got {type(counts).__name__}")
        return
    if decoded_sum != total:
        problems.add(field, f"RLE counts cover {decoded_sum} pixels, but the image has {total} (height x width)")


def _check_bbox(bbox: Any, size: tuple[int, int], image_id: int, where: str, problems: _Problems) -> None:
    if bbox is None:
        return
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
        problems.add(where, f"'bbox' must be [x, y, width, height] numbers, got {bbox!r}")
        return
    x, y, w, h = bbox
    height, width = size
    tol = _BBOX_TOLERANCE_PX
    if w < 0 or h < 0 or x < -tol or y < -tol or x + w > width + tol or y + h > height + tol:
        problems.add(where, f"'bbox' {bbox} extends outside image {image_id} (width x height = {width} x {height})")


def _check_extras(ann: Mapping[str, Any], where: str, problems: _Problems) -> None:
    if "iscrowd" in ann and ann["iscrowd"] not in (0, 1, True, False):
        problems.add(where, f"'iscrowd' must be 0 or 1, got {ann['iscrowd']!r}")
    if "occlusion" in ann and ann["occlusion"] not in OCCLUSION_TIERS:
        problems.add(where, f"'occlusion' {ann['occlusion']!r} is not one of {OCCLUSION_TIERS}")
    fraction = ann.get("occluded_fraction")
    if fraction is not None and not (_is_number(fraction) and 0.0 <= fraction <= 1.0):
        problems.add(where, f"'occluded_fraction' must be a number in [0, 1] or null, got {fraction!r}")
    if "z_order" in ann and not _is_int(ann["z_order"]):
        problems.add(where, f"'z_order' must be an integer, got {ann['z_order']!r}")
    if "instance_id" in ann and not (_is_int(ann["instance_id"]) and 0 < ann["instance_id"] < 2**32):
        problems.add(where, f"'instance_id' must be an integer in [1, 2**32 - 1], got {ann['instance_id']!r}")
    if "attributes" in ann and not isinstance(ann["attributes"], Mapping):
        problems.add(where, f"'attributes' must be an object, got {type(ann['attributes']).__name__}")
