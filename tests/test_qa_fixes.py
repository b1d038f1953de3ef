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

    assert main([*argv, "--max-dets", "100"]) == 0  # raised: no warning
    assert "best-scored" not in capsys.readouterr().err
    assert json.loads((tmp_path / "qa" / "report.json").read_text())["truncated_by_max_dets"] == []
