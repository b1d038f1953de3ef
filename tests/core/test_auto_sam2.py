"""SAM 2 automatic masks and the commit path: plumbing only (random weights, no quality)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from napari_instseg.core.prompting import Prompt
from napari_instseg.core.prompting.auto import (
    ClassicAutoSegmenter,
    Sam2AutoSegmenter,
    auto_objects,
    commit_auto,
    prelabel_scores,
)
from napari_instseg.core.prompting.base import ImageKey
from napari_instseg.core.prompting.cache import EmbeddingCache
from napari_instseg.core.prompting.sam2 import Sam2Prompter
from napari_instseg.core.session import AnnotationSession


@pytest.fixture(scope="module")
def image(ihc_image):
    return np.ascontiguousarray(ihc_image[:256, :256])


def _count_encoder_calls(sam):
    calls = []
    original = sam.predictor.model.forward_image

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    sam.predictor.model.forward_image = counting
    return calls


def _bare_generate(model, image, settings):
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        generator = SAM2AutomaticMaskGenerator(model, output_mode="binary_mask", **settings.generator_kwargs())
    return generator.generate(image)


def test_auto_masks_reuse_the_held_embedding_and_match_sam2s_own_generator(sam2_checkpoint, image, loose_auto_settings):
    prompter = Sam2Prompter("tiny", sam2_checkpoint, device="cpu")
    key = ImageKey.whole("test:ihc", image.shape[:2])
    prompter.set_image(image, key)  # as the prompt path does
    calls = _count_encoder_calls(prompter)
    segmenter = Sam2AutoSegmenter(prompter, loose_auto_settings)
    objects = segmenter(image, key)
    assert calls == [] and not segmenter.last_encoded
    assert objects and all(np.isfinite(o.predicted_iou) and np.isfinite(o.stability) for o in objects)
    assert [o.score for o in objects] == sorted((o.score for o in objects), reverse=True)
    # the same masks as sam2's own generator on the same image and settings
    bare = _bare_generate(prompter.predictor.model, image, loose_auto_settings)
    ours = sorted(o.mask.full(image.shape[:2]).sum() for o in objects)
    assert ours == sorted(int(r["segmentation"].sum()) for r in bare)
    # the embedding is still there for point prompts
    assert prompter.predict(Prompt.make(points_yx=[[100, 100]])).masks_yx.shape[1:] == image.shape[:2]


@pytest.mark.slow
def test_auto_masks_restore_from_the_embedding_cache(tmp_path, sam2_checkpoint, image, loose_auto_settings):
    key = ImageKey.whole("test:ihc-cached", image.shape[:2])
    first = Sam2Prompter("tiny", sam2_checkpoint, device="cpu", cache=EmbeddingCache(tmp_path / "emb.zarr"))
    Sam2AutoSegmenter(first, loose_auto_settings)(image, key)
    second = Sam2Prompter("tiny", sam2_checkpoint, device="cpu", cache=EmbeddingCache(tmp_path / "emb.zarr"))
    calls = _count_encoder_calls(second)
    segmenter = Sam2AutoSegmenter(second, loose_auto_settings)
    assert segmenter(image, key) and calls == [] and not segmenter.last_encoded


@pytest.mark.slow
def test_tiled_sam2_auto_runs_per_window(sam2_checkpoint, image, loose_auto_settings):
    prompter = Sam2Prompter("tiny", sam2_checkpoint, device="cpu")
    strip = image[:128]  # two tiles
    objects = auto_objects(
        strip, Sam2AutoSegmenter(prompter, loose_auto_settings), tile_px=128, halo_px=16, identity="test:ihc"
    )
    assert objects and all(o.mask.bbox_yx[2] <= 128 and o.mask.bbox_yx[3] <= 256 for o in objects)


def test_commit_is_one_undo_step_never_over_committed_and_keeps_scores(image):
    from napari_instseg.core.coco import AnnotatedImage, export_coco
    from napari_instseg.core.qa.metrics import stratified_ap

    grey = image.mean(axis=-1).astype(np.uint8)
    session = AnnotationSession(np.zeros(grey.shape, np.uint32))
    manual = np.zeros(grey.shape, bool)
    manual[:128, :128] = True
    session.commit(manual, source="manual")
    objects = ClassicAutoSegmenter()(image)
    summary = commit_auto(session, objects, "classic-auto")
    assert summary.n_committed > 5 and summary.n_found == len(objects)
    assert (session.labels_yx[:128, :128] == 1).all()  # the committed instance kept its pixels
    rows = session.table.loc[list(summary.instance_ids)]
    assert set(rows["source"]) == {"classic-auto"} and set(rows["review"]) == {"pre-label"}
    scores = [session.prelabels[i].score for i in summary.instance_ids]
    assert all(0 <= s <= 1 for s in scores) and scores == sorted(scores, reverse=True)
    item = AnnotatedImage(session.labels_yx, session.table, "ihc.png", scores=prelabel_scores(session))
    coco = export_coco([item]).coco
    manual_ann = next(a for a in coco["annotations"] if a["instance_id"] == 1)
    assert manual_ann["score"] == 1.0
    assert all("score" in a for a in coco["annotations"])
    assert stratified_ap(coco, coco)["overall"].AP50 >= 0.999
    session.undo()
    assert set(np.unique(session.labels_yx)) == {0, 1} and len(session.table) == 1


@pytest.mark.slow
def test_cli_prelabel_auto_with_sam2(sam2_checkpoint, image, tmp_path):
    import json

    import tifffile

    from napari_instseg.cli import main

    path = tmp_path / "ihc.tif"
    tifffile.imwrite(path, image)
    out = tmp_path / "auto.json"
    argv = ["prelabel", str(path), "--auto", "objects", "--backend", "sam2", "--checkpoint", str(sam2_checkpoint)]
    assert main([*argv, "--auto-points", "2", "--device", "cpu", "-o", str(out)]) == 0
    coco = json.loads(out.read_text())  # random weights: how many masks pass the filters means nothing
    assert coco["images"][0]["width"] == 256
    assert all(a["attributes"]["source"] == "sam2-auto" and "score" in a for a in coco["annotations"])
