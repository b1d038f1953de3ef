"""Stratified review sample and the error rates its outcomes give.

Standard QA sampling under-samples heavily occluded instances, where the errors are. Here
each occlusion tier is sampled at its own rate from the protocol (defaults 10 / 20 / 40 %),
with a minimum per stratum, optionally also split by category and annotator; the sample is
seeded (the same seed gives the same queue). Reviewers mark each item pass or fail with a
reason; :func:`error_rates` turns the outcomes into error rates with Wilson 95 % intervals.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from napari_instseg.core._io import atomic_write_text
from napari_instseg.core.errors import InstsegError
from napari_instseg.core.protocol import SamplingRates, TierThresholds

__all__ = [
    "QUEUE_COLUMNS",
    "error_rates",
    "instances_of",
    "read_queue",
    "review_sample",
    "wilson_interval",
    "write_queue",
]

QUEUE_COLUMNS = (
    "ann_id",
    "image_id",
    "file_name",
    "instance_id",
    "category",
    "occlusion",
    "annotator",
    "bbox_xywh",
    "stratum",
    "outcome",
    "reason",
)
OUTCOMES = ("", "pass", "fail")


def instances_of(coco: Mapping[str, Any], tiers: TierThresholds | None = None) -> pd.DataFrame:
    """One row per annotation of a COCO dict: ids, category name, tier, annotator, bbox."""
    from napari_instseg.core.qa.metrics import reference_tier, tier_thresholds_of

    tiers = tiers or tier_thresholds_of(coco)
    names = {c["id"]: c["name"] for c in coco["categories"]}
    files = {im["id"]: im.get("file_name", "") for im in coco["images"]}
    rows = []
    for ann in coco["annotations"]:
        attributes = ann.get("attributes") or {}
        rows.append(
            {
                "ann_id": int(ann["id"]),
                "image_id": int(ann["image_id"]),
                "file_name": files.get(ann["image_id"], ""),
                "instance_id": int(ann.get("instance_id", ann["id"])),
                "category": names.get(ann["category_id"], str(ann["category_id"])),
                "occlusion": reference_tier(ann, tiers),
                "annotator": str(attributes.get("annotator", "")),
                "bbox_xywh": [float(v) for v in ann.get("bbox", [0, 0, 0, 0])],
            }
        )
    frame: pd.DataFrame = pd.DataFrame(rows, columns=list(QUEUE_COLUMNS[:8]))
    return frame


def review_sample(
    instances: pd.DataFrame, rates: SamplingRates | None = None, *, seed: int = 0, by: Sequence[str] = ("occlusion",)
) -> pd.DataFrame:
    """Draw the review queue: per stratum ``max(ceil(rate * n), min_per_tier)`` items (at most n).

    Parameters
    ----------
    instances : DataFrame
        From :func:`instances_of` (needs ``ann_id`` and the ``by`` columns; ``occlusion`` for
        the rate).
    rates : SamplingRates
        Per-tier rates and the minimum per stratum (default: the protocol defaults).
    seed : int
        The same seed and input give the same queue.
    by : sequence of str
        Stratify by these columns; ``occlusion`` must be among them (it sets the rate).
    """
    rates = rates or SamplingRates()
    if "occlusion" not in by:
        raise ValueError(f"Stratify by 'occlusion' (it sets the rate), got by={list(by)}.")
    rng = np.random.default_rng(seed)
    ordered = instances.sort_values("ann_id", kind="mergesort")
    picked = []
    for key, group in ordered.groupby(list(by), sort=True):
        key = key if isinstance(key, tuple) else (key,)
        tier = dict(zip(by, key, strict=False))["occlusion"]
        n = min(len(group), max(math.ceil(rates.rate(tier) * len(group)), rates.min_per_tier))
        chosen = group.iloc[np.sort(rng.choice(len(group), size=n, replace=False))].copy()
        chosen["stratum"] = " / ".join(f"{b}={v}" for b, v in zip(by, key, strict=False))
        picked.append(chosen)
    queue = pd.concat(picked) if picked else instances.iloc[:0].assign(stratum="")
    drawn: pd.DataFrame = queue.assign(outcome="", reason="").reset_index(drop=True)[list(QUEUE_COLUMNS)]
    return drawn


def write_queue(queue: pd.DataFrame, folder: str | os.PathLike[str], stem: str = "review_queue") -> tuple[Path, Path]:
    """Write the queue as ``<stem>.json`` and ``<stem>.csv`` (atomically)."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    json_path, csv_path = out / f"{stem}.json", out / f"{stem}.csv"
    atomic_write_text(json_path, json.dumps({"items": queue.to_dict("records")}, indent=1))
    flat = queue.assign(bbox_xywh=[" ".join(f"{v:g}" for v in b) for b in queue["bbox_xywh"]])
    atomic_write_text(csv_path, flat.to_csv(index=False))
    return json_path, csv_path


def read_queue(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a queue (JSON) with its outcomes; outcomes must be '', 'pass' or 'fail'.

    Raises
    ------
    InstsegError
        For a file that is not a review queue (not JSON, no ``items`` list, an item that is not
        an object or lacks ``ann_id``, an unknown outcome); the message names the file and item.
    """
    from napari_instseg.core.coco._validate import read_json_file

    data = read_json_file(path, error=InstsegError, what="a review queue (review_queue.json)")
    items = data.get("items") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise InstsegError(f"{path}: expected an object with an 'items' list (a review_queue.json).")
    for i, item in enumerate(items):
        if not isinstance(item, dict) or "ann_id" not in item:
            raise InstsegError(f"{path}: items[{i}] is not a review item with an 'ann_id'.")
        bad = [
            k
            for k in ("outcome", "reason", "occlusion", "category", "annotator")
            if isinstance(item.get(k), (list, dict))
        ]
        if bad:
            raise InstsegError(f"{path}: items[{i}] (ann_id {item['ann_id']!r}): {bad[0]!r} must be a single value.")
    queue: pd.DataFrame = pd.DataFrame(items, columns=list(QUEUE_COLUMNS))
    queue["outcome"] = queue["outcome"].fillna("")
    bad_outcome = ~queue["outcome"].isin(OUTCOMES)
    if bad_outcome.any():
        row = queue[bad_outcome].iloc[0]
        raise InstsegError(
            f"{path}: item ann_id {row['ann_id']} has outcome {row['outcome']!r}; expected 'pass', 'fail' or empty."
        )
    result: pd.DataFrame = queue
    return result


def wilson_interval(failures: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval of a proportion (95 % by default); (nan, nan) for n = 0."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = failures / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def error_rates(queue: pd.DataFrame, by: str) -> pd.DataFrame:
    """Error rate (fails / reviewed) per value of ``by`` with its Wilson 95 % interval."""
    reviewed = queue[queue["outcome"].isin(("pass", "fail"))]
    rows = []
    for value, group in reviewed.groupby(by, sort=True):
        n, fails = len(group), int((group["outcome"] == "fail").sum())
        low, high = wilson_interval(fails, n)
        rows.append(
            {by: value, "reviewed": n, "failed": fails, "error_rate": fails / n, "ci_low": low, "ci_high": high}
        )
    rates: pd.DataFrame = pd.DataFrame(rows, columns=[by, "reviewed", "failed", "error_rate", "ci_low", "ci_high"])
    return rates
