"""``project prelabel --auto``: pre-label everything in every image of a project, as users run
it (classic without weights; SAM 2 with random weights for the plumbing only)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_instseg.cli import main
from napari_instseg.core.project import Project


@pytest.fixture
def project_dir(tmp_path, ihc_image):
    """A project over two 256 x 256 IHC tiles."""
    import tifffile

    folder = tmp_path / "tiles"
    folder.mkdir()
    for k in range(2):
        tifffile.imwrite(folder / f"tile_{k}.tif", ihc_image[:256, k * 256 : (k + 1) * 256])
    target = tmp_path / "proj"
    assert main(["project", "init", str(target), "--images", str(folder / "*.tif")]) == 0
    return target


def _stores(project_dir):
    out = []
    with Project.open(project_dir) as project:
        for item in project.items():
            store = project.open_store(item, read_only=True)
            try:
                scores = {i: r.score for i, r in store.read_side("prelabel").items()}
                out.append((item, store.read_labels(), store.table, scores))
            finally:
                store.close()
    return out


def test_project_prelabel_auto_matches_prelabel_auto_and_resumes(project_dir, tmp_path, capsys):
    settings = ["--auto", "--backend", "classic", "--auto-tile", "128", "--auto-halo", "32"]
    assert main(["project", "prelabel", str(project_dir), *settings, "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert "automatic mode (cells preset)" in out and "2 of 2 image(s) pre-labelled (classic-auto)" in out
    stores = _stores(project_dir)
    for item, labels, table, scores in stores:
        assert item.status == "pre-labelled" and item.n_instances == len(table) > 10
        assert set(table["source"]) == {"classic-auto"} and set(table["review"]) == {"pre-label"}
        assert set(np.unique(labels)) - {0} == set(table.index)
        assert all(0 <= s <= 1 for s in scores.values()) and set(scores) == set(table.index)
        # the same pre-labels as `prelabel IMAGE --auto` with the same settings
        single = tmp_path / f"{item.image_id}.json"
        with Project.open(project_dir) as project:
            image_path = project.image_path(item)
        assert main(["prelabel", str(image_path), *settings, "-o", str(single)]) == 0
        expected = sorted(a["score"] for a in json.loads(single.read_text())["annotations"])
        assert sorted(scores.values()) == pytest.approx(expected)
    # a second run: everything done, nothing committed twice
    assert main(["project", "prelabel", str(project_dir), *settings]) == 0
    assert "0 of 0 image(s) pre-labelled" in capsys.readouterr().out
    assert [len(t) for _, _, t, _ in _stores(project_dir)] == [len(t) for _, _, t, _ in stores]


@pytest.mark.slow
def test_project_prelabel_auto_with_sam2_random_weights(project_dir, sam2_checkpoint, capsys):
    argv = ["project", "prelabel", str(project_dir), "--auto", "objects", "--backend", "sam2"]
    argv += ["--checkpoint", str(sam2_checkpoint), "--device", "cpu", "--auto-points", "2"]
    assert main(argv) == 0
    assert "2 of 2 image(s) pre-labelled (sam2-auto)" in capsys.readouterr().out
    for item, _, table, _ in _stores(project_dir):  # random weights: how many pass the filters means nothing
        assert item.status == "pre-labelled" and set(table["source"]) <= {"sam2-auto"}
