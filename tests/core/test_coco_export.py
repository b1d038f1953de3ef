"""COCO export: pixel-exact RLE, every polygon part, holes, crowd, extras, COCOeval."""

import contextlib
import gc
import io
import json
import math

import numpy as np
import pandas as pd
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from napari_instseg import __version__
from napari_instseg.core.coco import AnnotatedImage, export_coco, save_coco
from napari_instseg.core.errors import CocoFormatError, TableError
from napari_instseg.core.instances import COLUMNS, make_rows, table_for_ids


def _load(path):
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


@pytest.fixture
def exported(tmp_path, labels_and_table, protocol):
    labels, table = labels_and_table
    result = export_coco([AnnotatedImage(labels, table, "tile.png")], protocol)
    path = tmp_path / "out.json"
    save_coco(result.coco, path)
    return path, result


def test_rle_masks_are_pixel_exact_in_pycocotools(exported, labels_and_table):
    labels, _ = labels_and_table
    path, result = exported
    coco = _load(path)
    anns = coco.loadAnns(coco.getAnnIds())
    assert sorted(a["instance_id"] for a in anns) == [3, 9, 12, 40]
    for ann in anns:
        np.testing.assert_array_equal(coco.annToMask(ann), labels == ann["instance_id"])
        assert ann["area"] == np.count_nonzero(labels == ann["instance_id"])
    assert result.summary.n_rle == 4 and result.summary.n_polygon == 0


def test_bbox_area_and_standard_fields(exported, labels_and_table):
    _labels, _ = labels_and_table
    _, result = exported
    by_id = {a["instance_id"]: a for a in result.coco["annotations"]}
    assert by_id[9]["bbox"] == [4.0, 40.0, 20.0, 20.0]  # two parts: x 4..23, y 40..59
    assert by_id[40]["bbox"] == [70.0, 50.0, 10.0, 14.0]
    assert by_id[40]["iscrowd"] == 1 and by_id[3]["iscrowd"] == 0
    assert by_id[9]["category_id"] == 5
    image = result.coco["images"][0]
    assert image == {"id": 1, "file_name": "tile.png", "height": 64, "width": 80}


def test_extra_fields_and_info(exported):
    _, result = exported
    by_id = {a["instance_id"]: a for a in result.coco["annotations"]}
    ann = by_id[9]
    assert (ann["occlusion"], ann["occluded_fraction"], ann["z_order"]) == ("partial", 0.2, 3)
    assert ann["attributes"]["occluded"] is True and ann["attributes"]["occlusion_manual"] is True
    assert ann["attributes"]["review"] == "corrected" and ann["attributes"]["source"] == "sam2"
    assert ann["attributes"]["annotator"] == "ann-b" and ann["attributes"]["prelabel_iou"] == 0.87
    assert by_id[12]["occluded_fraction"] is None  # NaN is written as null
    info = result.coco["info"]
    assert info["tool"] == f"napari-instseg {__version__}"
    assert info["protocol"]["categories"][1] == {"id": 5, "name": "mitosis", "supercategory": "cell"}
    cats = result.coco["categories"]
    assert cats == [
        {"id": 1, "name": "nucleus", "supercategory": "cell", "color": "#ff7f0e"},
        {"id": 5, "name": "mitosis", "supercategory": "cell"},
    ]


def test_polygon_mode_writes_every_part_and_rle_for_holes_and_crowd(tmp_path, labels_and_table, protocol):
    labels, table = labels_and_table
    result = export_coco([AnnotatedImage(labels, table, "tile.png")], protocol, segmentation="polygon")
    by_id = {a["instance_id"]: a for a in result.coco["annotations"]}
    assert isinstance(by_id[3]["segmentation"], list) and len(by_id[3]["segmentation"]) == 1
    assert isinstance(by_id[9]["segmentation"], list) and len(by_id[9]["segmentation"]) == 2
    assert isinstance(by_id[12]["segmentation"], dict)  # ring: a hole, so RLE
    assert isinstance(by_id[40]["segmentation"], dict)  # crowd: always RLE
    summary = result.summary
    assert (summary.n_polygon, summary.n_rle, summary.n_holes_as_rle, summary.n_crowd) == (2, 2, 1, 1)
    path = tmp_path / "poly.json"
    save_coco(result.coco, path)
    coco = _load(path)
    for ann in coco.loadAnns(coco.getAnnIds()):
        truth = labels == ann["instance_id"]
        decoded = coco.annToMask(ann).astype(bool)
        iou = (decoded & truth).sum() / (decoded | truth).sum()
        assert iou > 0.9, (ann["instance_id"], iou)
        assert ann["area"] == truth.sum()  # area from the mask, not the polygon


def test_cocoeval_of_the_export_against_itself_is_perfect(tmp_path):
    labels = _dense_tile(n_per_side=12, cell_px=24, seed=3)
    result = export_coco([AnnotatedImage(labels, None, "cells.tif")])
    gt_path = tmp_path / "gt.json"
    save_coco(result.coco, gt_path)
    gt = _load(gt_path)
    detections = [dict(a, score=1.0) for a in result.coco["annotations"]]
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(detections)
        evaluator = COCOeval(gt, dt, "segm")
        evaluator.params.maxDets = [1, 10, 1000]
        evaluator.evaluate()
        evaluator.accumulate()
    n_instances = len(np.unique(labels)) - 1
    assert n_instances > 100  # more than COCOeval's default maxDets of 100
    # precision[T, R, K, A, M]: every IoU threshold, recall, class; area 'all'; maxDets 1000
    precision = evaluator.eval["precision"][:, :, :, 0, -1]
    assert precision.min() == pytest.approx(1.0)


def _dense_tile(n_per_side, cell_px, seed):
    """A dense tile: one ellipse of random size and position per grid cell, shuffled ids."""
    from skimage.draw import ellipse

    rng = np.random.default_rng(seed)
    labels = np.zeros((n_per_side * cell_px,) * 2, np.uint32)
    ids = rng.permutation(n_per_side**2) + 1
    for k, (i, j) in enumerate(np.ndindex(n_per_side, n_per_side)):
        ry, rx = rng.uniform(3, cell_px / 2 - 1, size=2)
        rr, cc = ellipse(i * cell_px + cell_px / 2, j * cell_px + cell_px / 2, ry, rx, shape=labels.shape)
        labels[rr, cc] = ids[k]
    return labels


def test_export_loads_and_evaluates_in_faster_coco_eval(exported):
    faster = pytest.importorskip("faster_coco_eval")
    path, result = exported
    with contextlib.redirect_stdout(io.StringIO()):
        gt = faster.COCO(str(path))
        dt = gt.loadRes([dict(a, score=1.0) for a in result.coco["annotations"] if not a["iscrowd"]])
        evaluator = faster.COCOeval_faster(gt, dt, "segm")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    assert len(gt.getAnnIds()) == 4
    assert evaluator.stats[0] == pytest.approx(1.0)


def test_many_images_get_unique_annotation_ids_and_their_metadata(labels_and_table, protocol):
    labels, table = labels_and_table
    result = export_coco(
        [
            AnnotatedImage(labels, table, "a.png"),
            AnnotatedImage(labels[:32], None, "b.png", image_id=7, metadata={"slide": "s1.svs", "level": 0}),
            AnnotatedImage(labels, table, "c.png"),
        ],
        protocol,
    )
    images = result.coco["images"]
    assert [im["id"] for im in images] == [1, 7, 2]
    assert images[1]["slide"] == "s1.svs" and images[1]["level"] == 0
    ann_ids = [a["id"] for a in result.coco["annotations"]]
    assert len(ann_ids) == len(set(ann_ids)) == result.summary.n_annotations
    # image b has no table: its instances get the protocol's first category and defaults
    b_anns = [a for a in result.coco["annotations"] if a["image_id"] == 7]
    assert {a["category_id"] for a in b_anns} == {1}
    assert result.summary.n_default_rows == len(b_anns)


def test_rows_without_pixels_are_counted_not_exported(labels_and_table, protocol):
    labels, table = labels_and_table
    labels = labels.copy()
    labels[labels == 12] = 0
    result = export_coco([AnnotatedImage(labels, table, "t.png")], protocol)
    assert result.summary.n_rows_without_pixels == 1
    assert 12 not in {a["instance_id"] for a in result.coco["annotations"]}
    assert "1 table row(s) without pixels were skipped" in str(result.summary)


def test_unknown_category_names_the_instance(labels_and_table, protocol):
    labels, table = labels_and_table
    table = table.copy()
    table.loc[12, "category_id"] = 8
    with pytest.raises(TableError, match=r"image 1 \(t.png\): instance 12 has category_id 8.*known ids: \[1, 5\]"):
        export_coco([AnnotatedImage(labels, table, "t.png")], protocol)


def test_empty_image_exports_no_annotations(protocol):
    result = export_coco([AnnotatedImage(np.zeros((5, 6), np.uint16), None, "empty.png")], protocol)
    assert result.coco["annotations"] == [] and result.coco["images"][0]["width"] == 6


def test_save_is_atomic_and_keeps_the_old_file_on_failure(tmp_path, exported):
    path, result = exported
    before = path.read_bytes()
    broken = dict(result.coco, info={"bad": float("nan")})
    with pytest.raises(CocoFormatError, match="not JSON-safe"):
        save_coco(broken, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]  # no temporary file left
    json.loads(before)


def test_export_does_not_modify_its_inputs(labels_and_table, protocol):
    labels, table = labels_and_table
    labels_before, table_before = labels.copy(), table.copy()
    export_coco([AnnotatedImage(labels, table, "t.png")], protocol, segmentation="polygon")
    np.testing.assert_array_equal(labels, labels_before)
    pd.testing.assert_frame_equal(table, table_before)


def test_rle_from_export_decodes_with_pycocotools_directly(exported, labels_and_table):
    labels, _ = labels_and_table
    _, result = exported
    for ann in result.coco["annotations"]:
        decoded = mask_utils.decode(ann["segmentation"])
        np.testing.assert_array_equal(decoded, labels == ann["instance_id"])


_TOP_LEVEL = ("occlusion", "occluded_fraction", "z_order")


def _plain(value):
    value = value.item() if isinstance(value, np.generic) else value
    return None if isinstance(value, float) and math.isnan(value) else value


def _reference_annotations(labels, table, first_category, scores):
    """The annotations written one instance at a time, with pycocotools' own encode and toBbox."""
    ids = np.unique(labels)
    ids = ids[ids > 0]
    rows = table_for_ids(ids, table, defaults={"category_id": first_category})
    attribute_names = [c for c in COLUMNS if c not in (*_TOP_LEVEL, "category_id", "iscrowd")]
    attribute_names += [c for c in rows.columns if c not in COLUMNS]
    out = []
    for k, instance_id in enumerate(ids.tolist()):
        row = rows.loc[instance_id]
        encoded = mask_utils.encode(np.asfortranarray(labels == instance_id, dtype=np.uint8))
        annotation = {
            "id": k + 1,
            "image_id": 1,
            "category_id": int(row["category_id"]),
            "segmentation": {"size": list(labels.shape), "counts": encoded["counts"].decode("ascii")},
            "area": float(np.count_nonzero(labels == instance_id)),
            "bbox": [float(v) for v in mask_utils.toBbox(encoded)],
            "iscrowd": int(bool(row["iscrowd"])),
            "instance_id": instance_id,
            **{name: _plain(row[name]) for name in _TOP_LEVEL},
            "attributes": {"occluded": row["occlusion"] != "none", **{n: _plain(row[n]) for n in attribute_names}},
        }
        if scores:
            annotation["score"] = float(scores.get(instance_id, 1.0))
        out.append(annotation)
    return out


def _varied_image(seed):
    """Blocky labels with small, > 2**16 and near-2**32 ids; a partial table with unicode, NaN, crowds."""
    rng = np.random.default_rng(seed)
    pool = [np.arange(1, 9), rng.integers(60_000, 80_000, 8), rng.integers(2**31, 2**32 - 1, 8, dtype=np.int64)]
    lut = np.r_[0, pool[seed % 3]].astype(np.uint32)
    height, width = rng.integers(2, 40, 2)
    blocks = rng.integers(0, lut.size, (height // 2 + 1, width // 2 + 1))
    labels = np.ascontiguousarray(lut[np.kron(blocks, np.ones((2, 2), int))[:height, :width]])
    ids = np.unique(labels)[1:].tolist()
    if seed % 4 == 0 or not ids:
        return labels, None, {}
    with_rows = ids[: max(1, len(ids) - 1)]  # the last instance gets the default row
    n = len(with_rows)
    table = make_rows(
        with_rows,
        category_id=rng.choice([1, 5], n).tolist(),
        occlusion=rng.choice(["none", "partial", "heavy"], n).tolist(),
        occluded_fraction=[float(v) if v > 0.3 else np.nan for v in rng.random(n)],
        iscrowd=(rng.random(n) > 0.6).tolist(),
        z_order=rng.integers(-3, 4, n).tolist(),
        annotator=rng.choice(["", "Zoë 北京", 'quote " back \\ slash\nline'], n).tolist(),
        time_s=(rng.random(n) * 10.0 ** rng.integers(-8, 9, n)).tolist(),
    )
    if seed % 3 == 0:
        table = table.assign(stain=["H&E ü"] * n, thickness_um=rng.random(n))
    scores = {i: float(rng.random()) for i in ids[::2]} if seed % 5 == 0 else {}
    return labels, table, scores


@pytest.mark.parametrize("seed", range(15))
def test_annotations_are_byte_identical_to_one_instance_at_a_time(seed, protocol):
    labels, table, scores = _varied_image(seed)
    result = export_coco([AnnotatedImage(labels, table, "t.tif", scores=scores)], protocol)
    expected = _reference_annotations(labels, table, protocol.categories[0].id, scores)
    for ensure_ascii in (True, False):
        written = json.dumps(result.coco["annotations"], separators=(",", ":"), ensure_ascii=ensure_ascii)
        assert written == json.dumps(expected, separators=(",", ":"), ensure_ascii=ensure_ascii)


@pytest.mark.parametrize("with_table", [False, True])
def test_every_annotation_has_dicts_of_its_own(with_table, labels_and_table, protocol):
    labels, table = labels_and_table
    annotations = export_coco([AnnotatedImage(labels, table if with_table else None)], protocol).coco["annotations"]
    annotations[0]["attributes"]["review"] = "edited"
    annotations[0]["bbox"][0] = -1.0
    assert all(a["attributes"]["review"] != "edited" and a["bbox"][0] >= 0 for a in annotations[1:])


def test_export_leaves_the_garbage_collector_as_it_found_it(labels_and_table, protocol):
    labels, table = labels_and_table
    assert gc.isenabled()
    export_coco([AnnotatedImage(labels, table)], protocol)
    assert gc.isenabled()
    gc.disable()
    try:
        export_coco([AnnotatedImage(labels, table)], protocol)
        assert not gc.isenabled()
    finally:
        gc.enable()
