"""``qa`` fixes of the pre-label trial: maxDets warning (#15), throughput (#14), file-name
matching of images (#21)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_qa import synthetic_sets
from napari_instseg.cli import main


@pytest.fixture(scope="module")
def sets():
    gt, dt = synthetic_sets(2, 16, size=96, seed=3)
    return gt, dt


def _write(folder: Path, name: str, data) -> Path:
    path = folder / name
    path.write_text(json.dumps(data))
    return path


def test_qa_warns_when_max_dets_cuts_candidates(sets, tmp_path, capsys):
    gt, dt = sets
    gt_path, dt_path = _write(tmp_path, "gt.json", gt), _write(tmp_path, "dt.json", dt)
    per_image = {i: sum(d["image_id"] == i for d in dt) for i in (1, 2)}
    argv = ["qa", "--gt", str(gt_path), "--dt", str(dt_path), "-o", str(tmp_path / "qa")]
    assert main([*argv, "--max-dets", "5"]) == 0
    captured = capsys.readouterr()
    for image_id, name in ((1, "0.png"), (2, "1.png")):
        assert f"image {image_id} ({name}), nucleus: {per_image[image_id]} candidates" in captured.err
    assert "only the 5 best-scored candidates" in captured.err
    assert f"--max-dets {max(per_image.values())}" in captured.err
    report = json.loads((tmp_path / "qa" / "report.json").read_text())
    assert {r["image_id"]: r["n_candidates"] for r in report["truncated_by_max_dets"]} == per_image
    assert "only the 5 best-scored" in (tmp_path / "qa" / "summary.md").read_text()
    assert "only the 5 best-scored" in (tmp_path / "qa" / "report.html").read_text()

    assert main([*argv, "--max-dets", "100", "--overwrite"]) == 0  # raised: no warning
    assert "best-scored" not in capsys.readouterr().err
    assert json.loads((tmp_path / "qa" / "report.json").read_text())["truncated_by_max_dets"] == []


def test_machine_prelabels_never_count_in_throughput(sets):
    from napari_instseg.core.qa.agreement import prelabel_stats

    gt, _ = sets
    final = dict(gt, annotations=[dict(a) for a in gt["annotations"][:5]])
    rows = [
        ("classic-auto", "pre-label", 0.0001),  # a batch run: machine time, not a person's
        ("classic-auto", "pre-label", 0.0002),
        ("classic-auto", "accepted", 6.0),  # reviewed by a person: counts
        ("manual", "accepted", 30.0),
        ("import", "accepted", None),  # no time at all
    ]
    for ann, (source, review, seconds) in zip(final["annotations"], rows, strict=True):
        ann["attributes"] = {"source": source, "review": review, "time_s": seconds}
    stats = prelabel_stats(final)
    assert stats["throughput_instances_per_hour"] == pytest.approx(2 / (36 / 3600))
    assert stats["time_per_instance_s"] == {"classic-auto": 6.0, "manual": 30.0}


def test_project_report_gives_no_rate_for_unreviewed_batch_prelabels(tmp_path, ihc_image, capsys):
    import tifffile

    from napari_instseg.core.project import Project

    folder = tmp_path / "tiles"
    folder.mkdir()
    for k in range(2):
        tifffile.imwrite(folder / f"tile_{k}.tif", ihc_image[:128, k * 128 : (k + 1) * 128])
    project_dir = tmp_path / "proj"
    assert main(["project", "init", str(project_dir), "--images", str(folder / "*.tif")]) == 0
    assert main(["project", "prelabel", str(project_dir), "--backend", "classic"]) == 0
    with Project.open(project_dir) as project:
        item = project.manifest.claim((1, ""), "batch")  # submitted as the batch left it
        project.submit(item, "batch")
        item = project.manifest.claim((2, ""), "alice")
        store = project.open_store(item)
        session = store.session(annotator="alice")
        for instance_id in list(store.table.index)[:3]:
            session.accept(instance_id)
        store.close()
        project.submit(item, "alice")
    capsys.readouterr()
    report_path = tmp_path / "report.json"
    assert main(["project", "report", str(project_dir), "-o", str(report_path)]) == 0
    text = capsys.readouterr().out
    report = json.loads(report_path.read_text())
    batch = report["per_annotator"]["batch"]
    assert batch["n_instances"] > 0 and batch["n_timed"] == 0 and batch["instances_per_hour"] is None
    assert "batch:" in text and "no time booked by a person" in text
    alice = report["per_annotator"]["alice"]
    assert alice["n_timed"] <= 3
    if alice["hours"] > 0:  # the clock booked the review time
        assert alice["instances_per_hour"] == pytest.approx(alice["n_timed"] / alice["hours"])


def _renumbered(coco, new_ids):
    """``coco`` with its images renumbered (``new_ids[old] = new``), names unchanged."""
    out = dict(coco)
    out["images"] = [dict(im, id=new_ids[im["id"]]) for im in coco["images"]]
    out["annotations"] = [dict(a, image_id=new_ids[a["image_id"]]) for a in coco["annotations"]]
    return out


def test_qa_matches_images_by_file_name_when_ids_differ(sets, tmp_path, capsys):
    gt, _ = sets
    gt_path = _write(tmp_path, "gt.json", gt)
    same = _write(tmp_path, "same.json", _renumbered(gt, {1: 7, 2: 9}))  # e.g. prelabel --auto: image id 1
    assert main(["qa", "--gt", str(gt_path), "--dt", str(same), "-o", str(tmp_path / "qa")]) == 0
    assert "matched by file_name (0.png: 7 -> 1, 1.png: 9 -> 2)" in capsys.readouterr().out
    report = json.loads((tmp_path / "qa" / "report.json").read_text())
    assert report["overall"]["AP"] == pytest.approx(1.0)
    assert len(report["images_matched_by_file_name"]) == 2

    clash = _renumbered(gt, {1: 7, 2: 9})
    clash["images"][1]["file_name"] = "0.png"  # two candidate images named alike: ambiguous
    bad = _write(tmp_path, "clash.json", clash)
    assert main(["qa", "--gt", str(gt_path), "--dt", str(bad), "-o", str(tmp_path / "qa2")]) == 2
    assert "image ids [7, 9] are not in the reference" in capsys.readouterr().err
