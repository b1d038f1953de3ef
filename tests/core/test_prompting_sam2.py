"""SAM 2 backend through the real sam2 loading code, with a random-weight checkpoint.

Random weights exercise every code path; the masks mean nothing, so no test judges quality.
"""

import shutil
import urllib.error

import numpy as np
import pytest
import torch

from napari_instseg.core.prompting import Prompt, make_prompter
from napari_instseg.core.prompting.base import ImageKey
from napari_instseg.core.prompting.cache import EmbeddingCache, EmbeddingCacheMismatch
from napari_instseg.core.prompting.checkpoints import (
    CHECKPOINT_ENV,
    CheckpointError,
    fetch_weights,
    find_checkpoint,
)
from napari_instseg.core.prompting.sam2 import Sam2Prompter


@pytest.fixture(scope="module")
def prompter(sam2_checkpoint, ihc_image):
    sam = Sam2Prompter("tiny", sam2_checkpoint, device="cpu")
    sam.set_image(ihc_image)
    return sam


def test_points_and_boxes_give_sorted_candidates(prompter):
    candidates = prompter.predict(Prompt.make(points_yx=[[120, 200]]))
    assert candidates.masks_yx.shape == (3, 512, 512) and candidates.masks_yx.dtype == bool
    assert list(candidates.scores) == sorted(candidates.scores, reverse=True)
    assert candidates.source == "sam2"
    single = prompter.predict(Prompt.make(points_yx=[[120, 200], [300, 40]], point_labels=[1, 0]), multimask=False)
    assert len(single) == 1


def test_box_in_any_corner_order_gives_the_same_mask(prompter):
    x0, y0, x1, y1 = 100, 150, 180, 230
    masks = [
        prompter.predict(Prompt.make(box_xyxy=box), multimask=False).masks_yx[0]
        for box in ([x0, y0, x1, y1], [x1, y1, x0, y0], [x0, y1, x1, y0], [x1, y0, x0, y1])
    ]
    for mask in masks[1:]:
        np.testing.assert_array_equal(mask, masks[0])


def test_previous_mask_is_accepted_as_a_prompt(prompter):
    mask = np.zeros((512, 512), bool)
    mask[100:140, 100:150] = True
    out = prompter.predict(Prompt.make(points_yx=[[120, 120]], mask_yx=mask), multimask=False)
    assert out.masks_yx.shape == (1, 512, 512)


def test_prompt_outside_the_image_is_refused(prompter):
    from napari_instseg.core.prompting import PromptError

    with pytest.raises(PromptError, match=r"Point \(y=600, x=10\) is outside the image \(height 512, width 512\)"):
        prompter.predict(Prompt.make(points_yx=[[600, 10]]))


def _count_encoder_calls(sam):
    calls = []
    original = sam.predictor.model.forward_image

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    sam.predictor.model.forward_image = counting
    return calls


@pytest.mark.parametrize(("dtype", "min_agreement"), [("float32", 1.0), ("float16", 0.999)])
def test_cached_embedding_skips_the_encoder_and_gives_the_same_masks(
    tmp_path, sam2_checkpoint, ihc_image, dtype, min_agreement
):
    key = ImageKey.whole("ihc-tile", ihc_image.shape[:2])
    prompt = Prompt.make(points_yx=[[200, 250]], box_xyxy=[200, 150, 320, 260])
    first = Sam2Prompter(
        "tiny", sam2_checkpoint, device="cpu", cache=EmbeddingCache(tmp_path / "emb.zarr"), cache_dtype=dtype
    )
    first.set_image(ihc_image, key)
    assert not first.last_from_cache
    fresh = first.predict(prompt)
    second = Sam2Prompter(
        "tiny", sam2_checkpoint, device="cpu", cache=EmbeddingCache(tmp_path / "emb.zarr"), cache_dtype=dtype
    )
    calls = _count_encoder_calls(second)
    second.set_image(ihc_image, key)
    assert second.last_from_cache and calls == []
    restored = second.predict(prompt)
    agreement = (restored.masks_yx == fresh.masks_yx).mean()
    assert agreement >= min_agreement
    np.testing.assert_allclose(restored.scores, fresh.scores, atol=1e-2 if dtype == "float16" else 1e-5)


def test_mismatching_cache_entry_is_refused_with_the_field(tmp_path, sam2_checkpoint, ihc_image):
    key = ImageKey.whole("ihc-tile", ihc_image.shape[:2])
    cache_path = tmp_path / "emb.zarr"
    Sam2Prompter("tiny", sam2_checkpoint, device="cpu", cache=EmbeddingCache(cache_path)).set_image(ihc_image, key)
    other = Sam2Prompter("tiny", sam2_checkpoint, device="cpu", cache=EmbeddingCache(cache_path), cache_dtype="float32")
    with pytest.raises(
        EmbeddingCacheMismatch, match=r"computed with dtype='float16', but this session uses dtype='float32'"
    ):
        other.set_image(ihc_image, key)
    copy = tmp_path / "other.pt"
    shutil.copy(sam2_checkpoint, copy)  # another checkpoint file
    renamed = Sam2Prompter("tiny", copy, device="cpu", cache=EmbeddingCache(cache_path))
    with pytest.raises(EmbeddingCacheMismatch, match="checkpoint="):
        renamed.set_image(ihc_image, key)
    recompute = Sam2Prompter("tiny", copy, device="cpu", cache=EmbeddingCache(cache_path), on_mismatch="recompute")
    recompute.set_image(ihc_image, key)
    assert not recompute.last_from_cache
    assert key in EmbeddingCache(cache_path)


def test_interrupted_cache_write_is_a_miss(tmp_path, sam2_checkpoint, ihc_image):
    key = ImageKey.whole("ihc-tile", ihc_image.shape[:2])
    cache = EmbeddingCache(tmp_path / "emb.zarr")
    sam = Sam2Prompter("tiny", sam2_checkpoint, device="cpu", cache=cache)
    sam.set_image(ihc_image, key)
    import zarr

    root = zarr.open_group(str(tmp_path / "emb.zarr"), mode="a")
    (name,) = list(root.group_keys())
    root[name].attrs["complete"] = False  # as if killed while writing
    assert cache.load(key, sam.meta(ihc_image.shape[:2])) is None


def test_missing_keys_are_named(tmp_path, sam2_checkpoint):
    state = torch.load(sam2_checkpoint, map_location="cpu", weights_only=True)["model"]
    dropped = sorted(state)[:2]
    for name in dropped:
        del state[name]
    bad = tmp_path / "missing.pt"
    torch.save({"model": state}, bad)
    with pytest.raises(CheckpointError, match=r"2 missing key\(s\)") as info:
        Sam2Prompter("tiny", bad, device="cpu").predictor
    assert dropped[0] in str(info.value) and str(bad) in str(info.value)


class NotWeights:
    """A pickled Python object: weights_only loading must refuse it."""


def test_pickled_object_and_wrong_layout_are_refused(tmp_path):
    pickled = tmp_path / "pickled.pt"
    torch.save({"model": NotWeights()}, pickled)
    with pytest.raises(CheckpointError, match="not a weights-only torch checkpoint"):
        Sam2Prompter("tiny", pickled, device="cpu").predictor
    no_model = tmp_path / "nomodel.pt"
    torch.save({"state_dict": {}}, no_model)
    with pytest.raises(CheckpointError, match=r"expected a dict with a 'model' state dict, found \['state_dict'\]"):
        Sam2Prompter("tiny", no_model, device="cpu").predictor


def test_checkpoint_search_order(tmp_path, monkeypatch, sam2_checkpoint):
    monkeypatch.delenv(CHECKPOINT_ENV, raising=False)
    monkeypatch.setenv("NAPARI_INSTSEG_CACHE", str(tmp_path / "cache"))
    with pytest.raises(CheckpointError, match="napari-instseg fetch-weights small") as info:
        find_checkpoint("small")
    assert str(tmp_path / "cache" / "sam2" / "sam2.1_hiera_small.pt") in str(info.value)
    cached = tmp_path / "cache" / "sam2" / "sam2.1_hiera_tiny.pt"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"x")
    assert find_checkpoint("tiny") == cached
    monkeypatch.setenv(CHECKPOINT_ENV, str(sam2_checkpoint))
    assert find_checkpoint("tiny") == sam2_checkpoint
    assert find_checkpoint("tiny", explicit=cached) == cached
    with pytest.raises(CheckpointError, match="Unknown SAM 2 model size 'huge'"):
        find_checkpoint("huge")


def test_fetch_weights_without_internet_says_where_to_put_the_file(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    with pytest.raises(CheckpointError, match="copy the file from a machine that has it to") as info:
        fetch_weights("tiny", tmp_path)
    assert str(tmp_path / "sam2.1_hiera_tiny.pt") in str(info.value)
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_make_prompter_builds_both_backends(sam2_checkpoint, tmp_path):
    assert make_prompter("classic").name == "classic"
    sam = make_prompter("sam2", checkpoint=sam2_checkpoint, device="cpu", cache_path=tmp_path / "c.zarr")
    assert sam.name == "sam2" and sam.cache is not None


def test_workers_opening_a_new_embedding_cache_at_once_all_get_it(tmp_path):
    """``prelabel-slide --workers 2`` opens the per-user cache from each worker thread; the
    first run creates it, and a thread that loses the race to create it opens it instead
    (was: zarr's ContainsGroupError)."""
    import threading

    import zarr

    path = tmp_path / "emb.zarr"
    barrier = threading.Barrier(8)
    opened, errors = [], []
    real_open = zarr.open_group

    def slow_open(*args, **kwargs):  # every thread looks before any writes: the race, each time
        if kwargs.get("mode") == "a":
            barrier.wait(timeout=10)
        return real_open(*args, **kwargs)

    def worker():
        try:
            opened.append(EmbeddingCache(path))
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    zarr.open_group = slow_open
    try:
        threads = [threading.Thread(target=worker) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        zarr.open_group = real_open
    assert errors == [] and len(opened) == 8
