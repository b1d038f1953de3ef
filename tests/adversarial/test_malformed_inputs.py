"""The malformed / hostile input campaign as one table: every case must end in exit status 2
(or the project's error type for an API call) with a message naming the place, and leave every
file (inputs, outputs, the output folder) byte-for-byte as it was.

Each case writes its files into a fresh folder, hashes the whole folder, runs the command
in-process through ``napari_instseg.cli.main`` (crash-prone cases, which reach pycocotools'
C code when unguarded, in a subprocess), and hashes again.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import pickle
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

from napari_instseg.cli import main
from napari_instseg.core.errors import InstsegError

# --------------------------------------------------------------------------------------------
# valid inputs the cases start from


def coco() -> dict[str, Any]:
    """A valid COCO file: one 20 x 30 image, two polygon annotations."""
    return {
        "images": [{"id": 1, "file_name": "img.tif", "height": 20, "width": 30}],
        "categories": [{"id": 1, "name": "nucleus"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[2, 2, 10, 2, 10, 10, 2, 10]], "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 1, "segmentation": [[12, 4, 20, 4, 20, 12]], "iscrowd": 0},
        ],
    }


def results() -> list[dict[str, Any]]:
    """Valid QA candidates for :func:`coco` (a COCO results list)."""
    return [
        {"image_id": 1, "category_id": 1, "segmentation": [[2, 2, 9, 2, 9, 9, 2, 9]], "score": 0.9},
        {"image_id": 1, "category_id": 1, "segmentation": [[12, 4, 19, 4, 19, 11]], "score": 0.8},
    ]


def mutated(change: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    data = copy.deepcopy(coco())
    change(data)
    return data


def labels_tif(path: Path) -> None:
    labels = np.zeros((20, 30), np.uint32)
    labels[2:8, 2:8] = 1
    labels[10:15, 12:20] = 2
    tifffile.imwrite(path, labels)


def labels_npy(path: Path) -> None:
    labels = np.zeros((20, 30), np.uint32)
    labels[2:8, 2:8] = 1
    np.save(path, labels)


def image_tif(path: Path) -> None:
    tifffile.imwrite(path, np.full((20, 30, 3), 200, np.uint8))


PROTOCOL = {"name": "p", "categories": [{"id": 1, "name": "nucleus"}]}
TABLE = "id,category_id,occlusion\n1,1,none\n2,1,partial\n"
POINTS = "y,x,label\n5,5,1\n12,15,1\n"
BOXES = "x0,y0,x1,y1\n2,2,8,8\n12,10,20,15\n"


def array_file(array: Any, *, allow_pickle: bool = False) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        np.save(path, array, allow_pickle=allow_pickle)

    return write


def truncated(writer: Callable[[Path], None], keep: float = 0.5) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        writer(path)
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * keep)])

    return write


def deep_json(depth: int = 100_000) -> bytes:
    return b"[" * depth + b"]" * depth


def tiff_with_header(width: int, height: int) -> Callable[[Path], None]:
    """A tiny TIFF whose header declares a huge image (the pixels are not there)."""

    def write(path: Path) -> None:
        tifffile.imwrite(path, np.zeros((4, 4), np.uint8))
        with tifffile.TiffFile(path, mode="r+b") as tif:
            tif.pages[0].tags["ImageWidth"].overwrite(width)
            tif.pages[0].tags["ImageLength"].overwrite(height)

    return write


def zarr_slide(path: Path, *, drop_level: bool = False, truncate_chunk: bool = False) -> None:
    """A 2-level OME-Zarr slide of 64 x 96 RGB; optionally damaged."""
    import zarr

    group = zarr.open_group(str(path), mode="w")
    image = np.full((64, 96, 3), 230, np.uint8)
    image[20:40, 30:50] = 60
    for level, data in enumerate((image, image[::2, ::2])):
        group.create_array(str(level), data=data, chunks=(32, 32, 3))
    group.attrs["multiscales"] = [
        {"axes": [{"name": "y"}, {"name": "x"}, {"name": "c"}], "datasets": [{"path": "0"}, {"path": "1"}]}
    ]
    if drop_level:
        import shutil

        shutil.rmtree(path / "1")
    if truncate_chunk:
        chunks = sorted(p for p in (path / "0").rglob("*") if p.is_file() and p.name != "zarr.json")
        for chunk in chunks:
            chunk.write_bytes(chunk.read_bytes()[:5])


def ome_tiff_slide(path: Path, *, corrupt_tiles: bool = False) -> None:
    image = np.full((64, 96, 3), 230, np.uint8)
    image[20:40, 30:50] = 60
    tifffile.imwrite(path, image, tile=(32, 32), compression="zlib", photometric="rgb", ome=True)
    if corrupt_tiles:
        with tifffile.TiffFile(path) as tif:
            offsets = tif.pages[0].dataoffsets
            counts = tif.pages[0].databytecounts
        data = bytearray(path.read_bytes())
        for offset, count in zip(offsets, counts, strict=True):
            data[offset : offset + count] = b"\x00" * count
        path.write_bytes(bytes(data))


def torch_file(obj_factory: Callable[[], Any]) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        import torch

        torch.save(obj_factory(), path)

    return write


class _Evil:
    def __reduce__(self) -> tuple[Any, ...]:
        return (os.getcwd, ())


# --------------------------------------------------------------------------------------------
# the table


@dataclass
class Case:
    """One hostile input: the files it needs, the command (or API call) and the message."""

    id: str
    argv: list[str] | None
    fragment: str
    files: dict[str, Any] = field(default_factory=dict)
    call: Callable[[Path], Any] | None = None
    subprocess: bool = False
    may_write: tuple[str, ...] = ()  # outputs that a resumable command may have started
    accepted: bool = False  # once refused, now valid input (real-world files): exit 0, inputs unchanged


CASES: list[Case] = []


def case(id: str, argv: list[str] | None, fragment: str, **files_and_options: Any) -> None:
    keys = ("call", "subprocess", "may_write", "accepted")
    options = {k: files_and_options.pop(k) for k in keys if k in files_and_options}
    files = {k.replace("___", "/").replace("__", "."): v for k, v in files_and_options.items()}
    CASES.append(Case(id, argv, fragment, files, **options))


# --- COCO import: the file itself -----------------------------------------------------------

IMPORT = ["import", "{t}/x.json", "-o", "{t}/out"]
case("coco/not-json", IMPORT, "x.json: not valid JSON (line 1", x__json=b'{"images": [')
case("coco/empty-file", IMPORT, "x.json: the file is empty", x__json=b"")
case("coco/whitespace-only", IMPORT, "x.json: the file is empty", x__json=b"  \n\t ")
case("coco/not-utf8", IMPORT, "x.json: not UTF-8 text", x__json=b'{"images": "\xff\xfe\xfa"}')
case("coco/deep-nesting", IMPORT, "x.json: JSON nested too deeply", x__json=deep_json())
case("coco/deep-nesting-in-object", IMPORT, "nested too deeply", x__json=b'{"images": ' + deep_json())
case("coco/int-too-long-to-parse", IMPORT, "x.json: cannot read JSON", x__json=b'{"a": ' + b"9" * 5000 + b"}")
case("coco/top-level-list", IMPORT, "top level: expected a JSON object, got list", x__json=[1, 2])
case("coco/top-level-string", IMPORT, "top level: expected a JSON object, got str", x__json=b'"coco"')
case("coco/top-level-null", IMPORT, "top level: expected a JSON object, got NoneType", x__json=None)
case("coco/images-not-list", IMPORT, "'images' is not a list", x__json=mutated(lambda c: c.update(images={})))
case("coco/missing-annotations", IMPORT, "missing list 'annotations'", x__json=mutated(lambda c: c.pop("annotations")))
case("coco/categories-null", IMPORT, "'categories' is not a list", x__json=mutated(lambda c: c.update(categories=None)))
case("coco/binary-garbage", IMPORT, "x.json: not", x__json=bytes(range(256)) * 4)
case("coco/json-nan-literal-only", IMPORT, "top level: expected a JSON object", x__json=b"NaN")

# --- COCO import: images ----------------------------------------------------------------------


def image_change(**values: Any) -> dict[str, Any]:
    return mutated(lambda c: c["images"][0].update(values))


case("coco/image-id-string", IMPORT, "images[0]: 'id' must be an integer", x__json=image_change(id="1"))
case("coco/image-id-list", IMPORT, "images[0]: 'id' must be an integer", x__json=image_change(id=[1]))
case("coco/image-id-beyond-int64", IMPORT, "images[0]: 'id' must be an integer (int64)", x__json=image_change(id=2**64))
case("coco/image-id-bool", IMPORT, "images[0]: 'id' must be an integer", x__json=image_change(id=True))
case("coco/image-height-zero", IMPORT, "images[0] (id 1): 'height' and 'width'", x__json=image_change(height=0))
case("coco/image-width-negative", IMPORT, "images[0] (id 1): 'height' and 'width'", x__json=image_change(width=-30))
case(
    "coco/image-width-float", IMPORT, "'height' and 'width' must be positive integers", x__json=image_change(width=30.5)
)
case("coco/image-height-string", IMPORT, "'height' and 'width'", x__json=image_change(height="20"))
case("coco/image-height-list", IMPORT, "'height' and 'width'", x__json=image_change(height=[20]))
case(
    "coco/image-1e9-by-1e9",
    IMPORT,
    "images[0] (id 1): declared size 1000000000 x 1000000000",
    x__json=image_change(height=10**9, width=10**9),
)
case("coco/image-2^40-by-1", IMPORT, "declared size 1099511627776 x 1", x__json=image_change(height=2**40, width=1))
case(
    "coco/image-width-2^31-no-annotations",
    IMPORT,
    "declared size 2 x 2147483648",
    x__json=mutated(lambda c: (c["images"][0].update(height=2, width=2**31), c.update(annotations=[]))),
)
case("coco/image-height-beyond-int64", IMPORT, "'height' and 'width'", x__json=image_change(height=2**70))
case(
    "coco/image-file-name-number",
    IMPORT,
    "images[0] (id 1): 'file_name' must be a string",
    x__json=image_change(file_name=7),
)
case("coco/image-file-name-list", IMPORT, "'file_name' must be a string", x__json=image_change(file_name=["a"]))
case(
    "coco/image-not-object",
    IMPORT,
    "images[0]: expected an object",
    x__json=mutated(lambda c: c["images"].append(3) or c["images"].reverse()),
)
case(
    "coco/duplicate-image-id",
    IMPORT,
    "duplicate image id 1",
    x__json=mutated(lambda c: c["images"].append(dict(c["images"][0], file_name="b.tif"))),
)
case(
    "coco/duplicate-image-stem",
    IMPORT,
    "several images share the file stem",
    x__json=mutated(lambda c: c["images"].append(dict(c["images"][0], id=2, file_name="sub/img.png"))),
)

# --- COCO import: categories ------------------------------------------------------------------
case(
    "coco/category-id-string",
    IMPORT,
    "categories[0]: expected an object with a 64-bit integer 'id'",
    x__json=mutated(lambda c: c["categories"][0].update(id="1")),
)
case(
    "coco/category-not-object",
    IMPORT,
    "categories[0]: expected an object",
    x__json=mutated(lambda c: c.update(categories=["nucleus"])),
)
case(
    "coco/category-name-null",
    IMPORT,
    "categories[0]: 'name' must be a string",
    x__json=mutated(lambda c: c["categories"][0].update(name=None)),
)
case(
    "coco/category-duplicate",
    IMPORT,
    "duplicate category id 1",
    x__json=mutated(lambda c: c["categories"].append({"id": 1, "name": "b"})),
)
case(
    "coco/category-id-beyond-int64",
    IMPORT,
    "categories[0]: expected an object with a 64-bit integer",
    x__json=mutated(lambda c: c["categories"][0].update(id=2**64)),
)
case(  # COCO ids start at 0 (napari-SAM4IS writes category 0; pycocotools loads it): valid
    "coco/category-id-zero",
    IMPORT,
    "",
    x__json=mutated(lambda c: (c["categories"][0].update(id=0), [a.update(category_id=0) for a in c["annotations"]])),
    accepted=True,
)
case(
    "coco/category-duplicate-name",
    IMPORT,
    "duplicate category name",
    x__json=mutated(lambda c: c["categories"].append({"id": 2, "name": "nucleus"})),
)
case(  # COCO defines no category colour; third-party tools write names or lists: ignored, kept in the file
    "coco/category-bad-color",
    IMPORT,
    "",
    x__json=mutated(lambda c: c["categories"][0].update(color="red")),
    accepted=True,
)
case(
    "coco/info-protocol-not-valid",
    IMPORT,
    "x.json: info.protocol",
    x__json=mutated(lambda c: c.update(info={"protocol": {"categories": 5}})),
)
case(
    "coco/info-protocol-missing-category",
    IMPORT,
    "are not in info.protocol",
    x__json=mutated(lambda c: c.update(info={"protocol": {"categories": [{"id": 9, "name": "x"}]}})),
)

# --- COCO import: annotations -----------------------------------------------------------------


def ann_change(index: int = 0, **values: Any) -> dict[str, Any]:
    return mutated(lambda c: c["annotations"][index].update(values))


def ann_drop(key: str) -> dict[str, Any]:
    return mutated(lambda c: c["annotations"][0].pop(key))


A0 = "annotations[0] (id 1)"
case(
    "ann/not-object",
    IMPORT,
    "annotations[2]: expected an object",
    x__json=mutated(lambda c: c["annotations"].append(None)),
)
case("ann/missing-id", IMPORT, "annotations[0] (id None): missing key 'id'", x__json=ann_drop("id"))
case("ann/missing-image-id", IMPORT, f"{A0}: missing key 'image_id'", x__json=ann_drop("image_id"))
case("ann/missing-category-id", IMPORT, f"{A0}: missing key 'category_id'", x__json=ann_drop("category_id"))
case("ann/missing-segmentation", IMPORT, f"{A0}: missing key 'segmentation'", x__json=ann_drop("segmentation"))
case("ann/id-string", IMPORT, "annotations[0] (id '1'): 'id' must be an integer", x__json=ann_change(id="1"))
case("ann/id-float", IMPORT, "'id' must be an integer", x__json=ann_change(id=1.5))
case("ann/id-beyond-int64", IMPORT, "'id' must be an integer (int64)", x__json=ann_change(id=2**63))
case("ann/id-duplicate", IMPORT, "annotations[1] (id 1): duplicate annotation id 1", x__json=ann_change(1, id=1))
case(
    "ann/category-id-list",
    IMPORT,
    f"{A0}: 'category_id' [1] is not a known category id",
    x__json=ann_change(category_id=[1]),
)
case(
    "ann/category-id-dict",
    IMPORT,
    "'category_id' {'id': 1} is not a known category id",
    x__json=ann_change(category_id={"id": 1}),
)
case(
    "ann/category-id-unknown",
    IMPORT,
    f"{A0}: 'category_id' 7 is not a known category id",
    x__json=ann_change(category_id=7),
)
case("ann/category-id-beyond-int64", IMPORT, "is not a known category id", x__json=ann_change(category_id=2**64))
case(
    "ann/category-id-true",
    IMPORT,
    "'category_id' True is not a known category id",
    x__json=ann_change(category_id=True),
)
case("ann/image-id-unknown", IMPORT, f"{A0}: 'image_id' 5 is not a known image id", x__json=ann_change(image_id=5))
case("ann/image-id-list", IMPORT, "'image_id' [1] is not a known image id", x__json=ann_change(image_id=[1]))
case("ann/image-id-beyond-int64", IMPORT, "is not a known image id", x__json=ann_change(image_id=2**64 + 1))
case(
    "ann/segmentation-null",
    IMPORT,
    f"{A0}: 'segmentation': expected a list of polygons or an RLE",
    x__json=ann_change(segmentation=None),
)
case(
    "ann/segmentation-string",
    IMPORT,
    "'segmentation': expected a list of polygons",
    x__json=ann_change(segmentation="x"),
)
case("ann/polygon-list-empty", IMPORT, "'segmentation': polygon list is empty", x__json=ann_change(segmentation=[]))
case("ann/polygon-two-points", IMPORT, "polygon 0 has 2 points", x__json=ann_change(segmentation=[[1, 1, 5, 5]]))
case(
    "ann/polygon-odd-length",
    IMPORT,
    "polygon 0 has 3.5 points",
    x__json=ann_change(segmentation=[[1, 1, 5, 5, 6, 6, 7]]),
)
case(
    "ann/polygon-not-numbers",
    IMPORT,
    "polygon 0 must be a flat list of finite numbers",
    x__json=ann_change(segmentation=[["a", 1, 2, 3, 4, 5]]),
)
case(
    "ann/polygon-nested",
    IMPORT,
    "polygon 0 must be a flat list",
    x__json=ann_change(segmentation=[[[1, 2], [3, 4], [5, 6]]]),
)
case(
    "ann/polygon-bool",
    IMPORT,
    "polygon 0 must be a flat list",
    x__json=ann_change(segmentation=[[True, 1, 2, 3, 4, 5]]),
)
case(
    "ann/polygon-infinity",
    IMPORT,
    "polygon 0 must be a flat list of finite numbers",
    x__json=b'{"images": [{"id": 1, "file_name": "a.tif", "height": 20, "width": 30}], "categories": [{"id": 1, "name": "n"}], "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[1, 1, Infinity, 5, 6, 6]]}]}',
)
case(
    "ann/polygon-nan",
    IMPORT,
    "must be a flat list of finite numbers",
    x__json=b'{"images": [{"id": 1, "file_name": "a.tif", "height": 20, "width": 30}], "categories": [{"id": 1, "name": "n"}], "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[1, 1, NaN, 5, 6, 6]]}]}',
)
case(
    "ann/polygon-1e9",
    IMPORT,
    f"{A0}: 'segmentation' polygon 0: vertex 1 (x=1e+09, y=2)",
    x__json=ann_change(segmentation=[[2, 2, 1e9, 2, 10, 10]]),
    subprocess=True,
)
case(
    "ann/polygon-1e8",
    IMPORT,
    "lies far outside image 1",
    x__json=ann_change(segmentation=[[2, 2, 1e8, 1e8, 10, 10]]),
    subprocess=True,
)
case(
    "ann/polygon-negative-4e8",
    IMPORT,
    "lies far outside image 1",
    x__json=ann_change(segmentation=[[2, 2, -4.3e8, 2, 10, 10]]),
    subprocess=True,
)
case(
    "ann/polygon-1e300", IMPORT, "lies far outside image 1", x__json=ann_change(segmentation=[[2, 2, 1e300, 2, 10, 10]])
)
case(
    "ann/polygon-zigzag-perimeter",
    IMPORT,
    "is too long to rasterise",
    x__json=ann_change(segmentation=[[v for k in range(60_000) for v in ((-25, 0) if k % 2 else (55, 40))]]),
)
case(
    "ann/amodal-polygon-far",
    IMPORT,
    "(amodal): 'segmentation' polygon 0: vertex",
    x__json=ann_change(amodal_segmentation=[[2, 2, 5e9, 2, 10, 10]]),
)
case(
    "ann/rle-size-mismatch",
    IMPORT,
    f"{A0}: 'segmentation': RLE size [10, 10] does not match image 1",
    x__json=ann_change(segmentation={"size": [10, 10], "counts": [100]}),
)
case(
    "ann/rle-size-string",
    IMPORT,
    "RLE size '20x30' does not match",
    x__json=ann_change(segmentation={"size": "20x30", "counts": [600]}),
)
case(
    "ann/rle-counts-sum-short",
    IMPORT,
    "RLE counts cover 599 pixels, but the image has 600",
    x__json=ann_change(segmentation={"size": [20, 30], "counts": [599]}),
)
case(
    "ann/rle-counts-negative",
    IMPORT,
    "uncompressed RLE 'counts' must be non-negative integers",
    x__json=ann_change(segmentation={"size": [20, 30], "counts": [700, -100]}),
)
case(
    "ann/rle-counts-float",
    IMPORT,
    "'counts' must be non-negative integers",
    x__json=ann_change(segmentation={"size": [20, 30], "counts": [300.5, 299.5]}),
)
case(
    "ann/rle-counts-huge-int",
    IMPORT,
    "'counts' must be non-negative integers",
    x__json=ann_change(segmentation={"size": [20, 30], "counts": [2**80]}),
)
case(
    "ann/rle-counts-dict",
    IMPORT,
    "RLE 'counts' must be a string or a list of integers, got dict",
    x__json=ann_change(segmentation={"size": [20, 30], "counts": {}}),
)
case(
    "ann/rle-counts-garbage-string",
    IMPORT,
    "'segmentation': compressed RLE 'counts' cannot be decoded",
    x__json=ann_change(segmentation={"size": [20, 30], "counts": "garbage"}),
)
case(
    "ann/rle-counts-unicode",
    IMPORT,
    "compressed RLE 'counts' cannot be decoded",
    x__json=ann_change(segmentation={"size": [20, 30], "counts": "\u00e9\u00e9"}),
)
case(
    "ann/rle-missing-counts",
    IMPORT,
    "expected a list of polygons or an RLE object",
    x__json=ann_change(segmentation={"size": [20, 30]}),
)
case(
    "ann/bbox-outside",
    IMPORT,
    f"{A0}: 'bbox' [25, 2, 10, 5] extends outside image 1",
    x__json=ann_change(bbox=[25, 2, 10, 5]),
)
case(
    "ann/bbox-three-numbers",
    IMPORT,
    "'bbox' must be [x, y, width, height] finite numbers",
    x__json=ann_change(bbox=[1, 2, 3]),
)
case("ann/bbox-strings", IMPORT, "'bbox' must be [x, y, width, height]", x__json=ann_change(bbox=["1", "2", "3", "4"]))
case("ann/bbox-negative-size", IMPORT, "extends outside image 1", x__json=ann_change(bbox=[5, 5, -3, 2]))
case("ann/iscrowd-two", IMPORT, f"{A0}: 'iscrowd' must be 0 or 1, got 2", x__json=ann_change(iscrowd=2))
case("ann/iscrowd-list", IMPORT, "'iscrowd' must be 0 or 1, got [1]", x__json=ann_change(iscrowd=[1]))
case("ann/iscrowd-string", IMPORT, "'iscrowd' must be 0 or 1, got '1'", x__json=ann_change(iscrowd="1"))
case("ann/occlusion-unknown", IMPORT, f"{A0}: 'occlusion' 'bogus' is not one of", x__json=ann_change(occlusion="bogus"))
case("ann/occlusion-list", IMPORT, "'occlusion' ['none'] is not one of", x__json=ann_change(occlusion=["none"]))
case(
    "ann/occluded-fraction-two",
    IMPORT,
    "'occluded_fraction' must be a number in [0, 1] or null, got 2",
    x__json=ann_change(occluded_fraction=2),
)
case(
    "ann/occluded-fraction-string",
    IMPORT,
    "'occluded_fraction' must be a number",
    x__json=ann_change(occluded_fraction="half"),
)
case(
    "ann/z-order-float", IMPORT, f"{A0}: 'z_order' must be an integer (int64), got 1.5", x__json=ann_change(z_order=1.5)
)
case("ann/z-order-beyond-int64", IMPORT, "'z_order' must be an integer (int64)", x__json=ann_change(z_order=2**70))
case("ann/z-order-list", IMPORT, "'z_order' must be an integer", x__json=ann_change(z_order=[1]))
case(
    "ann/instance-id-zero",
    IMPORT,
    "'instance_id' must be an integer in [1, 2**32 - 1], got 0",
    x__json=ann_change(instance_id=0),
)
case(
    "ann/instance-id-2^32",
    IMPORT,
    "'instance_id' must be an integer in [1, 2**32 - 1]",
    x__json=ann_change(instance_id=2**32),
)
case("ann/instance-id-string", IMPORT, "'instance_id' must be an integer", x__json=ann_change(instance_id="7"))
case(
    "ann/attributes-list", IMPORT, f"{A0}: 'attributes' must be an object, got list", x__json=ann_change(attributes=[1])
)
case(
    "ann/attributes-annotator-list",
    IMPORT,
    "'attributes.annotator' must be a string, number or boolean, got ['a', 'b']",
    x__json=ann_change(attributes={"annotator": ["a", "b"], "source": "sam2"}),
)
case(
    "ann/attributes-review-dict",
    IMPORT,
    "'attributes.review' must be a string, number or boolean",
    x__json=ann_change(attributes={"review": {"x": 1}}),
)
case(
    "ann/attributes-time-huge-int",
    IMPORT,
    "'attributes.time_s' must be a string, number or boolean",
    x__json=ann_change(attributes={"time_s": 2**70}),
)
case(
    "ann/attributes-review-unknown",
    IMPORT,
    "review",
    x__json=ann_change(instance_id=3, attributes={"review": "maybe", "source": "sam2"}),
)
case(
    "ann/attributes-time-not-number",
    IMPORT,
    "time_s",
    x__json=ann_change(instance_id=3, attributes={"time_s": "slow", "source": "sam2"}),
)
case(
    "ann/score-nan",
    IMPORT,
    f"{A0}: 'score' must be a finite number, got nan",
    x__json=b'{"images": [{"id": 1, "file_name": "a.tif", "height": 20, "width": 30}], "categories": [{"id": 1, "name": "n"}], "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "score": NaN, "segmentation": [[1, 1, 5, 1, 5, 5]]}]}',
)
case(
    "ann/deep-nesting-in-segmentation",
    IMPORT,
    "polygon 0 must be a flat list",
    x__json=ann_change(segmentation=[json.loads("[" * 500 + "]" * 500)]),
)
case(
    "ann/many-problems-listed",
    IMPORT,
    "... and",
    x__json=mutated(
        lambda c: c.update(annotations=[dict(c["annotations"][0], id=i, category_id=99) for i in range(40)])
    ),
)

# --- COCO import: output folder ---------------------------------------------------------------
case(
    "import/outdir-is-a-file",
    ["import", "{t}/x.json", "-o", "{t}/out"],
    "-o {t}/out is an existing file, not a folder",
    x__json=coco(),
    out=b"not a folder",
)
case(
    "import/outdir-holds-input-protocol",
    ["import", "{t}/d/protocol.json", "-o", "{t}/d"],
    "writing protocol.json would overwrite the input",
    d___protocol__json=coco(),
)
case(
    "import/outdir-holds-input-protocol-overwrite",
    ["import", "{t}/d/protocol.json", "-o", "{t}/d", "--overwrite"],
    "would overwrite the input",
    d___protocol__json=coco(),
)
case(
    "import/outdir-input-named-like-labels",
    ["import", "{t}/d/img_labels.tif", "-o", "{t}/d", "--overwrite"],
    "writing img_labels.tif would overwrite the input",
    d___img_labels__tif=json.dumps(coco()),
)
case(
    "import/outdir-holds-results",
    ["import", "{t}/x.json", "-o", "{t}/d"],
    "-o {t}/d already holds img_labels.tif; choose an empty folder or pass --overwrite",
    x__json=coco(),
    d___img_labels__tif=b"old",
)
case(
    "import/outdir-holds-protocol",
    ["import", "{t}/x.json", "-o", "{t}/d"],
    "already holds protocol.json",
    x__json=coco(),
    d___protocol__json=b"{}",
)
case(
    "import/outdir-under-a-file",
    ["import", "{t}/x.json", "-o", "{t}/f/sub"],
    "is a file, not a folder",
    x__json=coco(),
    f=b"",
)
case(
    "import/input-missing",
    ["import", "{t}/missing.json", "-o", "{t}/out"],
    "No such file or directory: {t}/missing.json",
)
case("import/input-is-folder", ["import", "{t}/d", "-o", "{t}/out"], "Is a directory: {t}/d", d__keep=b"")
case(
    "import/outdir-read-only-fs",
    ["import", "{t}/x.json", "-o", "/proc/napari-instseg-out"],
    "cannot write in folder /proc",
    x__json=coco(),
)

# --- export: label images ---------------------------------------------------------------------
EXPORT_TIF = ["export", "{t}/labels.tif", "-o", "{t}/out.json"]
EXPORT_NPY = ["export", "{t}/labels.npy", "-o", "{t}/out.json"]
case("labels/tif-empty-file", EXPORT_TIF, "labels.tif: the file is empty", labels__tif=b"")
case("labels/tif-not-a-tiff", EXPORT_TIF, "labels.tif: not a readable TIFF", labels__tif=b"hello, I am text")
case(
    "labels/tif-png-bytes", EXPORT_TIF, "labels.tif: not a readable TIFF", labels__tif=b"\x89PNG\r\n\x1a\n" + b"\0" * 64
)
case("labels/tif-truncated", EXPORT_TIF, "labels.tif", labels__tif=truncated(labels_tif, 0.3))
case("labels/tif-header-only", EXPORT_TIF, "labels.tif", labels__tif=truncated(labels_tif, 0.02))
case("labels/tif-declares-1e9-square", EXPORT_TIF, "labels.tif", labels__tif=tiff_with_header(10**9, 10**9))
case("labels/tif-declares-2^31-wide", EXPORT_TIF, "labels.tif", labels__tif=tiff_with_header(2**31, 1000))
case(
    "labels/tif-float",
    EXPORT_TIF,
    "a label image needs an integer dtype",
    labels__tif=lambda p: tifffile.imwrite(p, np.ones((5, 5), np.float32)),
)
case(
    "labels/tif-3d",
    EXPORT_TIF,
    "a label image must be 2-D",
    labels__tif=lambda p: tifffile.imwrite(p, np.ones((3, 5, 5), np.uint16)),
)
case(
    "labels/tif-negative",
    EXPORT_TIF,
    "values must lie in [0, 4294967295]",
    labels__tif=lambda p: tifffile.imwrite(p, np.full((5, 5), -3, np.int16)),
)
case(
    "labels/npy-pickled-object",
    EXPORT_NPY,
    "labels.npy: not a readable .npy array without pickle",
    labels__npy=array_file(np.array([{"a": 1}], dtype=object), allow_pickle=True),
)
case(
    "labels/npy-pickle-payload",
    EXPORT_NPY,
    "labels.npy: not a readable .npy",
    labels__npy=lambda p: p.write_bytes(pickle.dumps(_Evil())),
)
case("labels/npy-empty-file", EXPORT_NPY, "labels.npy: the file is empty", labels__npy=b"")
case("labels/npy-truncated", EXPORT_NPY, "labels.npy: not a readable .npy", labels__npy=truncated(labels_npy, 0.5))
case(
    "labels/npy-zero-size",
    EXPORT_NPY,
    "labels.npy: the label image is empty (shape (0, 0))",
    labels__npy=array_file(np.zeros((0, 0), np.uint32)),
)
case("labels/npy-1d", EXPORT_NPY, "a label image must be 2-D", labels__npy=array_file(np.ones(5, np.uint8)))
case(
    "labels/npy-int64-beyond-uint32",
    EXPORT_NPY,
    "values must lie in [0, 4294967295]",
    labels__npy=array_file(np.full((4, 4), 2**40, np.int64)),
)
case(
    "labels/npy-complex",
    EXPORT_NPY,
    "a label image needs an integer dtype",
    labels__npy=array_file(np.ones((4, 4), np.complex64)),
)
case("labels/npy-string-dtype", EXPORT_NPY, "labels.npy", labels__npy=array_file(np.array([["a", "b"]])))
case(
    "labels/npy-huge-header",
    EXPORT_NPY,
    "labels.npy",
    labels__npy=lambda p: p.write_bytes(
        b"\x93NUMPY\x01\x00v\x00{'descr': '<u4', 'fortran_order': False, 'shape': (1000000000, 1000000000), }"
        + b" " * 44
        + b"\n"
        + b"\0" * 64
    ),
)
case(
    "labels/png-suffix",
    ["export", "{t}/labels.png", "-o", "{t}/out.json"],
    "label images must be one of",
    labels__png=b"x",
)
case("labels/missing", EXPORT_TIF, "No such file or directory: {t}/labels.tif")

# --- export: output paths ---------------------------------------------------------------------
case(
    "export/output-is-the-input",
    ["export", "{t}/labels.tif", "-o", "{t}/labels.tif"],
    "-o {t}/labels.tif: the file name must end with",
    labels__tif=labels_tif,
)
case(
    "export/output-is-the-input-json-named",
    ["export", "{t}/labels.json", "-o", "{t}/labels.json"],
    "-o {t}/labels.json is the input {t}/labels.json; refusing to overwrite an input",
    labels__json=b"{}",
)
case(
    "export/output-is-the-table",
    ["export", "{t}/labels.tif", "-o", "{t}/t.json", "--table", "{t}/t.json"],
    "-o {t}/t.json is the input {t}/t.json",
    labels__tif=labels_tif,
    t__json=TABLE,
)
case(
    "export/output-is-the-protocol",
    ["export", "{t}/labels.tif", "-o", "{t}/p.json", "--protocol", "{t}/p.json"],
    "is the input {t}/p.json",
    labels__tif=labels_tif,
    p__json=PROTOCOL,
)
case(
    "export/output-is-a-hard-link-of-input",
    ["export", "{t}/labels.tif", "-o", "{t}/l.json", "--protocol", "{t}/p.json"],
    "is the input {t}/p.json",
    labels__tif=labels_tif,
    p__json=PROTOCOL,
    l__json=lambda p: os.link(p.parent / "p.json", p),
)
case(
    "export/output-txt",
    ["export", "{t}/labels.tif", "-o", "{t}/x.txt"],
    "-o {t}/x.txt: the file name must end with one of ['.json', '.geojson']",
    labels__tif=labels_tif,
)
case(
    "export/output-no-suffix",
    ["export", "{t}/labels.tif", "-o", "{t}/out"],
    "the file name must end with",
    labels__tif=labels_tif,
)
case(
    "export/output-existing-folder",
    ["export", "{t}/labels.tif", "-o", "{t}/out.json"],
    "-o {t}/out.json is an existing folder",
    labels__tif=labels_tif,
    out__json__keep=b"",
)
case(
    "export/output-folder-missing",
    ["export", "{t}/labels.tif", "-o", "{t}/nope/out.json"],
    "folder {t}/nope does not exist",
    labels__tif=labels_tif,
)
case(
    "export/output-under-a-file",
    ["export", "{t}/labels.tif", "-o", "{t}/f/out.json"],
    "{t}/f is a file, not a folder",
    labels__tif=labels_tif,
    f=b"",
)
case(
    "export/output-unwritable-fs",
    ["export", "{t}/labels.tif", "-o", "/proc/out.json"],
    "cannot write in folder /proc",
    labels__tif=labels_tif,
)
case(
    "export/per-tile-zero",
    ["export", "{t}/labels.tif", "-o", "{t}/o.json", "--per-tile", "0"],
    "argument --per-tile: expected a positive integer, got 0",
    labels__tif=labels_tif,
)
case(
    "export/per-tile-negative",
    ["export", "{t}/labels.tif", "-o", "{t}/o.json", "--per-tile", "-5"],
    "argument --per-tile: expected a positive integer",
    labels__tif=labels_tif,
)
case(
    "export/per-tile-not-int",
    ["export", "{t}/labels.tif", "-o", "{t}/o.json", "--per-tile", "big"],
    "argument --per-tile: expected a positive integer, got 'big'",
    labels__tif=labels_tif,
)
case(
    "export/per-tile-on-label-image",
    ["export", "{t}/labels.tif", "-o", "{t}/o.json", "--per-tile", "8"],
    "--per-tile applies to a slide store",
    labels__tif=labels_tif,
)
case(
    "export/format-unknown",
    ["export", "{t}/labels.tif", "-o", "{t}/o.json", "--format", "mask"],
    "argument --format: invalid choice",
    labels__tif=labels_tif,
)
case(
    "export/image-shape-mismatch",
    ["export", "{t}/labels.tif", "-o", "{t}/o.json", "--image", "{t}/im.tif"],
    "but image {t}/im.tif is (5, 5)",
    labels__tif=labels_tif,
    im__tif=lambda p: tifffile.imwrite(p, np.zeros((5, 5), np.uint8)),
)
case(
    "export/image-not-an-image",
    ["export", "{t}/labels.tif", "-o", "{t}/o.json", "--image", "{t}/im.png"],
    "{t}/im.png: not a readable image",
    labels__tif=labels_tif,
    im__png=b"text, not pixels",
)
case(
    "export/image-empty",
    ["export", "{t}/labels.tif", "-o", "{t}/o.json", "--image", "{t}/im.jpg"],
    "{t}/im.jpg: the file is empty",
    labels__tif=labels_tif,
    im__jpg=b"",
)

# --- export: tables ---------------------------------------------------------------------------
EXPORT_TABLE = ["export", "{t}/labels.tif", "-o", "{t}/o.json", "--table", "{t}/t.csv"]
case("table/empty-file", EXPORT_TABLE, "{t}/t.csv: the table is empty", labels__tif=labels_tif, t__csv=b"")
case(
    "table/not-utf8",
    EXPORT_TABLE,
    "{t}/t.csv: not UTF-8 text",
    labels__tif=labels_tif,
    t__csv=b"id,annotator\n1,\xff\xfe\n",
)
case("table/no-id-column", EXPORT_TABLE, "{t}/t.csv: no 'id' column", labels__tif=labels_tif, t__csv="category_id\n1\n")
case(
    "table/id-not-integer",
    EXPORT_TABLE,
    "instance ids must be integers",
    labels__tif=labels_tif,
    t__csv="id,category_id\nabc,1\n",
)
case("table/id-zero", EXPORT_TABLE, "instance ids must be >= 1", labels__tif=labels_tif, t__csv="id,category_id\n0,1\n")
case(
    "table/id-duplicate",
    EXPORT_TABLE,
    "duplicate instance id(s) [1]",
    labels__tif=labels_tif,
    t__csv="id,category_id\n1,1\n1,1\n",
)
case("table/id-beyond-uint32", EXPORT_TABLE, "does not fit uint32", labels__tif=labels_tif, t__csv="id\n5000000000\n")
case("table/id-beyond-int64", EXPORT_TABLE, "{t}/t.csv", labels__tif=labels_tif, t__csv="id\n99999999999999999999999\n")
case("table/occlusion-unknown", EXPORT_TABLE, "occlusion", labels__tif=labels_tif, t__csv="id,occlusion\n1,bogus\n")
case("table/review-unknown", EXPORT_TABLE, "review", labels__tif=labels_tif, t__csv="id,review\n1,maybe\n")
case("table/z-order-float", EXPORT_TABLE, "z_order", labels__tif=labels_tif, t__csv="id,z_order\n1,1.5\n")
case("table/iscrowd-word", EXPORT_TABLE, "iscrowd", labels__tif=labels_tif, t__csv="id,iscrowd\n1,maybe\n")
case("table/time-not-number", EXPORT_TABLE, "time_s", labels__tif=labels_tif, t__csv="id,time_s\n1,slow\n")
case("table/category-id-unknown", EXPORT_TABLE, "7", labels__tif=labels_tif, t__csv="id,category_id\n1,7\n")
case(
    "table/category-name-default-protocol",
    EXPORT_TABLE,
    "Category 'tumour' is not in protocol",
    labels__tif=labels_tif,
    t__csv="id,category\n1,tumour\n",
)
case(
    "table/category-name-unknown",
    [*EXPORT_TABLE, "--protocol", "{t}/p.json"],
    "Category 'tumour' is not in protocol",
    labels__tif=labels_tif,
    t__csv="id,category\n1,tumour\n",
    p__json=PROTOCOL,
)
case(
    "table/ragged-rows",
    EXPORT_TABLE,
    "{t}/t.csv: cannot read the CSV table",
    labels__tif=labels_tif,
    t__csv='id,category_id\n1,1\n2,1,5,6\n"unterminated',
)
case("table/binary-garbage", EXPORT_TABLE, "{t}/t.csv", labels__tif=labels_tif, t__csv=bytes(range(256)))

# --- protocols ---------------------------------------------------------------------------------
EXPORT_PROTOCOL = ["export", "{t}/labels.tif", "-o", "{t}/o.json", "--protocol", "{t}/p.json"]
EXPORT_PROTOCOL_YAML = ["export", "{t}/labels.tif", "-o", "{t}/o.json", "--protocol", "{t}/p.yaml"]
case(
    "protocol/empty-json",
    EXPORT_PROTOCOL,
    "{t}/p.json: the protocol file is empty",
    labels__tif=labels_tif,
    p__json=b"",
)
case(
    "protocol/empty-yaml",
    EXPORT_PROTOCOL_YAML,
    "{t}/p.yaml: the protocol file is empty",
    labels__tif=labels_tif,
    p__yaml=b"\n",
)
case(
    "protocol/not-utf8",
    EXPORT_PROTOCOL,
    "{t}/p.json: not UTF-8 text",
    labels__tif=labels_tif,
    p__json=b'{"name": "\xff"}',
)
case(
    "protocol/not-json",
    EXPORT_PROTOCOL,
    "{t}/p.json: cannot parse protocol file",
    labels__tif=labels_tif,
    p__json=b"{categories: }",
)
case(
    "protocol/yaml-invalid",
    EXPORT_PROTOCOL_YAML,
    "{t}/p.yaml: cannot parse protocol file",
    labels__tif=labels_tif,
    p__yaml=b"categories: [unclosed\n",
)
case(
    "protocol/deep-json",
    EXPORT_PROTOCOL,
    "{t}/p.json: cannot parse protocol file",
    labels__tif=labels_tif,
    p__json=deep_json(),
)
case(
    "protocol/deep-yaml",
    EXPORT_PROTOCOL_YAML,
    "{t}/p.yaml: cannot parse protocol file",
    labels__tif=labels_tif,
    p__yaml=b"[" * 5000 + b"]" * 5000,
)
case(
    "protocol/top-level-list",
    EXPORT_PROTOCOL,
    "{t}/p.json: expected a mapping, got list",
    labels__tif=labels_tif,
    p__json=[1],
)
case(
    "protocol/no-categories",
    EXPORT_PROTOCOL,
    "{t}/p.json: missing key 'categories'",
    labels__tif=labels_tif,
    p__json={"name": "x"},
)
case(
    "protocol/categories-not-list",
    EXPORT_PROTOCOL,
    "{t}/p.json.categories: expected a list",
    labels__tif=labels_tif,
    p__json={"categories": 5},
)
case(
    "protocol/categories-empty",
    EXPORT_PROTOCOL,
    "the taxonomy needs at least one category",
    labels__tif=labels_tif,
    p__json={"categories": []},
)
case(  # COCO ids start at 0: valid
    "protocol/category-id-zero",
    EXPORT_PROTOCOL,
    "",
    labels__tif=labels_tif,
    p__json={"categories": [{"id": 0, "name": "a"}]},
    accepted=True,
)
case(
    "protocol/category-id-negative",
    EXPORT_PROTOCOL,
    "p.json.categories[0].id: expected a non-negative integer (COCO ids from 0), got -1",
    labels__tif=labels_tif,
    p__json={"categories": [{"id": -1, "name": "a"}]},
)
case(
    "protocol/category-id-list",
    EXPORT_PROTOCOL,
    "categories[0].id: expected a non-negative integer (COCO ids from 0), got [1]",
    labels__tif=labels_tif,
    p__json={"categories": [{"id": [1], "name": "a"}]},
)
case(
    "protocol/category-id-beyond-int64",
    EXPORT_PROTOCOL,
    "p.json.categories[0].id: 1180591620717411303424 does not fit a 64-bit integer",
    labels__tif=labels_tif,
    p__json={"categories": [{"id": 2**70, "name": "a"}]},
)
case(
    "protocol/category-name-list",
    EXPORT_PROTOCOL,
    "categories[0].name: expected a non-empty string",
    labels__tif=labels_tif,
    p__json={"categories": [{"id": 1, "name": ["a"]}]},
)
case(
    "protocol/category-duplicate-name",
    EXPORT_PROTOCOL,
    "duplicate category name",
    labels__tif=labels_tif,
    p__json={"categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "a"}]},
)
case(
    "protocol/category-bad-color",
    EXPORT_PROTOCOL,
    "categories[0].color: expected '#rrggbb'",
    labels__tif=labels_tif,
    p__json={"categories": [{"id": 1, "name": "a", "color": "red"}]},
)
case(
    "protocol/unknown-key",
    EXPORT_PROTOCOL,
    "unknown key(s) ['colour']",
    labels__tif=labels_tif,
    p__json={"categories": [{"id": 1, "name": "a"}], "colour": 1},
)
case(
    "protocol/occlusion-rule-unknown",
    EXPORT_PROTOCOL,
    "occlusion_rule: 'sometimes' is not one of",
    labels__tif=labels_tif,
    p__json={"categories": [{"id": 1, "name": "a"}], "occlusion_rule": "sometimes"},
)
case(
    "protocol/rate-above-one",
    EXPORT_PROTOCOL,
    "expected a rate in [0, 1]",
    labels__tif=labels_tif,
    p__json={"categories": [{"id": 1, "name": "a"}], "qa_rates": {"none": 2}},
)
case(
    "protocol/tiers-nan",
    EXPORT_PROTOCOL,
    "cut-points must be finite numbers",
    labels__tif=labels_tif,
    p__json=b'{"categories": [{"id": 1, "name": "a"}], "tiers": {"none_max": NaN}}',
)
case(
    "protocol/tiers-list",
    EXPORT_PROTOCOL,
    "{t}/p.json.tiers: expected a mapping",
    labels__tif=labels_tif,
    p__json={"categories": [{"id": 1, "name": "a"}], "tiers": [0.1]},
)
case(
    "protocol/tiers-unknown-key",
    EXPORT_PROTOCOL,
    "{t}/p.json.tiers: unknown key(s)",
    labels__tif=labels_tif,
    p__json={"categories": [{"id": 1, "name": "a"}], "tiers": {"low": 0.1}},
)

# --- prelabel (classic backend: no model weights needed) ---------------------------------------
PRE = ["prelabel", "{t}/img.tif", "--backend", "classic", "-o", "{t}/o.json"]
PRE_POINTS = [*PRE, "--points", "{t}/p.csv"]
PRE_BOXES = [*PRE, "--boxes", "{t}/b.csv"]
case(
    "prelabel/image-text-as-png",
    ["prelabel", "{t}/img.png", "--backend", "classic", "-o", "{t}/o.json", "--points", "{t}/p.csv"],
    "{t}/img.png: not a readable image",
    img__png=b"I am not an image",
    p__csv=POINTS,
)
case("prelabel/image-empty-tif", PRE_POINTS, "{t}/img.tif: the file is empty", img__tif=b"", p__csv=POINTS)
case("prelabel/image-not-tiff", PRE_POINTS, "{t}/img.tif: not a readable TIFF", img__tif=b"GIF89a....", p__csv=POINTS)
case("prelabel/image-truncated-tif", PRE_POINTS, "{t}/img.tif", img__tif=truncated(image_tif, 0.4), p__csv=POINTS)
case(
    "prelabel/image-csv",
    ["prelabel", "{t}/p.csv", "--backend", "classic", "-o", "{t}/o.json", "--points", "{t}/p.csv"],
    "{t}/p.csv: not a readable image",
    p__csv=POINTS,
)
case(
    "prelabel/image-pickled-npy",
    ["prelabel", "{t}/img.npy", "--backend", "classic", "-o", "{t}/o.json", "--points", "{t}/p.csv"],
    "{t}/img.npy: not a readable .npy",
    img__npy=array_file(np.array([None]), allow_pickle=True),
    p__csv=POINTS,
)
case(
    "prelabel/image-1d-npy",
    ["prelabel", "{t}/img.npy", "--backend", "classic", "-o", "{t}/o.json", "--points", "{t}/p.csv"],
    "{t}/img.npy: the image has no pixels",
    img__npy=array_file(np.ones(5)),
    p__csv=POINTS,
)
case(
    "prelabel/image-zero-size-npy",
    ["prelabel", "{t}/img.npy", "--backend", "classic", "-o", "{t}/o.json", "--points", "{t}/p.csv"],
    "the image has no pixels (shape (0, 7))",
    img__npy=array_file(np.zeros((0, 7))),
    p__csv=POINTS,
)
case("prelabel/image-declares-1e9", PRE_POINTS, "{t}/img.tif", img__tif=tiff_with_header(10**9, 10**9), p__csv=POINTS)
case(
    "prelabel/image-5-channels",
    ["prelabel", "{t}/img.npy", "--backend", "classic", "-o", "{t}/o.json", "--points", "{t}/p.csv"],
    "{t}/img.npy: expected a grey (y, x) or RGB(A)",
    img__npy=array_file(np.zeros((20, 30, 5), np.uint8)),
    p__csv=POINTS,
)
case(
    "prelabel/image-folder",
    ["prelabel", "{t}/d.png", "--backend", "classic", "-o", "{t}/o.json", "--points", "{t}/p.csv"],
    "{t}/d.png",
    d__png__keep=b"",
    p__csv=POINTS,
)
case("prelabel/points-empty-file", PRE_POINTS, "{t}/p.csv: the file is empty", img__tif=image_tif, p__csv=b"")
case("prelabel/points-header-only", PRE_POINTS, "{t}/p.csv: no rows", img__tif=image_tif, p__csv="y,x\n")
case(
    "prelabel/points-not-utf8", PRE_POINTS, "{t}/p.csv: not UTF-8 text", img__tif=image_tif, p__csv=b"y,x\n\xff\xfe,1\n"
)
case(
    "prelabel/points-missing-column",
    PRE_POINTS,
    "{t}/p.csv: missing column(s) ['x']",
    img__tif=image_tif,
    p__csv="y,z\n1,2\n",
)
case(
    "prelabel/points-not-number",
    PRE_POINTS,
    "{t}/p.csv: row 2 (line in file), column 'x': 'five' is not a number",
    img__tif=image_tif,
    p__csv="y,x\n1,five\n",
)
case(
    "prelabel/points-label-half",
    PRE_POINTS,
    "{t}/p.csv: row 2 (line in file), column 'label': 0.5 is not 1 (positive) or 0",
    img__tif=image_tif,
    p__csv="y,x,label\n1,2,0.5\n",
)
case(
    "prelabel/points-label-two",
    PRE_POINTS,
    "column 'label': 2 is not 1 (positive) or 0",
    img__tif=image_tif,
    p__csv="y,x,label\n1,2,2\n",
)
case(
    "prelabel/points-label-word",
    PRE_POINTS,
    "column 'label': 'yes' is not 1",
    img__tif=image_tif,
    p__csv="y,x,label\n1,2,yes\n",
)
case(
    "prelabel/points-label-empty",
    PRE_POINTS,
    "row 3 (line in file), column 'label'",
    img__tif=image_tif,
    p__csv="y,x,label\n1,2,1\n3,4,\n",
)
case(
    "prelabel/points-infinite",
    PRE_POINTS,
    "{t}/p.csv: row 2 (line in file), column 'y': inf is not finite",
    img__tif=image_tif,
    p__csv="y,x\ninf,2\n",
)
case(
    "prelabel/points-minus-infinite",
    PRE_POINTS,
    "column 'x': -inf is not finite",
    img__tif=image_tif,
    p__csv="y,x\n1,-inf\n",
)
case("prelabel/points-nan", PRE_POINTS, "column 'y': nan is not a number", img__tif=image_tif, p__csv="y,x\nnan,2\n")
case(
    "prelabel/points-only-negative",
    PRE_POINTS,
    "{t}/p.csv: object 0: A prompt needs at least one positive point",
    img__tif=image_tif,
    p__csv="y,x,label\n1,2,0\n",
)
case(
    "prelabel/boxes-missing-column",
    PRE_BOXES,
    "{t}/b.csv: missing column(s) ['y1']",
    img__tif=image_tif,
    b__csv="x0,y0,x1\n1,2,3\n",
)
case(
    "prelabel/boxes-infinite",
    PRE_BOXES,
    "{t}/b.csv: row 2 (line in file), column 'x1': inf is not finite",
    img__tif=image_tif,
    b__csv="x0,y0,x1,y1\n1,2,inf,5\n",
)
case(
    "prelabel/boxes-no-area",
    PRE_BOXES,
    "{t}/b.csv: row 2 (line in file): box [3, 2, 3, 9] has no area",
    img__tif=image_tif,
    b__csv="x0,y0,x1,y1\n3,2,3,9\n",
)
case(
    "prelabel/boxes-text",
    PRE_BOXES,
    "{t}/b.csv: row 2 (line in file), column 'x0'",
    img__tif=image_tif,
    b__csv="x0,y0,x1,y1\na,b,c,d\n",
)
case(
    "prelabel/output-txt",
    [*PRE_POINTS[:5], "{t}/o.txt", *PRE_POINTS[6:]],
    "-o {t}/o.txt: the file name must end with one of ['.json']",
    img__tif=image_tif,
    p__csv=POINTS,
)
case(
    "prelabel/output-is-points-csv",
    ["prelabel", "{t}/img.tif", "--backend", "classic", "-o", "{t}/p.json", "--points", "{t}/p.json"],
    "-o {t}/p.json is the input {t}/p.json",
    img__tif=image_tif,
    p__json=POINTS,
)
case(
    "prelabel/output-existing-folder",
    PRE_POINTS,
    "-o {t}/o.json is an existing folder",
    img__tif=image_tif,
    p__csv=POINTS,
    o__json__keep=b"",
)
case(
    "prelabel/output-folder-missing",
    [*PRE_POINTS[:5], "{t}/no/o.json", *PRE_POINTS[6:]],
    "folder {t}/no does not exist",
    img__tif=image_tif,
    p__csv=POINTS,
)
case(
    "prelabel/output-unwritable",
    [*PRE_POINTS[:5], "/proc/o.json", *PRE_POINTS[6:]],
    "cannot write in folder /proc",
    img__tif=image_tif,
    p__csv=POINTS,
)
case(
    "prelabel/category-unknown-name",
    [*PRE_POINTS, "--category", "tumour"],
    "Category 'tumour' is not in protocol",
    img__tif=image_tif,
    p__csv=POINTS,
)
case("prelabel/category-unknown-id", [*PRE_POINTS, "--category", "9"], "9", img__tif=image_tif, p__csv=POINTS)
case(
    "prelabel/protocol-bad",
    [*PRE_POINTS, "--protocol", "{t}/pr.json"],
    "{t}/pr.json: missing key 'categories'",
    img__tif=image_tif,
    p__csv=POINTS,
    pr__json={},
)
case(
    "prelabel/backend-unknown",
    ["prelabel", "{t}/img.tif", "--backend", "magic", "-o", "{t}/o.json", "--points", "{t}/p.csv"],
    "argument --backend: invalid choice",
    img__tif=image_tif,
    p__csv=POINTS,
)

# --- checkpoints (SAM 2 backend; the file is refused before any model runs) --------------------
PRE_SAM = [
    "prelabel",
    "{t}/img.tif",
    "--backend",
    "sam2",
    "--checkpoint",
    "{t}/w.pt",
    "-o",
    "{t}/o.json",
    "--points",
    "{t}/p.csv",
]
case("checkpoint/missing", PRE_SAM, "SAM 2 checkpoint {t}/w.pt does not exist", img__tif=image_tif, p__csv=POINTS)
case(
    "checkpoint/empty-file",
    PRE_SAM,
    "Cannot load SAM 2 checkpoint {t}/w.pt",
    img__tif=image_tif,
    p__csv=POINTS,
    w__pt=b"",
)
case(
    "checkpoint/text-file",
    PRE_SAM,
    "Cannot load SAM 2 checkpoint {t}/w.pt",
    img__tif=image_tif,
    p__csv=POINTS,
    w__pt=b"this is not a checkpoint",
)
case(
    "checkpoint/pickled-code",
    PRE_SAM,
    "it is not a weights-only torch checkpoint",
    img__tif=image_tif,
    p__csv=POINTS,
    w__pt=torch_file(lambda: {"model": _Evil()}),
)
case(
    "checkpoint/wrong-keys",
    PRE_SAM,
    "Cannot load SAM 2 checkpoint {t}/w.pt",
    img__tif=image_tif,
    p__csv=POINTS,
    w__pt=torch_file(lambda: {"model": {"not.a.weight": __import__("torch").zeros(2)}}),
)
case(
    "checkpoint/truncated",
    PRE_SAM,
    "Cannot load SAM 2 checkpoint {t}/w.pt",
    img__tif=image_tif,
    p__csv=POINTS,
    w__pt=truncated(torch_file(lambda: {"model": {"a": __import__("torch").zeros(64)}}), 0.5),
)
case("checkpoint/folder", PRE_SAM, "{t}/w.pt", img__tif=image_tif, p__csv=POINTS, w__pt__keep=b"")
case(
    "checkpoint/model-size-unknown",
    [*PRE_SAM, "--model", "huge"],
    "argument --model: invalid choice",
    img__tif=image_tif,
    p__csv=POINTS,
)

# --- prelabel-slide -------------------------------------------------------------------------------
SLIDE = ["prelabel-slide", "{t}/s.zarr", "--store", "{t}/out.zarr", "--backend", "classic", "--points", "{t}/p.csv"]
SLIDE_TIF = [
    "prelabel-slide",
    "{t}/s.ome.tif",
    "--store",
    "{t}/out.zarr",
    "--backend",
    "classic",
    "--points",
    "{t}/p.csv",
]
case(
    "slide/tile-negative",
    [*SLIDE, "--tile", "-5"],
    "argument --tile: expected a positive integer, got -5",
    s__zarr=zarr_slide,
    p__csv=POINTS,
)
case(
    "slide/tile-zero",
    [*SLIDE, "--tile", "0"],
    "argument --tile: expected a positive integer, got 0",
    s__zarr=zarr_slide,
    p__csv=POINTS,
)
case(
    "slide/halo-negative",
    [*SLIDE, "--halo", "-1"],
    "argument --halo: expected an integer >= 0",
    s__zarr=zarr_slide,
    p__csv=POINTS,
)
case(
    "slide/workers-zero",
    [*SLIDE, "--workers", "0"],
    "argument --workers: expected a positive integer",
    s__zarr=zarr_slide,
    p__csv=POINTS,
)
case("slide/missing", SLIDE, "{t}/s.zarr does not exist", p__csv=POINTS)
case("slide/folder-not-zarr", SLIDE, "{t}/s.zarr", s___zarr__readme=b"hello", p__csv=POINTS)
case(
    "slide/missing-pyramid-level",
    SLIDE,
    "{t}/s.zarr: cannot open the slide",
    s__zarr=lambda p: zarr_slide(p, drop_level=True),
    p__csv=POINTS,
)
case(
    "slide/truncated-chunks",
    [*SLIDE[:6], "--detect"],
    "{t}/s.zarr: cannot read level",
    s__zarr=lambda p: zarr_slide(p, truncate_chunk=True),
    may_write=("out.zarr",),
)
case(
    "slide/truncated-chunks-points",
    SLIDE,
    "{t}/s.zarr: cannot read level 0 region",
    s__zarr=lambda p: zarr_slide(p, truncate_chunk=True),
    p__csv=POINTS,
    may_write=("out.zarr",),
)
case(
    "slide/ome-tiff-garbage",
    SLIDE_TIF,
    "{t}/s.ome.tif: cannot open the slide",
    s__ome__tif=b"II*\x00garbage",
    p__csv=POINTS,
)
case("slide/ome-tiff-empty", SLIDE_TIF, "{t}/s.ome.tif: cannot open the slide", s__ome__tif=b"", p__csv=POINTS)
case(
    "slide/ome-tiff-truncated",
    SLIDE_TIF,
    "{t}/s.ome.tif",
    s__ome__tif=truncated(ome_tiff_slide, 0.05),
    p__csv=POINTS,
    may_write=("out.zarr",),
)
case(
    "slide/ome-tiff-corrupt-tiles",
    SLIDE_TIF,
    "{t}/s.ome.tif: cannot read level 0 region",
    s__ome__tif=lambda p: ome_tiff_slide(p, corrupt_tiles=True),
    p__csv=POINTS,
    may_write=("out.zarr",),
)
case(
    "slide/unknown-suffix",
    ["prelabel-slide", "{t}/s.png", "--store", "{t}/out.zarr", "--backend", "classic", "--points", "{t}/p.csv"],
    "{t}/s.png: not a zarr folder or a TIFF / SVS file",
    s__png=b"x",
    p__csv=POINTS,
)
case(
    "slide/point-outside",
    SLIDE,
    "{t}/p.csv: prompt 1 (in file order): Point (y=500, x=5) is outside the image (height 64, width 96)",
    s__zarr=zarr_slide,
    p__csv="y,x\n500,5\n",
)
case(
    "slide/box-outside",
    ["prelabel-slide", "{t}/s.zarr", "--store", "{t}/out.zarr", "--backend", "classic", "--boxes", "{t}/b.csv"],
    "{t}/b.csv: prompt 1 (in file order): Box",
    s__zarr=zarr_slide,
    b__csv="x0,y0,x1,y1\n1000,1000,1010,1010\n",
)
case(
    "slide/points-infinite",
    SLIDE,
    "{t}/p.csv: row 2 (line in file), column 'x': inf is not finite",
    s__zarr=zarr_slide,
    p__csv="y,x\n1,inf\n",
)
case(
    "slide/points-label-half", SLIDE, "column 'label': 0.5 is not 1", s__zarr=zarr_slide, p__csv="y,x,label\n1,1,0.5\n"
)
case(
    "slide/store-is-a-file",
    SLIDE,
    "--store {t}/out.zarr is an existing file",
    s__zarr=zarr_slide,
    p__csv=POINTS,
    out__zarr=b"file",
)
case(
    "slide/store-is-the-slide",
    ["prelabel-slide", "{t}/s.zarr", "--store", "{t}/s.zarr", "--backend", "classic", "--points", "{t}/p.csv"],
    "--store {t}/s.zarr is the slide itself",
    s__zarr=zarr_slide,
    p__csv=POINTS,
)

# --- QA ----------------------------------------------------------------------------------------
QA = ["qa", "--gt", "{t}/gt.json", "--dt", "{t}/dt.json", "-o", "{t}/qa"]


def dt_change(index: int = 0, **values: Any) -> list[dict[str, Any]]:
    data = results()
    data[index].update(values)
    return data


DT0 = "candidates (DT) [0]"
case("qa/dt-not-json", QA, "{t}/dt.json: not valid JSON", gt__json=coco(), dt__json=b"[{")
case("qa/dt-empty", QA, "{t}/dt.json: the file is empty", gt__json=coco(), dt__json=b"")
case("qa/dt-not-utf8", QA, "{t}/dt.json: not UTF-8 text", gt__json=coco(), dt__json=b'["\xff"]')
case("qa/dt-deep", QA, "{t}/dt.json: JSON nested too deeply", gt__json=coco(), dt__json=deep_json())
case(
    "qa/dt-a-number",
    QA,
    "candidates (DT) is not a valid COCO instances file (1 problem(s)):\n  - top level: expected a list of results or a COCO object, got int",
    gt__json=coco(),
    dt__json=5,
)
case("qa/dt-entry-not-object", QA, f"{DT0}: expected an object, got str", gt__json=coco(), dt__json=["x"])
case(
    "qa/dt-missing-score",
    QA,
    f"{DT0}: missing key 'score'",
    gt__json=coco(),
    dt__json=[{k: v for k, v in results()[0].items() if k != "score"}],
)
case(
    "qa/dt-score-nan",
    QA,
    f"{DT0}: 'score' must be a finite number, got nan",
    gt__json=coco(),
    dt__json=b'[{"image_id": 1, "category_id": 1, "segmentation": [[2, 2, 9, 2, 9, 9]], "score": NaN}]',
)
case(
    "qa/dt-score-infinity",
    QA,
    f"{DT0}: 'score' must be a finite number, got inf",
    gt__json=coco(),
    dt__json=b'[{"image_id": 1, "category_id": 1, "segmentation": [[2, 2, 9, 2, 9, 9]], "score": Infinity}]',
)
case(
    "qa/dt-score-string",
    QA,
    f"{DT0}: 'score' must be a finite number, got '0.9'",
    gt__json=coco(),
    dt__json=dt_change(score="0.9"),
)
case(
    "qa/dt-image-unknown",
    QA,
    f"{DT0}: 'image_id' 9 is not in the reference",
    gt__json=coco(),
    dt__json=dt_change(image_id=9),
)
case(
    "qa/dt-image-id-list",
    QA,
    f"{DT0}: 'image_id' [1] is not in the reference",
    gt__json=coco(),
    dt__json=dt_change(image_id=[1]),
)
case(
    "qa/dt-category-list",
    QA,
    f"{DT0}: 'category_id' [1] is not in the reference",
    gt__json=coco(),
    dt__json=dt_change(category_id=[1]),
)
case(
    "qa/dt-rle-wrong-size",
    QA,
    f"{DT0}: 'segmentation': RLE size [10, 10] does not match image 1",
    gt__json=coco(),
    dt__json=dt_change(segmentation={"size": [10, 10], "counts": [100]}),
)
case(
    "qa/dt-rle-counts-short",
    QA,
    f"{DT0}: 'segmentation': RLE counts cover 10 pixels, but the image has 600",
    gt__json=coco(),
    dt__json=dt_change(segmentation={"size": [20, 30], "counts": [10]}),
)
case(
    "qa/dt-rle-garbage-counts",
    QA,
    f"{DT0}: 'segmentation'",
    gt__json=coco(),
    dt__json=dt_change(segmentation={"size": [20, 30], "counts": "!!!"}),
)
case(
    "qa/dt-polygon-1e9",
    QA,
    f"{DT0}: 'segmentation' polygon 0: vertex 1 (x=1e+09, y=2) lies far outside image 1",
    gt__json=coco(),
    dt__json=dt_change(segmentation=[[2, 2, 1e9, 2, 9, 9]]),
    subprocess=True,
)
case(
    "qa/dt-coco-wrong-image-size",
    QA,
    "candidates (DT): image 1 is 40 x 30 (height x width), but 20 x 30 in the reference",
    gt__json=coco(),
    dt__json=mutated(lambda c: (c["images"][0].update(height=40), c.update(annotations=[]))),
)
case(
    "qa/dt-coco-invalid",
    QA,
    "candidates (DT) is not a valid COCO instances file",
    gt__json=coco(),
    dt__json=ann_change(category_id=[1]),
)
case(
    "qa/gt-polygon-1e9",
    QA,
    "reference (GT) is not a valid COCO instances file (1 problem(s)):\n  - annotations[0] (id 1): 'segmentation' polygon 0: vertex 1",
    gt__json=ann_change(segmentation=[[2, 2, 1e9, 2, 9, 9]]),
    dt__json=results(),
    subprocess=True,
)
case("qa/gt-not-json", QA, "{t}/gt.json: not valid JSON", gt__json=b"nope", dt__json=results())
case(
    "qa/gt-huge-image",
    QA,
    "declared size 1000000000 x 1000000000",
    gt__json=image_change(height=10**9, width=10**9),
    dt__json=results(),
)
case(
    "qa/gt-category-list",
    QA,
    "'category_id' [1] is not a known category id",
    gt__json=ann_change(category_id=[1]),
    dt__json=results(),
)
case(
    "qa/max-dets-zero",
    [*QA, "--max-dets", "0"],
    "argument --max-dets: expected a positive integer, got 0",
    gt__json=coco(),
    dt__json=results(),
)
case(
    "qa/max-dets-negative",
    [*QA, "--max-dets", "-1"],
    "argument --max-dets: expected a positive integer, got -1",
    gt__json=coco(),
    dt__json=results(),
)
case(
    "qa/seed-negative",
    [*QA, "--seed", "-3"],
    "argument --seed: expected an integer >= 0",
    gt__json=coco(),
    dt__json=results(),
)
case(
    "qa/outcomes-garbage",
    [*QA, "--outcomes", "{t}/r.json"],
    "{t}/r.json: not",
    gt__json=coco(),
    dt__json=results(),
    r__json=b"\x00garbage\x01",
)
case(
    "qa/outcomes-empty",
    [*QA, "--outcomes", "{t}/r.json"],
    "{t}/r.json: the file is empty",
    gt__json=coco(),
    dt__json=results(),
    r__json=b"",
)
case(
    "qa/outcomes-no-items",
    [*QA, "--outcomes", "{t}/r.json"],
    "{t}/r.json: expected an object with an 'items' list",
    gt__json=coco(),
    dt__json=results(),
    r__json={"queue": []},
)
case(
    "qa/outcomes-items-not-list",
    [*QA, "--outcomes", "{t}/r.json"],
    "expected an object with an 'items' list",
    gt__json=coco(),
    dt__json=results(),
    r__json={"items": 5},
)
case(
    "qa/outcomes-item-not-object",
    [*QA, "--outcomes", "{t}/r.json"],
    "{t}/r.json: items[0] is not a review item",
    gt__json=coco(),
    dt__json=results(),
    r__json={"items": [3]},
)
case(
    "qa/outcomes-bad-verdict",
    [*QA, "--outcomes", "{t}/r.json"],
    "{t}/r.json: item ann_id 1 has outcome 'maybe'",
    gt__json=coco(),
    dt__json=results(),
    r__json={"items": [{"ann_id": 1, "outcome": "maybe"}]},
)
case(
    "qa/outcomes-verdict-list",
    [*QA, "--outcomes", "{t}/r.json"],
    "items[0] (ann_id 1): 'outcome' must be a single value",
    gt__json=coco(),
    dt__json=results(),
    r__json={"items": [{"ann_id": 1, "outcome": ["pass"]}]},
)
case(
    "qa/outdir-is-a-file",
    QA,
    "-o {t}/qa is an existing file, not a folder",
    gt__json=coco(),
    dt__json=results(),
    qa=b"file",
)
case(
    "qa/outdir-holds-verdicts",
    QA,
    "already holds review_queue.json; choose an empty folder or pass --overwrite",
    gt__json=coco(),
    dt__json=results(),
    qa___review_queue__json={"items": [{"ann_id": 1, "outcome": "fail"}]},
)
case(
    "qa/outdir-is-the-gt-folder-input",
    ["qa", "--gt", "{t}/qa/report.json", "--dt", "{t}/dt.json", "-o", "{t}/qa"],
    "writing report.json would overwrite the input",
    qa___report__json=coco(),
    dt__json=results(),
)
case(
    "qa/images-is-a-file",
    [*QA, "--images", "{t}/gt.json"],
    "--images {t}/gt.json is not a folder",
    gt__json=coco(),
    dt__json=results(),
)
case(
    "qa/stratify-unknown",
    [*QA, "--stratify-by", "colour"],
    "argument --stratify-by: invalid choice",
    gt__json=coco(),
    dt__json=results(),
)

# --- agreement ---------------------------------------------------------------------------------
case(
    "agreement/a-invalid",
    ["agreement", "{t}/a.json", "{t}/b.json", "-o", "{t}/o.json"],
    "{t}/a.json: not valid JSON",
    a__json=b"{",
    b__json=coco(),
)
case(
    "agreement/b-bad-category",
    ["agreement", "{t}/a.json", "{t}/b.json", "-o", "{t}/o.json"],
    "'category_id' [1] is not a known category id",
    a__json=coco(),
    b__json=ann_change(category_id=[1]),
)
case(
    "agreement/output-is-input",
    ["agreement", "{t}/a.json", "{t}/b.json", "-o", "{t}/b.json"],
    "-o {t}/b.json is the input {t}/b.json",
    a__json=coco(),
    b__json=coco(),
)
case(
    "agreement/output-txt",
    ["agreement", "{t}/a.json", "{t}/b.json", "-o", "{t}/o.txt"],
    "the file name must end with one of ['.json']",
    a__json=coco(),
    b__json=coco(),
)

# --- demo ----------------------------------------------------------------------------------------
case(
    "demo/outdir-is-a-file",
    ["demo", "--headless", "-o", "{t}/demo"],
    "-o {t}/demo is an existing file, not a folder",
    demo=b"x",
)

case(
    "fetch-weights/dest-is-a-file",
    ["fetch-weights", "tiny", "--dest", "{t}/w"],
    "--dest {t}/w is an existing file, not a folder",
    w=b"x",
)
case("fetch-weights/size-unknown", ["fetch-weights", "huge"], "argument size: invalid choice")

# --- the napari reader (File > Open) -----------------------------------------------------------


def read_with_napari_reader(path: Path) -> Any:
    from napari_instseg._reader import get_reader

    reader = get_reader(str(path / "x.json"))
    assert reader is not None
    return reader(str(path / "x.json"))


case(
    "reader/polygon-1e9",
    None,
    "lies far outside image 1",
    x__json=ann_change(segmentation=[[2, 2, 1e9, 2, 9, 9]]),
    call=read_with_napari_reader,
    subprocess=True,
)
case(
    "reader/deep-nesting", None, "nested too deeply", x__json=b'{"images": ' + deep_json(), call=read_with_napari_reader
)
case(  # a malformed COCO object is claimed (not declined in silence): its import names the problem
    "reader/images-not-list",
    None,
    "'images' is not a list",
    x__json=mutated(lambda c: c.update(images={})),
    call=read_with_napari_reader,
)
case(
    "reader/category-list",
    None,
    "'category_id' [1] is not a known category id",
    x__json=ann_change(category_id=[1]),
    call=read_with_napari_reader,
)
case(
    "reader/huge-image",
    None,
    "declared size 1099511627776 x 1",
    x__json=image_change(height=2**40, width=1),
    call=read_with_napari_reader,
)

# --- GeoJSON import (Python API) ---------------------------------------------------------------


def geojson_call(collection: Any, shape_yx: Any = (20, 30), *, protocol: bool = True) -> Callable[[Path], Any]:
    """geojson_to_labels (the default protocol given), or import_geojson with a protocol built from the file."""

    def call(_path: Path) -> Any:
        from napari_instseg.core.geojson import geojson_to_labels, import_geojson

        return geojson_to_labels(collection, shape_yx) if protocol else import_geojson(collection, shape_yx)

    return call


def feature(coordinates: Any = None, properties: Any = None, kind: str = "Polygon") -> dict[str, Any]:
    ring = [[2, 2], [10, 2], [10, 10], [2, 10], [2, 2]]
    return {
        "type": "Feature",
        "geometry": {"type": kind, "coordinates": [ring] if coordinates is None else coordinates},
        "properties": {} if properties is None else properties,
    }


def fc(*features: Any) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": list(features)}


def geojson_kept(document: Any, instance_ids: list[int | None], protocol: bool = True) -> Callable[[Path], Any]:
    """An accepted document: imported, with these instance ids per feature (None: passed through)."""

    def call(_path: Path) -> Any:
        from napari_instseg.core.geojson import import_geojson
        from napari_instseg.core.protocol import AnnotationProtocol

        imported = import_geojson(document, (20, 30), AnnotationProtocol.default() if protocol else None)
        assert imported.instance_ids == instance_ids, imported.instance_ids
        features = document if isinstance(document, list) else document.get("features", [document])
        assert imported.features == features
        return imported

    return call


def geojson_file_call(name: str) -> Callable[[Path], Any]:
    def call(path: Path) -> Any:
        from napari_instseg.core.geojson import import_geojson

        return import_geojson(path / name, (20, 30))

    return call


case(
    "geojson/not-a-collection",
    None,
    "expected a GeoJSON FeatureCollection, a Feature or a JSON array of features, got 'Polygon'",
    call=geojson_call({"type": "Polygon", "coordinates": []}),
)
case("geojson/top-level-number", None, "GeoJSON: expected a GeoJSON FeatureCollection", call=geojson_call(5))
# QuPath exports: a single Feature, a plain array, features without geometry, Points: kept, never an error
case("geojson/single-feature-without-geometry", None, "", call=geojson_kept({"type": "Feature"}, [None]), accepted=True)
case("geojson/plain-array", None, "", call=geojson_kept([feature(), feature()], [1, 2]), accepted=True)
case(
    "geojson/array-feature-null",
    None,
    "GeoJSON: features[1]: expected a Feature object, got None",
    call=geojson_call([feature(), None]),
)
case(
    "geojson/geometry-string",
    None,
    "features[0].geometry: expected a geometry object or null, got 'abc'",
    call=geojson_call(fc({"type": "Feature", "geometry": "abc"})),
)
case(
    "geojson/point-coordinates-garbage",
    None,
    "",
    call=geojson_kept(fc(feature(["a", None], kind="Point"), feature()), [None, 1]),
    accepted=True,
)
case(
    "geojson/file-deep-nesting",
    None,
    "x.geojson: JSON nested too deeply",
    x__geojson=b'{"type": "FeatureCollection", "features": ' + deep_json(),
    call=geojson_file_call("x.geojson"),
)
case(
    "geojson/file-not-json",
    None,
    "x.geojson: not valid JSON (line 1",
    x__geojson=b'{"type": ',
    call=geojson_file_call("x.geojson"),
)
case(
    "geojson/features-not-list",
    None,
    "GeoJSON: 'features' must be a list, got dict",
    call=geojson_call({"type": "FeatureCollection", "features": {}}),
)
case(
    "geojson/features-string",
    None,
    "'features' must be a list, got str",
    call=geojson_call({"type": "FeatureCollection", "features": "abc"}),
)
case("geojson/feature-null", None, "features[0]: expected a Feature object, got None", call=geojson_call(fc(None)))
case(  # a feature without geometry is kept as it came (QuPath writes such objects)
    "geojson/geometry-missing",
    None,
    "",
    call=geojson_kept(fc({"type": "Feature"}, feature()), [None, 1]),
    accepted=True,
)
case(  # QuPath's calibration Points: kept, passed through on export
    "geojson/geometry-point",
    None,
    "",
    call=geojson_kept(fc(feature([1, 2], kind="Point"), feature([[0, 0], [5, 5]], kind="LineString")), [None, None]),
    accepted=True,
)
case(
    "geojson/coordinates-null",
    None,
    "features[0].geometry.coordinates: expected a non-empty list",
    call=geojson_call(fc(feature(coordinates=None) | {"geometry": {"type": "Polygon", "coordinates": None}})),
)
case(
    "geojson/coordinates-strings",
    None,
    "features[0].geometry.coordinates[0][0]: expected [x, y] finite numbers, got ['a', 'b']",
    call=geojson_call(fc(feature([[["a", "b"], [1, 1], [2, 2]]]))),
)
case(
    "geojson/coordinates-nan",
    None,
    "features[0].geometry.coordinates[0][1]: expected [x, y] finite numbers, got [nan, 1]",
    call=geojson_call(fc(feature([[[1, 1], [float("nan"), 1], [5, 5]]]))),
)
case(
    "geojson/coordinates-infinite",
    None,
    "expected [x, y] finite numbers, got [inf, 1]",
    call=geojson_call(fc(feature([[[1, 1], [float("inf"), 1], [5, 5]]]))),
)
case(
    "geojson/ring-two-points",
    None,
    "features[0].geometry.coordinates[0]: a ring needs at least 3 [x, y] points",
    call=geojson_call(fc(feature([[[1, 1], [5, 5]]]))),
)
case(
    "geojson/ring-flat-numbers",
    None,
    "coordinates[0][0]: expected [x, y] finite numbers, got 1",
    call=geojson_call(fc(feature([[1, 2, 3, 4, 5, 6]]))),
)
case(
    "geojson/multipolygon-wrong-depth",
    None,
    "features[0].geometry.coordinates[0][0]: a ring needs at least 3",
    call=geojson_call(fc(feature([[[1, 1], [5, 1], [5, 5]]], kind="MultiPolygon"))),
)
case(
    "geojson/instance-id-string",
    None,
    "features[0].properties.instance_id: expected an integer in [1, 2**32 - 1], got 'abc'",
    call=geojson_call(fc(feature(properties={"instance_id": "abc"}))),
)
case(
    "geojson/instance-id-float",
    None,
    "properties.instance_id: expected an integer",
    call=geojson_call(fc(feature(properties={"instance_id": 1.5}))),
)
case(
    "geojson/instance-id-negative",
    None,
    "properties.instance_id: expected an integer in [1, 2**32 - 1], got -3",
    call=geojson_call(fc(feature(properties={"instance_id": -3}))),
)
case(
    "geojson/instance-id-2^40",
    None,
    "properties.instance_id",
    call=geojson_call(fc(feature(properties={"instance_id": 2**40}))),
)
case(
    "geojson/instance-id-duplicate",
    None,
    "features[1].properties.instance_id: 4 is also the id of features[0]",
    call=geojson_call(fc(feature(properties={"instance_id": 4}), feature(properties={"instance_id": 4}))),
)
case(  # ids kept where given; the others numbered after the largest given id
    "geojson/instance-id-collides-with-auto",
    None,
    "",
    call=geojson_kept(fc(feature(), feature(properties={"instance_id": 1})), [2, 1]),
    accepted=True,
)
case(
    "geojson/instance-id-zero",
    None,
    "features[0].properties.instance_id: expected an integer in [1, 2**32 - 1], got 0",
    call=geojson_call(fc(feature(properties={"instance_id": 0}))),
)
case(
    "geojson/instance-id-2^32",
    None,
    "features[0].properties.instance_id: expected an integer in [1, 2**32 - 1], got 4294967296",
    call=geojson_call(fc(feature(properties={"instance_id": 2**32}))),
)
case(
    "geojson/instance-id-bool",
    None,
    "features[0].properties.instance_id: expected an integer in [1, 2**32 - 1], got True",
    call=geojson_call(fc(feature(properties={"instance_id": True}))),
)
case(
    "geojson/category-id-string",
    None,
    "features[0].properties.category_id: 'x' is not a category of the protocol",
    call=geojson_call(fc(feature(properties={"category_id": "x"}))),
)
case(
    "geojson/category-id-unknown",
    None,
    "properties.category_id: 9 is not a category",
    call=geojson_call(fc(feature(properties={"category_id": 9}))),
)
case(
    "geojson/category-id-string-no-protocol",
    None,
    "features[0].properties.category_id: expected a non-negative integer, got 'x'",
    call=geojson_call(fc(feature(properties={"category_id": "x"})), protocol=False),
)
case(
    "geojson/classification-unknown",
    None,
    "features[0].properties.classification: class 'tumour' is not in the protocol (classes: ['nucleus'])",
    call=geojson_call(fc(feature(properties={"classification": {"name": "tumour"}}))),
)
case(  # a string classification is QuPath's too; a class the given protocol lacks is still refused
    "geojson/classification-string",
    None,
    "features[0].properties.classification: class 'tumour' is not in the protocol",
    call=geojson_call(fc(feature(properties={"classification": "tumour"}))),
)
case(
    "geojson/classification-string-known",
    None,
    "",
    call=geojson_kept(fc(feature(properties={"classification": "nucleus"})), [1]),
    accepted=True,
)
case(
    "geojson/classification-number",
    None,
    "features[0].properties.classification: expected a class name or an object with a name, got 5",
    call=geojson_call(fc(feature(properties={"classification": 5}))),
)
case(
    "geojson/classification-name-list",
    None,
    "features[0].properties.classification: expected a class name or an object with a name",
    call=geojson_call(fc(feature(properties={"classification": {"name": ["a"]}}))),
)
case(
    "geojson/properties-list",
    None,
    "features[0].properties: expected an object",
    call=geojson_call(fc(feature(properties=[1]))),
)
case(
    "geojson/z-order-float",
    None,
    "features[0].properties.z_order: expected an integer (int64), got 1.5",
    call=geojson_call(fc(feature(properties={"z_order": 1.5}))),
)
case(
    "geojson/annotator-list",
    None,
    "features[0].properties.annotator: expected a string, number or boolean",
    call=geojson_call(fc(feature(properties={"annotator": ["a"]}))),
)
case(
    "geojson/z-order-beyond-int64",
    None,
    "features[0].properties.z_order: expected an integer (int64), got 1180591620717411303424",
    call=geojson_call(fc(feature(properties={"z_order": 2**70}))),
)
case(
    "geojson/iscrowd-object",
    None,
    "features[0].properties.iscrowd: expected a string, number or boolean",
    call=geojson_call(fc(feature(properties={"iscrowd": {"a": 1}}))),
)
case(
    "geojson/properties-string-point",
    None,
    "features[0].properties: expected an object, got 'abc'",
    call=geojson_call(fc(feature([1, 2], properties="abc", kind="Point"))),
)
case(
    "geojson/multipolygon-empty-part",
    None,
    "features[0].geometry.coordinates[0]: expected a non-empty list of rings",
    call=geojson_call(fc(feature([[]], kind="MultiPolygon"))),
)
case("geojson/occlusion-unknown", None, "occlusion", call=geojson_call(fc(feature(properties={"occlusion": "bogus"}))))
case("geojson/shape-huge", None, "needs", call=geojson_call(fc(feature()), (10**9, 10**9)))
case(
    "geojson/shape-negative", None, "shape_yx must be two positive integers", call=geojson_call(fc(feature()), (-5, 10))
)

# --- the CLI itself ----------------------------------------------------------------------------
case("cli/unknown-command", ["explode"], "argument COMMAND: invalid choice")
case(
    "cli/export-missing-output",
    ["export", "{t}/labels.tif"],
    "the following arguments are required: -o/--output",
    labels__tif=labels_tif,
)


# --------------------------------------------------------------------------------------------
# running a case


def _write_files(root: Path, files: dict[str, Any]) -> None:
    for name, content in files.items():
        if name.endswith(".keep"):  # a folder
            (root / name.removesuffix(".keep")).mkdir(parents=True, exist_ok=True)
            continue
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if callable(content):
            content(path)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        elif isinstance(content, str):
            path.write_text(content, encoding="utf-8")
        else:
            path.write_text(json.dumps(content), encoding="utf-8")


def _snapshot(root: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if any(rel == s or rel.startswith(s + "/") for s in skip):
            continue
        out[rel] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return out


_CHILD = """
import sys, json
sys.setrecursionlimit(10000)
from napari_instseg.cli import main
if sys.argv[1] == "--call":
    import importlib.util, pathlib
    spec = importlib.util.spec_from_file_location("cases", sys.argv[2])
    module = importlib.util.module_from_spec(spec)
    sys.modules["cases"] = module
    spec.loader.exec_module(module)
    case = next(c for c in module.CASES if c.id == sys.argv[3])
    from napari_instseg.core.errors import InstsegError
    try:
        case.call(pathlib.Path(sys.argv[4]))
    except InstsegError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    sys.exit(0)
sys.exit(main(sys.argv[1:]))
"""


def _run_subprocess(case: Case, root: Path, argv: list[str] | None) -> tuple[int, str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parents[2] / "src"), *sys.path]))
    args = argv if argv is not None else ["--call", __file__, case.id, str(root)]
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, *args], capture_output=True, text=True, timeout=120, env=env, check=False
    )
    return done.returncode, done.stderr


def _run(case: Case, root: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    argv = None if case.argv is None else [a.replace("{t}", str(root)) for a in case.argv]
    if case.subprocess:
        return _run_subprocess(case, root, argv)
    if argv is None:
        assert case.call is not None
        try:
            case.call(root)
        except InstsegError as exc:
            return 2, f"error: {exc}"
        return 0, ""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse: usage error
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input_is_refused_clearly_and_nothing_changes(case: Case, tmp_path: Path, capsys, request) -> None:
    root = tmp_path / "case"
    root.mkdir()
    _write_files(root, case.files)
    capsys.readouterr()
    before = _snapshot(root)
    code, err = _run(case, root, capsys)
    if case.accepted:  # valid input now: it goes in, and no input is touched
        request.node.user_properties.append(("accepted", True))
        after = _snapshot(root)
        assert code == 0, f"exit status {code}, stderr:\n{err}"
        assert {k: after.get(k) for k in before} == before, "files changed (an input)"
        return
    after = _snapshot(root, skip=case.may_write)
    assert code == 2, f"exit status {code}, stderr:\n{err}"
    assert code >= 0, f"crashed with signal {-code}"
    assert "Traceback" not in err, err
    fragment = case.fragment.replace("{t}", str(root))
    assert fragment in err, f"{fragment!r} not in:\n{err}"
    assert after == {k: v for k, v in before.items() if k not in case.may_write}, "files changed"


def test_the_table_is_large_and_covers_every_input_kind() -> None:
    assert len(CASES) >= 150
    assert len({c.id for c in CASES}) == len(CASES)
    kinds = {c.id.split("/")[0] for c in CASES}
    assert {"coco", "ann", "labels", "table", "protocol", "prelabel", "checkpoint", "slide", "qa", "geojson"} <= kinds
