"""SAM 2's predicted IoU and stability stay with each automatic pre-label: session, store
(saved and reopened, undo / redo), COCO attributes beside ``score``, and ``qa`` ranks by score.

Random weights (plumbing only, no mask quality)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_instseg.cli import main
from napari_instseg.core.prompting.auto import (
    ESTIMATE_COLUMNS,
    ClassicAutoSegmenter,
    Sam2AutoSegmenter,
    commit_auto,
)
from napari_instseg.core.prompting.base import ImageKey
from napari_instseg.core.prompting.sam2 import Sam2Prompter
from napari_instseg.core.store import AnnotationStore


@pytest.fixture(scope="module")
def image(ihc_image):
    return np.ascontiguousarray(ihc_image[:256, :256])


@pytest.fixture(scope="module")
def sam2_objects(sam2_checkpoint, image, loose_auto_settings):
    prompter = Sam2Prompter("tiny", sam2_checkpoint, device="cpu")
    objects = Sam2AutoSegmenter(prompter, loose_auto_settings)(image, ImageKey.whole("test:estimates", image.shape[:2]))
    assert objects
    return objects


def _estimates(table, instance_id):
    return tuple(float(table.at[instance_id, name]) for name in ESTIMATE_COLUMNS)


def test_estimates_survive_the_store_reopen_undo_and_export(tmp_path, image, sam2_objects):
    path = tmp_path / "ihc.zarr"
    store = AnnotationStore.create(path, image.shape[:2], image={"file_name": "ihc.tif"})
    session = store.session(annotator="auto")
    manual = np.zeros(image.shape[:2], bool)
    manual[:20, :20] = True
    session.commit(manual, source="manual")
    summary = commit_auto(session, sam2_objects, "sam2-auto")
    assert summary.n_committed >= 1
    expected = {}
    for instance_id in summary.instance_ids:
        obj = next(o for o in sam2_objects if o.score == session.prelabels[instance_id].score)
        expected[instance_id] = (obj.predicted_iou, obj.stability)
        assert _estimates(session.table, instance_id) == pytest.approx(expected[instance_id])
    session.undo()
    assert not set(summary.instance_ids) & set(session.table.index)
    session.redo()
    store.close()

    with AnnotationStore.open(path) as again:  # saved and reopened
        table = again.table
        for instance_id, values in expected.items():
            assert _estimates(table, instance_id) == pytest.approx(values)
        assert np.isnan(_estimates(table, 1)).all()  # the manual instance has none
        reopened = again.session()
        assert _estimates(reopened.table, summary.instance_ids[0]) == pytest.approx(expected[summary.instance_ids[0]])

    out = tmp_path / "ihc.json"
    assert main(["export", str(path), "-o", str(out)]) == 0
    annotations = {a["instance_id"]: a for a in json.loads(out.read_text())["annotations"]}
    for instance_id, (predicted_iou, stability) in expected.items():
        attributes = annotations[instance_id]["attributes"]
        assert attributes["predicted_iou"] == pytest.approx(predicted_iou)
        assert attributes["stability_score"] == pytest.approx(stability)
        assert annotations[instance_id]["score"] == pytest.approx(float(np.clip(predicted_iou, 0, 1)))
    assert annotations[1]["attributes"]["predicted_iou"] is None and annotations[1]["score"] == 1.0
    assert main(["qa", "--gt", str(out), "--dt", str(out), "-o", str(tmp_path / "qa")]) == 0  # ranks by score


def test_classic_pre_labels_carry_no_sam2_estimates(image):
    from napari_instseg.core.session import AnnotationSession

    session = AnnotationSession(np.zeros(image.shape[:2], np.uint32))
    summary = commit_auto(session, ClassicAutoSegmenter()(image), "classic-auto")
    assert summary.n_committed > 5
    assert not set(ESTIMATE_COLUMNS) & set(session.table.columns)


def test_cropped_masks_commit_like_full_frame_masks():
    from napari_instseg.core.edits import CroppedMask
    from napari_instseg.core.records import CommitError
    from napari_instseg.core.session import AnnotationSession

    rng = np.random.default_rng(2)
    masks = []
    for _ in range(12):
        y, x, h, w = (int(v) for v in rng.integers(0, 90, 4))
        mask = np.zeros((128, 128), bool)
        mask[y : y + h // 3 + 2, x : x + w // 3 + 2] = True
        masks.append(mask)
    full, cropped = (
        AnnotationSession(np.zeros((128, 128), np.uint32)),
        AnnotationSession(np.zeros((128, 128), np.uint32)),
    )
    for session in (full, cropped):
        session.commit(masks[0], source="manual")
    results_full = full.commit_many(masks[1:], source="classic-auto")
    results_crop = cropped.commit_many([CroppedMask.from_full(m) for m in masks[1:]], source="classic-auto")
    assert results_full == results_crop
    np.testing.assert_array_equal(full.labels_yx, cropped.labels_yx)
    assert {i: r.proposal.bbox_yx for i, r in full.prelabels.items()} == {
        i: r.proposal.bbox_yx for i, r in cropped.prelabels.items()
    }
    with pytest.raises(CommitError, match=r"box \(y0, x0, y1, x1\) \(120, 0, 140, 10\)"):
        cropped.commit_many([CroppedMask((120, 0, 140, 10), np.ones((20, 10), bool))])


@pytest.mark.parametrize("shape_yx", [(7, 5), (64, 48)])
def test_rle_crops_equal_sam2s_own_decoding(shape_yx):
    import torch
    from sam2.utils.amg import mask_to_rle_pytorch, rle_to_mask

    from napari_instseg.core.prompting.auto import crop_of_rle

    rng = np.random.default_rng(5)
    masks = [rng.random(shape_yx) > 0.7, np.zeros(shape_yx, bool), np.ones(shape_yx, bool)]
    masks[1][2:4, 1:3] = True
    for mask in masks:
        rle = mask_to_rle_pytorch(torch.as_tensor(mask[None]))[0]
        np.testing.assert_array_equal(crop_of_rle(rle).full(shape_yx), rle_to_mask(rle))
    empty = mask_to_rle_pytorch(torch.zeros((1, *shape_yx), dtype=torch.bool))[0]
    assert crop_of_rle(empty).area_px == 0
