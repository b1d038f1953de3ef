"""Review sampling, error rates, Cohen's kappa, calibration and pre-label statistics."""

import copy
import math

import numpy as np
import pandas as pd
import pytest

from napari_instseg.core.protocol import SamplingRates
from napari_instseg.core.qa.agreement import calibration, cohen_kappa, prelabel_stats
from napari_instseg.core.qa.sampling import error_rates, read_queue, review_sample, wilson_interval, write_queue


def _instances(counts):
    rows, ann = [], 1
    for tier, n in counts.items():
        for _ in range(n):
            rows.append(
                {
                    "ann_id": ann,
                    "image_id": 1 + ann % 3,
                    "file_name": "a.png",
                    "instance_id": ann,
                    "category": "cell" if ann % 2 else "mitosis",
                    "occlusion": tier,
                    "annotator": "ann-a" if ann % 4 else "ann-b",
                    "bbox_xywh": [0, 0, 1, 1],
                }
            )
            ann += 1
    return pd.DataFrame(rows)


def test_sample_sizes_follow_the_tier_rates_with_a_minimum():
    instances = _instances({"none": 200, "partial": 100, "heavy": 30})
    queue = review_sample(instances, SamplingRates(min_per_tier=5), seed=1)
    sizes = queue["occlusion"].value_counts().to_dict()
    assert sizes == {"none": 20, "partial": 20, "heavy": 12}  # 10 %, 20 %, ceil(40 % of 30)
    small = review_sample(_instances({"none": 12, "partial": 3, "heavy": 0}), SamplingRates(min_per_tier=5), seed=1)
    assert small["occlusion"].value_counts().to_dict() == {"none": 5, "partial": 3}  # minimum, capped at all
    assert queue["ann_id"].is_unique and set(queue["ann_id"]) <= set(instances["ann_id"])


def test_sampling_is_reproducible_and_seed_dependent():
    instances = _instances({"none": 200, "partial": 100, "heavy": 30})
    a = review_sample(instances, seed=7)
    b = review_sample(instances.sample(frac=1, random_state=3), seed=7)  # input order does not matter
    pd.testing.assert_frame_equal(a, b)
    assert not review_sample(instances, seed=8)["ann_id"].equals(a["ann_id"])


def test_stratify_also_by_category_and_annotator():
    instances = _instances({"none": 80, "partial": 40, "heavy": 20})
    queue = review_sample(instances, SamplingRates(min_per_tier=1), by=("occlusion", "category", "annotator"))
    combos = instances.groupby(["occlusion", "category", "annotator"]).ngroups
    assert combos == 9 and queue["stratum"].nunique() == combos  # every stratum gets its minimum
    with pytest.raises(ValueError, match="Stratify by 'occlusion'"):
        review_sample(instances, by=("category",))


def test_queue_files_and_error_rates_with_wilson_intervals(tmp_path):
    queue = review_sample(
        _instances({"none": 50, "heavy": 20}), SamplingRates(none=0.2, heavy=0.5, min_per_tier=1), seed=0
    )
    json_path, csv_path = write_queue(queue, tmp_path)
    assert csv_path.read_text().startswith("ann_id,image_id,file_name")
    reviewed = read_queue(json_path)
    reviewed.loc[reviewed["occlusion"] == "heavy", "outcome"] = ["fail"] * 4 + ["pass"] * 6
    reviewed.loc[reviewed["occlusion"] == "none", "outcome"] = ["fail"] + ["pass"] * 9
    rates = error_rates(reviewed, "occlusion").set_index("occlusion")
    assert rates.loc["heavy", "error_rate"] == 0.4 and rates.loc["none", "error_rate"] == 0.1
    low, high = wilson_interval(4, 10)
    assert (round(low, 4), round(high, 4)) == (0.1682, 0.6873)  # textbook Wilson interval
    assert rates.loc["heavy", "ci_low"] == pytest.approx(low)
    reviewed.loc[0, "outcome"] = "maybe"
    write_queue(reviewed, tmp_path, stem="bad")
    with pytest.raises(Exception, match="outcome 'maybe'"):
        read_queue(tmp_path / "bad.json")


@pytest.mark.parametrize(
    ("a", "b", "kappa"),
    [
        ([1] * 20 + [1] * 5 + [0] * 10 + [0] * 15, [1] * 20 + [0] * 5 + [1] * 10 + [0] * 15, 0.4),  # po .7, pe .5
        (["none", "partial", "heavy"] * 4, ["none", "partial", "heavy"] * 4, 1.0),
        ([0, 1, 0, 1], [1, 0, 1, 0], -1.0),
    ],
)
def test_cohen_kappa_on_known_tables(a, b, kappa):
    assert cohen_kappa(a, b) == pytest.approx(kappa)
    assert math.isnan(cohen_kappa([], []))


def _coco_with(tiers, crowds, shift=0):
    from pycocotools import mask as mask_utils

    anns = []
    for k, (tier, crowd) in enumerate(zip(tiers, crowds, strict=False)):
        mask = np.zeros((40, 40), np.uint8)
        mask[4 + 9 * (k // 4) : 11 + 9 * (k // 4), 4 + 9 * (k % 4) + shift : 11 + 9 * (k % 4) + shift] = 1
        encoded = mask_utils.encode(np.asfortranarray(mask))
        encoded["counts"] = encoded["counts"].decode()
        anns.append(
            {
                "id": k + 1,
                "image_id": 1,
                "category_id": 1,
                "segmentation": encoded,
                "iscrowd": crowd,
                "area": float(mask.sum()),
                "bbox": mask_utils.toBbox(encoded).tolist(),
                "occlusion": tier,
            }
        )
    return {
        "images": [{"id": 1, "file_name": "a.png", "height": 40, "width": 40}],
        "annotations": anns,
        "categories": [{"id": 1, "name": "cell"}],
    }


def test_calibration_of_two_annotators():
    a = _coco_with(["none", "partial", "heavy", "none", "none", "partial"], [0, 0, 0, 0, 0, 0])
    b = _coco_with(["none", "heavy", "heavy", "none", "partial", "partial"], [0, 0, 0, 0, 0, 1])
    result = calibration(a, b)
    assert result["n_matched"] == 6 and result["mean_matched_iou"] == pytest.approx(1.0)
    assert result["kappa_occlusion"] == pytest.approx(
        cohen_kappa(
            ["none", "partial", "heavy", "none", "none", "partial"],
            ["none", "heavy", "heavy", "none", "partial", "partial"],
        )
    )
    assert result["kappa_crowd"] == pytest.approx(0.0)
    assert result["B_against_A"]["AP"] == pytest.approx(1.0)
    shifted = calibration(a, _coco_with(["none"] * 6, [0] * 6, shift=2))  # IoU 5/9: matched at 0.5 only
    assert shifted["n_matched"] == 6 and shifted["B_against_A"]["AP50"] == pytest.approx(1.0)
    assert shifted["B_against_A"]["AP75"] == pytest.approx(0.0)


def test_prelabel_statistics_from_review_attributes():
    final = _coco_with(["none", "none", "heavy", "heavy", "partial", "none"], [0] * 6)
    reviews = [
        ("sam2", "accepted", 1.0, 4.0),
        ("sam2", "corrected", 0.8, 20.0),
        ("sam2", "accepted", 1.0, 6.0),
        ("classic", "corrected", 0.5, 30.0),
        ("manual", "accepted", None, 40.0),
        ("sam2", "pre-label", None, 0.0),
    ]
    for ann, (source, review, iou, seconds) in zip(final["annotations"], reviews, strict=False):
        ann["attributes"] = {"source": source, "review": review, "prelabel_iou": iou, "time_s": seconds}
    stats = prelabel_stats(final)
    assert stats["overall"]["n_prelabels"] == 5 and stats["overall"]["acceptance_rate"] == pytest.approx(2 / 5)
    assert stats["overall"]["mean_iou_prelabel_to_final"] == pytest.approx((1 + 0.8 + 1 + 0.5) / 4)
    assert stats["per_tier"]["heavy"]["acceptance_rate"] == pytest.approx(0.5)
    # only instances a person made or reviewed count: the unreviewed pre-label is left out
    assert stats["time_per_instance_s"]["manual"] == 40.0 and stats["time_per_instance_s"]["sam2"] == pytest.approx(10)
    assert stats["throughput_instances_per_hour"] == pytest.approx(5 / (100 / 3600))
    proposals = copy.deepcopy(final)
    with_ap = prelabel_stats(final, proposals)
    assert with_ap["prelabel_AP50"] == pytest.approx(1.0)
