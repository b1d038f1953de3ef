"""COCO import: lossless round trip, overlap resolution, and bad input named precisely."""

import copy
import json

import numpy as np
import pandas as pd
import pytest
from pycocotools import mask as mask_utils

from napari_instseg.core.coco import AnnotatedImage, export_coco, import_coco, save_coco
from napari_instseg.core.errors import CocoFormatError


def test_import_of_export_is_identity(tmp_path, labels_and_table, protocol):
    labels, table = labels_and_table
    table = table.assign(stain_batch=["b1", "b2", "b1", "b3"])  # an extra column survives too
    second = np.flipud(labels).copy()
    path = tmp_path / "a.json"
    images = [AnnotatedImage(labels, table, "a.png"), AnnotatedImage(second, table, "b.png")]
    save_coco(export_coco(images, protocol).coco, path)
    imported = import_coco(path)
    assert imported.protocol == protocol
    assert imported.overlap_px == 0
    for item, original in zip(imported.images, (labels, second), strict=False):
        np.testing.assert_array_equal(item.labels_yx, original)
        assert item.labels_yx.dtype == np.uint32
        pd.testing.assert_frame_equal(item.table, table)
    assert [im.image["file_name"] for im in imported.images] == ["a.png", "b.png"]


def test_polygon_export_imports_to_the_same_instances(labels_and_table, protocol):
    labels, table = labels_and_table
    coco = export_coco([AnnotatedImage(labels, table, "a.png")], protocol, segmentation="polygon").coco
    item = import_coco(coco).images[0]
    assert sorted(np.unique(item.labels_yx).tolist()) == [0, 3, 9, 12, 40]
    for instance_id in (3, 9, 12, 40):
        truth, got = labels == instance_id, item.labels_yx == instance_id
        assert (truth & got).sum() / (truth | got).sum() > 0.9


def _foreign_coco(segmentations, z_orders=None):
    """A COCO file as another tool writes it: no instance_id, no attributes of ours."""
    anns = []
    for k, seg in enumerate(segmentations):
        ann = {"id": 100 + k, "image_id": 5, "category_id": 2, "segmentation": seg, "iscrowd": 0}
        if z_orders is not None:
            ann["z_order"] = z_orders[k]
        anns.append(ann)
    return {
        "images": [{"id": 5, "file_name": "x.jpg", "height": 20, "width": 30}],
        "categories": [{"id": 2, "name": "cell", "supercategory": "thing"}],
        "annotations": anns,
    }


def _square(y0, x0, size, shape=(20, 30)):
    mask = np.zeros(shape, np.uint8)
    mask[y0 : y0 + size, x0 : x0 + size] = 1
    return mask


def _uncompressed(mask):
    flat = np.asfortranarray(mask).ravel(order="F")
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate(([0], change, [flat.size]))
    counts = np.diff(bounds).tolist()
    if flat[0] == 1:
        counts = [0, *counts]
    return {"size": list(mask.shape), "counts": counts}


def _compressed(mask):
    encoded = mask_utils.encode(np.asfortranarray(mask))
    return {"size": encoded["size"], "counts": encoded["counts"].decode()}


def test_overlaps_go_to_higher_z_then_smaller_area_and_are_counted():
    big, small = _square(2, 2, 10), _square(6, 6, 4)  # small lies inside big: 16 px overlap
    polygon = [[20.0, 2.0, 28.0, 2.0, 28.0, 10.0, 20.0, 10.0]]
    coco = _foreign_coco([_compressed(big), _uncompressed(small), polygon])
    item = import_coco(coco).images[0]
    # same z_order (0): the smaller area owns the overlap
    assert item.overlap_px == 16
    assert np.count_nonzero(item.labels_yx == 2) == 16 and np.count_nonzero(item.labels_yx == 1) == 84
    assert item.table.index.tolist() == [1, 2, 3]
    assert (item.table["source"] == "import").all() and (item.table["category_id"] == 2).all()
    # a higher z_order wins over a smaller area
    coco_z = _foreign_coco([_compressed(big), _uncompressed(small), polygon], z_orders=[5, 0, 0])
    item_z = import_coco(coco_z).images[0]
    assert np.count_nonzero(item_z.labels_yx == 1) == 100 and item_z.hidden_ids == (2,)
    assert item_z.overlap_px == 16


def test_foreign_files_get_a_protocol_from_their_categories():
    imported = import_coco(_foreign_coco([_compressed(_square(0, 0, 3))]))
    assert [c.name for c in imported.protocol.categories] == ["cell"]
    assert imported.protocol.categories[0].supercategory == "thing"


def _valid():
    return _foreign_coco([_compressed(_square(1, 1, 5)), [[1.0, 1.0, 8.0, 1.0, 8.0, 8.0]]])


def _mutate(edit):
    coco = copy.deepcopy(_valid())
    edit(coco)
    return coco


BAD_INPUTS = {
    "missing annotations": (lambda c: c.pop("annotations"), "top level: missing list 'annotations'"),
    "missing segmentation": (
        lambda c: c["annotations"][0].pop("segmentation"),
        r"annotations\[0\] \(id 100\): missing key 'segmentation'",
    ),
    "wrong type id": (
        lambda c: c["annotations"][1].update(id="101"),
        r"annotations\[1\] \(id '101'\): 'id' must be an integer",
    ),
    "unknown image": (
        lambda c: c["annotations"][0].update(image_id=9),
        r"annotations\[0\] \(id 100\): 'image_id' 9 is not a known image id",
    ),
    "unknown category": (
        lambda c: c["annotations"][1].update(category_id=3),
        r"annotations\[1\] \(id 101\): 'category_id' 3 is not a known category id",
    ),
    "duplicate ann id": (
        lambda c: c["annotations"][1].update(id=100),
        r"annotations\[1\] \(id 100\): duplicate annotation id 100",
    ),
    "duplicate image id": (
        lambda c: c["images"].append(dict(c["images"][0])),
        r"images\[1\] \(id 5\): duplicate image id 5",
    ),
    "rle size": (
        lambda c: c["annotations"][0]["segmentation"].update(size=[30, 20]),
        r"RLE size \[30, 20\] does not match image 5 \(height x width = 20 x 30\)",
    ),
    "rle counts sum": (
        lambda c: c["annotations"][0].update(segmentation={"size": [20, 30], "counts": [10, 5]}),
        "RLE counts cover 15 pixels, but the image has 600",
    ),
    "short polygon": (
        lambda c: c["annotations"][1].update(segmentation=[[1.0, 1.0, 5.0, 5.0]]),
        "polygon 0 has 2 points; a polygon needs at least 3",
    ),
    "bbox outside": (
        lambda c: c["annotations"][0].update(bbox=[25.0, 1.0, 10.0, 5.0]),
        r"'bbox' \[25.0, 1.0, 10.0, 5.0\] extends outside image 5 \(width x height = 30 x 20\)",
    ),
    "bad occlusion": (lambda c: c["annotations"][0].update(occlusion="half"), "'occlusion' 'half' is not one of"),
    "bad image size": (
        lambda c: c["images"][0].update(height=0),
        r"images\[0\] \(id 5\): 'height' and 'width' must be positive",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_gets_one_clear_error_naming_where(tmp_path, case):
    edit, message = BAD_INPUTS[case]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(_mutate(edit)))
    with pytest.raises(CocoFormatError, match=message) as info:
        import_coco(path)
    assert str(path) in str(info.value)


def test_every_problem_is_listed_in_the_one_error():
    coco = _mutate(lambda c: (c["annotations"][0].update(image_id=9), c["annotations"][1].update(category_id=3)))
    with pytest.raises(CocoFormatError, match=r"\(2 problem\(s\)\)"):
        import_coco(coco)


def test_not_json_names_file_and_position(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"images": [\n  {"id": 1,,}]}')
    with pytest.raises(CocoFormatError, match=r"broken.json: not valid JSON \(line 2, column"):
        import_coco(path)


def test_repr_is_short_counts_and_shapes_not_arrays(labels_and_table, protocol):
    labels, table = labels_and_table
    imported = import_coco(export_coco([AnnotatedImage(labels, table, "a.png")], protocol).coco)
    text = repr(imported)
    assert text == "CocoImport(images=1 [64x80], instances=4, categories=2, overlap_px=0)"
    assert repr(imported.images[0]).startswith("ImportedImage(file_name='a.png', shape_yx=(64, 80), instances=4")
    assert len(repr(imported.images[0])) < 200 and "array" not in repr(imported.images[0])
