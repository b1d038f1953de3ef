"""The "pre-label everything" CLI flows as a new user runs them: SAM 2 with several workers,
option and input validation, a second run with other settings, interruptions (issue 15 trial)."""

from __future__ import annotations

import threading

import numpy as np
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


# ---- option and input validation (``prelabel --auto``, ``project prelabel --auto``) -------------


@pytest.fixture
def grey(tmp_path):
    path = tmp_path / "grey.tif"
    tifffile.imwrite(path, np.random.default_rng(0).integers(0, 255, (256, 256), dtype=np.uint8))
    return path


@pytest.fixture
def project_dir(tmp_path, grey):
    target = tmp_path / "proj"
    assert main(["project", "init", str(target), "--images", str(grey)]) == 0
    return target


def _auto(command, target, tmp_path):
    if command == "prelabel":
        return ["prelabel", str(target), "--auto", "--backend", "classic", "-o", str(tmp_path / "out.json")]
    return ["project", "prelabel", str(target), "--auto", "--backend", "classic"]


@pytest.mark.parametrize("command", ["prelabel", "project"])
@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("--auto-tile", "0", "argument --auto-tile: expected a positive integer, got 0"),
        ("--auto-tile", "-5", "argument --auto-tile: expected a positive integer, got -5"),
        ("--auto-halo", "-1", "argument --auto-halo: expected an integer >= 0, got -1"),
        ("--auto-points", "0", "argument --auto-points: expected a positive integer, got 0"),
        ("--auto-points", "-3", "argument --auto-points: expected a positive integer, got -3"),
    ],
)
def test_bad_auto_options_are_refused_by_argparse(
    command, option, value, expected, grey, project_dir, tmp_path, capsys
):
    target = grey if command == "prelabel" else project_dir
    with pytest.raises(SystemExit) as exited:
        main([*_auto(command, target, tmp_path), option, value])
    assert exited.value.code == 2
    assert expected in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "-2"])
def test_workers_below_one_are_refused(value, grey, project_dir, tmp_path, capsys):
    for argv, option in (
        ([*_auto("prelabel", grey, tmp_path), "--auto-workers", value], "--auto-workers"),
        ([*_auto("project", project_dir, tmp_path), "--workers", value], "--workers"),
    ):
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 2
        assert f"argument {option}: expected a positive integer, got {value}" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["prelabel", "project"])
@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--auto-halo", "0"], "--auto-halo 0: the automatic mode stitches objects cut by tile seams"),
        (["--auto-tile", "64", "--auto-halo", "64"], "--auto-halo 64 is not smaller than the tile (--auto-tile 64)"),
        (["--auto-halo", "600"], "--auto-halo 600 is not smaller than the tile (--auto-tile 512)"),  # the default
    ],
)
def test_a_halo_the_automatic_mode_cannot_stitch_with_is_refused(
    command, options, expected, grey, project_dir, tmp_path, capsys
):
    target = grey if command == "prelabel" else project_dir
    assert main([*_auto(command, target, tmp_path), *options]) == 2
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "out.json").exists()


def test_a_grid_of_too_many_tiles_is_refused_before_any_work(grey, tmp_path, capsys):
    assert main([*_auto("prelabel", grey, tmp_path), "--auto-tile", "2", "--auto-halo", "1"]) == 2
    err = capsys.readouterr().err
    assert f"--auto-tile 2: {grey}: tiles of 2 px cut the image (shape (y, x) (256, 256)) into 16384 tiles" in err
    assert "more than 10000; use tiles of at least 3 px" in err


@pytest.mark.parametrize("backend", ["classic", "sam2"])
@pytest.mark.parametrize("shape", [(5, 200, 300), (200, 300, 2)])
def test_a_stack_or_two_channel_image_is_refused_naming_the_file(backend, shape, tmp_path, sam2_checkpoint, capsys):
    path = tmp_path / "odd.tif"
    tifffile.imwrite(path, np.zeros(shape, np.uint8))
    argv = ["prelabel", str(path), "--auto", "--backend", backend, "-o", str(tmp_path / "out.json")]
    if backend == "sam2":
        argv += ["--checkpoint", str(sam2_checkpoint), "--device", "cpu"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{path}: expected a grey (y, x) or RGB(A) (y, x, 3|4) image, got shape {shape}" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("command", ["prelabel", "project"])
def test_an_unknown_category_is_refused_before_the_segmentation(
    command, grey, project_dir, tmp_path, monkeypatch, capsys
):
    from napari_instseg.core.prompting import auto

    def no_segmentation(*args, **kwargs):
        raise AssertionError("the segmentation ran before the category was checked")

    monkeypatch.setattr(auto, "auto_objects", no_segmentation)
    target = grey if command == "prelabel" else project_dir
    assert main([*_auto(command, target, tmp_path), "--category", "mitochondrion"]) == 2
    assert "Category 'mitochondrion' is not in protocol" in capsys.readouterr().err


def test_prelabel_slide_auto_refuses_a_halo_of_zero(small_slide, tmp_path, capsys):
    store = tmp_path / "s.zarr"
    argv = ["prelabel-slide", str(small_slide), "--store", str(store), "--auto", "--backend", "classic"]
    assert main([*argv, "--tile", "128", "--halo", "0"]) == 2
    assert "--halo 0: the automatic mode stitches objects cut by tile seams" in capsys.readouterr().err
    assert not store.exists()


# ---- a second prelabel-slide run with another mode or backend (issue 15 trial, 5) ----------------


def _slide_argv(slide, store, *options):
    return ["prelabel-slide", str(slide), "--store", str(store), "--tile", "128", "--halo", "32", *options]


def test_a_second_prelabel_slide_run_with_another_mode_or_backend_is_refused(
    small_slide, tmp_path, sam2_checkpoint, capsys
):
    from napari_instseg.core.store import AnnotationStore

    store = tmp_path / "s.zarr"
    assert main(_slide_argv(small_slide, store, "--auto", "cells", "--backend", "classic")) == 0
    with AnnotationStore.open(store, read_only=True) as opened:
        n_before = len(opened.table)
    capsys.readouterr()
    sam2 = ["--backend", "sam2", "--checkpoint", str(sam2_checkpoint), "--device", "cpu"]
    for options, asked in (
        (["--detect", "--backend", "classic"], "--detect --backend classic"),
        (["--auto", "objects", "--backend", "classic"], "--auto objects --backend classic"),
        (["--auto", "cells", *sam2], "--auto cells --backend sam2 --model tiny"),
    ):
        assert main(_slide_argv(small_slide, store, *options)) == 2
        err = capsys.readouterr().err
        assert f"its pre-labelling ran with --auto cells --backend classic, this run asks for {asked}" in err
        assert "Resume with --auto cells --backend classic, or pre-label into another --store. Nothing done." in err
    with AnnotationStore.open(store, read_only=True) as opened:
        assert len(opened.table) == n_before
    assert main(_slide_argv(small_slide, store, "--auto", "cells", "--backend", "classic")) == 0  # the same resumes
    assert "tiles already done" in capsys.readouterr().out


def test_a_store_written_before_the_mode_was_recorded_still_resumes(small_slide, tmp_path, capsys):
    import json

    from napari_instseg.core.batch import TILING_MARK
    from napari_instseg.core.store import AnnotationStore

    store = tmp_path / "s.zarr"
    argv = _slide_argv(small_slide, store, "--auto", "cells", "--backend", "classic")
    assert main(argv) == 0
    with AnnotationStore.open(store) as opened:  # as an earlier version wrote it: the grid only
        opened.set_marks({TILING_MARK: json.dumps({"tile_px": 128, "halo_px": 32}).encode()})
    capsys.readouterr()
    assert main(argv) == 0
    assert "8 tiles already done" in capsys.readouterr().out


# ---- Ctrl-C (issue 15 trial, 16) -------------------------------------------------------------------


def _interrupt_after(first: int):
    """A progress bar factory whose bar raises KeyboardInterrupt (Ctrl-C) after ``first`` steps."""

    def factory(desc, unit):
        def progress(done, total):
            if done >= first:
                raise KeyboardInterrupt

        return progress

    return factory


def test_ctrl_c_in_prelabel_slide_prints_one_line_and_the_rerun_resumes(small_slide, tmp_path, monkeypatch, capsys):
    import napari_instseg.cli as cli

    store = tmp_path / "s.zarr"
    argv = _slide_argv(small_slide, store, "--auto", "cells", "--backend", "classic", "--workers", "1")
    monkeypatch.setattr(cli, "progress_bar", _interrupt_after(3))
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        f"napari-instseg prelabel-slide: interrupted: every finished tile is saved in {store}; run the same "
        "command again to resume (tiles already done are skipped)."
    ]
    monkeypatch.undo()
    assert main(argv) == 0
    assert "3 tiles already done" in capsys.readouterr().out


def test_ctrl_c_in_project_prelabel_and_in_prelabel(project_dir, grey, tmp_path, monkeypatch, capsys):
    import napari_instseg.cli as cli

    monkeypatch.setattr(cli, "progress_bar", _interrupt_after(1))
    assert main(_auto("project", project_dir, tmp_path)) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1
    assert f"project: interrupted: every image finished is saved in project {project_dir}; run the same" in err
    assert main([*_auto("prelabel", grey, tmp_path), "--auto-tile", "128", "--auto-halo", "32"]) == 130
    assert capsys.readouterr().err == "napari-instseg prelabel: interrupted.\n"
    assert not (tmp_path / "out.json").exists()


# ---- messages (issue 15 trial, 17) -----------------------------------------------------------------


def test_prelabel_slide_auto_counts_automatic_masks_not_prompts(small_slide, tmp_path, capsys):
    assert main(_slide_argv(small_slide, tmp_path / "s.zarr", "--auto", "cells", "--backend", "classic")) == 0
    out = capsys.readouterr().out
    assert "automatic masks on 8 tiles" in out and "prompts" not in out


def test_a_store_that_cannot_be_created_is_named_not_its_temporary_folder(small_slide, tmp_path, capsys):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where a folder should be")
    store = blocker / "s.zarr"
    assert main(_slide_argv(small_slide, store, "--auto", "cells", "--backend", "classic")) == 2
    err = capsys.readouterr().err
    assert f"error: {store}: cannot create the annotation store there (" in err
    assert f"folder {blocker}); choose a folder you can write to. Nothing done." in err
    assert ".creating-" not in err


def test_store_pointing_at_a_project_or_another_folder_is_refused_with_what_it_is(
    small_slide, project_dir, tmp_path, capsys
):
    assert main(_slide_argv(small_slide, project_dir, "--auto", "cells", "--backend", "classic")) == 2
    err = capsys.readouterr().err
    assert f"--store {project_dir} is a project folder, not an annotation store: use the 'napari-instseg project" in err
    assert "AnnotationStore.open()" not in err
    other = tmp_path / "photos"
    other.mkdir()
    assert main(_slide_argv(small_slide, other, "--auto", "cells", "--backend", "classic")) == 2
    assert f"--store {other} is an existing folder but not an annotation store" in capsys.readouterr().err
