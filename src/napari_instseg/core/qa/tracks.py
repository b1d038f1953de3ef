"""QA for tracks: per-frame Mask AP (overall and per occlusion tier) and identity metrics.

Mask AP treats each frame as a COCO image (:func:`napari_instseg.core.qa.metrics.stratified_ap`,
the tier of an annotation being its tier on that frame). Identity metrics (ID switches, IDF1,
MOTA, MOTP...) are py-motmetrics' (the CLEAR-MOT and identity definitions), fed with mask IoU:
a reference and a candidate can be matched on a frame when their visible masks overlap with
IoU >= ``iou_threshold``; the distance is ``1 - IoU``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from napari_instseg.core.errors import InstsegError

__all__ = ["IDENTITY_METRICS", "TrackQA", "TrackQAError", "evaluate_tracks", "identity_metrics", "mask_ious"]

IDENTITY_METRICS = (
    "idf1",
    "idp",
    "idr",
    "mota",
    "motp",
    "num_switches",
    "num_objects",
    "num_predictions",
    "num_matches",
    "num_false_positives",
    "num_misses",
    "num_unique_objects",
    "mostly_tracked",
    "mostly_lost",
)
"""py-motmetrics metrics reported (``motp`` is the mean ``1 - IoU`` of matches)."""


class TrackQAError(InstsegError, ValueError):
    """Reference and candidate tracks cannot be compared (shapes or frames differ)."""


@dataclass(frozen=True)
class TrackQA:
    """Scores of candidate tracks against reference tracks.

    Attributes
    ----------
    identity : dict of str to float
        :data:`IDENTITY_METRICS` (counts as floats; NaN where undefined).
    mask_ap : dict of str to Scores
        ``overall``, ``none``, ``partial``, ``heavy`` per-frame Mask AP.
    n_frames : int
    """

    identity: dict[str, float]
    mask_ap: dict[str, Any]
    n_frames: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe numbers (NaN as None)."""
        return {
            "n_frames": self.n_frames,
            "identity": {k: None if math.isnan(v) else v for k, v in self.identity.items()},
            "mask_ap": {k: v.to_dict() for k, v in self.mask_ap.items()},
        }


def mask_ious(
    gt_yx: NDArray[np.integer], dt_yx: NDArray[np.integer]
) -> tuple[list[int], list[int], NDArray[np.float64]]:
    """Visible-mask IoU of every (reference id, candidate id) pair on one frame.

    Returns
    -------
    gt_ids, dt_ids : list of int
        The ids present (0 = background excluded).
    ious : numpy.ndarray of float64, shape (len(gt_ids), len(dt_ids))
    """
    gt = np.asarray(gt_yx, dtype=np.int64).ravel()
    dt = np.asarray(dt_yx, dtype=np.int64).ravel()
    gt_ids, gt_inv, gt_area = np.unique(gt, return_inverse=True, return_counts=True)
    dt_ids, dt_inv, dt_area = np.unique(dt, return_inverse=True, return_counts=True)
    inter = np.zeros((gt_ids.size, dt_ids.size), dtype=np.int64)
    np.add.at(inter, (gt_inv, dt_inv), 1)
    union = gt_area[:, None] + dt_area[None, :] - inter
    ious = inter / np.maximum(union, 1)
    keep_gt, keep_dt = gt_ids > 0, dt_ids > 0
    return gt_ids[keep_gt].tolist(), dt_ids[keep_dt].tolist(), ious[np.ix_(keep_gt, keep_dt)]


def identity_metrics(
    gt_tyx: NDArray[np.integer], dt_tyx: NDArray[np.integer], *, iou_threshold: float = 0.5
) -> dict[str, float]:
    """py-motmetrics identity and CLEAR-MOT metrics of two (t, y, x) label stacks.

    Parameters
    ----------
    gt_tyx, dt_tyx : numpy.ndarray of int, shape (t, y, x)
        Reference and candidate labels; a value is a track id on every frame.
    iou_threshold : float
        Smallest mask IoU at which a pair can be matched.

    Raises
    ------
    TrackQAError
        When the stacks differ in shape.
    """
    import motmetrics as mm

    gt, dt = np.asarray(gt_tyx), np.asarray(dt_tyx)
    if gt.shape != dt.shape or gt.ndim != 3:
        raise TrackQAError(f"Reference stack {gt.shape} and candidate stack {dt.shape} must be equal (t, y, x) shapes.")
    if not 0 < iou_threshold <= 1:
        raise TrackQAError(f"iou_threshold must lie in (0, 1], got {iou_threshold}.")
    acc = mm.MOTAccumulator(auto_id=False)
    for t in range(gt.shape[0]):
        gt_ids, dt_ids, ious = mask_ious(gt[t], dt[t])
        distances = np.where(ious >= iou_threshold, 1.0 - ious, np.nan)
        acc.update(gt_ids, dt_ids, distances, frameid=t)
    summary = mm.metrics.create().compute(acc, metrics=list(IDENTITY_METRICS), name="tracks")
    return {name: float(summary[name].iloc[0]) for name in IDENTITY_METRICS}


def evaluate_tracks(
    gt: Mapping[str, Any] | str | os.PathLike[str],
    dt: Mapping[str, Any] | str | os.PathLike[str],
    *,
    video_id: int | None = None,
    iou_threshold: float = 0.5,
) -> TrackQA:
    """Per-frame Mask AP and identity metrics of two COCO video files or dicts.

    Frames are matched by ``frame_index``; both videos must have the same frames and size.
    """
    from napari_instseg.core.coco.video import import_coco_video
    from napari_instseg.core.qa.metrics import stratified_ap

    ref = import_coco_video(gt, video_id=video_id, source=None if isinstance(gt, Mapping) else str(gt))
    cand = import_coco_video(dt, video_id=video_id, source=None if isinstance(dt, Mapping) else str(dt))
    if ref.labels_tyx.shape != cand.labels_tyx.shape:
        raise TrackQAError(
            f"Reference video has (frames, height, width) {ref.labels_tyx.shape}, the candidate "
            f"{cand.labels_tyx.shape}: compare tracks of the same stack."
        )
    identity = identity_metrics(ref.labels_tyx, cand.labels_tyx, iou_threshold=iou_threshold)
    gt_coco, dt_coco = _per_frame_coco(ref), _per_frame_coco(cand)
    return TrackQA(identity, stratified_ap(gt_coco, dt_coco), int(ref.labels_tyx.shape[0]))


def _per_frame_coco(video: Any) -> dict[str, Any]:
    """A COCO dict whose image ids are frame index + 1 (so that both sides line up)."""
    from napari_instseg.core.coco.video import export_coco_video

    return dict(export_coco_video(video.track_stack(), name=str(video.video.get("name", "video"))).coco)
