"""Third-party COCO files: import then export of the folder gives back the same annotations."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from pycocotools.coco import COCO

from napari_instseg.cli import main
from napari_instseg.core.coco import import_coco

DATA = Path(__file__).resolve().parents[1] / "data"
VAL2014 = DATA / "coco_val2014_subset.json"  # real COCO val2014 annotations: overlaps and crowds
DATUMARO = DATA / "datumaro_instances_val.json"  # custom attributes, uncompressed crowd RLE


def _round_trip(tmp_path: Path, source: Path, capsys) -> tuple[dict, dict, Path]:
    outdir = tmp_path / "imported"
    assert main(["import", str(source), "-o", str(outdir)]) == 0
    out = tmp_path / "back.json"
    assert main(["export", str(outdir), "-o", str(out)]) == 0
    capsys.readouterr()
    return json.loads(source.read_text()), json.loads(out.read_text()), outdir


def _masks_equal(a_path: Path, b_path: Path) -> None:
    a, b = COCO(str(a_path)), COCO(str(b_path))
    assert sorted(a.anns) == sorted(b.anns)
    for ann_id, ann in a.anns.items():
        assert np.array_equal(a.annToMask(ann), b.annToMask(b.anns[ann_id])), ann_id


def test_real_coco_with_overlaps_and_crowds_round_trips_bit_for_bit(tmp_path, capsys):
    original, back, outdir = _round_trip(tmp_path, VAL2014, capsys)
    assert [(i["id"], i["file_name"]) for i in back["images"]] == [
        (i["id"], i["file_name"]) for i in original["images"]
    ]
    assert back["images"] == original["images"] and back["categories"] == original["categories"]
    assert back["licenses"] == original["licenses"]
    by_id = {a["id"]: a for a in back["annotations"]}
    assert sorted(by_id) == sorted(a["id"] for a in original["annotations"])
    for ann in original["annotations"]:  # every key, every mask, as it came in
        assert by_id[ann["id"]] == ann
    _masks_equal(VAL2014, tmp_path / "back.json")
    assert sum(a["iscrowd"] for a in back["annotations"]) == 6
    # a second export of the same folder gives the same annotations
    assert main(["export", str(outdir), "-o", str(tmp_path / "again.json")]) == 0
    assert json.loads((tmp_path / "again.json").read_text())["annotations"] == back["annotations"]


def test_import_reports_what_covers_what_and_derives_occlusion(tmp_path, capsys):
    imported = import_coco(VAL2014)
    covered = 0
    for item in imported.images:
        report = item.overlap_report()
        assert (report["area_px"] == [item.masks[i].area_px for i in report.index]).all()
        losing = report[report["lost_px"] > 0]
        covered += len(losing)
        for instance_id, row in losing.iterrows():
            assert row["covered_by"]  # names the instances in front
            fraction = item.table.loc[instance_id, "occluded_fraction"]
            assert fraction == pytest.approx(row["lost_px"] / row["area_px"])
            assert item.table.loc[instance_id, "occlusion"] in ("partial", "heavy")
            front = [int(p.split(":")[0]) for p in row["covered_by"].split()]
            for f in front:  # and each of them lists this instance among those it covers
                assert any(p.split(":")[0] == str(instance_id) for p in report.loc[f, "covers"].split())
        untouched = report[(report["lost_px"] == 0) & (report["area_px"] > 0)].index
        assert (item.table.loc[untouched, "occluded_fraction"] == 0).all()
        assert (item.table.loc[untouched, "occlusion"] == "none").all()
    assert covered > 50
    main(["import", str(VAL2014), "-o", str(tmp_path / "out")])
    assert "instance(s) are partly covered" in capsys.readouterr().out
    stem = Path(imported.images[0].image["file_name"]).stem
    csv = pd.read_csv(tmp_path / "out" / f"{stem}_overlaps.csv", keep_default_na=False)
    assert list(csv.columns) == ["id", "annotation_id", "area_px", "visible_px", "lost_px", "covered_by", "covers"]


def test_edited_instances_export_their_edited_masks_and_the_rest_stays(tmp_path, capsys):
    outdir = tmp_path / "imported"
    assert main(["import", str(VAL2014), "-o", str(outdir)]) == 0
    original = json.loads(VAL2014.read_text())
    image = original["images"][0]
    stem = Path(image["file_name"]).stem
    labels_path, table_path = outdir / f"{stem}_labels.tif", outdir / f"{stem}_instances.csv"
    labels = tifffile.imread(labels_path)
    table = pd.read_csv(table_path)
    visible = [int(i) for i in table["id"] if (labels == i).sum() > 50]
    painted, retagged = visible[0], visible[1]
    ys, xs = np.nonzero(labels == painted)
    labels[ys[: ys.size // 2], xs[: xs.size // 2]] = 0  # erase half of one instance
    tifffile.imwrite(labels_path, labels, compression="zlib")
    table.loc[table["id"] == retagged, "category_id"] = original["categories"][-1]["id"]
    table.to_csv(table_path, index=False)
    source = json.loads((outdir / "coco_source.json").read_text())["images"][0]
    ann_of = dict(zip(source["instance_ids"], (a["id"] for a in source["annotations"]), strict=True))

    out = tmp_path / "edited.json"
    assert main(["export", str(outdir), "-o", str(out)]) == 0
    assert "1 with edited masks" in capsys.readouterr().out
    back = COCO(str(out))
    edited = back.anns[ann_of[painted]]
    assert np.array_equal(back.annToMask(edited).astype(bool), labels == painted)
    assert edited["image_id"] == image["id"]
    retag = back.anns[ann_of[retagged]]
    by_id = {a["id"]: a for a in original["annotations"]}
    assert retag["category_id"] == original["categories"][-1]["id"]
    assert retag["segmentation"] == by_id[ann_of[retagged]]["segmentation"]
    untouched = [a for a in back.anns.values() if a["id"] not in (ann_of[painted], ann_of[retagged])]
    assert len(untouched) == len(original["annotations"]) - 2
    assert all(a == by_id[a["id"]] for a in untouched)


def test_datumaro_custom_attributes_and_crowd_rle_round_trip(tmp_path, capsys):
    original, back, _ = _round_trip(tmp_path, DATUMARO, capsys)
    assert back["annotations"] == original["annotations"]
    assert back["annotations"][0]["attributes"] == {"x": 1, "y": "hello"}
    assert back["categories"] == original["categories"] and back["images"] == original["images"]
    _masks_equal(DATUMARO, tmp_path / "back.json")


def test_category_id_zero_as_napari_sam4is_writes_it(tmp_path, capsys):
    coco = {
        "images": [{"id": 0, "file_name": "img.png", "height": 8, "width": 10}],
        "categories": [{"id": 0, "name": "object", "supercategory": ""}],
        "annotations": [
            {
                "id": 0,
                "image_id": 0,
                "category_id": 0,
                "segmentation": [[1.0, 1.0, 6.0, 1.0, 6.0, 5.0, 1.0, 5.0]],
                "area": 20.0,
                "bbox": [1.0, 1.0, 5.0, 4.0],
                "iscrowd": 0,
            }
        ],
    }
    path = tmp_path / "sam4is.json"
    path.write_text(json.dumps(coco))
    assert import_coco(path).protocol.categories[0].id == 0
    _, back, _ = _round_trip(tmp_path, path, capsys)
    assert back["annotations"] == coco["annotations"] and back["categories"] == coco["categories"]


def test_qa_scores_annotation_id_zero_like_any_other_unlike_pycocotools():
    """pycocotools' COCOeval uses 0 as 'unmatched' in its matching arrays: a reference numbered
    0 is mis-scored there. Our QA matches by position, so renumbering changes nothing."""
    import contextlib
    import io

    from pycocotools import mask as mask_utils
    from pycocotools.cocoeval import COCOeval

    from napari_instseg.core.qa.metrics import prepare, scores_of

    def rle(y0, size):
        mask = np.zeros((20, 20), np.uint8, order="F")
        mask[y0 : y0 + size, y0 : y0 + size] = 1
        encoded = mask_utils.encode(mask)
        return {"size": [20, 20], "counts": encoded["counts"].decode()}

    def gt(first_id):
        anns = [(first_id, rle(2, 6)), (first_id + 1, rle(10, 8))]
        return {
            "images": [{"id": 1, "file_name": "a.png", "height": 20, "width": 20}],
            "categories": [{"id": 1, "name": "a"}],
            "annotations": [
                {"id": i, "image_id": 1, "category_id": 1, "segmentation": s, "area": 1.0, "iscrowd": 0}
                for i, s in anns
            ],
        }

    dt = [
        {"image_id": 1, "category_id": 1, "segmentation": rle(2, 6), "score": 0.9},
        {"image_id": 1, "category_id": 1, "segmentation": rle(2, 6), "score": 0.8},
        {"image_id": 1, "category_id": 1, "segmentation": rle(10, 8), "score": 0.7},
    ]

    def pycocotools_ap(reference):
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO()
            coco.dataset = json.loads(json.dumps(reference))
            coco.createIndex()
            evaluation = COCOeval(coco, coco.loadRes(json.loads(json.dumps(dt))), "segm")
            evaluation.evaluate()
            evaluation.accumulate()
            evaluation.summarize()
        return evaluation.stats[0]

    ours_from_0, ours_from_1 = scores_of(prepare(gt(0), dt)).AP, scores_of(prepare(gt(1), dt)).AP
    assert ours_from_0 == pytest.approx(ours_from_1) == pytest.approx(pycocotools_ap(gt(1)))
    assert pycocotools_ap(gt(0)) < ours_from_0 - 0.5  # pycocotools' own mis-score
