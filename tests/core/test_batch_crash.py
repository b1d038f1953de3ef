"""prelabel-slide killed (SIGKILL) while it commits a tile, then run again: the store holds
exactly the instances of an uninterrupted run, with and without ``--auto``, even when the
tile's second segmentation differs from the first (as on a GPU) - a tile is recorded done
in the same transaction as its masks. Stores of the previous version (``batch_done.json``,
``batch_auto_pending.npz``) resume too."""

import io
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _batch_crash_child import TILE, config, prompts
from test_batch import VOLATILE, make_slide

import napari_instseg.core.batch as batch
from napari_instseg.core.store import AnnotationStore, check_store

CHILD = Path(__file__).parent / "_batch_crash_child.py"


@pytest.fixture(scope="module")
def slide_path(tmp_path_factory):
    return make_slide(tmp_path_factory.mktemp("slide") / "ihc.zarr", tiles=2, tile_px=192)


@pytest.fixture(scope="module")
def whole(slide_path, tmp_path_factory):
    """Uninterrupted runs: {'prompts' | 'auto': store path}."""
    folder = tmp_path_factory.mktemp("whole")
    batch.prelabel_slide(slide_path, folder / "prompts.zarr", prompts(), config=config(), workers=1)
    batch.prelabel_slide(slide_path, folder / "auto.zarr", auto="cells", config=config(), workers=1)
    return {"prompts": folder / "prompts.zarr", "auto": folder / "auto.zarr"}


def _run(slide_path, store, mode, path, kill_at=3):
    """Run the batch in a child killed at its ``kill_at``-th commit; the tile it was committing."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(CHILD.parent), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, str(CHILD), str(slide_path), str(store), mode, str(kill_at), path],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == -9, done.stdout + done.stderr  # killed, not finished
    words = done.stdout.split()
    return int(words[-2]), int(words[-1])


def _run_again(slide_path, store, path, shifted_tile, monkeypatch):
    """Run again in this process; the tile of the crash segments a one-pixel-shifted image
    (a second segmentation need not equal the first: GPU, device, cache)."""
    open_slide = batch.open_slide

    class Shifted:
        def __init__(self, slide):
            self._slide = slide

        def __getattr__(self, name):
            return getattr(self._slide, name)

        def read_region(self, region_yx, level=0):
            image = self._slide.read_region(region_yx, level)
            y0, x0 = region_yx[:2]
            inside = (y0 + TILE // 2) // TILE, (x0 + TILE // 2) // TILE  # the tile whose window it is
            return np.roll(image, (1, 1), axis=(0, 1)) if level == 0 and inside == shifted_tile else image

    monkeypatch.setattr(batch, "open_slide", lambda source: Shifted(open_slide(source)))
    if path == "auto":
        return batch.prelabel_slide(slide_path, store, auto="cells", config=config(), workers=1)
    return batch.prelabel_slide(slide_path, store, prompts(), config=config(), workers=1)


def _assert_same(store_a, store_b):
    assert check_store(store_b).ok, check_store(store_b).problems
    with AnnotationStore.open(store_a, read_only=True) as a, AnnotationStore.open(store_b, read_only=True) as b:
        assert b.n_instances == a.n_instances
        np.testing.assert_array_equal(b.read_labels(), a.read_labels())
        pd.testing.assert_frame_equal(b.table.drop(columns=VOLATILE), a.table.drop(columns=VOLATILE))


@pytest.mark.parametrize("path", ["prompts", "auto"])
@pytest.mark.parametrize("mode", ["apply", "after"])
def test_sigkill_while_committing_a_tile_then_rerun_gives_the_uninterrupted_store(
    slide_path, whole, tmp_path, monkeypatch, path, mode
):
    store = tmp_path / "killed.zarr"
    crashed_tile = _run(slide_path, store, mode, path)
    summary = _run_again(slide_path, store, path, crashed_tile, monkeypatch)
    assert summary.n_skipped_done >= 1
    _assert_same(whole[path], store)
    again = _run_again(slide_path, store, path, crashed_tile, monkeypatch)  # a third run: nothing left to do
    assert again.n_committed == 0 and again.n_skipped_done == again.n_tiles
    _assert_same(whole[path], store)


class _Stop(Exception):
    pass


def _to_previous_version(store):
    """What the previous version left: done tiles in ``batch_done.json``, the seam buffer in
    ``batch_auto_pending.npz`` (the same npz bytes), and no mark tables in the database."""
    with AnnotationStore.open(store, read_only=True) as opened:
        marks = opened.read_marks(batch.MARK_PREFIX)
    done = sorted(
        [int(v) for v in key[len(batch.DONE_MARK) :].split(",")] for key in marks if key.startswith(batch.DONE_MARK)
    )
    (store / "instseg" / "batch_done.json").write_text(json.dumps({"tiles": done}))
    if batch.PENDING_MARK in marks:
        (store / "instseg" / "batch_auto_pending.npz").write_bytes(marks[batch.PENDING_MARK])
    conn = sqlite3.connect(store / "instseg" / "store.sqlite")
    conn.execute("DROP TABLE marks")
    conn.execute("DROP TABLE marks_pending")
    conn.commit()
    conn.close()
    return done


@pytest.mark.parametrize("path", ["prompts", "auto"])
def test_a_store_of_the_previous_version_resumes(slide_path, whole, tmp_path, path):
    store = tmp_path / "old.zarr"

    def stop(done, total):
        if done == 2:
            raise _Stop

    run = {"prompts": {"prompts": prompts()}, "auto": {"auto": "cells"}}[path]
    with pytest.raises(_Stop):
        batch.prelabel_slide(slide_path, store, config=config(), workers=1, progress=stop, **run)
    done = _to_previous_version(store)
    assert len(done) == 2
    if path == "auto":
        with np.load(io.BytesIO((store / "instseg" / "batch_auto_pending.npz").read_bytes())) as pending:
            assert len(pending["boxes"]) > 0  # seam objects waiting for the next tiles
    with AnnotationStore.open(store, read_only=True) as opened:
        assert opened.read_marks() == {}  # a reader of the old store: no mark tables, none read
    resumed = batch.prelabel_slide(slide_path, store, config=config(), workers=1, **run)
    assert resumed.n_skipped_done == 2
    _assert_same(whole[path], store)
    assert json.loads((store / "instseg" / "batch_done.json").read_text()) == {"tiles": done}  # read, never written
    assert batch.prelabel_slide(slide_path, store, config=config(), workers=1, **run).n_committed == 0


class _Crash(BaseException):
    """The process dying right there (nothing after it is written)."""


def _two_sources(segment_tile):
    """Each prompt's mask as two masks of two sources (top half, bottom half): a tile whose
    masks come from two sources is saved as two actions."""

    def split(source, window, tile_prompts, config, detect):
        out = []
        for mask, score, _ in segment_tile(source, window, tile_prompts, config, detect):
            full = mask.full(window.shape_yx)
            y0, _, y1, _ = mask.bbox_yx
            top, bottom = full.copy(), full.copy()
            top[(y0 + y1) // 2 :] = False
            bottom[: (y0 + y1) // 2] = False
            out += [
                (batch.CroppedMask.from_full(top), score, "classic"),
                (batch.CroppedMask.from_full(bottom), score, "sam2"),
            ]
        return out

    return split


def test_a_crash_between_the_sources_of_one_tile_redoes_only_the_missing_source(slide_path, tmp_path, monkeypatch):
    from _batch_crash_child import Tracked

    monkeypatch.setattr(batch, "segment_tile", _two_sources(batch.segment_tile))
    uninterrupted = batch.prelabel_slide(slide_path, tmp_path / "whole.zarr", prompts(), config=config(), workers=1)
    record, count = AnnotationStore.record, [0]

    def crash_record(self, kind, edit, **kwargs):
        seq = record(self, kind, edit, **kwargs)
        count[0] += 1
        if count[0] == 5:  # the first of the third tile's two actions
            raise _Crash
        return seq

    done_tiles = batch._done_tiles
    with monkeypatch.context() as crashing:
        crashing.setattr(AnnotationStore, "record", crash_record)
        crashing.setattr(batch, "_done_tiles", lambda s: Tracked(done_tiles(s)))
        with pytest.raises(_Crash):
            batch.prelabel_slide(slide_path, tmp_path / "killed.zarr", prompts(), config=config(), workers=1)
    crashed_tile = Tracked.last
    with AnnotationStore.open(tmp_path / "killed.zarr", read_only=True) as opened:
        assert batch._part_mark(crashed_tile, "classic") in opened.read_marks(batch.PART_MARK)
        before = opened.read_labels()
    resumed = _run_again(slide_path, tmp_path / "killed.zarr", "prompts", crashed_tile, monkeypatch)
    assert resumed.n_skipped_done == 2 and uninterrupted.n_committed == 10
    assert check_store(tmp_path / "killed.zarr").ok
    with AnnotationStore.open(tmp_path / "killed.zarr", read_only=True) as killed:
        assert killed.n_instances == 10  # the source committed before the crash is not doubled
        after = killed.read_labels()
    np.testing.assert_array_equal(after[before > 0], before[before > 0])
    with AnnotationStore.open(tmp_path / "whole.zarr", read_only=True) as whole_store:
        expected = whole_store.read_labels()
    y0, x0 = (max(v * TILE - 16, 0) for v in crashed_tile)  # the crashed tile's window was segmented anew
    outside = np.ones(expected.shape, bool)
    outside[y0 : (crashed_tile[0] + 1) * TILE + 16, x0 : (crashed_tile[1] + 1) * TILE + 16] = False
    np.testing.assert_array_equal(after[outside], expected[outside])
