"""Calibration rounds: the same images to N annotators, then agreement between every pair.

Agreement is :func:`napari_instseg.core.qa.agreement.calibration` (Mask AP both ways, per
class; Cohen's kappa on occlusion tier, crowd bit and category of matched instances) over the
images both annotators of a pair have submitted. A class is flagged when its Mask AP (the
lower of the two directions) is below ``ProjectSettings.calibration_min_ap``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

from napari_instseg.core.project._export import export_item
from napari_instseg.core.project._manifest import FINISHED, ProjectError, check_annotator
from napari_instseg.core.project._project import Project

__all__ = ["assign_calibration", "calibration_report"]


def assign_calibration(
    project: Project, annotators: Sequence[str], *, ids: Sequence[int] | None = None, count: int | None = None
) -> list[int]:
    """Give the same images to every annotator (each gets a store of their own).

    Parameters
    ----------
    annotators : sequence of str
        Two or more distinct names.
    ids : sequence of int, optional
        The images; by default the first ``count`` production images nobody has started.

    Raises
    ------
    ProjectError
        For fewer than two annotators, no image to calibrate on, or an image that is already
        pre-labelled, in progress or finished (naming the ids and their state).
    """
    names = [check_annotator(a) for a in annotators]
    if len(set(names)) < 2:
        raise ProjectError(f"A calibration round needs two or more different annotators, got {list(annotators)}.")
    if ids is None:
        if not count or count < 1:
            raise ProjectError("Give the calibration images (--ids) or how many to pick (--count N).")
        ids = project.manifest.image_ids(phase="production", statuses=("todo",))[:count]
    if not ids:
        raise ProjectError(f"{project.path}: no production image left that nobody has started.")
    _require_unstarted(project, ids)
    project.manifest.start_calibration(list(ids), names)
    return list(ids)


def _require_unstarted(project: Project, ids: Sequence[int]) -> None:
    """Calibration images are production images nobody has started (never pre-labelled)."""
    states = project.manifest.image_states(ids)
    started = [f"{i} ({status})" for i, (phase, status) in states.items() if phase == "production" and status != "todo"]
    if started:
        raise ProjectError(
            f"{project.path}: image(s) {', '.join(started[:10])} are already started; calibration images are "
            "production images still to do (never pre-labelled). Nothing was changed."
        )


def _finished_sets(project: Project) -> dict[str, dict[int, Any]]:
    """Submitted calibration sets: annotator -> image id -> work item."""
    out: dict[str, dict[int, Any]] = {}
    for image_id, sets in project.manifest.calibration_sets().items():
        for annotator, item in sets.items():
            if item.status in FINISHED and project.has_store(item):
                out.setdefault(annotator, {})[image_id] = item
    return out


def _coco_of(project: Project, items: Sequence[Any]) -> dict[str, Any]:
    parts = [export_item(project, it).coco for it in items]
    coco = dict(parts[0])
    coco["images"] = [im for p in parts for im in p["images"]]
    coco["annotations"] = [a for p in parts for a in p["annotations"]]
    return coco


def _low(value: Any) -> float:
    return float("nan") if value is None else float(value)


def calibration_report(project: Project) -> dict[str, Any]:
    """Agreement of every pair of calibration annotators on the images both submitted.

    Returns
    -------
    dict
        ``pairs``: one entry per pair (``A``, ``B``, ``images``, the :func:`calibration`
        result); ``flagged``: classes below the threshold per pair; ``threshold``;
        ``summary``: lines of text.
    """
    from napari_instseg.core.qa.agreement import calibration

    sets = _finished_sets(project)
    threshold = float(project.settings.calibration_min_ap)
    pairs, flagged, lines = [], [], []
    for a, b in itertools.combinations(sorted(sets), 2):
        shared = sorted(set(sets[a]) & set(sets[b]))
        if not shared:
            continue
        result = calibration(
            _coco_of(project, [sets[a][i] for i in shared]), _coco_of(project, [sets[b][i] for i in shared])
        )
        per_class = {}
        for name in {**result["B_against_A"]["per_class"], **result["A_against_B"]["per_class"]}:
            values = [_low(result[d]["per_class"].get(name)) for d in ("B_against_A", "A_against_B")]
            per_class[name] = min(values) if not any(math.isnan(v) for v in values) else float("nan")
        low = sorted(name for name, ap in per_class.items() if not math.isnan(ap) and ap < threshold)
        flagged += [{"A": a, "B": b, "class": name, "AP": per_class[name]} for name in low]
        pairs.append({"A": a, "B": b, "images": shared, "per_class_AP": per_class, **result})
        lines.append(
            f"{a} vs {b} on {len(shared)} image(s): AP {_fmt(result['B_against_A']['AP'])} / "
            f"{_fmt(result['A_against_B']['AP'])}; kappa tier {_fmt(result['kappa_occlusion'])}, "
            f"crowd {_fmt(result['kappa_crowd'])}, category {_fmt(result['kappa_category'])}"
        )
        lines += [
            f"  {name}: AP {_fmt(ap)}" + ("  BELOW THRESHOLD" if name in low else "") for name, ap in per_class.items()
        ]
    if not pairs:
        raise ProjectError(f"{project.path}: no two annotators have submitted the same calibration image yet.")
    verdict = "ready for production" if not flagged else f"{len(flagged)} class(es) below AP {threshold}: recalibrate"
    lines.append(f"threshold AP {threshold}: {verdict}")
    return {"threshold": threshold, "pairs": pairs, "flagged": flagged, "summary": "\n".join(lines)}


def _fmt(value: Any) -> str:
    from napari_instseg.core.qa.report import format_score

    return format_score(None if value is None else float(value))
