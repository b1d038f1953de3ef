"""Agreement between two annotation sets, and what pre-labelling saved.

- :func:`calibration`: annotator A versus annotator B on the same images, Mask AP both ways
  (each set in turn is the reference, the other the candidates with score 1), and Cohen's kappa
  on occlusion tier and crowd bit for instances matched one-to-one (IoU >= 0.5).
- :func:`prelabel_stats`: from a final annotation set that carries our ``attributes``:
  acceptance rate (accepted as is / all pre-labels), mean IoU pre-label -> final, per class and
  tier; time per instance by source and throughput, over the instances a person made or
  reviewed (:func:`~napari_instseg.core.activetime.person_timed`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from napari_instseg.core.activetime import person_timed
from napari_instseg.core.prompting.registry import MODEL_SOURCES
from napari_instseg.core.qa.metrics import (
    EvalParams,
    prepare,
    reference_tier,
    scores_of,
    segmentation_rle,
    tier_thresholds_of,
)

__all__ = ["calibration", "cohen_kappa", "match_instances", "prelabel_stats"]


def cohen_kappa(a: Sequence[Any], b: Sequence[Any]) -> float:
    """Cohen's kappa of two raters' labels of the same items (NaN when undefined)."""
    first, second = np.asarray(a), np.asarray(b)
    if first.size == 0:
        return float("nan")
    labels = np.union1d(first, second)
    index = {v: i for i, v in enumerate(labels.tolist())}
    table = np.zeros((labels.size, labels.size))
    for x, y in zip(first.tolist(), second.tolist(), strict=False):
        table[index[x], index[y]] += 1
    n = table.sum()
    observed = np.trace(table) / n
    expected = float((table.sum(axis=0) * table.sum(axis=1)).sum()) / n**2
    if expected == 1.0:
        return 1.0 if observed == 1.0 else float("nan")
    return float((observed - expected) / (1 - expected))


def match_instances(
    a: Mapping[str, Any], b: Mapping[str, Any], iou_threshold: float = 0.5
) -> list[tuple[dict[str, Any], dict[str, Any], float]]:
    """One-to-one matches (maximum total IoU, each >= ``iou_threshold``) per image, any class."""
    from pycocotools import mask as mask_utils
    from scipy.optimize import linear_sum_assignment

    sizes = {im["id"]: (im["height"], im["width"]) for im in a["images"]}
    by_image_b: dict[int, list[dict[str, Any]]] = {}
    for ann in b["annotations"]:
        by_image_b.setdefault(ann["image_id"], []).append(ann)
    by_image_a: dict[int, list[dict[str, Any]]] = {}
    for ann in a["annotations"]:
        by_image_a.setdefault(ann["image_id"], []).append(ann)
    pairs = []
    for image_id, anns_a in by_image_a.items():
        anns_b = by_image_b.get(image_id, [])
        if not anns_b:
            continue
        height, width = sizes[image_id]
        ious = np.asarray(
            mask_utils.iou(
                [segmentation_rle(x["segmentation"], height, width) for x in anns_a],
                [segmentation_rle(x["segmentation"], height, width) for x in anns_b],
                [0] * len(anns_b),
            )
        ).reshape(len(anns_a), len(anns_b))
        rows, cols = linear_sum_assignment(-ious)
        pairs += [
            (anns_a[r], anns_b[c], float(ious[r, c]))
            for r, c in zip(rows, cols, strict=False)
            if ious[r, c] >= iou_threshold
        ]
    return pairs


def calibration(a: Mapping[str, Any], b: Mapping[str, Any], params: EvalParams | None = None) -> dict[str, Any]:
    """Annotator A versus B: AP both ways, kappa on tier and crowd of matched instances."""
    a_vs_b = scores_of(prepare(a, b, params))  # A is the reference
    b_vs_a = scores_of(prepare(b, a, params))
    pairs = match_instances(a, b)
    tiers_a, tiers_b = tier_thresholds_of(a), tier_thresholds_of(b)
    return {
        "B_against_A": a_vs_b.to_dict(),
        "A_against_B": b_vs_a.to_dict(),
        "n_matched": len(pairs),
        "n_A": len(a["annotations"]),
        "n_B": len(b["annotations"]),
        "mean_matched_iou": float(np.mean([p[2] for p in pairs])) if pairs else float("nan"),
        "kappa_occlusion": cohen_kappa(
            [reference_tier(x, tiers_a) for x, _, _ in pairs], [reference_tier(y, tiers_b) for _, y, _ in pairs]
        ),
        "kappa_crowd": cohen_kappa(
            [int(x.get("iscrowd", 0)) for x, _, _ in pairs], [int(y.get("iscrowd", 0)) for _, y, _ in pairs]
        ),
        "kappa_category": cohen_kappa([x["category_id"] for x, _, _ in pairs], [y["category_id"] for _, y, _ in pairs]),
    }


def _attribute_table(coco: Mapping[str, Any]) -> pd.DataFrame:
    """One row per instance of ``coco``: its annotations, and its rejected instances (our
    export lists them under :data:`~napari_instseg.core.coco.REJECTED_KEY`: no pixels, so no
    annotation)."""
    from napari_instseg.core.coco import REJECTED_KEY

    tiers = tier_thresholds_of(coco)
    names = {c["id"]: c["name"] for c in coco["categories"]}
    rejected = coco.get(REJECTED_KEY)
    rows = []
    for ann in [*coco["annotations"], *(rejected if isinstance(rejected, list) else [])]:
        if not isinstance(ann, Mapping):
            continue
        attributes = ann.get("attributes") or {}
        rows.append(
            {
                "category": names.get(ann["category_id"], str(ann["category_id"])),
                "occlusion": reference_tier(ann, tiers),
                "source": attributes.get("source", "manual"),
                "review": attributes.get("review", "accepted"),
                "prelabel_iou": attributes.get("prelabel_iou"),
                "time_s": attributes.get("time_s"),
                "annotator": attributes.get("annotator", ""),
            }
        )
    frame = pd.DataFrame(
        rows, columns=["category", "occlusion", "source", "review", "prelabel_iou", "time_s", "annotator"]
    )
    frame["prelabel_iou"] = pd.to_numeric(frame["prelabel_iou"], errors="coerce")
    frame["time_s"] = pd.to_numeric(frame["time_s"], errors="coerce")
    result: pd.DataFrame = frame
    return result


def _acceptance(frame: pd.DataFrame) -> dict[str, Any]:
    reviewed = frame[frame["review"] != "pre-label"]
    return {
        "n_prelabels": len(frame),
        "n_reviewed": len(reviewed),
        "accepted_as_is": int((frame["review"] == "accepted").sum()),
        "corrected": int((frame["review"] == "corrected").sum()),
        "rejected": int((frame["review"] == "rejected").sum()),
        "acceptance_rate": float((frame["review"] == "accepted").sum() / len(frame)) if len(frame) else float("nan"),
        "mean_iou_prelabel_to_final": float(frame["prelabel_iou"].mean())
        if frame["prelabel_iou"].notna().any()
        else float("nan"),
    }


def prelabel_stats(
    final: Mapping[str, Any],
    prelabels: Sequence[Mapping[str, Any]] | Mapping[str, Any] | None = None,
    params: EvalParams | None = None,
) -> dict[str, Any]:
    """What pre-labelling achieved, from a final set with our ``attributes``.

    Parameters
    ----------
    final : dict
        The reviewed annotations (COCO with ``attributes.source/review/prelabel_iou/time_s``);
        its rejected instances (no pixels) are read from its ``instseg_rejected`` list.
    prelabels : list or dict, optional
        The pre-labels as proposed (for example ``napari-instseg prelabel`` output): when
        given, pre-label Mask AP@0.5 against the final set is reported too.
    """
    frame = _attribute_table(final)
    # a model mask a person committed from the candidate they saw (accepted, no proposal kept)
    # was never a pre-label: only batch / automatic pre-labels count (docs/napari.md)
    interactive = (frame["review"] == "accepted") & frame["prelabel_iou"].isna()
    model = frame[frame["source"].isin(MODEL_SOURCES) & ~interactive]
    out: dict[str, Any] = {"overall": _acceptance(model)}
    out["per_class"] = {str(k): _acceptance(g) for k, g in model.groupby("category")}
    out["per_tier"] = {str(k): _acceptance(g) for k, g in model.groupby("occlusion")}
    timed = frame[person_timed(frame["review"].to_numpy(), frame["time_s"].to_numpy())]  # never machine time
    out["time_per_instance_s"] = {str(k): float(g["time_s"].mean()) for k, g in timed.groupby("source")}
    total_h = float(timed["time_s"].sum()) / 3600.0
    out["throughput_instances_per_hour"] = float(len(timed) / total_h) if total_h > 0 else float("nan")
    if prelabels is not None:
        scores = scores_of(prepare(final, prelabels, params))
        out["prelabel_AP50"] = scores.AP50
        out["prelabel_AP"] = scores.AP
    return out
