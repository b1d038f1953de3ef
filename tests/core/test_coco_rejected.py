"""Rejected pre-labels survive COCO export, import and QA (TRIAL #9)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_instseg.cli import main
from napari_instseg.core.coco import REJECTED_KEY, AnnotatedImage, export_coco, import_coco, save_coco
from napari_instseg.core.prompting.auto import prelabel_scores
from napari_instseg.core.qa.agreement import prelabel_stats
from napari_instseg.core.session import AnnotationSession
from napari_instseg.core.store import AnnotationStore

SHAPE = (96, 132)


def _squares(n: int = 33) -> list[np.ndarray]:
    masks = []
    for k in range(n):
        y, x = divmod(k, 11)
        mask = np.zeros(SHAPE, bool)
        mask[y * 30 + 3 : y * 30 + 13, x * 12 + 1 : x * 12 + 10] = True
        masks.append(mask)
    return masks


@pytest.fixture
def reviewed(tmp_path):
    """A store with 33 pre-labels: 10 accepted, 5 rejected, 18 still to review."""
    store = AnnotationStore.create(tmp_path / "s.zarr", SHAPE, image={"file_name": "s.png"})
    session = store.session(annotator="ann")
    results, _ = session.commit_many(_squares(), scores=[0.5 + k / 100 for k in range(33)], source="classic-auto")
    ids = [r.instance_id for r in results]
    for instance_id in ids[:10]:
        session.accept(instance_id)
    for instance_id in ids[10:15]:
        session.reject(instance_id)
    yield store, session, ids
    store.close()


def _export(session):
    item = AnnotatedImage(session.labels_yx, session.table, "s.png", scores=prelabel_scores(session))
    return export_coco([item], session.protocol)


def test_rejected_prelabels_are_listed_and_counted_by_qa(reviewed):
    _, session, ids = reviewed
    exported = _export(session)
    coco = exported.coco
    assert len(coco["annotations"]) == 28
    rejected = coco[REJECTED_KEY]
    assert sorted(r["instance_id"] for r in rejected) == ids[10:15]
    first = rejected[0]
    assert first["image_id"] == coco["images"][0]["id"] and first["category_id"] == 1
    assert first["attributes"]["review"] == "rejected" and first["attributes"]["source"] == "classic-auto"
    assert first["attributes"]["annotator"] == "ann" and first["score"] == pytest.approx(0.6)
    assert "segmentation" not in first and "occlusion" in first
    assert exported.summary.n_rejected == 5 and exported.summary.n_rows_without_pixels == 0
    assert "5 rejected instance(s)" in str(exported.summary)
    overall = prelabel_stats(coco)["overall"]
    assert (overall["n_prelabels"], overall["rejected"], overall["accepted_as_is"]) == (33, 5, 10)
    assert overall["acceptance_rate"] == pytest.approx(10 / 33)


def test_pycocotools_reads_and_scores_the_export_unchanged(reviewed, tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    _, session, _ = reviewed
    path = tmp_path / "final.json"
    save_coco(_export(session).coco, path)
    gt = COCO(str(path))
    assert len(gt.getAnnIds()) == 28  # rejected instances are never ground truth
    results = [dict(a) for a in json.loads(path.read_text())["annotations"]]
    dt = gt.loadRes(results)
    evaluation = COCOeval(gt, dt, "segm")
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    assert evaluation.stats[1] == pytest.approx(1.0)


def test_import_restores_the_rejected_rows_and_a_round_trip_keeps_them(reviewed, tmp_path):
    _, session, ids = reviewed
    path = tmp_path / "final.json"
    save_coco(_export(session).coco, path)
    imported = import_coco(path)
    assert REJECTED_KEY not in imported.top
    table = imported.images[0].table
    assert len(table) == 33
    assert sorted(table.index[table["review"] == "rejected"].tolist()) == ids[10:15]
    assert not np.isin(ids[10:15], imported.images[0].labels_yx).any()
    assert main(["import", str(path), "-o", str(tmp_path / "folder")]) == 0
    assert main(["export", str(tmp_path / "folder"), "-o", str(tmp_path / "again.json")]) == 0
    again = json.loads((tmp_path / "again.json").read_text())
    assert sorted(r["instance_id"] for r in again[REJECTED_KEY]) == ids[10:15]
    assert prelabel_stats(again)["overall"]["rejected"] == 5


def test_cli_exports_and_qa_count_rejected_rows_and_geojson_is_unaffected(reviewed, tmp_path, capsys):
    store, _, _ = reviewed
    store.close()
    final, geo = tmp_path / "final.json", tmp_path / "final.geojson"
    assert main(["export", str(tmp_path / "s.zarr"), "-o", str(final)]) == 0
    assert "5 rejected instance(s)" in capsys.readouterr().out
    assert main(["export", str(tmp_path / "s.zarr"), "-o", str(geo)]) == 0
    assert len(json.loads(geo.read_text())["features"]) == 28
    assert main(["qa", "--gt", str(final), "--dt", str(final), "-o", str(tmp_path / "qa")]) == 0
    report = json.loads((tmp_path / "qa" / "report.json").read_text())
    overall = report["prelabels"]["overall"]
    assert (overall["n_prelabels"], overall["rejected"]) == (33, 5)
    assert overall["acceptance_rate"] == pytest.approx(10 / 33)


def test_a_session_without_rejected_rows_writes_no_key():
    session = AnnotationSession(np.zeros(SHAPE, np.uint32))
    session.commit_many(_squares(3), source="classic-auto")
    assert REJECTED_KEY not in _export(session).coco
