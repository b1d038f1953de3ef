"""Mask AP against pycocotools' COCOeval, the reference definition, overall and per tier."""

import contextlib
import copy
import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from napari_instseg.core.errors import CocoFormatError
from napari_instseg.core.qa import EvalParams, prepare, scores_of, stratified_ap

TIERS = ("none", "partial", "heavy")


def _rle(mask):
    encoded = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    encoded["counts"] = encoded["counts"].decode()
    return encoded


def random_sets(seed, n_images=4, per_image=30, size=64, n_categories=2, separated=False):
    """Random references (with tiers and a few crowds) and perturbed, scored candidates.

    ``separated`` places instances on a grid (no competition for a reference); otherwise
    rectangles overlap freely and candidates compete.
    """
    rng = np.random.default_rng(seed)
    images = [{"id": i + 1, "file_name": f"{i}.png", "height": size, "width": size} for i in range(n_images)]
    gts, dts = [], []
    for image in images:
        for k in range(per_image):
            mask = np.zeros((size, size), bool)
            if separated:
                cy, cx = (k // 6) * 10 + 2, (k % 6) * 10 + 2
                mask[cy : cy + rng.integers(3, 8), cx : cx + rng.integers(3, 8)] = True
            else:
                y, x = rng.integers(0, size - 8, 2)
                mask[y : y + rng.integers(3, 16), x : x + rng.integers(3, 16)] = True
            encoded = _rle(mask)
            category = int(rng.integers(1, n_categories + 1))
            gts.append(
                {
                    "id": len(gts) + 1,
                    "image_id": image["id"],
                    "category_id": category,
                    "segmentation": encoded,
                    "area": float(mask.sum()),
                    "bbox": mask_utils.toBbox(encoded).tolist(),
                    "iscrowd": int(rng.random() < 0.05),
                    "occlusion": str(rng.choice(TIERS)),
                }
            )
            for _ in range(int(rng.integers(0, 3))):
                moved = np.roll(mask, tuple(rng.integers(-1, 2, 2)), axis=(0, 1))
                dts.append(
                    {
                        "image_id": image["id"],
                        "category_id": category if rng.random() < 0.9 else 1,
                        "segmentation": _rle(moved),
                        "score": float(np.round(rng.random(), 1)),
                    }
                )
    categories = [{"id": c, "name": f"class {c}"} for c in range(1, n_categories + 1)]
    return {"images": images, "annotations": gts, "categories": categories}, dts


class SubsetCOCOeval(COCOeval):
    """The reference for one tier: references of other tiers are ignored (like crowds)."""

    tier = None

    def _prepare(self):
        super()._prepare()
        if self.tier is not None:
            for references in self._gts.values():
                for ref in references:
                    ref["ignore"] = bool(ref["ignore"]) or ref.get("occlusion") != self.tier


def reference_eval(gt, dt, max_dets=1000, tier=None):
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = copy.deepcopy(gt)
        coco.createIndex()
        evaluator = SubsetCOCOeval(coco, coco.loadRes(copy.deepcopy(dt)), "segm")
        evaluator.tier = tier
        evaluator.params.maxDets = [max_dets]
        evaluator.evaluate()
        evaluator.accumulate()
    return evaluator.eval["precision"][:, :, :, 0, -1], evaluator.eval["recall"][:, :, 0, -1]


def _ap(precision):
    return float(np.mean(precision[precision > -1]))


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), separated=st.booleans())
def test_overall_and_per_tier_equal_pycocotools(seed, separated):
    gt, dt = random_sets(seed, separated=separated)
    evaluation = prepare(gt, dt)
    for tier in (None, *TIERS):
        ref_precision, ref_recall = reference_eval(gt, dt, tier=tier)
        ours = scores_of(evaluation, tier)
        np.testing.assert_allclose(ours.precision, ref_precision, rtol=0, atol=1e-12)
        np.testing.assert_allclose(ours.recall, ref_recall, rtol=0, atol=1e-12)
        assert pytest.approx(_ap(ref_precision), abs=1e-12) == ours.AP
        assert pytest.approx(_ap(ref_precision[0]), abs=1e-12) == ours.AP50
        assert pytest.approx(_ap(ref_precision[5]), abs=1e-12) == ours.AP75


def test_max_dets_is_not_silently_100():
    gt, dt = random_sets(3, n_images=1, per_image=36, separated=True)
    dt = dt + [dict(d, score=d["score"] / 2) for d in dt] * 3  # > 100 candidates on one image
    ours = scores_of(prepare(gt, dt))
    np.testing.assert_allclose(ours.precision, reference_eval(gt, dt, max_dets=1000)[0], atol=1e-12)
    truncated = scores_of(prepare(gt, dt, EvalParams(max_dets=100)))
    np.testing.assert_allclose(truncated.precision, reference_eval(gt, dt, max_dets=100)[0], atol=1e-12)


def _square(y, x, size=10, shape=(40, 40)):
    mask = np.zeros(shape, bool)
    mask[y : y + size, x : x + size] = True
    return mask


def _hand_built(tiers, candidates):
    """References: squares at fixed places with the given tiers; candidates: (index, score)."""
    places = [(0, 0), (0, 20), (20, 0), (20, 20)]
    gts = [
        {
            "id": i + 1,
            "image_id": 1,
            "category_id": 1,
            "segmentation": _rle(_square(*places[i])),
            "iscrowd": 0,
            "area": 100.0,
            "bbox": [places[i][1], places[i][0], 10, 10],
            "occlusion": tier,
        }
        for i, tier in enumerate(tiers)
    ]
    dts = [
        {
            "image_id": 1,
            "category_id": 1,
            "segmentation": _rle(_square(*places[i]) if i is not None else _square(15, 15, 4)),
            "score": score,
        }
        for i, score in candidates
    ]
    gt = {
        "images": [{"id": 1, "file_name": "a.png", "height": 40, "width": 40}],
        "annotations": gts,
        "categories": [{"id": 1, "name": "cell"}],
    }
    return gt, dts


def test_tier_ignore_rule_on_a_hand_built_case():
    # references: none, heavy, heavy, none; candidates hit #0 and #1, and one hits nothing
    gt, dt = _hand_built(["none", "heavy", "heavy", "none"], [(0, 0.9), (1, 0.8), (None, 0.7)])
    result = stratified_ap(gt, dt)
    heavy, none = result["heavy"], result["none"]
    assert (heavy.n_gt, none.n_gt, result["partial"].n_gt) == (2, 2, 0)
    # heavy: the hit on reference 0 (a 'none') is ignored, not a false positive; the miss is one.
    # precision 1 up to recall 0.5 (one of two heavy found), then nothing: AP50 = 51/101
    assert pytest.approx(51 / 101) == heavy.AP50
    # none: the hit on reference 1 (heavy) is ignored; same shape of curve
    assert pytest.approx(51 / 101) == none.AP50
    assert np.isnan(result["partial"].AP)  # no reference of that tier: undefined, not 0
    # without the unmatched candidate nothing changes for 'heavy' (it came after the hit)
    gt2, dt2 = _hand_built(["none", "heavy", "heavy", "none"], [(0, 0.9), (1, 0.8)])
    assert pytest.approx(51 / 101) == stratified_ap(gt2, dt2)["heavy"].AP50
    # an unmatched candidate ranked first is a false positive in every tier
    gt3, dt3 = _hand_built(["heavy", "heavy"], [(None, 0.99), (0, 0.5)])
    assert pytest.approx(51 / 101 * 0.5) == stratified_ap(gt3, dt3)["heavy"].AP50


def test_tier_from_occluded_fraction_with_the_protocol_cut_points():
    gt, dt = _hand_built(["none", "none"], [(0, 0.9), (1, 0.8)])
    for ann, fraction in zip(gt["annotations"], (0.3, 0.5), strict=False):
        del ann["occlusion"]
        ann["occluded_fraction"] = fraction
    assert stratified_ap(gt, dt)["partial"].n_gt == 1
    gt["info"] = {"protocol": {"tiers": {"none_max": 0.0, "partial_max": 0.25}}}
    result = stratified_ap(gt, dt)
    assert result["partial"].n_gt == 0 and result["heavy"].n_gt == 2


def test_full_coco_file_as_candidates_scores_one_and_bad_candidates_are_named():
    gt, _ = _hand_built(["none", "none"], [])
    as_file = copy.deepcopy(gt)
    scores = scores_of(prepare(gt, as_file))
    assert pytest.approx(1.0) == scores.AP
    with pytest.raises(CocoFormatError, match=r"candidates \(DT\) \[0\]: missing key 'score'"):
        prepare(gt, [{"image_id": 1, "category_id": 1, "segmentation": gt["annotations"][0]["segmentation"]}])
    with pytest.raises(CocoFormatError, match="is not in the reference"):
        prepare(
            gt, [{"image_id": 7, "category_id": 1, "segmentation": gt["annotations"][0]["segmentation"], "score": 1}]
        )
