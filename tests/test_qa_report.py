"""The QA command: report.json / summary.md / report.html (opened in headless Chromium)."""

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_qa import synthetic_sets
from napari_instseg.cli import main
from napari_instseg.core.qa import prepare, scores_of


@pytest.fixture(scope="module")
def qa_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("qa")
    gt, dt = synthetic_sets(3, 36, size=128, seed=5)
    for ann in gt["annotations"][:20]:
        ann["attributes"] = {"source": "sam2", "review": "accepted", "prelabel_iou": 1.0, "time_s": 3.0}
    (folder / "gt.json").write_text(json.dumps(gt))
    (folder / "dt.json").write_text(json.dumps(dt))
    (folder / "full.json").write_text(json.dumps(gt))  # a full COCO file as candidates
    images = folder / "images"
    images.mkdir()
    for image in gt["images"]:
        tifffile.imwrite(
            images / image["file_name"], np.random.default_rng(0).integers(0, 255, (128, 128), dtype=np.uint8)
        )
    return folder, gt, dt


def _qa_argv(folder, out, *extra, dt="dt.json"):
    """``napari-instseg qa`` arguments for the fixture's files, writing to ``out``."""
    return ["qa", "--gt", str(folder / "gt.json"), "--dt", str(folder / dt), "-o", str(out), *extra]


def test_qa_cli_writes_report_json_summary_and_queue(qa_files, capsys):
    folder, gt, dt = qa_files
    out = folder / "out"
    assert main(_qa_argv(folder, out, "--images", str(folder / "images"), "--max-dets", "500")) == 0
    report = json.loads((out / "report.json").read_text())
    expected = prepare(gt, dt)
    assert report["overall"]["AP"] == pytest.approx(scores_of(expected).AP, abs=1e-12)
    for tier in ("none", "partial", "heavy"):
        assert set(report["per_tier"][tier]) >= {"AP", "AP50", "AP75", "n_gt"}
        assert report["per_tier"][tier]["n_gt"] == expected.n_gt(tier)
    assert report["per_class"]["nucleus"]["AP"] == pytest.approx(report["overall"]["AP"])
    assert report["max_dets"] == 500 and report["review_sample"]["n_items"] > 0
    summary = (out / "summary.md").read_text()
    assert "| heavy |" in summary and "Review sample" in summary
    assert (out / "review_queue.csv").is_file() and (out / "review_queue.json").is_file()
    assert "wrote" in capsys.readouterr().out


def test_full_coco_candidates_score_one_and_prelabel_section(qa_files):
    folder, _, _ = qa_files
    out = folder / "self"
    assert main(_qa_argv(folder, out, "--stratify-by", "occlusion", "category", dt="full.json")) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["overall"]["AP"] == pytest.approx(1.0)
    assert report["prelabels"]["overall"]["acceptance_rate"] == pytest.approx(1.0)
    assert report["review_sample"]["stratified_by"] == ["occlusion", "category"]
    assert all("category=nucleus" in k for k in report["review_sample"]["per_stratum"])


def test_review_outcomes_feed_the_report(qa_files):
    from napari_instseg.core.qa.sampling import read_queue, write_queue

    folder, _, _ = qa_files
    out = folder / "reviewed"
    main(_qa_argv(folder, out))
    queue = read_queue(out / "review_queue.json")
    queue["outcome"] = ["fail" if i % 3 == 0 else "pass" for i in range(len(queue))]
    write_queue(queue, out, stem="reviewed")
    # the same folder again: only with --overwrite (the verdicts are in reviewed.json, an input)
    assert main(_qa_argv(folder, out, "--outcomes", str(out / "reviewed.json"))) == 2
    assert main(_qa_argv(folder, out, "--outcomes", str(out / "reviewed.json"), "--overwrite")) == 0
    report = json.loads((out / "report.json").read_text())
    rows = report["review_outcomes"]["occlusion"]
    assert sum(r["reviewed"] for r in rows) == len(queue)
    assert all(r["ci_low"] <= r["error_rate"] <= r["ci_high"] for r in rows)
    assert "error rate heavy" in (out / "summary.md").read_text()


def test_html_report_opens_in_headless_chromium_with_its_plots(qa_files):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Chromium is missing: run scripts/system-deps.sh (make test does)"
    folder, _, _ = qa_files
    out = folder / "html"
    main(_qa_argv(folder, out, "--images", str(folder / "images")))
    html = (out / "report.html").read_text()
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html  # self-contained
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                f"--user-data-dir={profile}",
                "--virtual-time-budget=5000",
                "--dump-dom",
                (out / "report.html").as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
    for plot in ("pr_curves", "ap_per_class", "iou_histogram"):
        assert f'id="plot-{plot}"' in dom
    loaded = int(dom.split('data-images-loaded="')[1].split('"')[0])
    assert loaded >= 3 + 1  # the plots and at least one gallery crop decoded and laid out


def test_report_plots_leave_matplotlib_global_state_alone(qa_files, tmp_path):
    """The report draws with matplotlib's object API: no pyplot import, no backend switch
    (safe in a napari worker thread)."""
    folder, _, _ = qa_files
    args = _qa_argv(folder, tmp_path / "out", "--images", str(folder / "images"))
    code = (
        "import sys, matplotlib; backend = matplotlib.rcParams._get_backend_or_none()\n"
        "from napari_instseg.cli import main\n"
        f"assert main({args!r}) == 0\n"
        "print('pyplot' if 'matplotlib.pyplot' in sys.modules else 'no pyplot', "
        "matplotlib.rcParams._get_backend_or_none() == backend)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "no pyplot True"
    assert "data:image/png;base64," in (tmp_path / "out" / "report.html").read_text()
