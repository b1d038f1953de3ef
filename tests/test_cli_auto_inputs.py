"""The "pre-label everything" CLI flows as a new user runs them: SAM 2 with several workers,
option and input validation, a second run with other settings, interruptions (issue 15 trial)."""

from __future__ import annotations

import threading

import pytest
import tifffile

from napari_instseg.cli import main


@pytest.fixture
def loose_presets(monkeypatch, loose_auto_settings):
    """Both SAM 2 presets loosened so a random-weight model yields masks (plumbing only)."""
    from napari_instseg.core.prompting import auto

    monkeypatch.setitem(auto.PRESETS, "cells", loose_auto_settings)
    monkeypatch.setitem(auto.PRESETS, "objects", loose_auto_settings)


@pytest.fixture
def small_slide(tmp_path):
    """A 256 x 512 RGB slide (the IHC tile's top half) as a TIFF: two 256-px tiles."""
    from skimage import data

    path = tmp_path / "ihc.tif"
    tifffile.imwrite(path, data.immunohistochemistry()[:256, :512])
    return path


def test_two_threads_build_sam2_predictors_and_generators_at_once(sam2_checkpoint, loose_auto_settings):
    from napari_instseg.core.prompting.auto import Sam2AutoSegmenter
    from napari_instseg.core.prompting.sam2 import Sam2Prompter

    start = threading.Barrier(2)
    built: list[object] = []
    errors: list[BaseException] = []

    def build() -> None:
        try:
            segmenter = Sam2AutoSegmenter(Sam2Prompter("tiny", sam2_checkpoint, "cpu"), loose_auto_settings)
            start.wait(timeout=60)
            built.append(segmenter.generator())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert len(built) == 2 and built[0] is not built[1]  # each worker its own model and predictor


def test_prelabel_slide_auto_sam2_with_two_workers(
    tmp_path, monkeypatch, sam2_checkpoint, loose_presets, small_slide, capsys
):
    from napari_instseg.core.store import AnnotationStore

    monkeypatch.setenv("NAPARI_INSTSEG_CACHE", str(tmp_path / "cache"))
    store = tmp_path / "s.zarr"
    argv = ["prelabel-slide", str(small_slide), "--store", str(store), "--auto", "cells", "--backend", "sam2"]
    argv += ["--checkpoint", str(sam2_checkpoint), "--device", "cpu", "--tile", "256", "--halo", "16"]
    assert main([*argv, "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert "pre-labels committed" in out
    with AnnotationStore.open(store, read_only=True) as opened:
        table = opened.table
    assert len(table) > 0 and set(table["source"]) == {"sam2-auto"}
