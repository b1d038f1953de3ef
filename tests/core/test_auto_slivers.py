"""A second automatic run over pre-labelled pixels commits no slivers (TRIAL #4)."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
from skimage.draw import disk

from napari_instseg.core.commit_rules import MIN_FREE_FRACTION, auto_commit_plan
from napari_instseg.core.edits import CroppedMask
from napari_instseg.core.prompting.auto import ClassicAutoSegmenter, auto_objects, commit_auto
from napari_instseg.core.session import AnnotationSession
from napari_instseg.core.stitch import AutoObject
from napari_instseg.core.store import AnnotationStore

DATA = Path(__file__).resolve().parents[1] / "data" / "nuclei_dsb2018"


def _disk(shape_yx, centre_yx, radius, score=0.9):
    mask = np.zeros(shape_yx, bool)
    mask[disk(centre_yx, radius, shape=shape_yx)] = True
    return AutoObject(CroppedMask.from_full(mask), score)


def test_a_second_run_with_other_tiles_adds_no_slivers():
    image = iio.imread(DATA / "fluo_1c8b905c.png")
    session = AnnotationSession(np.zeros(image.shape[:2], np.uint32))
    first = commit_auto(session, auto_objects(image, ClassicAutoSegmenter(), tile_px=512, halo_px=64), "classic-auto")
    assert first.n_committed > 50
    n_rows = len(session.table)
    second = commit_auto(session, auto_objects(image, ClassicAutoSegmenter(), tile_px=256, halo_px=64), "classic-auto")
    assert second.n_committed == 0
    assert len(session.table) == n_rows
    assert second.n_covered + second.n_mostly_covered == second.n_found
    assert second.n_mostly_covered > 0
    assert "fell mostly on earlier instances" in str(second)


def test_a_new_object_next_to_labelled_ones_is_still_committed():
    shape = (120, 160)
    session = AnnotationSession(np.zeros(shape, np.uint32))
    labelled = np.zeros(shape, bool)
    labelled[disk((60, 40), 15, shape=shape)] = True
    session.commit(labelled, source="manual")
    objects = [
        _disk(shape, (60, 40), 16, 0.95),  # the labelled object found again: a 1-px ring is free
        _disk(shape, (60, 40), 12, 0.9),  # inside it: entirely covered
        _disk(shape, (60, 68), 14, 0.8),  # a new neighbour, a little of it on the labelled one
        _disk(shape, (60, 120), 10, 0.7),  # a new object on free pixels
    ]
    summary = commit_auto(session, objects, "classic-auto")
    assert (summary.n_committed, summary.n_covered, summary.n_mostly_covered) == (2, 1, 1)
    neighbour = session.labels_yx == summary.instance_ids[0]
    assert neighbour[60, 70] and neighbour.sum() > 0.8 * objects[2].mask.area_px
    assert (session.labels_yx[labelled] == 1).all()  # never over committed instances


def test_the_rule_counts_masks_kept_earlier_in_the_same_run():
    shape = (64, 64)
    big = CroppedMask.from_full(np.pad(np.ones((20, 20), bool), 22))
    nearly_same = CroppedMask.from_full(np.pad(np.ones((20, 21), bool), ((22, 22), (22, 21))))
    plan = auto_commit_plan(np.zeros(shape, np.uint32), [big, nearly_same], min_area_px=4)
    assert plan.keep == (0,) and plan.n_mostly_covered == 1
    half_free = CroppedMask.from_full(np.pad(np.ones((20, 20), bool), ((22, 22), (32, 12))))  # 10 of 20 cols free
    plan = auto_commit_plan(np.zeros(shape, np.uint32), [big, half_free], min_area_px=4)
    assert MIN_FREE_FRACTION == 0.5 and plan.keep == (0, 1)  # exactly half free: kept
    plan = auto_commit_plan(np.zeros(shape, np.uint32), [big, half_free], min_area_px=250)
    assert plan.keep == (0,)  # the free part is below the run's minimum area


def test_the_slide_window_path_drops_slivers_too(tmp_path):
    shape = (300, 300)
    store = AnnotationStore.create(tmp_path / "s.zarr", shape, image={"file_name": "s.tif"})
    window = (100, 100, 228, 228)
    session = store.window_session(window)
    objects = [_disk(shape, (150, 150), 12), _disk(shape, (150, 190), 10)]  # image coordinates
    first = commit_auto(session, objects, "classic-auto", origin_yx=window[:2])
    assert first.n_committed == 2
    again = store.window_session((90, 90, 250, 250))
    grown = [_disk(shape, (150, 150), 13), _disk(shape, (150, 190), 11), _disk(shape, (200, 150), 9)]
    second = commit_auto(again, grown, "classic-auto", origin_yx=(90, 90))
    assert (second.n_committed, second.n_mostly_covered) == (1, 2)
    store.close()
    with AnnotationStore.open(tmp_path / "s.zarr") as reopened:
        assert len(reopened.table) == 3
