"""Track stacks: the per-frame commit rule, occlusion tiers per frame, absent frames, undo."""

import numpy as np
import pytest

from napari_instseg.core.video.tracks import TrackError, TrackStack


def _disk(shape, cy, cx, r):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def test_committed_pixels_are_never_written_unless_in_front():
    labels = np.zeros((2, 20, 20), np.uint32)
    labels[:, 5:15, 5:10] = 3  # a committed instance on both frames
    stack = TrackStack(labels)
    behind, front = stack.new_track(), stack.new_track(in_front=True)
    mask = np.zeros((20, 20), bool)
    mask[5:15, 2:12] = True  # overlaps instance 3 on columns 5..9
    with stack.action("propagate"):
        stack.apply_frame(0, [behind], mask[None])
        stack.apply_frame(1, [front], mask[None])
    assert (stack.labels_tyx[0, 5:15, 5:10] == 3).all()  # untouched
    assert (stack.labels_tyx[0][mask & (labels[0] == 0)] == behind).all()
    assert (stack.labels_tyx[1][mask] == front).all()  # in front: written whole
    rec = stack.record(0, behind)
    assert rec.predicted_px == 100 and rec.visible_px == 50 and rec.occluded_fraction == pytest.approx(0.5)
    assert rec.occlusion == "heavy" and stack.record(1, front).occlusion == "none"


def test_an_object_passing_behind_another_gets_per_frame_tiers_and_absent_frames():
    shape = (20, 40)
    stack = TrackStack(np.zeros((4, *shape), np.uint32))
    near = stack.new_track(in_front=True)
    far = stack.new_track()
    with stack.action("propagate"):
        for t, cx in enumerate((8, 11, 20)):
            masks = np.stack([_disk(shape, 10, 20, 6), _disk(shape, 10, cx, 5)])
            stack.apply_frame(t, [near, far], masks, scores=[2.0, 1.5])
        stack.apply_frame(3, [near, far], np.stack([_disk(shape, 10, 20, 6), np.zeros(shape, bool)]), [2.0, -3.0])
    tiers = [stack.occlusion_on(t, far) for t in range(3)]
    assert tiers == ["none", "partial", "heavy"]
    assert stack.record(2, far).visible_px == 0 and stack.record(2, far).occluded_fraction == 1.0
    absent = stack.record(3, far)
    assert not absent.present and absent.occlusion == "" and np.isnan(absent.occluded_fraction)
    assert absent.score == -3.0 and not (stack.labels_tyx[3] == far).any()
    stack.refresh_rows()
    assert stack.table.at[far, "occlusion"] == "heavy" and stack.table.at[near, "occlusion"] == "none"
    assert stack.frames_of(far) == [0, 1] and stack.track_ids() == [near, far]
    table = stack.frame_table()
    assert list(table.columns)[:3] == ["frame", "track_id", "present"] and len(table) == 8


def test_repropagation_replaces_a_tracks_own_pixels_and_undo_is_one_step():
    stack = TrackStack(np.zeros((1, 10, 10), np.uint32))
    a, b = stack.new_track(), stack.new_track()
    first = np.zeros((2, 10, 10), bool)
    first[0, :5], first[1, 5:] = True, True
    with stack.action("propagate"):
        stack.apply_frame(0, [a, b], first)
    before = stack.labels_tyx.copy()
    with stack.action("propagate"):
        stack.apply_frame(0, [a, b], first[::-1])  # the two swap places
    assert (stack.labels_tyx[0, 5:] == a).all() and (stack.labels_tyx[0, :5] == b).all()
    patches = stack.undo_stack[-1].patches
    assert len(patches) == 1 and patches[0].region_yx == (0, 0, 10, 10)  # only what changed is kept
    assert stack.undo() == "propagate"
    np.testing.assert_array_equal(stack.labels_tyx, before)
    assert stack.redo() == "propagate" and (stack.labels_tyx[0, 5:] == a).all()


def test_undo_history_holds_only_the_changed_boxes():
    stack = TrackStack(np.zeros((50, 64, 64), np.uint32))
    track = stack.new_track()
    mask = np.zeros((64, 64), bool)
    mask[10:14, 20:26] = True
    with stack.action("propagate"):
        for t in range(50):
            stack.apply_frame(t, [track], mask[None])
    patches = stack.undo_stack[-1].patches
    assert len(patches) == 50 and sum(p.before.nbytes + p.after.nbytes for p in patches) == 50 * 2 * 24 * 4
    stack.undo()
    assert not stack.labels_tyx.any() and not any(r.present for per in stack.records.values() for r in per.values())


def test_errors_name_the_problem():
    stack = TrackStack(np.zeros((2, 4, 4), np.uint16))
    assert stack.labels_tyx.dtype == np.uint32
    with pytest.raises(TrackError, match=r"Track\(s\) \[5\] have no table row"), stack.action("x"):
        stack.apply_frame(0, [5], np.ones((1, 4, 4), bool))
    with pytest.raises(TrackError, match=r"Frame 2 is outside the stack \(frames 0 to 1\)"):
        stack.mask_of(2, 1)
    with pytest.raises(TrackError, match="inside an action"):
        stack.apply_frame(0, [stack.new_track()], np.ones((1, 4, 4), bool))
    with pytest.raises(TrackError, match=r"expected a \(t, y, x\) label stack"):
        TrackStack(np.zeros((4, 4), np.uint32))
