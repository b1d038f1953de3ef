"""SAM 2 video propagation through sam2's real video predictor, with a random-weight checkpoint.

Random weights exercise every code path; masks mean nothing, so nothing here judges quality.
The model runs at a 64-pixel input size and on one thread to keep these tests quick.
"""

import numpy as np
import pytest
import torch

from napari_instseg.core.prompting.base import Prompt
from napari_instseg.core.video.frames import FrameStackError, LazyFrames
from napari_instseg.core.video.propagate import (
    ObjectPrompt,
    PropagationError,
    VideoPropagator,
    frame_order,
    new_inference_state,
)
from napari_instseg.core.video.tracking import propagate_tracks
from napari_instseg.core.video.tracks import TrackStack

SHAPE = (8, 40, 56)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two cores shared by many processes: oversubscription is 10x slower
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(1)
    stack = rng.integers(0, 60, SHAPE, dtype=np.uint8)
    for t in range(SHAPE[0]):  # a bright square moving right
        stack[t, 10:24, 5 + 3 * t : 19 + 3 * t] = 220
    return stack


@pytest.fixture(scope="module")
def propagator(sam2_checkpoint):
    return VideoPropagator("tiny", sam2_checkpoint, device="cpu", image_size=64)


def test_lazy_frames_match_sam2s_own_loader(tmp_path):
    from PIL import Image
    from sam2.utils.misc import _load_img_as_tensor

    rgb = np.random.default_rng(0).integers(0, 255, (3, 30, 44, 3), dtype=np.uint8)
    lazy = LazyFrames(rgb, 64)
    Image.fromarray(rgb[1]).save(tmp_path / "1.png")
    expected, height, width = _load_img_as_tensor(str(tmp_path / "1.png"), 64)
    expected = expected.float()
    expected -= torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    expected /= torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    assert (lazy.video_height, lazy.video_width) == (height, width) == (30, 44)
    assert lazy.reads == 0  # nothing is read before the model asks
    torch.testing.assert_close(lazy[1], expected, rtol=0, atol=1e-6)
    assert lazy[1] is lazy[1] and lazy.reads == 1
    lazy[0], lazy[2]
    assert lazy.reads == 3 and len(lazy._cache) == 2  # only the last two are kept


def test_non_uint8_stacks_share_one_intensity_scale():
    stack = np.zeros((4, 8, 8), np.uint16)
    stack[:, :4] = 1000
    stack[3, :4] = 500  # a darker frame stays darker than the others
    lazy = LazyFrames(stack, 64)
    assert lazy.rgb_uint8(0)[0, 0, 0] == 255 and lazy.rgb_uint8(3)[0, 0, 0] < 255


@pytest.mark.parametrize("shape", [(5, 5), (2, 5, 5, 2), (0, 5, 5)])
def test_bad_stacks_are_refused(shape):
    with pytest.raises(FrameStackError, match="stack"):
        LazyFrames(np.zeros(shape, np.uint8), 64)


def test_state_has_sam2s_init_state_keys(propagator, frames, tmp_path):
    from PIL import Image

    for t in range(2):
        Image.fromarray(frames[t]).convert("RGB").save(tmp_path / f"{t:05d}.jpg")
    reference = propagator.predictor.init_state(str(tmp_path), offload_video_to_cpu=True, offload_state_to_cpu=True)
    ours = new_inference_state(propagator.predictor, LazyFrames(frames, 64), torch.device("cpu"), offload_state=True)
    assert set(ours) == set(reference)
    assert ours["num_frames"] == SHAPE[0] and (ours["video_height"], ours["video_width"]) == SHAPE[1:]


def test_frame_order():
    assert frame_order(2, 0, 4, "forward") == [2, 3, 4]
    assert frame_order(2, 0, 4, "backward") == [2, 1, 0]
    assert frame_order(2, 1, 3, "both") == [2, 3, 2, 1]
    with pytest.raises(PropagationError, match="direction must be one of"):
        frame_order(0, 0, 1, "sideways")


def _bare(predictor, frames, prompts, reverse=False):
    """sam2's own loop: every frame preloaded into one tensor, no pruning."""
    lazy = LazyFrames(frames, predictor.image_size)
    state = new_inference_state(predictor, lazy, torch.device("cpu"), offload_state=True)
    state["images"] = torch.stack([lazy[t] for t in range(len(lazy))])
    for obj_id, frame, points_xy in prompts:
        predictor.add_new_points_or_box(
            state, frame, obj_id, points=points_xy, labels=np.ones(len(points_xy), np.int32)
        )
    return {t: (m > 0).squeeze(1).numpy() for t, _, m in predictor.propagate_in_video(state, reverse=reverse)}


def test_propagation_equals_bare_sam2_with_pruned_memories(propagator, frames):
    predictor = propagator.predictor
    saved = predictor.max_obj_ptrs_in_encoder
    predictor.max_obj_ptrs_in_encoder = 2  # a short memory window, so that pruning happens
    predictor.num_maskmem, saved_mem = 2, predictor.num_maskmem
    try:
        prompts = [(4, 0, np.array([[12.0, 17.0]], np.float32)), (9, 0, np.array([[40.0, 30.0]], np.float32))]
        expected = _bare(predictor, frames, prompts)
        propagator.start(frames)
        for obj_id, frame, xy in prompts:
            propagator.add_prompt(ObjectPrompt(obj_id, frame, Prompt.make(points_yx=xy[:, ::-1])))
        got = {m.frame: m for m in propagator.propagate(direction="forward")}
    finally:
        predictor.max_obj_ptrs_in_encoder, predictor.num_maskmem = saved, saved_mem
    assert sorted(got) == list(range(SHAPE[0]))
    assert propagator.pruned > 0
    for t, masks in got.items():
        assert masks.obj_ids == (4, 9) and masks.masks_yx.shape == (2, *SHAPE[1:])
        np.testing.assert_array_equal(masks.masks_yx, expected[t])
    assert propagator.frames.reads <= SHAPE[0] + 1


def test_backward_both_range_and_correction(propagator, frames):
    propagator.start(frames)
    propagator.add_prompt(ObjectPrompt(1, 3, Prompt.make(box_xyxy=[15, 8, 35, 26])))
    backward = [m.frame for m in propagator.propagate(direction="backward", frames=(1, 5))]
    assert backward == [3, 2, 1]
    both = [m.frame for m in propagator.propagate(direction="both")]
    assert both == [3, 4, 5, 6, 7, 3, 2, 1, 0]
    corrected = np.zeros(SHAPE[1:], bool)
    corrected[5:15, 30:50] = True
    out = propagator.correct(4, 1, corrected)
    overlap = (out.masks_yx[0] & corrected).sum() / (out.masks_yx[0] | corrected).sum()
    assert overlap > 0.9  # a mask prompt is taken as is (up to the model's input resizing)
    assert 4 in propagator.prompted_frames()
    again = [m.frame for m in propagator.propagate(start=4)]
    assert again == [4, 5, 6, 7]
    with pytest.raises(PropagationError, match=r"Frame 9 is outside the stack \(frames 0 to 7\)"):
        list(propagator.propagate(start=9))
    with pytest.raises(PropagationError, match="Object 5 is not tracked"):
        propagator.correct(2, 5, corrected)


def test_tracks_from_an_existing_instance_mask_and_undo_in_one_step(propagator, frames):
    labels = np.zeros(SHAPE, np.uint32)
    labels[2, 10:24, 13:27] = 7  # an instance already annotated on frame 2
    stack = TrackStack(labels)
    propagator.start(frames)
    mask = stack.mask_of(2, 7)
    steps = list(propagate_tracks(stack, propagator, [ObjectPrompt(7, 2, Prompt.make(mask_yx=mask))], direction="both"))
    assert [s.frame for s in steps] == [2, 3, 4, 5, 6, 7, 2, 1, 0] and steps[-1].done == steps[-1].total == 9
    assert set(np.unique(stack.labels_tyx)) <= {0, 7}
    table = stack.frame_table()
    assert set(table["frame"]) == set(range(8)) and set(table["track_id"]) == {7}
    assert len(stack.undo_stack) == 1
    # a correction on frame 4 is kept exactly there and propagated on; one more undo step
    corrected = np.zeros(SHAPE[1:], bool)
    corrected[20:30, 30:45] = True
    prompt = ObjectPrompt(7, 4, Prompt.make(mask_yx=corrected))
    assert [s.frame for s in propagate_tracks(stack, propagator, [prompt], start=4)] == [4, 5, 6, 7]
    np.testing.assert_array_equal(stack.mask_of(4, 7), corrected)
    assert len(stack.undo_stack) == 2 and stack.undo() == "propagate"
    assert stack.frame_table().equals(table)
    stack.undo()
    np.testing.assert_array_equal(stack.labels_tyx, labels)
    stack.redo()
    assert stack.frame_table().equals(table)


def test_stopping_early_keeps_one_undo_step(propagator, frames):
    stack = TrackStack(np.zeros(SHAPE, np.uint32))
    track = stack.new_track()
    propagator.start(frames)
    run = propagate_tracks(stack, propagator, [ObjectPrompt(track, 0, Prompt.make(points_yx=[[15, 10]]))])
    next(run), next(run)
    run.close()  # the user pressed Cancel after two frames
    assert sorted(stack.records) == [0, 1]
    assert stack.undo() == "propagate" and not (stack.labels_tyx > 0).any()
    with pytest.raises(PropagationError, match=r"Object id\(s\) \[99\] are not tracks"):
        next(propagate_tracks(stack, propagator, [ObjectPrompt(99, 0, Prompt.make(points_yx=[[1, 1]]))]))
