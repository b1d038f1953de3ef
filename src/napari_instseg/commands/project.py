"""``napari-instseg project ...``: make, fill, assign, pre-label, calibrate and export a project.

Errors (a missing folder, an unknown image id, a name clash) exit with status 2 and change
nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``project`` and its sub-commands."""
    project = subparsers.add_parser("project", help="projects: many images, phases, annotators, one export")
    sub = project.add_subparsers(
        dest="project_command", required=True, metavar="ACTION", help="what to do with the project"
    )

    init = sub.add_parser("init", help="make a project folder referencing images (never copied)")
    init.add_argument("dir", help="new project folder (must not exist, or be empty)")
    _add_sources(init)
    init.add_argument("--protocol", help="protocol JSON / YAML (default: one category 'nucleus')")
    init.set_defaults(func=_cmd_init)

    add = sub.add_parser("add", help="reference more images (already listed ones are skipped)")
    add.add_argument("dir", help="project folder")
    _add_sources(add)
    add.set_defaults(func=_cmd_add)

    status = sub.add_parser("status", help="counts by status, phase and assignee")
    status.add_argument("dir", help="project folder")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(func=_cmd_status)

    assign = sub.add_parser("assign", help="give production images to an annotator ('' unassigns)")
    assign.add_argument("dir", help="project folder")
    assign.add_argument("annotator", help="annotator name (letters, digits, . _ -); '' unassigns")
    which = assign.add_mutually_exclusive_group(required=True)
    which.add_argument("--ids", type=int, nargs="+", help="image ids")
    from napari_instseg.commands.auto import positive_int

    which.add_argument("--count", type=positive_int, help="the first COUNT unassigned unfinished images (>= 1)")
    assign.add_argument(
        "--force", action="store_true", help="also take images another annotator has in progress (their edits are kept)"
    )
    assign.set_defaults(func=_cmd_assign)

    nxt = sub.add_parser("next", help="the next unfinished image of an annotator")
    nxt.add_argument("dir", help="project folder")
    nxt.add_argument("--annotator", default=_default_annotator(), help="default: $NAPARI_INSTSEG_ANNOTATOR or $USER")
    nxt.add_argument("--after", type=int, help="image id to start after")
    nxt.set_defaults(func=_cmd_next)

    submit = sub.add_parser("submit", help="mark an image's annotation set submitted (or --reviewed)")
    submit.add_argument("dir", help="project folder")
    submit.add_argument("image_id", type=int, help="image id (see project status / next)")
    submit.add_argument(
        "--annotator", default=_default_annotator(), help="who submits (default: $NAPARI_INSTSEG_ANNOTATOR or $USER)"
    )
    submit.add_argument("--calibration", action="store_true", help="the annotator's calibration set")
    submit.add_argument("--reviewed", action="store_true", help="mark a submitted image reviewed")
    submit.set_defaults(func=_cmd_submit)

    _register_batch(sub)


def _register_batch(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from napari_instseg.cli import add_stratify_option

    pre = sub.add_parser("prelabel", help="pre-label every image that needs it, on dask (resumable)")
    pre.add_argument("dir", help="project folder")
    pre.add_argument("--backend", choices=("sam2", "classic"), default=None, help="default: sam2 if configured")
    pre.add_argument("--model", choices=("tiny", "small", "base_plus", "large"), default="tiny", help="SAM 2.1 size")
    pre.add_argument("--checkpoint", help="SAM 2 checkpoint (.pt); default: the configured one")
    pre.add_argument("--device", default=None, help="torch device (default: cuda, mps or cpu)")
    pre.add_argument("--category", help="category name or id of the pre-labels (default: the first)")
    pre.add_argument("--scheduler", default="threads", help="'threads' (default) or a dask scheduler address")
    from napari_instseg.commands.auto import add_auto_arguments, positive_int
    from napari_instseg.commands.qa import add_qa_run_options

    pre.add_argument("--workers", type=positive_int, default=None, help="threads for the threaded scheduler, >= 1")
    pre.add_argument(
        "--auto", nargs="?", const="cells", choices=("cells", "objects"), help="pre-label everything (preset)"
    )

    add_auto_arguments(pre, workers=False)
    pre.set_defaults(func=_cmd_prelabel)

    cal = sub.add_parser("calibrate", help="calibration round: same images to N annotators; --report scores it")
    cal.add_argument("dir", help="project folder")
    cal.add_argument("--annotators", nargs="+", help="two or more annotators")
    which = cal.add_mutually_exclusive_group()
    which.add_argument("--ids", type=int, nargs="+", help="image ids to calibrate on")
    which.add_argument("--count", type=int, help="the first COUNT unstarted production images")
    cal.add_argument("--report", action="store_true", help="Mask AP per class and kappa between every pair")
    cal.add_argument("--min-ap", type=float, help="flag classes below this AP (saved in the project settings)")
    cal.add_argument("-o", "--output", help="JSON file for the report (outside the project folder)")
    cal.add_argument("--overwrite", action="store_true", help=_OVERWRITE_HELP)
    cal.set_defaults(func=_cmd_calibrate)

    export = sub.add_parser("export", help="all submitted / reviewed images into one COCO file")
    export.add_argument("dir", help="project folder")
    export.add_argument("-o", "--output", required=True, help="COCO .json file (outside the project)")
    export.add_argument("--format", choices=("rle", "polygon"), default="rle", help="segmentation form")
    export.add_argument("--reviewed-only", action="store_true", help="only reviewed images")
    export.add_argument("--slides-geojson", metavar="DIR", help="also write each finished slide as QuPath GeoJSON here")
    export.add_argument(
        "--overwrite",
        action="store_true",
        help="replace -o (and --slides-geojson files) when they exist; never an input",
    )
    export.set_defaults(func=_cmd_export)

    qa = sub.add_parser("qa", help="stratified QA of the project's export against a gold COCO file")
    qa.add_argument("dir", help="project folder")
    qa.add_argument("--gold", required=True, help="reference COCO JSON (same file names)")
    qa.add_argument("-o", "--outdir", required=True, help="folder for the QA report")
    add_qa_run_options(qa)
    qa.set_defaults(func=_cmd_qa)

    sample = sub.add_parser("sample", help="QA review queue over the project at the protocol's per-tier rates")
    sample.add_argument("dir", help="project folder")
    sample.add_argument("-o", "--outdir", required=True, help="folder for review_queue.json / .csv")
    sample.add_argument("--seed", type=int, default=0, help="seed of the sample")
    sample.add_argument(
        "--overwrite",
        action="store_true",
        help="replace review_queue.* in the folder (verdicts recorded there are lost)",
    )
    add_stratify_option(sample)
    sample.set_defaults(func=_cmd_sample)

    report = sub.add_parser("report", help="throughput: instances per hour, time per instance, acceptance, cost")
    report.add_argument("dir", help="project folder")
    report.add_argument(
        "--rate", type=_cost_rate, help="cost of an annotator hour, a number >= 0 (saved in the project settings)"
    )
    report.add_argument("-o", "--output", help="JSON file for the report (outside the project folder)")
    report.add_argument("--overwrite", action="store_true", help=_OVERWRITE_HELP)
    report.set_defaults(func=_cmd_report)


_OVERWRITE_HELP = "replace the output file when it exists (never a project file or an input)"


def _cost_rate(text: str) -> float:
    """argparse type of ``--rate``: a finite number >= 0 (NaN and infinity would be written
    into project.json and the report as non-standard JSON)."""
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0 (cost of an hour), got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0 (cost of an hour), got {text!r}")
    return value


def _check_output_json(args: argparse.Namespace) -> None:
    """Refuse ``-o`` before any work: not a .json name, inside the project folder, or existing
    without ``--overwrite`` (see docs/input-hardening.md, "Outputs")."""
    from napari_instseg.core.paths import check_output_file

    if args.output:
        check_output_file(
            args.output,
            inputs=(args.dir, getattr(args, "gold", None)),
            suffixes=(".json",),
            overwrite=getattr(args, "overwrite", False),
            what="-o",
        )


def _add_sources(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", nargs="+", default=[], metavar="GLOB", help="image files or glob patterns")
    parser.add_argument("--slides", nargs="+", default=[], metavar="GLOB", help="slides (multiscale pyramids)")
    parser.add_argument("--coco", nargs="+", default=[], metavar="JSON", help="the images a COCO file lists")
    parser.add_argument(
        "--image-root",
        help="folder the file names are relative to: a COCO file's (default: its folder); for --images / --slides, "
        "name images by their path under it (default: the bare name; needed when two folders hold the same name)",
    )


def _default_annotator() -> str:
    return os.environ.get("NAPARI_INSTSEG_ANNOTATOR") or os.environ.get("USER") or "annotator"


def _refs(args: argparse.Namespace) -> list[Any]:
    from napari_instseg.core.project import ProjectError, refs_from_coco, refs_from_patterns

    refs = []
    if args.images:
        refs += refs_from_patterns(args.images, image_root=args.image_root)
    if args.slides:
        refs += refs_from_patterns(args.slides, slides=True, image_root=args.image_root)
    for coco in args.coco:
        refs += refs_from_coco(coco, args.image_root)
    if not refs and not getattr(args, "allow_empty", False):
        raise ProjectError("Give images: --images GLOB..., --slides GLOB... or --coco FILE.")
    return refs


def _cmd_init(args: argparse.Namespace) -> int:
    from napari_instseg.core.project import Project
    from napari_instseg.core.project._manifest import check_file_names
    from napari_instseg.core.protocol import load_protocol

    protocol = load_protocol(args.protocol) if args.protocol else None
    args.allow_empty = True
    refs = _refs(args)  # every reference is checked before anything is written
    check_file_names((str(ref.path), str(ref.path), ref.file_name) for ref in refs)  # before the folder is made
    with Project.create(args.dir, protocol=protocol) as project:
        added, skipped = project.add(refs)
    print(f"made project {args.dir}: {len(added)} image(s) referenced" + _skipped(skipped))
    return 0


def _skipped(skipped: list[str]) -> str:
    return f"; {len(skipped)} already listed, skipped" if skipped else ""


def _cmd_add(args: argparse.Namespace) -> int:
    from napari_instseg.core.project import Project

    with Project.open(args.dir) as project:
        refs = _refs(args)
        added, skipped = project.add(refs)
    print(f"added {len(added)} image(s) to {args.dir}" + _skipped(skipped))
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from napari_instseg.core.project import STATUSES, Project

    with Project.open(args.dir) as project:
        counts = project.manifest.counts()
    if args.json:
        print(json.dumps(counts, indent=2))
        return 0
    n_items = sum(counts["status"].values())
    print(
        f"{args.dir}: {counts['images']['total']} image(s), {n_items} work item(s) "
        "(one per production image, one per annotator of each calibration image)"
    )
    print("work items by")
    print("  status:   " + ", ".join(f"{s} {counts['status'].get(s, 0)}" for s in STATUSES))
    print("  phase:    " + ", ".join(f"{k} {v}" for k, v in sorted(counts["phase"].items())))
    print("  assignee: " + ", ".join(f"{k or '(unassigned)'} {v}" for k, v in sorted(counts["assignee"].items())))
    return 0


def _cmd_assign(args: argparse.Namespace) -> int:
    from napari_instseg.core.project import UNFINISHED, Project
    from napari_instseg.core.project._manifest import check_annotator

    annotator = check_annotator(args.annotator) if args.annotator else ""
    with Project.open(args.dir) as project:
        if args.ids:
            ids = list(args.ids)
        else:
            unfinished = project.manifest.image_ids(phase="production", statuses=UNFINISHED, assignee="")
            ids = unfinished[: args.count]
        before = project.manifest.assignees(ids)
        n = project.manifest.assign(ids, annotator, force=args.force)
    print(f"assigned {n} image(s) to {annotator or '(nobody)'}")
    taken = [f"{i} from {who} ({status})" for i, (who, status) in before.items() if who not in ("", annotator)]
    if taken:
        print(f"note: reassigned image(s) {', '.join(taken[:10])}" + (" ..." if len(taken) > 10 else ""))
    return 0


def _cmd_next(args: argparse.Namespace) -> int:
    from napari_instseg.core.project import Project

    with Project.open(args.dir) as project:
        after = project.manifest.item(args.after) if args.after else None
        item = project.next_item(args.annotator, after)
        if item is None:
            print(f"nothing left for {args.annotator}")
            return 0
        print(f"{item.image_id}\t{item.file_name}\t{item.status}\t{item.phase}\t{project.image_path(item)}")
    return 0


def _cmd_submit(args: argparse.Namespace) -> int:
    from napari_instseg.core.project import Project
    from napari_instseg.core.project._project import unreviewed_note

    with Project.open(args.dir) as project:
        _check_calibration_flag(project, args)
        item = project.manifest.item(args.image_id, args.annotator if args.calibration else "")
        item = project.review(item) if args.reviewed else project.submit(item, args.annotator)
        note = unreviewed_note([(item, project.unreviewed_prelabels(item))], "submitted")
    print(f"image {item.image_id} ({item.file_name}): {item.status}")
    if note:
        print(note, file=sys.stderr)
    return 0


def _check_calibration_flag(project: Any, args: argparse.Namespace) -> None:
    """A calibration image is submitted per annotator (``--calibration``), a production one not."""
    from napari_instseg.core.project import ProjectError

    [(phase, _status)] = project.manifest.image_states([args.image_id]).values()
    if phase == "calibration" and not args.calibration:
        raise ProjectError(
            f"Image id {args.image_id} is a calibration image: each annotator submits their own set. Add "
            f"--calibration: project submit {args.dir} {args.image_id} --annotator {args.annotator} --calibration"
        )
    if phase == "production" and args.calibration:
        raise ProjectError(
            f"Image id {args.image_id} is a production image (one set, no calibration sets); drop --calibration."
        )


def _progress(desc: str, unit: str) -> Any:
    from napari_instseg.cli import progress_bar

    return progress_bar(desc, unit)


def _cmd_prelabel(args: argparse.Namespace) -> int:
    from napari_instseg.commands.auto import check_auto_tiling, check_category
    from napari_instseg.core.project import Project
    from napari_instseg.core.project._batch import ProjectPrelabelConfig, prelabel_project
    from napari_instseg.core.prompting import default_backend
    from napari_instseg.core.prompting.registry import auto_tile_px

    backend = args.backend or default_backend()
    if args.auto:
        tile = args.auto_tile or auto_tile_px(backend)
        check_auto_tiling(tile, args.auto_halo, tile_flag="--auto-tile", halo_flag="--auto-halo")
    category = int(args.category) if args.category and args.category.isdigit() else args.category
    config = ProjectPrelabelConfig(
        backend,
        args.model,
        args.checkpoint,
        args.device,
        category,
        auto=args.auto,
        auto_tile=args.auto_tile,
        auto_halo=args.auto_halo,
        auto_points=args.auto_points,
    )
    mode = f"; automatic mode ({args.auto} preset)" if args.auto else ""
    print(f"backend: {backend}{mode}; scheduler: {args.scheduler}")
    with Project.open(args.dir) as project:
        check_category(project.protocol, args.category)  # before the segmentation, not after it
        summary = prelabel_project(
            project, config, scheduler=args.scheduler, workers=args.workers, progress=_progress("images", "image")
        )
    print(summary)
    return 2 if summary.failed else 0  # the others are done; the failed ones are named


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from napari_instseg.core.project import Project, ProjectError
    from napari_instseg.core.project._phases import assign_calibration, calibration_report

    _check_output_json(args)
    with Project.open(args.dir) as project:
        if args.min_ap is not None:
            project.update_settings(calibration_min_ap=args.min_ap)
        if args.annotators:
            ids = assign_calibration(project, args.annotators, ids=args.ids, count=args.count)
            print(f"calibration: images {ids} assigned to {', '.join(args.annotators)}")
        elif not args.report:
            raise ProjectError("Give --annotators A B ... (with --ids or --count) to start a round, or --report.")
        if args.report:
            report = calibration_report(project)
            if args.output:
                _write_json(args.output, report)
            print(report["summary"])
            return 0
    return 0


def _write_json(path: str, data: Any) -> None:
    from napari_instseg.core._io import atomic_write_text
    from napari_instseg.core.qa.report import json_clean

    atomic_write_text(path, json.dumps(json_clean(data), indent=2))


def _cmd_export(args: argparse.Namespace) -> int:
    from napari_instseg.core.paths import check_output_dir
    from napari_instseg.core.project import Project
    from napari_instseg.core.project._export import export_project, export_slides_geojson
    from napari_instseg.core.project._project import unreviewed_note

    _check_output_json(args)  # before any file is written; an existing file only with --overwrite
    if args.slides_geojson:
        check_output_dir(args.slides_geojson, containers=(args.dir,), what="--slides-geojson")
    with Project.open(args.dir) as project:
        if args.slides_geojson:
            written = export_slides_geojson(project, args.slides_geojson, overwrite=args.overwrite)
            print(f"wrote {len(written)} slide GeoJSON file(s) to {args.slides_geojson}")
        result = export_project(
            project,
            args.output,
            segmentation=args.format,
            reviewed_only=args.reviewed_only,
            overwrite=args.overwrite,
            progress=_progress("export", "image"),
        )
    print(f"wrote {args.output}: {result.summary}")
    note = unreviewed_note(result.unreviewed, f"exported to {args.output}")
    if note:
        print(note, file=sys.stderr)
    return 0


_QUEUE_FILES = ("review_queue.json", "review_queue.csv")


def _cmd_qa(args: argparse.Namespace) -> int:
    from napari_instseg.core.paths import check_output_dir
    from napari_instseg.core.project import Project
    from napari_instseg.core.project._export import project_qa
    from napari_instseg.core.qa.report import QA_OUTPUT_FILES, max_dets_warning

    check_output_dir(
        args.outdir,
        inputs=(args.gold,),
        containers=(args.dir,),
        targets=QA_OUTPUT_FILES,
        overwrite=args.overwrite,
        what="-o",
    )
    with Project.open(args.dir) as project:
        report = project_qa(project, args.gold, args.outdir, seed=args.seed, max_dets=args.max_dets)
    print(report.summary_path.read_text())
    print(f"wrote {report.html_path}, {report.json_path}")
    warning = max_dets_warning(report.data)
    if warning:
        print(warning, file=sys.stderr)
    return 0


def _cmd_sample(args: argparse.Namespace) -> int:
    from napari_instseg.core.paths import check_output_dir
    from napari_instseg.core.project import Project
    from napari_instseg.core.project._export import review_sample

    check_output_dir(args.outdir, containers=(args.dir,), targets=_QUEUE_FILES, overwrite=args.overwrite, what="-o")
    with Project.open(args.dir) as project:
        json_path, csv_path, n = review_sample(
            project, args.outdir, seed=args.seed, by=tuple(args.stratify_by), overwrite=args.overwrite
        )
    print(f"{n} instance(s) to review: wrote {json_path} and {csv_path}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from napari_instseg.core.project import Project
    from napari_instseg.core.project._export import format_throughput, throughput_report

    _check_output_json(args)
    with Project.open(args.dir) as project:
        if args.rate is not None:
            project.update_settings(cost_per_hour=args.rate)
        report = throughput_report(project)
    if args.output:
        _write_json(args.output, report)
    print(format_throughput(report))
    return 0


if __name__ == "__main__":  # pragma: no cover
    from napari_instseg.cli import main

    sys.exit(main(["project", *sys.argv[1:]]))
