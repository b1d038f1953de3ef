"""The QA report: ``report.json`` (every number), ``summary.md`` (one screen) and a
self-contained ``report.html`` (plots embedded as PNG data URIs).

Plots: precision-recall at IoU 0.5 per occlusion tier, AP per class, the IoU of each reference
to its best candidate, pre-label acceptance by class and tier, and a gallery of the
worst-IoU instances as image crops with both outlines (when the images are given).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from napari_instseg import __version__
from napari_instseg.core._io import atomic_write_text
from napari_instseg.core.coco._fields import json_scalar
from napari_instseg.core.protocol import OCCLUSION_TIERS, SamplingRates
from napari_instseg.core.qa.metrics import EvalParams, MaskEval, Scores, prepare, scores_of

__all__ = [
    "QA_OUTPUT_FILES",
    "QAReport",
    "format_score",
    "json_clean",
    "max_dets_warning",
    "run_qa",
    "truncated_by_max_dets",
]

QA_OUTPUT_FILES = ("report.json", "report.html", "summary.md", "review_queue.json", "review_queue.csv")
"""Every file a QA run writes into its folder. The commands refuse a folder that holds any
of them unless told ``--overwrite``: a review queue may hold verdicts, a summary notes."""

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class QAReport:
    """Where the report went and its numbers."""

    json_path: Path
    html_path: Path
    summary_path: Path
    queue_paths: tuple[Path, Path]
    data: dict[str, Any]


def json_clean(value: Any) -> Any:
    """``value`` with NaN as None, numpy scalars as Python values and keys as strings (for JSON)."""
    if isinstance(value, Mapping):
        return {str(k): json_clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_clean(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return json_scalar(value) if not isinstance(value, (dict, list)) else value


def run_qa(
    gt: Mapping[str, Any],
    dt: Sequence[Mapping[str, Any]] | Mapping[str, Any],
    outdir: str | os.PathLike[str],
    *,
    images_dir: str | os.PathLike[str] | None = None,
    max_dets: int = 1000,
    seed: int = 0,
    outcomes: pd.DataFrame | None = None,
    progress: Progress | None = None,
    stratify_by: Sequence[str] = ("occlusion",),
) -> QAReport:
    """Evaluate ``dt`` against ``gt`` and write the report, the summary and a review queue.

    Parameters
    ----------
    gt, dt : COCO dict / results list or COCO dict
        Reference and candidates.
    outdir : path-like
        Folder for ``report.json``, ``report.html``, ``summary.md``, ``review_queue.{json,csv}``.
    images_dir : path-like, optional
        Folder holding the images named by ``file_name`` (for the gallery).
    max_dets : int
        Detections kept per image and class (COCO's 100 is too few for dense cell tiles).
    seed : int
        Seed of the review sample.
    outcomes : DataFrame, optional
        A reviewed queue (``read_queue``): error rates per tier, category, annotator.
    progress : callable, optional
        ``progress(step, total, what)``.
    stratify_by : sequence of str
        Strata of the review sample: ``occlusion`` and optionally ``category``, ``annotator``.

    The pre-label section (acceptance, IoU pre-label -> final, time by source) comes from the
    set that carries our review attributes, the reference first: run it with the final
    annotations as ``gt`` and the pre-labels as ``dt``, and AP50 is the pre-labels' Mask AP@0.5.
    """
    from napari_instseg.core.protocol import AnnotationProtocol
    from napari_instseg.core.qa.agreement import prelabel_stats
    from napari_instseg.core.qa.sampling import error_rates, instances_of, review_sample, write_queue

    def step(i: int, what: str) -> None:
        if progress is not None:
            progress(i, 6, what)

    out = Path(outdir)
    step(0, "IoUs")
    evaluation = prepare(gt, dt, EvalParams(max_dets=max_dets))  # validates both first
    out.mkdir(parents=True, exist_ok=True)
    step(1, "Mask AP per tier")
    scores = {"overall": scores_of(evaluation)}
    scores.update({tier: scores_of(evaluation, tier) for tier in OCCLUSION_TIERS})
    step(2, "pre-labels")
    protocol_dict = (gt.get("info") or {}).get("protocol")
    rates = (
        AnnotationProtocol.from_dict(protocol_dict).qa_rates if isinstance(protocol_dict, Mapping) else SamplingRates()
    )
    final = gt if _has_attributes(gt) else (dt if isinstance(dt, Mapping) and _has_attributes(dt) else None)
    data: dict[str, Any] = {
        "tool": f"napari-instseg {__version__}",
        "max_dets": max_dets,
        "n_images": len(gt["images"]),
        "n_gt": len(gt["annotations"]),
        "n_dt": len(dt["annotations"]) if isinstance(dt, Mapping) else len(dt),
        "overall": scores["overall"].to_dict(),
        "per_tier": {tier: scores[tier].to_dict() for tier in OCCLUSION_TIERS},
        "per_class": {name: {"AP": ap} for name, ap in scores["overall"].per_class.items()},
        "prelabels": prelabel_stats(final) if final is not None else None,
        "truncated_by_max_dets": truncated_by_max_dets(evaluation, gt),
        "images_matched_by_file_name": _matched_by_name(evaluation, gt),
    }
    step(3, "review sample")
    queue = review_sample(instances_of(gt), rates, seed=seed, by=tuple(stratify_by))
    queue_paths = write_queue(queue, out)
    data["review_sample"] = {
        "seed": seed,
        "stratified_by": list(stratify_by),
        "rates": {t: rates.rate(t) for t in OCCLUSION_TIERS},
        "min_per_tier": rates.min_per_tier,
        "n_items": len(queue),
        "per_stratum": queue["stratum"].value_counts().sort_index().to_dict(),
    }
    if outcomes is not None:
        data["review_outcomes"] = {
            by: error_rates(outcomes, by).to_dict("records") for by in ("occlusion", "category", "annotator")
        }
    step(4, "plots")
    ious = _best_ious(evaluation)
    plots = _plots(scores, evaluation, ious, data)
    gallery = _gallery(gt, dt, evaluation, ious, images_dir) if images_dir else []
    step(5, "writing")
    data = json_clean(data)
    json_path, html_path, summary_path = out / "report.json", out / "report.html", out / "summary.md"
    atomic_write_text(json_path, json.dumps(data, indent=2, allow_nan=False))
    atomic_write_text(summary_path, _summary(data))
    atomic_write_text(html_path, _html(data, plots, gallery))
    step(6, "done")
    return QAReport(json_path, html_path, summary_path, queue_paths, data)


def truncated_by_max_dets(evaluation: MaskEval, gt: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Where ``max_dets`` cut candidates: one record per image and class with more candidates
    than the limit (``image_id``, ``file_name``, ``category``, ``n_candidates``, ``kept``),
    most candidates first. AP there counts only the ``kept`` best-scored candidates."""
    names = {im["id"]: im.get("file_name") for im in gt["images"]}
    kept = evaluation.params.max_dets
    records = [
        {
            "image_id": image_id,
            "file_name": names.get(image_id),
            "category": evaluation.category_names.get(category_id, str(category_id)),
            "n_candidates": n,
            "kept": kept,
        }
        for (image_id, category_id), n in evaluation.truncated.items()
    ]
    return sorted(records, key=lambda r: (-r["n_candidates"], r["image_id"]))


def max_dets_warning(data: Mapping[str, Any], listed: int = 5) -> str | None:
    """A warning naming the images whose candidates ``max_dets`` cut, and how to raise it
    (None when nothing was cut)."""
    cut = data.get("truncated_by_max_dets") or []
    if not cut:
        return None
    places = "; ".join(
        f"image {r['image_id']} ({r['file_name']}), {r['category']}: {r['n_candidates']} candidates"
        for r in cut[:listed]
    )
    more = f"; and {len(cut) - listed} more image/class pair(s)" if len(cut) > listed else ""
    largest = max(r["n_candidates"] for r in cut)
    return (
        f"Warning: only the {data['max_dets']} best-scored candidates per image and class were evaluated "
        f"(maxDets); more were given on {places}{more}. AP and AR there count only those. "
        f"Raise the limit with --max-dets {largest} (qa, project qa) or run_qa(max_dets={largest})."
    )


def _matched_by_name(evaluation: MaskEval, gt: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The candidate images matched to the reference by ``file_name`` (ids that differ)."""
    names = {im["id"]: im.get("file_name") for im in gt["images"]}
    return [
        {"candidate_image_id": dt_id, "reference_image_id": gt_id, "file_name": names.get(gt_id)}
        for dt_id, gt_id in sorted(evaluation.matched_by_file_name.items())
    ]


def _matched_by_name_note(data: Mapping[str, Any], listed: int = 5) -> str | None:
    matched = data.get("images_matched_by_file_name") or []
    if not matched:
        return None
    pairs = ", ".join(
        f"{m['file_name']}: {m['candidate_image_id']} -> {m['reference_image_id']}" for m in matched[:listed]
    )
    more = f", and {len(matched) - listed} more" if len(matched) > listed else ""
    return (
        f"The candidates' image ids are not the reference's: {len(matched)} image(s) were matched by "
        f"file_name ({pairs}{more})."
    )


def _has_attributes(coco: Mapping[str, Any]) -> bool:
    return any(isinstance(a.get("attributes"), Mapping) and "source" in a["attributes"] for a in coco["annotations"])


def _best_ious(evaluation: MaskEval) -> pd.DataFrame:
    """For every non-crowd reference: the IoU of its best candidate (0 when none)."""
    rows = []
    for (image_id, category_id), cell in evaluation.cells.items():
        best = cell.ious.max(axis=0) if cell.ious.size else np.zeros(cell.gt_ids.size)
        for k, gt_id in enumerate(cell.gt_ids.tolist()):
            if not cell.gt_crowd[k]:
                rows.append(
                    {
                        "gt_id": gt_id,
                        "image_id": image_id,
                        "category_id": category_id,
                        "occlusion": str(cell.gt_tier[k]),
                        "iou": float(best[k]),
                        "dt_index": int(cell.ious[:, k].argmax()) if best[k] > 0 else -1,
                    }
                )
    result: pd.DataFrame = pd.DataFrame(
        rows, columns=["gt_id", "image_id", "category_id", "occlusion", "iou", "dt_index"]
    )
    return result


def _figure(width: float, height: float, ncols: int = 1) -> tuple[Any, Any]:
    """A matplotlib Figure and its axes through the object API: no pyplot, no global backend
    or figure registry, so it is safe in a Qt worker thread inside napari."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    return fig, fig.subplots(1, ncols)


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")  # Agg is chosen for PNG
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _plots(scores: dict[str, Scores], evaluation: MaskEval, ious: pd.DataFrame, data: dict[str, Any]) -> dict[str, str]:
    recall = np.asarray(evaluation.params.recall_thresholds)
    plots = {}
    fig, ax = _figure(5, 4)
    for name in ("overall", *OCCLUSION_TIERS):
        precision = scores[name].precision[0]  # IoU 0.5, (R, K)
        defined = precision[:, (precision > -1).all(axis=0)] if precision.size else precision
        if defined.size and defined.shape[1]:
            ax.plot(recall, defined.mean(axis=1), label=f"{name} (AP50 {scores[name].AP50:.2f})")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall at IoU 0.5", xlim=(0, 1), ylim=(0, 1.05))
    ax.legend(loc="lower left")
    plots["pr_curves"] = _png(fig)
    fig, ax = _figure(5, 3)
    names = list(scores["overall"].per_class)
    ax.bar(names, [0 if math.isnan(v) else v for v in scores["overall"].per_class.values()], color="#1f77b4")
    ax.set(ylabel="AP", title="Mask AP per class", ylim=(0, 1))
    plots["ap_per_class"] = _png(fig)
    fig, ax = _figure(5, 3)
    for tier in OCCLUSION_TIERS:
        values = ious.loc[ious["occlusion"] == tier, "iou"]
        if len(values):
            ax.hist(values, bins=20, range=(0, 1), alpha=0.5, label=f"{tier} (n={len(values)})")
    ax.set(xlabel="IoU of the best candidate", ylabel="references", title="IoU per reference, by tier")
    ax.legend()
    plots["iou_histogram"] = _png(fig)
    pre = data.get("prelabels")
    if pre:
        fig, axes = _figure(8, 3, ncols=2)
        for ax, key in zip(axes, ("per_class", "per_tier"), strict=False):
            groups = pre[key]
            ax.bar(
                list(groups), [0 if math.isnan(g["acceptance_rate"]) else g["acceptance_rate"] for g in groups.values()]
            )
            ax.set(ylim=(0, 1), title=f"Pre-label acceptance {key.replace('per_', 'by ')}")
        plots["acceptance"] = _png(fig)
    return plots


def _gallery(
    gt: Mapping[str, Any], dt: Any, evaluation: MaskEval, ious: pd.DataFrame, images_dir: Any, n: int = 12
) -> list[dict[str, Any]]:
    """Crops of the worst-IoU references with the reference (green) and candidate (red) outlines."""
    from pycocotools import mask as mask_utils

    from napari_instseg.core.errors import InputFileError
    from napari_instseg.core.io import read_image
    from napari_instseg.core.qa.metrics import segmentation_rle

    images = {im["id"]: im for im in gt["images"]}
    anns = {a["id"]: a for a in gt["annotations"]}
    candidates = dt["annotations"] if isinstance(dt, Mapping) else list(dt)
    by_cell: dict[tuple[int, int], list[Mapping[str, Any]]] = {}
    renamed = evaluation.matched_by_file_name
    for ann in candidates:
        by_cell.setdefault((renamed.get(ann["image_id"], ann["image_id"]), ann["category_id"]), []).append(ann)
    items = []
    for row in ious.sort_values(["iou", "gt_id"]).head(n).itertuples():
        image = images[row.image_id]
        path = Path(images_dir) / image["file_name"]
        if not path.is_file():
            continue
        height, width = image["height"], image["width"]
        try:
            pixels = read_image(path)
        except InputFileError:
            continue  # an unreadable image is left out of the gallery, like a missing one
        if tuple(pixels.shape[:2]) != (height, width):
            continue  # not the image the annotations were made on
        ref = mask_utils.decode(segmentation_rle(anns[row.gt_id]["segmentation"], height, width)).astype(bool)
        cands = sorted(by_cell.get((row.image_id, row.category_id), []), key=lambda a: -float(a.get("score", 1.0)))
        cand = (
            mask_utils.decode(segmentation_rle(cands[row.dt_index]["segmentation"], height, width)).astype(bool)
            if row.dt_index >= 0 and cands
            else np.zeros_like(ref)
        )
        ys, xs = np.nonzero(ref | cand)
        pad = 10
        y0, y1 = max(int(ys.min()) - pad, 0), min(int(ys.max()) + pad + 1, height)
        x0, x1 = max(int(xs.min()) - pad, 0), min(int(xs.max()) + pad + 1, width)
        fig, ax = _figure(2, 2)
        ax.imshow(pixels[y0:y1, x0:x1], cmap="gray")
        ax.contour(ref[y0:y1, x0:x1], levels=[0.5], colors="lime", linewidths=1)
        if cand.any():
            ax.contour(cand[y0:y1, x0:x1], levels=[0.5], colors="red", linewidths=1)
        ax.set_axis_off()
        items.append(
            {"src": _png(fig), "caption": f"ann {row.gt_id} ({image['file_name']}, {row.occlusion}): IoU {row.iou:.2f}"}
        )
    return items


def format_score(value: Any) -> str:
    """A score as every report prints it: ``0.123``, or ``n/a`` where there is none (None, NaN).

    Integers and strings are printed as they are.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _summary(data: dict[str, Any]) -> str:
    lines = [
        "# QA summary",
        "",
        f"{data['n_gt']} reference and {data['n_dt']} candidate instances on {data['n_images']} images "
        f"(maxDets {data['max_dets']}).",
        "",
        *([warning, ""] if (warning := max_dets_warning(data)) else []),
        *([note, ""] if (note := _matched_by_name_note(data)) else []),
        "| subset | AP | AP50 | AP75 | AR | references |",
        "|---|---|---|---|---|---|",
        f"| overall | {format_score(data['overall']['AP'])} | {format_score(data['overall']['AP50'])} | {format_score(data['overall']['AP75'])} "
        f"| {format_score(data['overall']['AR'])} | {data['overall']['n_gt']} |",
    ]
    for tier, s in data["per_tier"].items():
        lines.append(
            f"| {tier} | {format_score(s['AP'])} | {format_score(s['AP50'])} | {format_score(s['AP75'])} | {format_score(s['AR'])} | {s['n_gt']} |"
        )
    lines += ["", "AP per class: " + ", ".join(f"{k} {format_score(v['AP'])}" for k, v in data["per_class"].items())]
    pre = data.get("prelabels")
    if pre:
        o = pre["overall"]
        lines += [
            "",
            f"Pre-labels: {o['n_prelabels']}, accepted as is {format_score(o['acceptance_rate'])}, "
            f"mean IoU pre-label -> final {format_score(o['mean_iou_prelabel_to_final'])}.",
        ]
    sample = data["review_sample"]
    lines += [
        "",
        f"Review sample: {sample['n_items']} items (seed {sample['seed']}): "
        + ", ".join(f"{k}: {v}" for k, v in sample["per_stratum"].items())
        + ".",
    ]
    if data.get("review_outcomes"):
        for row in data["review_outcomes"]["occlusion"]:
            lines.append(
                f"- error rate {row['occlusion']}: {format_score(row['error_rate'])} "
                f"(95 % CI {format_score(row['ci_low'])}-{format_score(row['ci_high'])}, n={row['reviewed']})"
            )
    return "\n".join(lines) + "\n"


def _markdown_to_html(text: str) -> str:
    """The summary's small Markdown subset (headings, tables, lists, paragraphs) as HTML."""
    out: list[str] = []
    table: list[str] = []
    items: list[str] = []

    def close() -> None:
        if table:
            rows = [r for r in table if not set(r.replace("|", "").strip()) <= {"-"}]
            cells = [[html.escape(c.strip()) for c in r.strip().strip("|").split("|")] for r in rows]
            head = "".join(f"<th>{c}</th>" for c in cells[0])
            rest = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in cells[1:])
            out.append(f"<table id='scores'><tr>{head}</tr>{rest}</table>")
            table.clear()
        if items:
            out.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>")
            items.clear()

    for line in text.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        if line.startswith("- "):
            items.append(line[2:])
            continue
        close()
        if line.startswith("# "):
            out.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.strip():
            out.append(f"<p>{html.escape(line)}</p>")
    close()
    return "\n".join(out)


def _html(data: dict[str, Any], plots: dict[str, str], gallery: list[dict[str, Any]]) -> str:
    body = _markdown_to_html(_summary(data))
    figures = "".join(
        f'<figure><img id="plot-{html.escape(k)}" alt="{html.escape(k)}" src="{v}"><figcaption>'
        f"{html.escape(k.replace('_', ' '))}</figcaption></figure>"
        for k, v in plots.items()
    )
    tiles = "".join(
        f'<figure class="tile"><img alt="worst IoU" src="{g["src"]}"><figcaption>{html.escape(g["caption"])}'
        f"</figcaption></figure>"
        for g in gallery
    )
    gallery_html = (
        f"<h2>Worst-IoU instances (green: reference, red: candidate)</h2><div id='gallery'>{tiles}</div>"
        if tiles
        else ""
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>QA report - napari-instseg</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px}} figure{{display:inline-block;margin:8px}} .tile img{{width:180px}}</style>
</head><body>{body}<h2>Plots</h2><div id="plots">{figures}</div>{gallery_html}
<h2>All numbers</h2><pre id="numbers">{html.escape(json.dumps(data, indent=1))}</pre>
<script>window.addEventListener("load", () => {{
  document.body.dataset.imagesLoaded = [...document.images].filter(i => i.naturalWidth > 0).length;
}});</script></body></html>
"""
