"""``napari-instseg qa`` and ``napari-instseg agreement``: the QA report and the calibration
of two annotators."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from napari_instseg.commands.auto import non_negative_int, positive_int

__all__ = ["add_qa_run_options", "register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``qa`` and ``agreement`` commands."""
    from napari_instseg.cli import OVERWRITE_HELP, add_stratify_option

    qa = subparsers.add_parser("qa", help="QA report: Mask AP per class and occlusion tier, pre-labels, review sample")
    qa.add_argument("--gt", required=True, help="reference COCO JSON")
    qa.add_argument("--dt", required=True, help="candidates: COCO results list or full COCO JSON (score 1 if absent)")
    qa.add_argument(
        "-o", "--outdir", required=True, help="folder for report.html, report.json, summary.md, review_queue.*"
    )
    qa.add_argument("--images", help="folder with the images (for the gallery of worst-IoU instances)")
    add_qa_run_options(qa)
    qa.add_argument("--outcomes", help="a reviewed review_queue.json: error rates per tier, category, annotator")
    add_stratify_option(qa)
    qa.set_defaults(func=_cmd_qa)

    agree = subparsers.add_parser("agreement", help="calibration: annotator A versus B on the same images")
    agree.add_argument("a", help="COCO JSON of annotator A")
    agree.add_argument("b", help="COCO JSON of annotator B")
    agree.add_argument("-o", "--output", required=True, help=".json file to write (never an input)")
    agree.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    agree.set_defaults(func=_cmd_agreement)


def add_qa_run_options(parser: argparse.ArgumentParser) -> None:
    """``--max-dets``, ``--seed`` and ``--overwrite`` of a QA run (``qa`` and ``project qa``)."""
    parser.add_argument(
        "--max-dets", type=positive_int, default=1000, help="detections per image and class (default 1000)"
    )
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seed of the review sample")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier run's files in the folder (verdicts in its review queue are lost; never an input)",
    )


def _cmd_qa(args: argparse.Namespace) -> int:
    from napari_instseg.cli import progress_bar
    from napari_instseg.core.coco import load_coco_json
    from napari_instseg.core.coco._validate import read_json_file
    from napari_instseg.core.errors import InstsegError
    from napari_instseg.core.geojson import is_geojson_document
    from napari_instseg.core.paths import check_output_dir
    from napari_instseg.core.qa.report import QA_OUTPUT_FILES, max_dets_warning, run_qa
    from napari_instseg.core.qa.sampling import read_queue

    inputs = (args.gt, args.dt, args.outcomes, args.images)
    check_output_dir(args.outdir, inputs=inputs, targets=QA_OUTPUT_FILES, overwrite=args.overwrite, what="-o")
    if args.images is not None and not Path(args.images).is_dir():
        raise InstsegError(f"--images {args.images} is not a folder.")
    gt = load_coco_json(args.gt)
    dt = read_json_file(args.dt, what="candidates: a COCO results list or a COCO instances file")
    for flag, path, document in (("--gt", args.gt, gt), ("--dt", args.dt, dt)):
        if is_geojson_document(document):
            raise InstsegError(_geojson_not_coco(flag, path))
    outcomes = read_queue(args.outcomes) if args.outcomes else None
    bar = progress_bar("QA", "step")
    report = run_qa(
        gt,
        dt,
        args.outdir,
        images_dir=args.images,
        max_dets=args.max_dets,
        seed=args.seed,
        outcomes=outcomes,
        progress=lambda done, total, _what: bar(done, total),
        stratify_by=args.stratify_by,
    )
    print(report.summary_path.read_text())
    print(f"wrote {report.html_path}, {report.json_path}, {report.summary_path}, {report.queue_paths[0]}")
    warning = max_dets_warning(report.data)
    if warning:
        print(warning, file=sys.stderr)
    return 0


def _geojson_not_coco(flag: str, path: str) -> str:
    """The message for a QuPath GeoJSON file given where qa wants COCO, with how to convert it."""
    stem = Path(path).name.split(".")[0]
    return (
        f"{flag} {path} is QuPath GeoJSON, not COCO; qa compares COCO files. Convert it first: "
        f"napari-instseg import {path} --image IMAGE -o DIR, then napari-instseg export "
        f"DIR/{stem}_labels.tif --table DIR/{stem}_instances.csv --protocol DIR/protocol.json -o {stem}.json"
    )


def _cmd_agreement(args: argparse.Namespace) -> int:
    import json

    from napari_instseg.core._io import atomic_write_text
    from napari_instseg.core.coco import load_coco_json
    from napari_instseg.core.paths import check_output_file
    from napari_instseg.core.qa.agreement import calibration
    from napari_instseg.core.qa.report import json_clean

    check_output_file(args.output, inputs=(args.a, args.b), suffixes=(".json",), overwrite=args.overwrite, what="-o")
    result = json_clean(calibration(load_coco_json(args.a), load_coco_json(args.b)))
    atomic_write_text(args.output, json.dumps(result, indent=2))
    print(
        f"B against A: AP {result['B_against_A']['AP']}, A against B: AP {result['A_against_B']['AP']}; "
        f"{result['n_matched']} matched; kappa occlusion {result['kappa_occlusion']}, crowd {result['kappa_crowd']}"
    )
    return 0
