"""One compositing and tie rule for the whole project (``occlusion.paint_order``): a larger
``z_order`` is in front; on equal ``z_order`` the smaller area; on equal area too, the smaller
id. Pinned for the function itself and for every place that composites: ``composite_by_depth``,
COCO import, GeoJSON import and the annotation session.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from napari_instseg.core.coco import import_coco
from napari_instseg.core.geojson import geojson_to_labels
from napari_instseg.core.occlusion import composite_by_depth, paint_order


def _front(z, area, ids) -> int:
    return int(np.asarray(ids)[paint_order(z, area, ids)[-1]])


def test_paint_order_is_a_permutation_back_to_front():
    z, area, ids = [0, 2, 1, 1], [10, 5, 7, 3], [4, 1, 3, 2]
    order = paint_order(z, area, ids)
    assert sorted(order.tolist()) == [0, 1, 2, 3]
    assert [ids[k] for k in order] == [4, 3, 2, 1]  # z 0; z 1: larger area first; z 2 in front


def test_larger_z_order_wins_whatever_the_area_and_id():
    assert _front([1, 0], [1000, 1], [9, 1]) == 9


def test_equal_z_order_smaller_area_wins_whatever_the_id():
    assert _front([0, 0], [5, 50], [9, 1]) == 9
    assert _front([0, 0], [50, 5], [1, 9]) == 9


def test_equal_z_order_and_area_smaller_id_wins_whatever_the_input_order():
    for ids in itertools.permutations([7, 3, 5]):
        assert _front([2, 2, 2], [10, 10, 10], list(ids)) == 3


def test_negative_z_and_huge_values_are_ordered_exactly():
    assert _front([-(2**62), 2**62], [1, 1], [1, 2]) == 2
    assert _front([0, 0], [2**40, 2**40 - 1], [1, 2]) == 2


def test_paint_order_refuses_arrays_of_different_lengths():
    with pytest.raises(ValueError, match="three 1-D arrays of one length"):
        paint_order([0, 1], [1], [1, 2])


def _disk(shape, centre, radius):
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def test_composite_by_depth_follows_the_rule():
    shape = (40, 40)
    big, small = _disk(shape, (20, 20), 12), _disk(shape, (20, 20), 4)
    labels = composite_by_depth(np.stack([big, small]), [1, 2], [0, 0])
    assert labels[20, 20] == 2  # equal z: the smaller (nested) one stays visible
    labels = composite_by_depth(np.stack([big, small]), [1, 2], [1, 0])
    assert labels[20, 20] == 1  # z_order first
    same = _disk(shape, (20, 20), 6)
    assert composite_by_depth(np.stack([same, same]), [8, 3], [0, 0])[20, 20] == 3  # then the id


# --- COCO import ------------------------------------------------------------------------------


def _square(x0, y0, x1, y1):
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def _coco(annotations, height=20, width=20):
    return {
        "images": [{"id": 1, "file_name": "a.tif", "height": height, "width": width}],
        "categories": [{"id": 1, "name": "n"}],
        "annotations": [
            {"id": i + 1, "image_id": 1, "category_id": 1, "segmentation": seg, **extra}
            for i, (seg, extra) in enumerate(annotations)
        ],
    }


def test_coco_import_nested_smaller_object_stays_visible_in_either_file_order():
    big, small = (_square(0, 0, 16, 16), {}), (_square(4, 4, 8, 8), {})
    for anns in ([big, small], [small, big]):
        labels = import_coco(_coco(anns)).images[0].labels_yx
        small_id = 2 if anns[1] is small else 1
        assert labels[6, 6] == small_id
        assert labels[1, 1] == 3 - small_id


def test_coco_import_z_order_beats_area():
    labels = import_coco(
        _coco([(_square(0, 0, 16, 16), {"z_order": 3}), (_square(4, 4, 8, 8), {"z_order": 1})])
    ).images[0]
    assert labels.labels_yx[6, 6] == 1
    assert labels.hidden_ids == (2,)


def test_coco_import_equal_area_ties_go_to_the_smaller_instance_id():
    same = _square(2, 2, 10, 10)
    coco = _coco([(same, {"instance_id": 9}), (same, {"instance_id": 4})])
    labels = import_coco(coco).images[0].labels_yx
    assert labels[5, 5] == 4


def test_coco_import_three_way_overlap_is_resolved_pixel_by_pixel():
    # A (z 0, large), B (z 0, medium), C (z 1, small) overlap in one region: C, then B, then A.
    a, b, c = _square(0, 0, 15, 15), _square(5, 5, 15, 15), _square(8, 8, 12, 12)
    item = import_coco(_coco([(a, {}), (b, {}), (c, {"z_order": 1})])).images[0]
    labels = item.labels_yx
    assert labels[2, 2] == 1  # only A
    assert labels[6, 6] == 2  # A and B: B is smaller
    assert labels[10, 10] == 3  # A, B and C: C has the larger z_order
    assert item.overlap_px == int(((labels == 2) | (labels == 3)).sum())
    assert item.hidden_ids == ()


def test_coco_import_duplicate_instance_ids_are_renumbered_not_merged():
    coco = _coco([(_square(0, 0, 5, 5), {"instance_id": 7}), (_square(10, 10, 15, 15), {"instance_id": 7})])
    item = import_coco(coco).images[0]
    ids = sorted(int(i) for i in np.unique(item.labels_yx) if i)
    assert len(ids) == 2 and len(item.table) == 2
    assert sorted(item.table.index.tolist()) == ids


# --- GeoJSON import ---------------------------------------------------------------------------


def _feature(x0, y0, x1, y1, **properties):
    ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
    return {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]}, "properties": properties}


def test_geojson_import_nested_smaller_object_stays_visible_in_either_file_order():
    big, small = _feature(0, 0, 16, 16, instance_id=1), _feature(4, 4, 8, 8, instance_id=2)
    for features in ([big, small], [small, big]):
        labels, _ = geojson_to_labels({"type": "FeatureCollection", "features": features}, (20, 20))
        assert labels[6, 6] == 2 and labels[1, 1] == 1


def test_geojson_import_z_order_beats_area_and_ties_go_to_the_smaller_id():
    big, small = _feature(0, 0, 16, 16, instance_id=1, z_order=2), _feature(4, 4, 8, 8, instance_id=2)
    labels, _ = geojson_to_labels({"type": "FeatureCollection", "features": [small, big]}, (20, 20))
    assert labels[6, 6] == 1
    first, second = _feature(2, 2, 10, 10, instance_id=9), _feature(2, 2, 10, 10, instance_id=4)
    labels, _ = geojson_to_labels({"type": "FeatureCollection", "features": [first, second]}, (20, 20))
    assert labels[5, 5] == 4


# --- the annotation session -------------------------------------------------------------------


def test_session_recomposite_follows_the_rule_on_equal_z_order():
    from napari_instseg.core.session import AnnotationSession

    shape = (40, 40)
    session = AnnotationSession(np.zeros(shape, np.uint32))
    big = session.commit(_disk(shape, (20, 20), 12), amodal=True).instance_id
    small = session.commit(_disk(shape, (20, 20), 4), amodal=True).instance_id
    session.set_z_order(big, 0)
    session.set_z_order(small, 0)
    assert session.labels_yx[20, 20] == small  # equal z: the smaller (nested) one in front


def test_session_recomposite_z_order_wins():
    from napari_instseg.core.session import AnnotationSession

    shape = (40, 40)
    session = AnnotationSession(np.zeros(shape, np.uint32))
    big = session.commit(_disk(shape, (20, 20), 12), amodal=True).instance_id
    small = session.commit(_disk(shape, (20, 20), 4), amodal=True).instance_id
    session.set_z_order(big, 5)
    session.set_z_order(small, 1)
    assert session.labels_yx[20, 20] == big
    session.set_z_order(small, 6)
    assert session.labels_yx[20, 20] == small
