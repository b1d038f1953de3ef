"""One place per rule: id allocation for imports, the registry of names."""

import numpy as np

from napari_instseg.core.geojson import geojson_to_labels
from napari_instseg.core.instances import IdAllocator


def _square(y0, x0, side, instance_id=None):
    ring = [[x0, y0], [x0 + side, y0], [x0 + side, y0 + side], [x0, y0 + side], [x0, y0]]
    properties = {} if instance_id is None else {"instance_id": instance_id}
    return {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]}, "properties": properties}


def test_allocator_keeps_given_ids_and_numbers_the_rest_above_them():
    assert IdAllocator().assign([None, 5, None, 2]) == [6, 5, 7, 2]
    allocator = IdAllocator(10)
    assert allocator.assign([None]) == [10] and allocator.next_id == 11


def test_geojson_feature_without_id_never_takes_a_later_given_id():
    collection = {"type": "FeatureCollection", "features": [_square(2, 2, 6), _square(12, 12, 6, instance_id=1)]}
    labels, table = geojson_to_labels(collection, (24, 24))
    assert sorted(table.index.tolist()) == [1, 2]  # before: both were id 1, one row lost
    assert set(np.unique(labels).tolist()) == {0, 1, 2}


def test_cli_choices_come_from_the_registry():
    from napari_instseg.cli import _build_parser
    from napari_instseg.core.prompting.registry import BACKENDS, MODEL_SIZES

    sub = next(a for a in _build_parser()._actions if a.dest == "command")
    prelabel = sub.choices["prelabel"]
    options = {a.dest: a for a in prelabel._actions}
    assert tuple(options["backend"].choices) == BACKENDS
    assert tuple(options["model"].choices) == MODEL_SIZES


def test_tile_origin_is_yx_and_old_xy_files_still_read():
    from napari_instseg.core.coords import tile_origin_record, tile_origin_yx

    record = {"id": 1, **tile_origin_record((256, 512))}
    assert record["tile_origin"] == [256, 512] and tile_origin_yx(record) == (256, 512)
    assert tile_origin_yx({"id": 2, "tile_origin": [512, 256]}) == (256, 512)  # 0.1.0 wrote [x, y]
