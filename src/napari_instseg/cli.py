"""The ``napari-instseg`` command.

Sub-commands import what they need when they run, so ``--help`` stays fast and imports
neither torch nor Qt.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from napari_instseg import __version__
from napari_instseg.commands.auto import non_negative_int, positive_int
from napari_instseg.core.prompting.registry import BACKENDS, DEFAULT_SIZE, MODEL_SIZES

__all__ = ["main"]

logger = logging.getLogger(__name__)


_OVERWRITE_HELP = "replace the output file when it exists (never an input)"


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-instseg",
        description="Instance-segmentation annotation: COCO export / import, demo and more.",
    )
    parser.add_argument("--version", action="version", version=f"napari-instseg {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="run the headless demo on the bundled IHC tile")
    demo.add_argument("-o", "--outdir", default="demo-output", help="output folder (default: %(default)s)")
    demo.add_argument("--headless", action="store_true", help="do not open napari even when a display is available")
    demo.set_defaults(func=_cmd_demo)

    export = sub.add_parser("export", help="export a label image (+ instance table) or a store to COCO JSON")
    export.add_argument(
        "labels",
        help="label image (.tif, .tiff or .npy; 2-D, 0 = background), STORE.zarr, or a folder 'import' wrote",
    )
    export.add_argument(
        "-o", "--output", required=True, help="COCO .json file, or .geojson for QuPath GeoJSON (never an input)"
    )
    export.add_argument("--overwrite", action="store_true", help=_OVERWRITE_HELP)
    export.add_argument("--table", help="instance table CSV with an 'id' column")
    export.add_argument(
        "--protocol", help="protocol JSON / YAML (taxonomy, occlusion rule); default: an import folder's protocol.json"
    )
    export.add_argument("--image", help="the image the labels annotate (name and size go into COCO)")
    export.add_argument("--format", choices=("rle", "polygon"), default="rle", help="segmentation form (default: rle)")
    export.add_argument(
        "--per-tile", type=positive_int, metavar="SIZE", help="for a slide store: one COCO image per SIZE-px tile"
    )
    export.set_defaults(func=_cmd_export)

    pre = sub.add_parser("prelabel", help="pre-label an image from point or box prompts (SAM 2 or classic)")
    pre.add_argument("image", help="image file (TIFF, PNG, JPEG, NPY); grey or RGB")
    prompts = pre.add_mutually_exclusive_group(required=True)
    prompts.add_argument("--points", help="CSV with y,x[,label][,object] (label 1 positive, 0 negative)")
    prompts.add_argument("--boxes", help="CSV with x0,y0,x1,y1 in pixels (any corner order)")
    prompts.add_argument(
        "--auto", nargs="?", const="cells", choices=("cells", "objects"), help="pre-label everything (preset)"
    )
    pre.add_argument(
        "--backend",
        choices=BACKENDS,
        default=None,
        help="default: sam2 when a checkpoint is configured, else classic",
    )
    pre.add_argument("--model", choices=MODEL_SIZES, default=DEFAULT_SIZE, help="SAM 2.1 size")
    pre.add_argument(
        "--checkpoint", help="SAM 2 checkpoint (.pt); default: $NAPARI_INSTSEG_SAM2_CHECKPOINT or the user cache"
    )
    pre.add_argument("--device", default=None, help="torch device (default: cuda, mps or cpu)")
    pre.add_argument("--protocol", help="protocol JSON / YAML")
    pre.add_argument("--category", help="category name or id of every instance (default: the first)")
    pre.add_argument("-o", "--output", required=True, help="COCO .json file to write (never an input)")
    pre.add_argument("--overwrite", action="store_true", help=_OVERWRITE_HELP)
    pre.set_defaults(func=_cmd_prelabel)
    from napari_instseg.commands.auto import add_auto_arguments

    add_auto_arguments(pre)

    slide = sub.add_parser("prelabel-slide", help="pre-label a whole slide tile by tile on dask, into a store")
    slide.add_argument("slide", help="OME-Zarr, zarr, OME-TIFF or SVS slide")
    slide.add_argument("--store", required=True, help="annotation store (STORE.zarr; created when missing)")
    source = slide.add_mutually_exclusive_group(required=True)
    source.add_argument("--points", help="CSV of y,x[,label][,object] in level-0 pixels")
    source.add_argument("--boxes", help="CSV of x0,y0,x1,y1 in level-0 pixels")
    source.add_argument(
        "--detect", action="store_true", help="prompt with the classical nuclei detector on tissue tiles"
    )
    source.add_argument(
        "--auto", nargs="?", const="cells", choices=("cells", "objects"), help="pre-label everything (preset)"
    )
    slide.add_argument(
        "--backend", choices=BACKENDS, default=None, help="default: sam2 when a checkpoint is configured, else classic"
    )
    slide.add_argument("--model", choices=MODEL_SIZES, default=DEFAULT_SIZE, help="SAM 2.1 size")
    slide.add_argument(
        "--checkpoint", help="SAM 2 checkpoint (.pt); default: $NAPARI_INSTSEG_SAM2_CHECKPOINT or the user cache"
    )
    slide.add_argument("--device", default=None, help="torch device (default: cuda, mps or cpu)")
    slide.add_argument("--scheduler", default="threads", help="'threads' (default) or a dask scheduler address")
    slide.add_argument("--workers", type=positive_int, default=None, help="threads for the threaded scheduler")
    slide.add_argument(
        "--tile", type=positive_int, default=None, help="tile size in pixels (default: 1024 sam2, 512 classic)"
    )
    slide.add_argument(
        "--halo",
        type=non_negative_int,
        default=None,
        help="halo in pixels (default: two object diameters); with --auto 1 to tile size - 1",
    )
    slide.set_defaults(func=_cmd_prelabel_slide)

    fetch = sub.add_parser("fetch-weights", help="download an official SAM 2.1 checkpoint into the user cache")
    fetch.add_argument("size", choices=MODEL_SIZES, help="SAM 2.1 model size")
    fetch.add_argument("--dest", help="folder (default: the user cache folder)")
    fetch.set_defaults(func=_cmd_fetch_weights)

    qa = sub.add_parser("qa", help="QA report: Mask AP per class and occlusion tier, pre-labels, review sample")
    qa.add_argument("--gt", required=True, help="reference COCO JSON")
    qa.add_argument("--dt", required=True, help="candidates: COCO results list or full COCO JSON (score 1 if absent)")
    qa.add_argument(
        "-o", "--outdir", required=True, help="folder for report.html, report.json, summary.md, review_queue.*"
    )
    qa.add_argument("--images", help="folder with the images (for the gallery of worst-IoU instances)")
    qa.add_argument("--max-dets", type=positive_int, default=1000, help="detections per image and class (default 1000)")
    qa.add_argument("--seed", type=non_negative_int, default=0, help="seed of the review sample")
    qa.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a review_queue.json with verdicts in the folder (they are lost)",
    )
    qa.add_argument("--outcomes", help="a reviewed review_queue.json: error rates per tier, category, annotator")
    add_stratify_option(qa)
    qa.set_defaults(func=_cmd_qa)

    agree = sub.add_parser("agreement", help="calibration: annotator A versus B on the same images")
    agree.add_argument("a", help="COCO JSON of annotator A")
    agree.add_argument("b", help="COCO JSON of annotator B")
    agree.add_argument("-o", "--output", required=True, help=".json file to write (never an input)")
    agree.add_argument("--overwrite", action="store_true", help=_OVERWRITE_HELP)
    agree.set_defaults(func=_cmd_agreement)

    imp = sub.add_parser(
        "import", help="import a COCO JSON or QuPath GeoJSON file into label images and CSV tables (nothing lost)"
    )
    imp.add_argument("coco", metavar="FILE", help="COCO instances JSON, or QuPath GeoJSON (.geojson)")
    imp.add_argument(
        "-o", "--outdir", required=True, help="folder for <stem>_labels.tif, <stem>_instances.csv, protocol.json"
    )
    imp.add_argument("--overwrite", action="store_true", help="replace those files when the folder holds them")
    size = imp.add_mutually_exclusive_group()
    size.add_argument("--image", help="GeoJSON: the image (or slide) the objects lie on; gives size and name")
    size.add_argument("--shape", nargs=2, type=int, metavar=("H", "W"), help="GeoJSON: label image height and width")
    imp.add_argument("--protocol", help="GeoJSON: protocol mapping class names (default: built from the file)")
    imp.set_defaults(func=_cmd_import)
    _register_command_modules(sub)
    return parser


def _register_command_modules(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the sub-commands defined in :mod:`napari_instseg.commands` (one module each)."""
    import importlib
    import pkgutil

    from napari_instseg import commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{commands.__name__}.{info.name}").register(sub)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit code."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    from napari_instseg.core.errors import InstsegError

    try:
        code = int(args.func(args) or 0)
    except KeyboardInterrupt:  # Ctrl-C: one line, no traceback
        print(f"napari-instseg {args.command}: {_interrupted(args)}", file=sys.stderr)
        return 130
    except InstsegError as exc:
        return _fail(args.command, str(exc))
    except OSError as exc:  # missing file, a folder given for a file, no permission, disk full...
        where = f": {exc.filename}" if exc.filename else ""
        return _fail(args.command, f"{exc.strerror or exc}{where}")
    _prefer_our_reader(args)
    return code


_PROJECT_COMMANDS_MAKING_STORES = ("init", "add", "prelabel", "calibrate")
"""``project`` actions after which napari is told to open the project's stores with our reader."""


def _prefer_our_reader(args: argparse.Namespace) -> None:
    """Let napari open the stores this command made or used with our reader, without the
    "which reader?" dialog (see :mod:`napari_instseg._reader_preference` for why)."""
    store = getattr(args, "store", None)
    making = args.command == "project" and getattr(args, "project_command", "") in _PROJECT_COMMANDS_MAKING_STORES
    project_dir = getattr(args, "dir", None) if making else None
    if store or project_dir:
        from napari_instseg._reader_preference import register_after_command

        register_after_command(store, project_dir)


def _interrupted(args: argparse.Namespace) -> str:
    """What Ctrl-C left: resumable commands say how to resume."""
    if args.command == "prelabel-slide":
        return (
            f"interrupted: every finished tile is saved in {args.store}; run the same command again to resume "
            "(tiles already done are skipped)."
        )
    if args.command == "project" and getattr(args, "project_command", "") == "prelabel":
        return (
            f"interrupted: every image finished is saved in project {args.dir}; run the same command again to "
            "resume (images already pre-labelled are skipped)."
        )
    return "interrupted."


def _fail(command: str, message: str) -> int:
    """Print ``message`` as the command's error (no traceback) and return exit status 2."""
    print(f"napari-instseg {command}: error: {message.strip()}", file=sys.stderr)
    return 2


def _cmd_demo(args: argparse.Namespace) -> int:
    from napari_instseg.core.paths import check_output_dir
    from napari_instseg.demo import run_demo

    check_output_dir(args.outdir, what="-o")
    result = run_demo(args.outdir, progress=progress_bar("pre-labelling", "nucleus"))
    print(result.summary)
    print(f"done in {result.seconds:.1f} s")
    if not args.headless and _has_display():
        from napari_instseg.demo import open_in_napari

        open_in_napari(result)
    return 0


def _has_display() -> bool:
    import os

    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) or sys.platform in ("darwin", "win32")


def add_stratify_option(parser: argparse.ArgumentParser) -> None:
    """``--stratify-by``: the strata of a QA review sample (``qa`` and ``project sample``)."""
    parser.add_argument(
        "--stratify-by",
        nargs="+",
        default=["occlusion"],
        choices=("occlusion", "category", "annotator"),
        help="strata of the review sample (occlusion always; default: occlusion)",
    )


def progress_bar(desc: str, unit: str) -> Callable[[int, int], None]:
    """A ``progress(done, total)`` callback drawing a tqdm bar on stderr."""
    from tqdm import tqdm

    bar: dict[str, Any] = {}

    def progress(done: int, total: int) -> None:
        if "bar" not in bar:
            bar["bar"] = tqdm(total=total, desc=desc, unit=unit, disable=None, leave=False)
        bar["bar"].update(done - bar["bar"].n)
        if done >= total:
            bar["bar"].close()

    return progress


def _cmd_prelabel(args: argparse.Namespace) -> int:
    import numpy as np

    from napari_instseg.commands.auto import check_category
    from napari_instseg.core.coco import AnnotatedImage, export_coco, save_coco
    from napari_instseg.core.io import check_grey_or_rgb, read_image
    from napari_instseg.core.paths import check_output_file
    from napari_instseg.core.prelabel import prelabel_image
    from napari_instseg.core.prompting import default_backend
    from napari_instseg.core.prompting.cache import file_image_key
    from napari_instseg.core.prompting.lifecycle import PrompterConfig, build_prompter
    from napari_instseg.core.prompts_io import read_boxes_csv, read_points_csv
    from napari_instseg.core.protocol import AnnotationProtocol, load_protocol
    from napari_instseg.core.session import AnnotationSession

    check_output_file(
        args.output,
        inputs=(args.image, args.points, args.boxes, args.protocol, args.checkpoint),
        suffixes=(".json",),
        overwrite=args.overwrite,
        what="-o",
    )
    if args.auto:
        from napari_instseg.commands.auto import prelabel_auto

        return prelabel_auto(args, progress_bar("tiles", "tile"))
    protocol = load_protocol(args.protocol) if args.protocol else AnnotationProtocol.default()
    category = check_category(protocol, args.category)  # an unknown category fails now, not after the model ran
    image = read_image(args.image)
    check_grey_or_rgb(image, args.image)
    prompts = read_points_csv(args.points) if args.points else read_boxes_csv(args.boxes)
    _require_a_prompt_inside(prompts, image.shape[:2], args.points or args.boxes)
    backend = args.backend or default_backend()
    config = PrompterConfig.from_settings(backend, args.model, args.checkpoint, args.device)
    prompter = build_prompter(config, load_model=False)
    print(f"backend: {backend}" + (f" (SAM 2.1 {args.model})" if backend == "sam2" else " (no model weights)"))
    session = AnnotationSession(np.zeros(image.shape[:2], np.uint32), protocol=protocol, prompter=prompter)
    key = file_image_key(args.image, image.shape[:2])
    session, summary = prelabel_image(
        image, prompts, prompter, session, key=key, category=category, progress=progress_bar("prompts", "prompt")
    )
    exported = export_coco([AnnotatedImage(session.labels_yx, session.table, Path(args.image).name)], protocol)
    save_coco(exported.coco, args.output)
    print(summary)
    print(f"wrote {args.output}: {exported.summary}")
    return 0


def _require_a_prompt_inside(prompts: list[Any], shape_yx: tuple[int, ...], path: str) -> None:
    """Refuse a prompts file none of whose prompts lies on the image (an empty COCO otherwise)."""
    from napari_instseg.core.prompting.base import PromptError
    from napari_instseg.core.prompts_io import PromptFileError

    first_error = None
    for prompt in prompts:
        try:
            prompt.check_inside((int(shape_yx[0]), int(shape_yx[1])))
        except PromptError as exc:
            first_error = first_error or str(exc)
            continue
        return
    raise PromptFileError(
        f"{path}: all {len(prompts)} prompt(s) lie outside the image (shape (y, x) {tuple(shape_yx)}); "
        f"nothing to pre-label. First: {first_error} Coordinates are pixels of the image, points as y,x."
    )


_QA_OUTPUTS = ("report.json", "report.html", "summary.md")
_QA_QUEUES = ("review_queue.json", "review_queue.csv")


def _has_verdicts(queue_path: Path) -> bool:
    """True when a review queue file holds at least one verdict (or cannot be read as a queue)."""
    from napari_instseg.core.errors import InstsegError
    from napari_instseg.core.qa.sampling import read_queue

    try:
        return bool((read_queue(queue_path)["outcome"] != "").any())
    except InstsegError:
        return True  # not ours to replace


def _cmd_qa(args: argparse.Namespace) -> int:
    from napari_instseg.core.coco import load_coco_json
    from napari_instseg.core.coco._validate import read_json_file
    from napari_instseg.core.errors import InstsegError
    from napari_instseg.core.geojson import is_geojson_document
    from napari_instseg.core.paths import check_output_dir
    from napari_instseg.core.qa.report import max_dets_warning, run_qa
    from napari_instseg.core.qa.sampling import read_queue

    inputs = (args.gt, args.dt, args.outcomes, args.images)
    check_output_dir(args.outdir, inputs=inputs, targets=_QA_OUTPUTS, overwrite=True, what="-o")
    queue_path = Path(args.outdir) / _QA_QUEUES[0]
    if queue_path.is_file() and not args.overwrite and _has_verdicts(queue_path):
        raise InstsegError(
            f"-o {args.outdir}: {queue_path.name} there holds review verdicts; a new run would replace it. "
            "Choose another folder, or pass --overwrite."
        )
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


def _cmd_fetch_weights(args: argparse.Namespace) -> int:
    from napari_instseg.core.paths import check_output_dir
    from napari_instseg.core.prompting.checkpoints import fetch_weights

    if args.dest is not None:
        check_output_dir(args.dest, what="--dest")  # before a download of up to 900 MB
    path = fetch_weights(args.size, args.dest, progress=progress_bar("download", "B"))
    print(f"saved {path}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from napari_instseg.core.coco import AnnotatedImage, export_coco, save_coco
    from napari_instseg.core.errors import LabelImageError
    from napari_instseg.core.io import read_image, read_labels, read_table_csv
    from napari_instseg.core.paths import check_output_file
    from napari_instseg.core.protocol import AnnotationProtocol, load_protocol

    check_output_file(
        args.output,
        inputs=(args.labels, args.table, args.protocol, args.image),
        suffixes=(".json", ".geojson"),
        overwrite=args.overwrite,
        what="-o",
    )
    if Path(args.labels).is_dir():  # a store or an import folder (the store module is heavy)
        from napari_instseg.core.store import is_store

        return _export_store(args) if is_store(args.labels) else _export_import_folder(args)
    if args.per_tile:
        raise LabelImageError(f"--per-tile applies to a slide store (STORE.zarr); {args.labels} is a label image.")
    protocol = load_protocol(args.protocol) if args.protocol else AnnotationProtocol.default()
    labels = read_labels(args.labels)
    table = read_table_csv(args.table, protocol) if args.table else None
    file_name = Path(args.labels).name
    if args.image:
        image = read_image(args.image)
        if tuple(image.shape[:2]) != labels.shape:
            raise LabelImageError(
                f"{args.labels} has shape (y, x) {labels.shape}, but image {args.image} is {image.shape[:2]}."
            )
        file_name = Path(args.image).name
    if _is_geojson(args.output):
        return _write_geojson(labels, table, protocol, args.output)
    exported = export_coco([AnnotatedImage(labels, table, file_name)], protocol, segmentation=args.format)
    save_coco(exported.coco, args.output)
    print(f"wrote {args.output}: {exported.summary}")
    return 0


def _import_geojson(args: argparse.Namespace) -> int:
    from napari_instseg.core.errors import InstsegError
    from napari_instseg.core.geojson import import_geojson, load_geojson
    from napari_instseg.core.geojson_folder import SOURCE_NAME as GEOJSON_SOURCE_NAME
    from napari_instseg.core.geojson_folder import overlap_report, write_geojson_folder
    from napari_instseg.core.paths import check_output_dir
    from napari_instseg.core.protocol import load_protocol

    if args.shape:
        shape_yx = (int(args.shape[0]), int(args.shape[1]))
        stem = Path(args.coco).name.split(".")[0]
    elif args.image:
        shape_yx = _image_shape_yx(args.image)
        stem = Path(args.image).name.split(".")[0]
    else:
        raise InstsegError(f"{args.coco}: GeoJSON has no image size; give --image IMAGE or --shape H W.")
    if min(shape_yx) <= 0:
        raise InstsegError(f"--shape must be two positive integers (height width), got {shape_yx}.")
    targets = [f"{stem}{suffix}" for suffix in ("_labels.tif", "_instances.csv", "_overlaps.csv")]
    check_output_dir(
        args.outdir,
        inputs=(args.coco, args.image, args.protocol),
        targets=[*targets, "protocol.json", GEOJSON_SOURCE_NAME],
        overwrite=args.overwrite,
        what="-o",
    )
    protocol = load_protocol(args.protocol) if args.protocol else None
    imported = import_geojson(load_geojson(args.coco), shape_yx, protocol, source=args.coco)
    write_geojson_folder(imported, args.outdir, stem, source=str(Path(args.coco).absolute()))
    report = overlap_report(imported)
    print(
        f"wrote {len(imported.table)} instance(s) and {len(imported.passthrough)} other feature(s) (points, lines; "
        f"kept as they came) to {args.outdir}; {int((report['lost_px'] > 0).sum())} instance(s) partly covered "
        f"(front: larger z_order, then smaller area, then smaller id); classes: "
        f"{', '.join(c.name for c in imported.protocol.categories)}"
    )
    return 0


def _image_shape_yx(path: str) -> tuple[int, int]:
    """(height, width) of an image or slide (level 0), reading metadata only where possible."""
    from napari_instseg.core.slide import TIFF_SUFFIXES, open_slide

    if Path(path).is_dir() or path.lower().endswith(TIFF_SUFFIXES):
        return open_slide(path).shape_yx
    from napari_instseg.core.io import read_image

    shape = read_image(path).shape
    return int(shape[0]), int(shape[1])


def _export_import_folder(args: argparse.Namespace) -> int:
    from napari_instseg.core.coco import save_coco
    from napari_instseg.core.coco._folder import export_import_folder, is_import_folder
    from napari_instseg.core.errors import CocoFormatError
    from napari_instseg.core.geojson_folder import is_geojson_folder
    from napari_instseg.core.protocol import load_protocol

    if is_geojson_folder(args.labels):
        return _export_geojson_folder(args)
    if _is_geojson(args.output):
        raise CocoFormatError(f"{args.labels}: GeoJSON export of a COCO import folder is not supported; write .json.")
    if not is_import_folder(args.labels):
        raise CocoFormatError(
            f"{args.labels} is a folder but neither an annotation store nor a folder written by "
            "'napari-instseg import' (no coco_source.json)."
        )
    protocol = load_protocol(args.protocol) if args.protocol else None
    exported = export_import_folder(args.labels, protocol, segmentation=args.format)
    save_coco(exported.coco, args.output)
    print(f"wrote {args.output}: {exported.summary}{_rle_note(exported.coco, args.format)}")
    return 0


def _rle_note(coco: dict[str, Any], segmentation: str) -> str:
    """In polygon mode, which annotations are RLE all the same (crowds; masks with holes)."""
    if segmentation != "polygon":
        return ""
    rle = [a for a in coco["annotations"] if isinstance(a["segmentation"], dict)]
    crowd = [a["id"] for a in rle if a.get("iscrowd")]
    other = [a["id"] for a in rle if not a.get("iscrowd")]
    if not rle:
        return ""

    def ids(values: list[Any]) -> str:
        return ", ".join(map(str, values[:10])) + (f" and {len(values) - 10} more" if len(values) > 10 else "")

    parts = [f"{len(crowd)} crowd ({ids(crowd)})"] if crowd else []
    parts += [f"{len(other)} other ({ids(other)}: holes, or RLE as they came in)"] if other else []
    return "\nRLE annotation id(s), not polygons: " + "; ".join(parts)


def _export_geojson_folder(args: argparse.Namespace) -> int:
    from napari_instseg.core.geojson import GeoJSONError, save_geojson
    from napari_instseg.core.geojson_folder import export_geojson_folder
    from napari_instseg.core.protocol import load_protocol

    if not _is_geojson(args.output):
        raise GeoJSONError(f"{args.labels} was imported from GeoJSON: write it back to a .geojson file.")
    protocol = load_protocol(args.protocol) if args.protocol else None
    document = export_geojson_folder(args.labels, protocol)
    save_geojson(document, args.output)
    features = document if isinstance(document, list) else document["features"]
    print(f"wrote {args.output}: {len(features)} features (QuPath GeoJSON, level-0 pixels)")
    return 0


def _is_geojson(path: str) -> bool:
    return path.lower().endswith((".geojson", ".geo.json"))


def _write_geojson(labels: Any, table: Any, protocol: Any, output: str) -> int:
    from napari_instseg.core.geojson import labels_to_geojson, save_geojson

    collection = labels_to_geojson(labels, table, protocol)
    save_geojson(collection, output)
    print(f"wrote {output}: {len(collection['features'])} features (QuPath GeoJSON, level-0 pixels)")
    return 0


def _export_store(args: argparse.Namespace) -> int:
    from napari_instseg.core.coco import AnnotatedImage, export_coco, save_coco
    from napari_instseg.core.store import AnnotationStore

    store = AnnotationStore.open(args.labels, read_only=True)
    if _is_geojson(args.output):
        return _write_geojson(store.read_labels(), store.table, store.protocol, args.output)
    if args.per_tile:
        return _export_tiles(store, args)
    image: dict[str, Any] = dict(store.image)
    file_name = str(image.pop("file_name", None) or f"{Path(args.labels).stem}.tif")
    extra = {k: v for k, v in image.items() if k not in ("id", "height", "width")}
    prelabels = store.read_side("prelabel")
    scores = {i: r.score for i, r in prelabels.items() if r is not None and r.score == r.score}  # NaN: none
    labels, amodal = store.read_labels(), store.read_side("amodal")
    item = AnnotatedImage(labels, store.table, file_name, image.get("id"), extra, amodal=amodal, scores=scores)
    exported = export_coco([item], store.protocol, segmentation=args.format)
    save_coco(exported.coco, args.output)
    print(f"wrote {args.output}: {exported.summary}")
    return 0


def _export_tiles(store: Any, args: argparse.Namespace) -> int:
    import dataclasses

    import numpy as np

    from napari_instseg.core.coco import AnnotatedImage, export_coco, save_coco
    from napari_instseg.core.coords import tile_origin_record
    from napari_instseg.core.slide import tile_grid

    shape = tuple(store._labels.shape)
    slide_name = store.image.get("slide") or store.image.get("file_name") or Path(args.labels).stem
    items = []
    table = store.table
    seen: set[int] = set()
    for window in tile_grid(shape, args.per_tile):
        labels = store.read_labels(window.tile_yx)
        if not labels.any():
            continue
        y0, x0 = window.tile_yx[:2]
        present = {int(i) for i in np.unique(labels)} - {0}
        seen |= present
        items.append(
            AnnotatedImage(
                labels,
                table[table.index.isin(present)],  # rows of other tiles are not "without pixels"
                f"{Path(str(slide_name)).stem}_y{y0}_x{x0}.tif",
                metadata={"slide": str(slide_name), "level": 0, **tile_origin_record((y0, x0))},
            )
        )
    exported = export_coco(items, store.protocol, segmentation=args.format)
    save_coco(exported.coco, args.output)
    no_pixels = int((~table.index.isin(list(seen))).sum())  # rows with no pixel in any tile
    summary = dataclasses.replace(exported.summary, n_rows_without_pixels=no_pixels)
    print(f"wrote {args.output}: {summary} (tiles of {args.per_tile} px; tile_origin is [y, x] at level 0)")
    return 0


def _cmd_prelabel_slide(args: argparse.Namespace) -> int:
    from napari_instseg.core.batch import BatchConfig, auto_tiling, prelabel_slide
    from napari_instseg.core.errors import InstsegError
    from napari_instseg.core.paths import same_file
    from napari_instseg.core.prompting import default_backend
    from napari_instseg.core.prompting.base import PromptError
    from napari_instseg.core.prompts_io import read_boxes_csv, read_points_csv
    from napari_instseg.core.slide import open_slide

    store_path = Path(args.store)
    if store_path.exists() and same_file(store_path, args.slide):
        raise InstsegError(f"--store {args.store} is the slide itself; give a new STORE.zarr path.")
    if store_path.is_file():
        raise InstsegError(f"--store {args.store} is an existing file, not an annotation store (STORE.zarr).")
    _check_store_folder(store_path)
    prompts = read_points_csv(args.points) if args.points else read_boxes_csv(args.boxes) if args.boxes else None
    from napari_instseg.core.prompting.cache import default_cache_path

    slide_shape_yx = open_slide(args.slide).shape_yx  # lazy: a bad slide fails before the store is made
    for i, prompt in enumerate(prompts or []):
        try:
            prompt.check_inside(slide_shape_yx)
        except PromptError as exc:
            raise PromptError(f"{args.points or args.boxes}: prompt {i + 1} (in file order): {exc}") from exc

    backend = args.backend or default_backend()
    cache = str(default_cache_path()) if backend == "sam2" else None  # per-tile embeddings, shared with the widget
    config = BatchConfig(
        backend=backend,
        size=args.model,
        checkpoint=args.checkpoint,
        device=args.device,
        tile_px=args.tile,
        halo_px=args.halo,
        cache_path=cache,
    )
    if args.auto:
        from napari_instseg.commands.auto import check_auto_tiling

        check_auto_tiling(*auto_tiling(config), tile_flag="--tile", halo_flag="--halo")
    print(f"backend: {backend}; scheduler: {args.scheduler}")
    summary = prelabel_slide(
        args.slide,
        args.store,
        prompts,
        detect=args.detect,
        auto=args.auto,
        config=config,
        scheduler=args.scheduler,
        workers=args.workers,
        progress=progress_bar("tiles", "tile"),
    )
    print(summary)
    return 0


def _check_store_folder(store_path: Path) -> None:
    """Refuse an existing folder that is not an annotation store (a project folder named so)."""
    from napari_instseg.core.errors import InstsegError
    from napari_instseg.core.project import is_project
    from napari_instseg.core.store import is_store

    if not store_path.is_dir() or is_store(store_path):
        return
    if is_project(store_path):
        raise InstsegError(
            f"--store {store_path} is a project folder, not an annotation store: use the 'napari-instseg project "
            f"...' commands on it (project prelabel {store_path}), or give a new STORE.zarr path."
        )
    raise InstsegError(
        f"--store {store_path} is an existing folder but not an annotation store; give an existing store or a new "
        "STORE.zarr path (created)."
    )


def _cmd_import(args: argparse.Namespace) -> int:
    if _is_geojson(args.coco) or (args.image or args.shape):
        return _import_geojson(args)
    from napari_instseg.core.coco import import_coco
    from napari_instseg.core.coco._folder import SOURCE_NAME, image_stems, write_import_folder
    from napari_instseg.core.paths import check_output_dir

    check_output_dir(args.outdir, inputs=(args.coco,), targets=("protocol.json",), overwrite=True, what="-o")
    imported = import_coco(args.coco)  # validates and decodes everything before writing
    stems = image_stems(imported, args.coco)
    targets = [f"{stem}{suffix}" for stem in stems for suffix in ("_labels.tif", "_instances.csv", "_overlaps.csv")]
    check_output_dir(
        args.outdir,
        inputs=(args.coco,),
        targets=[*targets, "protocol.json", SOURCE_NAME],
        overwrite=args.overwrite,
        what="-o",
    )
    write_import_folder(imported, args.outdir, source=str(Path(args.coco).absolute()))
    n_instances = sum(len(im.table) for im in imported.images)
    n_losing = sum(int((im.overlap_report()["lost_px"] > 0).sum()) for im in imported.images)
    print(
        f"wrote {len(imported.images)} image(s), {n_instances} instances to {args.outdir}; "
        f"{imported.overlap_px} overlapping pixel(s): {n_losing} instance(s) are partly covered in the label "
        f"image (front: larger z_order, then smaller area, then smaller id); every own mask is kept whole in "
        f"coco_source.json, per instance in <stem>_overlaps.csv"
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
