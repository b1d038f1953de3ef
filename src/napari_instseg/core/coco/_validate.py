"""Validation of COCO instances dicts: every problem named with where it is."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_instseg.core.errors import CocoFormatError, InstsegError
from napari_instseg.core.protocol import OCCLUSION_TIERS

__all__ = ["MAX_IMAGE_PIXELS", "MAX_LISTED", "read_json_file", "validate_coco", "validate_results"]

MAX_IMAGE_PIXELS = 2**32 - 1
"""Largest image (height x width) a COCO file may declare: pycocotools' RLE run lengths are
32-bit, so a larger image cannot be encoded or rasterised correctly."""

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_PERIMETER_BUDGET_PX = 4_000_000
"""Polygons are rasterised by pycocotools at 5x their perimeter: this bounds its memory."""

MAX_LISTED = 20
"""At most this many problems are listed in one error message."""

_BBOX_TOLERANCE_PX = 1e-3


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and _INT64_MIN <= value <= _INT64_MAX


def _short(value: Any, limit: int = 60) -> str:
    """``repr`` of an untrusted value, cut to ``limit`` characters."""
    try:
        text = repr(value)
    except (RecursionError, ValueError):  # deeply nested, or an int too long to print
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_json_file(
    path: str | os.PathLike[str], *, error: type[InstsegError] = CocoFormatError, what: str = "JSON"
) -> Any:
    """Read a JSON file written by someone else; every way it can be unreadable is ``error``.

    Parameters
    ----------
    path : path-like
        The file.
    error : subclass of InstsegError
        The error type raised (``CocoFormatError`` by default).
    what : str
        What the file should hold, for messages ("a COCO instances file").

    Raises
    ------
    error
        For an empty file, text that is not UTF-8, invalid JSON, nesting too deep for the
        parser, or a number too long to convert; the message names the file and the place.
    OSError
        When the file cannot be opened (missing, a folder, no permission).
    """
    target = Path(path)
    raw = target.read_bytes()
    if not raw.strip():
        raise error(f"{target}: the file is empty; expected {what}.")
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise error(f"{target}: not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}.") from exc
    except UnicodeDecodeError as exc:
        raise error(f"{target}: not UTF-8 text (byte {exc.start}); expected {what}.") from exc
    except RecursionError as exc:
        raise error(f"{target}: JSON nested too deeply to read; expected {what}.") from exc
    except ValueError as exc:  # e.g. an integer literal longer than Python's conversion limit
        raise error(f"{target}: cannot read JSON: {exc}.") from exc


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
    images, refused = _check_images(coco["images"], problems)
    categories = _check_categories(coco["categories"], problems)
    _check_annotations(coco["annotations"], images, categories, problems, refused)
    problems.raise_if_any()


def _check_images(images: list[Any], problems: _Problems) -> tuple[dict[int, tuple[int, int]], set[int]]:
    """Sizes of the valid images by id, and the ids of images refused for their size (not
    positive, or too large): their annotations are not checked, the image's problem is the root."""
    sizes: dict[int, tuple[int, int]] = {}
    refused: set[int] = set()
    for i, image in enumerate(images):
        where = f"images[{i}]"
        if not isinstance(image, Mapping):
            problems.add(where, "expected an object")
            continue
        image_id: Any = image.get("id")
        where = f"images[{i}] (id {_short(image_id)})"
        if not _is_int(image_id):
            problems.add(f"images[{i}]", f"'id' must be an integer (int64), got {_short(image_id)}")
            continue
        if image_id in sizes:
            problems.add(where, f"duplicate image id {image_id}")
        height: Any = image.get("height")
        width: Any = image.get("width")
        if not (_is_int(height) and _is_int(width) and height > 0 and width > 0):
            problems.add(
                where, f"'height' and 'width' must be positive integers, got {_short(height)} x {_short(width)}"
            )
            refused.add(image_id)  # its annotations are not reported again as of an unknown image
            continue
        if height * width > MAX_IMAGE_PIXELS:
            problems.add(
                where,
                f"declared size {height} x {width} (height x width) = {height * width} pixels exceeds "
                f"{MAX_IMAGE_PIXELS} (COCO RLE run lengths are 32-bit)",
            )
            refused.add(image_id)
            continue
        if not isinstance(image.get("file_name"), str):
            problems.add(where, f"'file_name' must be a string, got {_short(image.get('file_name'))}")
        sizes[image_id] = (height, width)
    return sizes, refused


def _check_categories(categories: list[Any], problems: _Problems) -> set[int]:
    ids: set[int] = set()
    for i, category in enumerate(categories):
        where = f"categories[{i}]"
        if not isinstance(category, Mapping) or not _is_int(category.get("id")):
            problems.add(where, f"expected an object with a 64-bit integer 'id', got {_short(category)}")
            continue
        if category["id"] in ids:
            problems.add(where, f"duplicate category id {category['id']}")
        if not isinstance(category.get("name"), str):
            problems.add(where, f"'name' must be a string, got {_short(category.get('name'))}")
        ids.add(category["id"])
    return ids


def _check_annotations(
    annotations: list[Any],
    images: dict[int, tuple[int, int]],
    categories: set[int],
    problems: _Problems,
    refused: set[int],
) -> None:
    seen: set[int] = set()
    for i, ann in enumerate(annotations):
        if not isinstance(ann, Mapping):
            problems.add(f"annotations[{i}]", "expected an object")
            continue
        where = f"annotations[{i}] (id {_short(ann.get('id'))})"
        for key in ("id", "image_id", "category_id", "segmentation"):
            if key not in ann:
                problems.add(where, f"missing key {key!r}")
        if not all(k in ann for k in ("id", "image_id", "category_id", "segmentation")):
            continue
        if not _is_int(ann["id"]):
            problems.add(where, f"'id' must be an integer (int64), got {_short(ann['id'])}")
        elif ann["id"] in seen:
            problems.add(where, f"duplicate annotation id {ann['id']}")
        else:
            seen.add(ann["id"])
        if not (_is_int(ann["category_id"]) and ann["category_id"] in categories):
            problems.add(where, f"'category_id' {_short(ann['category_id'])} is not a known category id")
        size = images.get(ann["image_id"]) if _is_int(ann["image_id"]) else None
        if size is None:
            if not (_is_int(ann["image_id"]) and ann["image_id"] in refused):  # else said once, for the image
                problems.add(where, f"'image_id' {_short(ann['image_id'])} is not a known image id")
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
                problems.add(field, f"polygon {k} must be a flat list of finite numbers [x0, y0, x1, y1, ...]")
            elif len(poly) % 2 or len(poly) < 6:
                problems.add(
                    field, f"polygon {k} has {len(poly) / 2:g} points; a polygon needs at least 3 (x, y) pairs"
                )
            else:
                _check_polygon_extent(poly, size, image_id, f"{field} polygon {k}", problems)
        return
    if not isinstance(seg, Mapping) or "counts" not in seg or "size" not in seg:
        problems.add(field, "expected a list of polygons or an RLE object with 'size' and 'counts'")
        return
    rle_size = seg["size"]
    if not (isinstance(rle_size, list) and len(rle_size) == 2 and list(rle_size) == list(size)):
        problems.add(
            field,
            f"RLE size {_short(rle_size)} does not match image {image_id} (height x width = {size[0]} x {size[1]})",
        )
        return
    _check_counts(seg["counts"], size, field, problems)


def _check_polygon_extent(
    poly: Sequence[float], size: tuple[int, int], image_id: int, field: str, problems: _Problems
) -> None:
    """Refuse vertices far outside the image, before pycocotools' rasteriser sees them.

    pycocotools allocates memory in proportion to a polygon's perimeter (it crashes for
    coordinates around 1e9). Vertices up to one image size outside the image are kept as they
    are (the rasteriser clips them exactly); farther ones are refused.
    """
    height, width = size
    xy = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
    margin = float(max(height, width))
    x, y = xy[:, 0], xy[:, 1]
    outside = (x < -margin) | (x > width + margin) | (y < -margin) | (y > height + margin)
    if outside.any():
        j = int(np.flatnonzero(outside)[0])
        problems.add(
            field,
            f"vertex {j} (x={x[j]:g}, y={y[j]:g}) lies far outside image {image_id} "
            f"(width x height = {width} x {height})",
        )
        return
    steps = np.abs(np.diff(np.vstack([xy, xy[:1]]), axis=0)).max(axis=1).sum()
    if steps > _PERIMETER_BUDGET_PX + 16 * (height + width):
        problems.add(field, f"perimeter of {steps:.0f} px is too long to rasterise (image {width} x {height})")


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
        problems.add(where, f"'bbox' must be [x, y, width, height] finite numbers, got {_short(bbox)}")
        return
    x, y, w, h = bbox
    height, width = size
    tol = _BBOX_TOLERANCE_PX
    if w < 0 or h < 0 or x < -tol or y < -tol or x + w > width + tol or y + h > height + tol:
        problems.add(where, f"'bbox' {bbox} extends outside image {image_id} (width x height = {width} x {height})")


def _check_extras(ann: Mapping[str, Any], where: str, problems: _Problems) -> None:
    if "iscrowd" in ann and not (isinstance(ann["iscrowd"], (bool, int)) and ann["iscrowd"] in (0, 1)):
        problems.add(where, f"'iscrowd' must be 0 or 1, got {_short(ann['iscrowd'])}")
    if "occlusion" in ann and not (isinstance(ann["occlusion"], str) and ann["occlusion"] in OCCLUSION_TIERS):
        problems.add(where, f"'occlusion' {_short(ann['occlusion'])} is not one of {OCCLUSION_TIERS}")
    fraction = ann.get("occluded_fraction")
    if fraction is not None and not (_is_number(fraction) and 0.0 <= fraction <= 1.0):
        problems.add(where, f"'occluded_fraction' must be a number in [0, 1] or null, got {_short(fraction)}")
    if "z_order" in ann and not _is_int(ann["z_order"]):
        problems.add(where, f"'z_order' must be an integer (int64), got {_short(ann['z_order'])}")
    if "instance_id" in ann and not (_is_int(ann["instance_id"]) and 0 < ann["instance_id"] < 2**32):
        problems.add(where, f"'instance_id' must be an integer in [1, 2**32 - 1], got {_short(ann['instance_id'])}")
    if "score" in ann and not _is_number(ann["score"]):
        problems.add(where, f"'score' must be a finite number, got {_short(ann['score'])}")
    if "attributes" not in ann:
        return
    attributes = ann["attributes"]
    if not isinstance(attributes, Mapping):
        problems.add(where, f"'attributes' must be an object, got {type(attributes).__name__}")
        return
    for key, value in attributes.items():
        if not (value is None or isinstance(value, (str, bool, int, float))) or (
            isinstance(value, int) and not isinstance(value, bool) and not _is_int(value)
        ):
            problems.add(where, f"'attributes.{key}' must be a string, number or boolean, got {_short(value)}")


def validate_results(
    results: Any, sizes: Mapping[int, tuple[int, int]], categories: set[int], *, source: str = "candidates (DT)"
) -> None:
    """Check a COCO results list (QA candidates) against the images and categories of a reference.

    Every entry needs ``image_id`` and ``category_id`` of the reference, a ``segmentation``
    (checked as in :func:`validate_coco`: polygons near the image, RLE of the image's size) and
    a finite ``score``.

    Raises
    ------
    CocoFormatError
        Listing up to :data:`MAX_LISTED` problems with their index in the list.
    """
    problems = _Problems(source)
    if not isinstance(results, list):
        problems.add("top level", f"expected a list of results or a COCO object, got {type(results).__name__}")
        problems.raise_if_any()
    for i, ann in enumerate(results):
        where = f"{source} [{i}]"
        if not isinstance(ann, Mapping):
            problems.add(where, f"expected an object, got {type(ann).__name__}")
            continue
        missing = [key for key in ("image_id", "category_id", "segmentation", "score") if key not in ann]
        if missing:
            problems.add(where, ", ".join(f"missing key {key!r}" for key in missing))
            continue
        size = sizes.get(ann["image_id"]) if _is_int(ann["image_id"]) else None
        if size is None:
            problems.add(where, f"'image_id' {_short(ann['image_id'])} is not in the reference")
            continue
        if not (_is_int(ann["category_id"]) and ann["category_id"] in categories):
            problems.add(where, f"'category_id' {_short(ann['category_id'])} is not in the reference")
        if not _is_number(ann["score"]):
            problems.add(where, f"'score' must be a finite number, got {_short(ann['score'])}")
        _check_segmentation(ann["segmentation"], size, ann["image_id"], where, problems)
    problems.raise_if_any()
