"""Bounded hypothesis fuzz of COCO import and GeoJSON import: whatever the input, the only
exception is the project's error type (never a TypeError, a segfault or a huge allocation).

Inputs are valid files with one value replaced by an arbitrary JSON value (the shape of the
bugs hypothesis found before: ``category_id: [1]``, ``attributes.annotator: [..]``, width
2**31), plus wholly arbitrary JSON. Declared image sizes are kept either small or beyond
what any machine allocates, so a bug cannot make CI allocate gigabytes.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from napari_instseg.core.coco import import_coco
from napari_instseg.core.errors import InstsegError
from napari_instseg.core.geojson import geojson_to_labels

FUZZ = settings(
    max_examples=250,
    deadline=5000,  # ms per example: a slow path (a huge allocation) fails loudly; slack for loaded CI
    derandomize=True,  # the same examples in CI every run
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)

LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, -1, 2**31, 2**32, 2**63, 10**9, 1e9, 4.3e8, 1e300]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
)
JSON = st.recursive(
    LEAF,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=16,
)


def base_coco() -> dict[str, Any]:
    return {
        "images": [
            {"id": 1, "file_name": "a.tif", "height": 24, "width": 32},
            {"id": 2, "file_name": "b.tif", "height": 16, "width": 16},
        ],
        "categories": [{"id": 1, "name": "nucleus"}, {"id": 2, "name": "mitosis", "supercategory": "cell"}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "segmentation": [[2, 2, 12, 2, 12, 12, 2, 12]],
                "bbox": [2, 2, 10, 10],
                "iscrowd": 0,
                "z_order": 1,
                "occlusion": "partial",
                "occluded_fraction": 0.2,
                "instance_id": 4,
                "attributes": {"annotator": "a", "source": "sam2", "review": "accepted", "time_s": 1.5},
            },
            {
                "id": 2,
                "image_id": 1,
                "category_id": 2,
                "segmentation": {"size": [24, 32], "counts": [40, 10, 718]},
                "iscrowd": 1,
            },
            {"id": 3, "image_id": 2, "category_id": 1, "segmentation": [[1, 1, 8, 1, 8, 8]]},
        ],
    }


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            out += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            out += _paths(item, (*prefix, index))
    return out


COCO_PATHS = _paths(base_coco())


def _replace(data: Any, path: tuple[Any, ...], value: Any) -> Any:
    data = copy.deepcopy(data)
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return data


def _sizes_are_safe(coco: Any) -> bool:
    """Small images, or declared sizes no machine could allocate (refused by validation)."""
    images = coco.get("images") if isinstance(coco, dict) else None
    for image in images if isinstance(images, list) else []:
        if not isinstance(image, dict):
            continue
        h, w = image.get("height"), image.get("width")
        ints = isinstance(h, int) and isinstance(w, int) and not isinstance(h, bool) and not isinstance(w, bool)
        if ints and 4096 < h * w <= 2**32 - 1:
            return False
    return True


def _import_or_project_error(coco: Any) -> None:
    with contextlib.suppress(InstsegError):
        import_coco(coco, source="fuzz")


@FUZZ
@given(path=st.sampled_from(COCO_PATHS), value=JSON)
def test_coco_import_with_one_value_replaced(path, value) -> None:
    coco = _replace(base_coco(), path, value)
    assume(_sizes_are_safe(coco))
    _import_or_project_error(coco)


@FUZZ
@given(
    edits=st.lists(st.tuples(st.sampled_from(COCO_PATHS), JSON), min_size=2, max_size=4),
    height=st.one_of(st.integers(1, 64), st.integers(2**32, 2**45)),
    width=st.one_of(st.integers(1, 64), st.integers(2**32, 2**45)),
)
def test_coco_import_with_several_values_and_sizes_replaced(edits, height, width) -> None:
    coco = base_coco()
    coco["images"][0].update(height=height, width=width)
    for path, value in edits:
        try:
            coco = _replace(coco, path, value)
        except (KeyError, IndexError, TypeError):  # an earlier edit removed the path
            continue
    assume(_sizes_are_safe(coco))
    _import_or_project_error(coco)


@FUZZ
@given(coco=st.dictionaries(st.sampled_from(["images", "annotations", "categories", "info"]), JSON, max_size=4))
def test_coco_import_of_arbitrary_json(coco) -> None:
    assume(_sizes_are_safe(coco))
    _import_or_project_error(coco)


def base_geojson() -> dict[str, Any]:
    ring = [[2, 2], [10, 2], [10, 10], [2, 10], [2, 2]]
    hole = [[4, 4], [6, 4], [6, 6], [4, 6], [4, 4]]
    return {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [ring, hole]},
                "properties": {
                    "instance_id": 3,
                    "category_id": 1,
                    "z_order": 1,
                    "occlusion": "none",
                    "classification": {"name": "nucleus"},
                },
            },
            {
                "type": "Feature",
                "geometry": {"type": "MultiPolygon", "coordinates": [[[[8, 8], [14, 8], [14, 14]]]]},
                "properties": {"annotator": "b"},
            },
        ],
    }


GEOJSON_PATHS = _paths(base_geojson())


@FUZZ
@given(edits=st.lists(st.tuples(st.sampled_from(GEOJSON_PATHS), JSON), min_size=1, max_size=3))
def test_geojson_import_with_values_replaced(edits) -> None:
    collection = base_geojson()
    for path, value in edits:
        try:
            collection = _replace(collection, path, value)
        except (KeyError, IndexError, TypeError):
            continue
    with contextlib.suppress(InstsegError):
        geojson_to_labels(collection, (16, 16))


@FUZZ
@given(collection=JSON, shape=st.tuples(st.integers(-2, 40), st.integers(-2, 40)))
def test_geojson_import_of_arbitrary_json(collection, shape) -> None:
    with contextlib.suppress(InstsegError):
        geojson_to_labels({"type": "FeatureCollection", "features": collection}, shape)


@pytest.mark.parametrize("shape", [(10**9, 10**9), (2**40, 1)])
def test_geojson_huge_shape_is_refused_before_allocating(shape) -> None:
    with pytest.raises(InstsegError, match="needs"):
        geojson_to_labels(base_geojson(), shape)
