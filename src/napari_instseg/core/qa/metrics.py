"""COCO Mask AP of a candidate set against a reference set, stratified by occlusion tier.

The definition is pycocotools' ``COCOeval`` (segm, area range 'all'), reproduced exactly:
detections sorted by score (stable), at most ``max_dets`` per image and category, greedy
matching per IoU threshold that prefers non-ignored references and the highest IoU (ties:
the later reference), crowd references matchable many times, 101-point interpolated
precision. What differs: mask IoUs are computed once and shared by every stratum, the
matching is vectorised over IoU thresholds, and ``max_dets`` is a parameter (default 1000)
so dense cell tiles are not silently truncated at COCO's 100.

A stratum (an occlusion tier) is evaluated as in the CityPersons / Caltech subset evaluation:
reference instances of the other tiers are *ignored* - a candidate matched to one is neither a
true nor a false positive; an unmatched candidate is a false positive.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from napari_instseg.core.coco._validate import validate_coco, validate_results
from napari_instseg.core.errors import CocoFormatError
from napari_instseg.core.protocol import OCCLUSION_TIERS, TierThresholds

__all__ = [
    "EvalParams",
    "MaskEval",
    "Scores",
    "prepare",
    "reference_tier",
    "scores_of",
    "segmentation_rle",
    "stratified_ap",
    "tier_thresholds_of",
]

_EPS = np.spacing(1)


@dataclass(frozen=True)
class EvalParams:
    """Evaluation settings (COCO's, with a configurable detection limit)."""

    iou_thresholds: tuple[float, ...] = tuple(np.linspace(0.5, 0.95, 10).tolist())
    recall_thresholds: tuple[float, ...] = tuple(np.linspace(0.0, 1.0, 101).tolist())
    max_dets: int = 1000


@dataclass
class _Cell:
    """One (image, category): its references, candidates (score order) and their IoUs."""

    gt_ids: NDArray[np.int64]
    gt_crowd: NDArray[np.bool_]
    gt_tier: NDArray[np.str_]
    dt_scores: NDArray[np.float64]
    ious: NDArray[np.float64]  # (n_dt, n_gt)
    pairs: tuple[NDArray[np.intp], NDArray[np.intp]] | None = None  # cached by _unique_pairs
    pairs_limit: float = -1.0


@dataclass
class MaskEval:
    """A prepared evaluation: IoUs computed once, evaluated per stratum on demand."""

    params: EvalParams
    category_ids: list[int]
    category_names: dict[int, str]
    image_ids: list[int]
    cells: dict[tuple[int, int], _Cell] = field(default_factory=dict)
    truncated: dict[tuple[int, int], int] = field(default_factory=dict)
    """(image id, category id) -> candidates there, where more than ``params.max_dets`` (only
    the ``max_dets`` best-scored were evaluated)."""
    matched_by_file_name: dict[int, int] = field(default_factory=dict)
    """Candidate image id -> reference image id, where the candidates' image ids were not in
    the reference and their images were matched by ``file_name`` (see :func:`prepare`)."""

    def n_gt(self, tier: str | None = None) -> int:
        """Reference instances counted (not crowd; of ``tier`` when given)."""
        total = 0
        for cell in self.cells.values():
            keep = ~cell.gt_crowd if tier is None else ~cell.gt_crowd & (cell.gt_tier == tier)
            total += int(np.count_nonzero(keep))
        return total


@dataclass(frozen=True)
class Scores:
    """AP numbers of one evaluation (NaN where undefined, e.g. no reference instance).

    ``precision`` is (T, R, K) and ``recall`` (T, K), as COCOeval's ``eval`` for area 'all'
    and the one detection limit, with -1 where undefined.
    """

    AP: float
    AP50: float
    AP75: float
    AR: float
    n_gt: int
    per_class: dict[str, float]
    precision: NDArray[np.float64]
    recall: NDArray[np.float64]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe numbers (NaN as None)."""

        def clean(v: float) -> float | None:
            return None if math.isnan(v) else float(v)

        return {
            "AP": clean(self.AP),
            "AP50": clean(self.AP50),
            "AP75": clean(self.AP75),
            "AR": clean(self.AR),
            "n_gt": self.n_gt,
            "per_class": {k: clean(v) for k, v in self.per_class.items()},
        }


# -- preparing -----------------------------------------------------------------------------------
def prepare(
    gt: Mapping[str, Any],
    dt: Sequence[Mapping[str, Any]] | Mapping[str, Any],
    params: EvalParams | None = None,
    *,
    tiers: TierThresholds | None = None,
) -> MaskEval:
    """Validate both sets, group them per (image, category) and compute every mask IoU once.

    Parameters
    ----------
    gt : dict
        Reference COCO instances dict.
    dt : list of dict, or dict
        Candidates: a COCO results list (``image_id``, ``category_id``, ``segmentation``,
        ``score``), or a full COCO dict whose annotations count with score 1 unless they carry
        a ``score``.
    params : EvalParams, optional
    tiers : TierThresholds, optional
        Cut-points for references that carry ``occluded_fraction`` but no ``occlusion``
        (default: the protocol in ``gt['info']``, else the defaults).
    """
    from pycocotools import mask as mask_utils

    params = params or EvalParams()
    validate_coco(gt, source="reference (GT)")
    candidates, by_name = _candidates(dt, gt)
    tiers = tiers or tier_thresholds_of(gt)
    sizes = {im["id"]: (im["height"], im["width"]) for im in gt["images"]}
    category_ids = sorted(c["id"] for c in gt["categories"])
    grouped_gt: dict[tuple[int, int], list[Mapping[str, Any]]] = {}
    for ann in gt["annotations"]:
        grouped_gt.setdefault((ann["image_id"], ann["category_id"]), []).append(ann)
    grouped_dt: dict[tuple[int, int], list[Mapping[str, Any]]] = {}
    for ann in candidates:
        grouped_dt.setdefault((ann["image_id"], ann["category_id"]), []).append(ann)
    evaluation = MaskEval(params, category_ids, {c["id"]: c["name"] for c in gt["categories"]}, sorted(sizes))
    evaluation.matched_by_file_name.update(by_name)
    for key in set(grouped_gt) | set(grouped_dt):
        gts, dts = grouped_gt.get(key, []), grouped_dt.get(key, [])
        height, width = sizes[key[0]]
        order = np.argsort([-float(d["score"]) for d in dts], kind="mergesort")[: params.max_dets]
        if len(dts) > params.max_dets:
            evaluation.truncated[key] = len(dts)
        dts = [dts[i] for i in order]
        crowd = np.array([bool(g.get("iscrowd", 0)) for g in gts], dtype=bool)
        g_rles = [segmentation_rle(g["segmentation"], height, width) for g in gts]
        d_rles = [segmentation_rle(d["segmentation"], height, width) for d in dts]
        ious = (
            np.asarray(mask_utils.iou(d_rles, g_rles, crowd.astype(np.uint8).tolist()), dtype=np.float64)
            if gts and dts
            else np.zeros((len(dts), len(gts)))
        )
        evaluation.cells[key] = _Cell(
            gt_ids=np.array([g["id"] for g in gts], dtype=np.int64),
            gt_crowd=crowd,
            gt_tier=np.array([reference_tier(g, tiers) for g in gts], dtype="<U7"),
            dt_scores=np.array([float(d["score"]) for d in dts], dtype=np.float64),
            ious=ious.reshape(len(dts), len(gts)),
        )
    return evaluation


def _candidates(
    dt: Sequence[Mapping[str, Any]] | Mapping[str, Any], gt: Mapping[str, Any]
) -> tuple[list[dict[str, Any]], dict[int, int]]:
    """The candidates in the reference's image ids, and the ids matched by file name."""
    if isinstance(dt, Mapping):
        validate_coco(dt, source="candidates (DT)")
        known = {im["id"] for im in gt["images"]}
        unknown = {a["image_id"] for a in dt["annotations"]} - known
        by_name = _ids_by_file_name(dt, gt) if unknown else {}
        if unknown and not by_name:
            raise CocoFormatError(
                f"candidates (DT): image ids {sorted(unknown)[:10]} are not in the reference, and their "
                "file_name values do not match the reference's images one to one either."
            )
        gt_sizes = {im["id"]: (im["height"], im["width"]) for im in gt["images"]}
        for im in dt["images"]:
            gt_id = by_name.get(im["id"], im["id"]) if by_name else im["id"]
            if gt_id in gt_sizes and (im["height"], im["width"]) != gt_sizes[gt_id]:
                matched = f" (image {gt_id}, matched by file_name {im.get('file_name')!r})" if gt_id != im["id"] else ""
                raise CocoFormatError(
                    f"candidates (DT): image {im['id']} is {im['height']} x {im['width']} (height x width), "
                    f"but {gt_sizes[gt_id][0]} x {gt_sizes[gt_id][1]} in the reference{matched}."
                )
        out = [dict(a, score=float(a.get("score", 1.0))) for a in dt["annotations"]]
        if by_name:
            for ann in out:
                ann["image_id"] = by_name[ann["image_id"]]
        return out, by_name
    sizes = {im["id"]: (im["height"], im["width"]) for im in gt["images"]}
    validate_results(dt, sizes, {c["id"] for c in gt["categories"]}, source="candidates (DT)")
    return [dict(ann) for ann in dt], {}


def _ids_by_file_name(dt: Mapping[str, Any], gt: Mapping[str, Any]) -> dict[int, int]:
    """Candidate image id -> reference image id by ``file_name``, for every candidate image
    with annotations; empty unless that match is unambiguous (each name once on each side,
    every such image found)."""
    gt_names = [im.get("file_name") for im in gt["images"]]
    dt_names = [im.get("file_name") for im in dt["images"]]
    gt_id_of = {im.get("file_name"): im["id"] for im in gt["images"]}
    used = {a["image_id"] for a in dt["annotations"]}
    mapping = {}
    for im in dt["images"]:
        name = im.get("file_name")
        if im["id"] not in used:
            continue
        if not name or gt_names.count(name) != 1 or dt_names.count(name) != 1:
            return {}
        mapping[im["id"]] = gt_id_of[name]
    return mapping


def segmentation_rle(segmentation: Any, height: int, width: int) -> Any:
    """A COCO segmentation (polygons, uncompressed or compressed RLE) as pycocotools RLE."""
    from pycocotools import mask as mask_utils

    if isinstance(segmentation, list):
        return mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    if isinstance(segmentation["counts"], list):
        return mask_utils.frPyObjects(segmentation, height, width)
    return segmentation


def tier_thresholds_of(gt: Mapping[str, Any]) -> TierThresholds:
    """The tier thresholds of a reference COCO file (its ``info.protocol``), else the defaults."""
    protocol = (gt.get("info") or {}).get("protocol")
    if isinstance(protocol, Mapping) and isinstance(protocol.get("tiers"), Mapping):
        return TierThresholds(**protocol["tiers"])
    return TierThresholds()


def reference_tier(ann: Mapping[str, Any], tiers: TierThresholds) -> str:
    """The reference's tier: ``occlusion``, else from ``occluded_fraction``, else ``none``."""
    if ann.get("occlusion") in OCCLUSION_TIERS:
        return str(ann["occlusion"])
    fraction = ann.get("occluded_fraction")
    if fraction is not None:
        return tiers.tier_of(float(fraction)) or "none"
    return "none"


# -- matching and accumulating ------------------------------------------------------------------------
def _match(
    cell: _Cell, gt_ignore: NDArray[np.bool_], thresholds: NDArray[np.float64]
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """COCOeval's greedy matching, vectorised over IoU thresholds.

    Returns (matched, ignored), each (T, n_dt): a candidate is a true positive where matched
    and not ignored, a false positive where neither.
    """
    n_thr, n_dt = thresholds.size, cell.dt_scores.size
    matched = np.zeros((n_thr, n_dt), dtype=bool)
    ignored = np.zeros((n_thr, n_dt), dtype=bool)
    n_gt = gt_ignore.size
    if n_dt == 0 or n_gt == 0:
        return matched, ignored
    limits = np.minimum(thresholds, 1 - 1e-10)
    pairs = _unique_pairs(cell, float(limits.min()))
    if pairs is not None:  # no two candidates compete for a reference, nor the reverse
        dets, gts = pairs
        hit = cell.ious[dets, gts][None, :] >= limits[:, None]
        matched[:, dets] = hit
        ignored[:, dets] = hit & gt_ignore[gts][None, :]
        return matched, ignored
    order = np.argsort(gt_ignore, kind="mergesort")  # references to ignore last
    ig, crowd, ious = gt_ignore[order], cell.gt_crowd[order], cell.ious[:, order]
    limit = np.minimum(thresholds, 1 - 1e-10)[:, None]
    taken = np.zeros((n_thr, n_gt), dtype=bool)
    rows = np.arange(n_thr)
    last = n_gt - 1
    for d in range(n_dt):
        row = ious[d]
        ok = (~taken | crowd) & (row >= limit)
        if not ok.any():
            continue
        best = []
        for group in (ok & ~ig, ok & ig):
            values = np.where(group, row, -1.0)
            best.append((last - np.argmax(values[:, ::-1], axis=1), group.any(axis=1)))  # ties: the later
        (m_keep, any_keep), (m_ig, any_ig) = best
        m = np.where(any_keep, m_keep, np.where(any_ig, m_ig, -1))
        hit = m >= 0
        matched[hit, d] = True
        ignored[hit, d] = ig[m[hit]]
        taken[rows[hit], m[hit]] = True
    return matched, ignored


def _unique_pairs(cell: _Cell, limit: float) -> tuple[NDArray[np.intp], NDArray[np.intp]] | None:
    """(candidate, reference) index pairs with IoU >= ``limit`` when each candidate has at most
    one such reference and each reference at most one such candidate; else None.

    Then greedy matching cannot have conflicts: at every threshold a candidate is matched to
    its one reference exactly when their IoU reaches the threshold (the common case for
    well-separated instances, computed without the per-candidate loop).
    """
    if cell.pairs_limit != limit:
        close = cell.ious >= limit
        unique = bool((close.sum(axis=0) <= 1).all() and (close.sum(axis=1) <= 1).all())
        pairs = np.nonzero(close)
        cell.pairs = (pairs[0], pairs[1]) if unique else None
        cell.pairs_limit = limit
    return cell.pairs


def _evaluate(evaluation: MaskEval, ignore_of: Any) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    params = evaluation.params
    thresholds = np.asarray(params.iou_thresholds)
    rec_thr = np.asarray(params.recall_thresholds)
    n_thr, n_rec, n_cat = thresholds.size, rec_thr.size, len(evaluation.category_ids)
    precision = -np.ones((n_thr, n_rec, n_cat))
    recall = -np.ones((n_thr, n_cat))
    for k, category_id in enumerate(evaluation.category_ids):
        scores, matches, ignores, npig, any_cell = [], [], [], 0, False
        for image_id in evaluation.image_ids:  # COCOeval concatenates in image-id order
            cell = evaluation.cells.get((image_id, category_id))
            if cell is None or (cell.gt_ids.size == 0 and cell.dt_scores.size == 0):
                continue
            any_cell = True
            gt_ignore = ignore_of(cell)
            matched, ignored = _match(cell, gt_ignore, thresholds)
            scores.append(cell.dt_scores)
            matches.append(matched)
            ignores.append(ignored)
            npig += int(np.count_nonzero(~gt_ignore))
        if not any_cell or npig == 0:
            continue
        dt_scores = np.concatenate(scores)
        order = np.argsort(-dt_scores, kind="mergesort")
        dtm = np.concatenate(matches, axis=1)[:, order]
        dtig = np.concatenate(ignores, axis=1)[:, order]
        tps = np.logical_and(dtm, ~dtig)
        fps = np.logical_and(~dtm, ~dtig)
        tp_sum = np.cumsum(tps, axis=1).astype(float)
        fp_sum = np.cumsum(fps, axis=1).astype(float)
        for t in range(n_thr):
            precision[t, :, k], recall[t, k] = _pr_curve(tp_sum[t], fp_sum[t], npig, rec_thr)
    return precision, recall


def _pr_curve(
    tp: NDArray[np.float64], fp: NDArray[np.float64], npig: int, rec_thr: NDArray[np.float64]
) -> tuple[NDArray[np.float64], float]:
    """COCOeval's interpolated precision at the recall thresholds, and the final recall."""
    nd = tp.size
    rc = tp / npig
    pr = tp / (fp + tp + _EPS)
    q = np.zeros(rec_thr.size)
    if nd == 0:
        return q, 0.0
    pr = np.maximum.accumulate(pr[::-1])[::-1]  # precision envelope, right to left
    inds = np.searchsorted(rc, rec_thr, side="left")
    valid = inds < nd
    q[valid] = pr[inds[valid]]
    return q, float(rc[-1])


def _mean_defined(values: NDArray[np.float64]) -> float:
    defined = values[values > -1]
    return float(np.mean(defined)) if defined.size else float("nan")


def scores_of(evaluation: MaskEval, tier: str | None = None) -> Scores:
    """AP / AP50 / AP75 / AR (and per class AP) of all references, or of one tier's."""
    if tier is not None and tier not in OCCLUSION_TIERS:
        raise ValueError(f"tier must be one of {OCCLUSION_TIERS} or None, got {tier!r}.")

    def ignore_of(cell: _Cell) -> NDArray[np.bool_]:
        return cell.gt_crowd if tier is None else cell.gt_crowd | (cell.gt_tier != tier)

    precision, recall = _evaluate(evaluation, ignore_of)
    thresholds = np.asarray(evaluation.params.iou_thresholds)
    t50 = np.flatnonzero(np.isclose(thresholds, 0.5))
    t75 = np.flatnonzero(np.isclose(thresholds, 0.75))
    per_class = {
        evaluation.category_names[c]: _mean_defined(precision[:, :, k]) for k, c in enumerate(evaluation.category_ids)
    }
    return Scores(
        AP=_mean_defined(precision),
        AP50=_mean_defined(precision[t50]) if t50.size else float("nan"),
        AP75=_mean_defined(precision[t75]) if t75.size else float("nan"),
        AR=_mean_defined(recall),
        n_gt=evaluation.n_gt(tier),
        per_class=per_class,
        precision=precision,
        recall=recall,
    )


def stratified_ap(
    gt: Mapping[str, Any], dt: Sequence[Mapping[str, Any]] | Mapping[str, Any], params: EvalParams | None = None
) -> dict[str, Scores]:
    """``{"overall": Scores, "none": ..., "partial": ..., "heavy": ...}`` with IoUs shared."""
    evaluation = prepare(gt, dt, params)
    out = {"overall": scores_of(evaluation)}
    out.update({tier: scores_of(evaluation, tier) for tier in OCCLUSION_TIERS})
    return out
