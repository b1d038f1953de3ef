"""One COCO export of a whole project, QA against a gold file, and the throughput report.

Export ids are stable: a COCO image id is the project's image id, and an annotation id is
``image_id * stride + instance_id`` (``ProjectSettings.annotation_id_stride``), so exporting
again after more images are submitted changes no id already written.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from napari_instseg.core.coco import REJECTED_KEY, AnnotatedImage, CocoExport, ExportSummary, export_coco, save_coco
from napari_instseg.core.project._manifest import ProjectError, WorkItem
from napari_instseg.core.project._project import Project, count_unreviewed

__all__ = [
    "ProjectExport",
    "export_item",
    "export_project",
    "export_slides_geojson",
    "format_throughput",
    "project_coco",
    "project_export",
    "project_qa",
    "review_sample",
    "throughput_report",
]

from napari_instseg.core.activetime import person_timed
from napari_instseg.core.prompting.registry import MODEL_SOURCES


@dataclass(frozen=True)
class ProjectExport:
    """A project's COCO export, what it holds, and the pre-labels no person reviewed.

    Attributes
    ----------
    coco : dict
        The COCO instances dict.
    summary : ExportSummary
        What it holds.
    unreviewed : tuple of (WorkItem, int)
        Each exported annotation set and its number of unreviewed pre-labels
        (:func:`~napari_instseg.core.project._project.count_unreviewed`).
    """

    coco: dict[str, Any]
    summary: ExportSummary
    unreviewed: tuple[tuple[WorkItem, int], ...]


def export_item(project: Project, item: WorkItem, segmentation: str = "rle") -> CocoExport:
    """COCO for one annotation set, with the project's stable image and annotation ids."""
    return _export_set(project, item, segmentation)[0]


def _export_set(project: Project, item: WorkItem, segmentation: str) -> tuple[CocoExport, int]:
    """:func:`export_item` and the set's number of unreviewed pre-labels (one store read)."""
    store = project.open_store(item, read_only=True)
    try:
        unreviewed = count_unreviewed(store.table)
        metadata = {k: v for k, v in project.image_record(item).items() if k not in ("id", "file_name")}
        metadata["project_status"] = item.status
        annotated = AnnotatedImage(
            store.read_labels(),
            store.table,
            item.file_name,
            item.image_id,
            metadata,
            amodal=store.read_side("amodal"),
        )
        exported = export_coco([annotated], project.protocol, segmentation=segmentation)
    finally:
        store.close()
    stride = project.settings.annotation_id_stride
    for ann in exported.coco["annotations"]:
        if not 0 < ann["instance_id"] < stride:
            raise ProjectError(
                f"{project.store_path(item)}: instance id {ann['instance_id']} does not fit the annotation id "
                f"stride {stride}; raise annotation_id_stride in project.json."
            )
        ann["id"] = item.image_id * stride + ann["instance_id"]
    return exported, unreviewed


def project_coco(
    project: Project,
    *,
    segmentation: str = "rle",
    reviewed_only: bool = False,
    phase: str = "production",
    progress: Callable[[int, int], None] | None = None,
) -> CocoExport:
    """All submitted (or only reviewed) annotation sets of ``phase`` as one COCO dict."""
    exported = project_export(
        project, segmentation=segmentation, reviewed_only=reviewed_only, phase=phase, progress=progress
    )
    return CocoExport(exported.coco, exported.summary)


def project_export(
    project: Project,
    *,
    segmentation: str = "rle",
    reviewed_only: bool = False,
    phase: str = "production",
    progress: Callable[[int, int], None] | None = None,
) -> ProjectExport:
    """:func:`project_coco` with the number of unreviewed pre-labels of each set."""
    items = [
        it
        for it in project.manifest.finished_items(phase=phase)
        if (it.status == "reviewed" or not reviewed_only) and project.has_store(it) and it.kind == "image"
    ]  # slides are exported per slide: napari-instseg export STORE --per-tile / -o SLIDE.geojson
    if not items:
        what = "reviewed" if reviewed_only else "submitted or reviewed"
        raise ProjectError(f"{project.path}: no {what} {phase} image to export yet.")
    first, pending = _export_set(project, items[0], segmentation)
    coco, summary = first.coco, first.summary
    unreviewed = [(items[0], pending)]
    if progress is not None:
        progress(1, len(items))
    for done, item in enumerate(items[1:], start=2):
        part, pending = _export_set(project, item, segmentation)
        unreviewed.append((item, pending))
        coco["images"] += part.coco["images"]
        coco["annotations"] += part.coco["annotations"]
        if part.coco.get(REJECTED_KEY):  # rejected pre-labels (no pixels): counted by qa
            coco[REJECTED_KEY] = coco.get(REJECTED_KEY, []) + part.coco[REJECTED_KEY]
        summary = summary + part.summary
        if progress is not None:
            progress(done, len(items))
    coco["info"]["description"] = f"Project {project.path.name}: {len(items)} image(s)"
    return ProjectExport(coco, summary, tuple(unreviewed))


def export_project(
    project: Project,
    output: str | os.PathLike[str],
    *,
    segmentation: str = "rle",
    reviewed_only: bool = False,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> ProjectExport:
    """Write the project's submitted images into one COCO file.

    An existing ``output`` is refused unless ``overwrite`` (then it is replaced atomically,
    once the whole export is made); a file inside the project folder never, nor, even with
    ``overwrite``, one napari-instseg did not write (the project does not record the COCO
    files its images were listed from, so any other COCO file may be such an input).
    """
    target = Path(output)
    if target.absolute().resolve().is_relative_to(project.path.resolve()):
        raise ProjectError(f"{target} lies inside the project folder {project.path}; choose a path outside it.")
    if target.exists() and not overwrite:
        raise ProjectError(f"{target} already exists; choose another name or pass --overwrite (nothing was written).")
    if target.exists() and not _written_by_us(target):
        raise ProjectError(
            f"{target} exists and was not written by napari-instseg: it may be an input (a COCO file the "
            "project's images were listed from, a gold file); refusing to replace it, even with --overwrite. "
            "Choose another name (nothing was written)."
        )
    exported = project_export(project, segmentation=segmentation, reviewed_only=reviewed_only, progress=progress)
    save_coco(exported.coco, target)
    return exported


def _written_by_us(path: Path) -> bool:
    """True when ``path`` is a COCO file napari-instseg exported (``info.tool``)."""
    import json

    try:
        info = json.loads(path.read_text()).get("info")
    except (OSError, ValueError, AttributeError):
        return False
    return isinstance(info, dict) and str(info.get("tool", "")).startswith("napari-instseg")


def export_slides_geojson(project: Project, outdir: str | os.PathLike[str], *, overwrite: bool = False) -> list[Path]:
    """Write each submitted / reviewed slide's annotations as QuPath GeoJSON (level-0 pixels),
    ``OUTDIR/<slide stem>.geojson``; existing files are refused unless ``overwrite`` (then
    replaced atomically).

    The slide's whole label image is read, as ``napari-instseg export STORE -o X.geojson`` does.
    """
    from napari_instseg.core.geojson import labels_to_geojson, save_geojson

    slides = [it for it in project.manifest.finished_items() if it.kind == "slide" and project.has_store(it)]
    folder = Path(outdir)
    targets = [folder / f"{it.image_id:07d}_{Path(it.file_name).name.split('.')[0]}.geojson" for it in slides]
    clashes = [str(t) for t in targets if t.exists()]
    if clashes and not overwrite:
        raise ProjectError(
            f"{clashes[:3]} already exist; choose another folder or pass --overwrite (nothing was written)."
        )
    folder.mkdir(parents=True, exist_ok=True)
    for item, target in zip(slides, targets, strict=True):
        store = project.open_store(item, read_only=True)
        try:
            collection = labels_to_geojson(store.read_labels(), store.table, store.protocol)
        finally:
            store.close()
        save_geojson(collection, target)
    return targets


def _refuse_shared_names(images: list[dict[str, Any]], what: str) -> None:
    """QA matches images by ``file_name``: one shared by two images is ambiguous."""
    ids: dict[str, list[Any]] = {}
    for im in images:
        ids.setdefault(str(im.get("file_name")), []).append(im.get("id"))
    shared = {name: found for name, found in ids.items() if len(found) > 1}
    if shared:
        listed = "; ".join(f"{name!r} (image ids {found})" for name, found in list(shared.items())[:5])
        raise ProjectError(
            f"{what} names {len(shared)} file name(s) for more than one image: {listed}. project qa matches "
            "images with the gold file by file name, so it cannot tell them apart; nothing was written."
        )


def _aligned_to_gold(coco: Mapping[str, Any], gold: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Both sets restricted to the images they share (by ``file_name``), with gold's ids."""
    _refuse_shared_names(coco["images"], "the project's export")
    _refuse_shared_names(gold["images"], "the gold file")
    gold_ids = {im["file_name"]: im["id"] for im in gold["images"]}
    remap = {im["id"]: gold_ids[im["file_name"]] for im in coco["images"] if im["file_name"] in gold_ids}
    if not remap:
        raise ProjectError("The gold file shares no file_name with the project's exported images.")
    shared = set(remap.values())
    ours = dict(coco)
    ours["images"] = [{**im, "id": remap[im["id"]]} for im in coco["images"] if im["id"] in remap]
    ours["annotations"] = [
        {**a, "image_id": remap[a["image_id"]]} for a in coco["annotations"] if a["image_id"] in remap
    ]
    if REJECTED_KEY in coco:  # rejected pre-labels (no pixels) of the shared images only, as the annotations
        ours[REJECTED_KEY] = [
            {**r, "image_id": remap[r["image_id"]]} for r in coco[REJECTED_KEY] if r["image_id"] in remap
        ]
    theirs = dict(gold)
    theirs["images"] = [im for im in gold["images"] if im["id"] in shared]
    theirs["annotations"] = [a for a in gold["annotations"] if a["image_id"] in shared]
    if isinstance(gold.get(REJECTED_KEY), list):
        theirs[REJECTED_KEY] = [r for r in gold[REJECTED_KEY] if isinstance(r, Mapping) and r.get("image_id") in shared]
    return theirs, ours


def project_qa(
    project: Project,
    gold: str | os.PathLike[str],
    outdir: str | os.PathLike[str],
    *,
    seed: int = 0,
    max_dets: int = 1000,
) -> Any:
    """Stratified QA (:func:`napari_instseg.core.qa.report.run_qa`) of the project's submitted
    images against ``gold``, on the images both hold (matched by ``file_name``), with at most
    ``max_dets`` candidates per image and class."""
    from napari_instseg.core.coco import load_coco_json
    from napari_instseg.core.qa.report import run_qa

    reference, candidates = _aligned_to_gold(project_coco(project).coco, load_coco_json(gold))
    return run_qa(reference, candidates, outdir, seed=seed, max_dets=max_dets)


def review_sample(
    project: Project,
    outdir: str | os.PathLike[str],
    *,
    seed: int = 0,
    by: tuple[str, ...] = ("occlusion",),
    overwrite: bool = False,
) -> tuple[Path, Path, int]:
    """Draw the project's QA review queue at the protocol's per-tier rates.

    Every submitted / reviewed production instance is a candidate; the queue is stratified
    by ``by`` (occlusion tier always among them) and written as ``review_queue.json`` /
    ``.csv`` in ``outdir`` (existing ones only with ``overwrite``: replaced atomically).
    Returns both paths and the size.
    """
    from napari_instseg.core.qa.sampling import instances_of, write_queue
    from napari_instseg.core.qa.sampling import review_sample as draw

    folder = Path(outdir)
    clashes = [str(folder / n) for n in ("review_queue.json", "review_queue.csv") if (folder / n).exists()]
    if clashes and not overwrite:
        raise ProjectError(f"{clashes} already exist; choose another folder or pass --overwrite (nothing was written).")
    instances = instances_of(project_coco(project).coco, project.protocol.tiers)
    try:
        queue = draw(instances, project.protocol.qa_rates, seed=seed, by=by)
    except ValueError as exc:
        raise ProjectError(str(exc)) from exc
    json_path, csv_path = write_queue(queue, folder)
    return json_path, csv_path, len(queue)


def _tables(project: Project) -> pd.DataFrame:
    frames = []
    for phase in ("production", "calibration"):
        for item in project.manifest.finished_items(phase=phase):
            if not project.has_store(item):
                continue
            store = project.open_store(item, read_only=True)
            try:
                table = store.table
            finally:
                store.close()
            frames.append(table.assign(image_id=item.image_id, phase=phase))
    columns = ["annotator", "time_s", "source", "occlusion", "review", "phase", "image_id"]
    if not frames:
        empty: pd.DataFrame = pd.DataFrame(columns=columns)
        return empty
    merged: pd.DataFrame = pd.concat(frames, ignore_index=True)[columns]
    return merged


def _num(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def throughput_report(project: Project) -> dict[str, Any]:
    """Instances per hour per annotator, time per instance by source and tier, pre-label
    acceptance, and cost per instance (when ``cost_per_hour`` is set), over finished sets.

    Times and rates count only the instances a person made or reviewed
    (:func:`~napari_instseg.core.activetime.person_timed`): a batch run's pre-labels have
    ``n_instances`` but no rate (``instances_per_hour`` None) until someone reviews them."""
    table = _tables(project)
    table["time_s"] = pd.to_numeric(table["time_s"], errors="coerce").fillna(0.0)
    # only a person's time counts: machine pre-labels not yet reviewed are left out (one rule)
    table["person_s"] = table["time_s"].where(person_timed(table["review"].to_numpy(), table["time_s"].to_numpy()), 0.0)
    per_annotator = {}
    for name, group in table.groupby("annotator"):
        hours = float(group["person_s"].sum()) / 3600.0
        n_timed = int((group["person_s"] > 0).sum())
        per_annotator[str(name) or "(none)"] = {
            "n_instances": len(group),
            "n_timed": n_timed,
            "hours": hours,
            "instances_per_hour": _num(n_timed / hours) if hours > 0 else None,
        }
    timed = table[table["person_s"] > 0]
    by_source = {str(k): float(g["time_s"].mean()) for k, g in timed.groupby("source")}
    by_tier = {str(k): float(g["time_s"].mean()) for k, g in timed.groupby("occlusion")}
    model = table[table["source"].isin(MODEL_SOURCES)]
    review_counts = {str(k): int(v) for k, v in model["review"].value_counts().items()}
    reviewed = len(model) - review_counts.get("pre-label", 0)
    total_hours = float(table["person_s"].sum()) / 3600.0
    rate = project.settings.cost_per_hour
    return {
        "n_instances": len(table),
        "n_images": int(table["image_id"].nunique()),
        "hours": total_hours,
        "per_annotator": per_annotator,
        "time_per_instance_s": {"by_source": by_source, "by_tier": by_tier},
        "prelabels": {
            "n": len(model),
            "reviewed": reviewed,
            "review": review_counts,
            "acceptance_rate": review_counts.get("accepted", 0) / reviewed if reviewed else None,
        },
        "cost_per_hour": rate,
        "cost_per_instance": rate * total_hours / len(table) if rate is not None and len(table) else None,
    }


def format_throughput(report: Mapping[str, Any]) -> str:
    """The throughput report as a few lines of text."""

    def fmt(v: Any, spec: str = ".1f") -> str:
        return "n/a" if v is None else format(v, spec)

    lines = [f"{report['n_instances']} instance(s) in {report['n_images']} finished image(s), {report['hours']:.2f} h"]
    for name, row in report["per_annotator"].items():
        rate = row["instances_per_hour"]
        per_hour = (
            f"{fmt(rate)} per hour"
            if rate is not None
            else "n/a per hour (no time booked by a person: unreviewed pre-labels)"
        )
        lines.append(f"  {name}: {row['n_instances']} instances, {per_hour}")
    times = report["time_per_instance_s"]
    lines.append("time per instance (s) by source: " + ", ".join(f"{k} {v:.1f}" for k, v in times["by_source"].items()))
    lines.append("time per instance (s) by tier:   " + ", ".join(f"{k} {v:.1f}" for k, v in times["by_tier"].items()))
    pre = report["prelabels"]
    lines.append(
        f"pre-labels: {pre['n']}, reviewed {pre['reviewed']}, accepted as is {fmt(pre['acceptance_rate'], '.1%')}"
    )
    if report["cost_per_instance"] is not None:
        lines.append(f"cost per instance: {report['cost_per_instance']:.3f} (at {report['cost_per_hour']} per hour)")
    return "\n".join(lines)
