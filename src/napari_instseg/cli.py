"""The ``napari-instseg`` command.

Sub-commands import what they need when they run, so ``--help`` stays fast and imports
neither torch nor Qt.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from napari_instseg import __version__

__all__ = ["main"]

logger = logging.getLogger(__name__)


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
    export.add_argument("labels", help="label image (.tif, .tiff or .npy; 2-D, 0 = background) or STORE.zarr")
    export.add_argument("-o", "--output", required=True, help="COCO JSON file, or .geojson for QuPath GeoJSON")
    export.add_argument("--table", help="instance table CSV with an 'id' column")
    export.add_argument("--protocol", help="protocol JSON / YAML (taxonomy, occlusion rule)")
    export.add_argument("--image", help="the image the labels annotate (name and size go into COCO)")
    export.add_argument("--format", choices=("rle", "polygon"), default="rle", help="segmentation form (default: rle)")
    export.add_argument(
        "--per-tile", type=int, metavar="SIZE", help="for a slide store: one COCO image per SIZE-px tile"
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
        choices=("sam2", "classic"),
        default=None,
        help="default: sam2 when a checkpoint is configured, else classic",
    )
    pre.add_argument("--model", choices=("tiny", "small", "base_plus", "large"), default="tiny", help="SAM 2.1 size")
    pre.add_argument(
        "--checkpoint", help="SAM 2 checkpoint (.pt); default: $NAPARI_INSTSEG_SAM2_CHECKPOINT or the user cache"
    )
    pre.add_argument("--device", default=None, help="torch device (default: cuda, mps or cpu)")
    pre.add_argument("--protocol", help="protocol JSON / YAML")
    pre.add_argument("--category", help="category name or id of every instance (default: the first)")
    pre.add_argument("-o", "--output", required=True, help="COCO JSON file to write")
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
    slide.add_argument("--backend", choices=("sam2", "classic"), default=None)
    slide.add_argument("--model", choices=("tiny", "small", "base_plus", "large"), default="tiny")
    slide.add_argument("--checkpoint")
    slide.add_argument("--device", default=None)
    slide.add_argument("--scheduler", default="threads", help="'threads' (default) or a dask scheduler address")
    slide.add_argument("--workers", type=int, default=None, help="threads for the threaded scheduler")
    slide.add_argument("--tile", type=int, default=None, help="tile size in pixels (default: 1024 sam2, 512 classic)")
    slide.add_argument("--halo", type=int, default=None, help="halo in pixels (default: two object diameters)")
    slide.set_defaults(func=_cmd_prelabel_slide)

    fetch = sub.add_parser("fetch-weights", help="download an official SAM 2.1 checkpoint into the user cache")
    fetch.add_argument("size", choices=("tiny", "small", "base_plus", "large"))
    fetch.add_argument("--dest", help="folder (default: the user cache folder)")
    fetch.set_defaults(func=_cmd_fetch_weights)

    qa = sub.add_parser("qa", help="QA report: Mask AP per class and occlusion tier, pre-labels, review sample")
    qa.add_argument("--gt", required=True, help="reference COCO JSON")
    qa.add_argument("--dt", required=True, help="candidates: COCO results list or full COCO JSON (score 1 if absent)")
    qa.add_argument(
        "-o", "--outdir", required=True, help="folder for report.html, report.json, summary.md, review_queue.*"
    )
    qa.add_argument("--images", help="folder with the images (for the gallery of worst-IoU instances)")
    qa.add_argument("--max-dets", type=int, default=1000, help="detections per image and class (default 1000)")
    qa.add_argument("--seed", type=int, default=0, help="seed of the review sample")
    qa.add_argument("--outcomes", help="a reviewed review_queue.json: error rates per tier, category, annotator")
    qa.add_argument(
        "--stratify-by",
        nargs="+",
        default=["occlusion"],
        choices=("occlusion", "category", "annotator"),
        help="strata of the review sample (default: occlusion)",
    )
    qa.set_defaults(func=_cmd_qa)

    agree = sub.add_parser("agreement", help="calibration: annotator A versus B on the same images")
    agree.add_argument("a", help="COCO JSON of annotator A")
    agree.add_argument("b", help="COCO JSON of annotator B")
    agree.add_argument("-o", "--output", required=True, help="JSON file to write")
    agree.set_defaults(func=_cmd_agreement)

    imp = sub.add_parser("import", help="import a COCO JSON file into label images and CSV tables")
    imp.add_argument("coco", help="COCO instances JSON file")
    imp.add_argument("-o", "--outdir", required=True, help="folder for <stem>_labels.tif and <stem>_instances.csv")
    imp.set_defaults(func=_cmd_import)
    _register_command_modules(sub)
    return parser


def _register_command_modules(sub: argparse._SubParsersAction) -> None:
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
        return int(args.func(args) or 0)
    except (InstsegError, FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        print(f"napari-instseg {args.command}: error: {exc}", file=sys.stderr)
        return 2


def _cmd_demo(args: argparse.Namespace) -> int:
    from napari_instseg.demo import run_demo

    result = run_demo(args.outdir, progress=_progress_bar("pre-labelling", "nucleus"))
    print(result.summary)
    print(f"done in {result.seconds:.1f} s")
    if not args.headless and _has_display():
        from napari_instseg.demo import open_in_napari

        open_in_napari(result)
    return 0


def _has_display() -> bool:
    import os

    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) or sys.platform in ("darwin", "win32")


def _progress_bar(desc: str, unit: str):
    """A ``progress(done, total)`` callback drawing a tqdm bar on stderr."""
    from tqdm import tqdm

    bar: dict[str, tqdm] = {}

    def progress(done: int, total: int) -> None:
        if "bar" not in bar:
            bar["bar"] = tqdm(total=total, desc=desc, unit=unit, disable=None, leave=False)
        bar["bar"].update(done - bar["bar"].n)
        if done >= total:
            bar["bar"].close()

    return progress


def _cmd_prelabel(args: argparse.Namespace) -> int:
    import numpy as np

    from napari_instseg.core.coco import AnnotatedImage, export_coco, save_coco
    from napari_instseg.core.io import read_image
    from napari_instseg.core.prelabel import prelabel_image
    from napari_instseg.core.prompting import default_backend, make_prompter
    from napari_instseg.core.prompting.base import ImageKey
    from napari_instseg.core.prompts_io import read_boxes_csv, read_points_csv
    from napari_instseg.core.protocol import Protocol, load_protocol
    from napari_instseg.core.session import AnnotationSession

    if args.auto:
        from napari_instseg.commands.auto import prelabel_auto

        return prelabel_auto(args, _progress_bar("tiles", "tile"))
    protocol = load_protocol(args.protocol) if args.protocol else Protocol.default()
    image = read_image(args.image)
    prompts = read_points_csv(args.points) if args.points else read_boxes_csv(args.boxes)
    backend = args.backend or default_backend()
    prompter = make_prompter(backend, size=args.model, checkpoint=args.checkpoint, device=args.device)
    print(f"backend: {backend}" + (f" (SAM 2.1 {args.model})" if backend == "sam2" else " (no model weights)"))
    session = AnnotationSession(np.zeros(image.shape[:2], np.uint32), protocol=protocol, prompter=prompter)
    category = int(args.category) if args.category and args.category.isdigit() else args.category
    path = Path(args.image).resolve()
    key = ImageKey.whole(f"file:{path}:{path.stat().st_size}:{path.stat().st_mtime_ns}", image.shape[:2])
    session, summary = prelabel_image(
        image, prompts, prompter, session, key=key, category=category, progress=_progress_bar("prompts", "prompt")
    )
    exported = export_coco([AnnotatedImage(session.labels_yx, session.table, Path(args.image).name)], protocol)
    save_coco(exported.coco, args.output)
    print(summary)
    print(f"wrote {args.output}: {exported.summary}")
    return 0


def _cmd_qa(args: argparse.Namespace) -> int:
    import json

    from napari_instseg.core.coco import load_coco_json
    from napari_instseg.core.qa.report import run_qa
    from napari_instseg.core.qa.sampling import read_queue

    gt = load_coco_json(args.gt)
    with open(args.dt, "rb") as handle:
        dt = json.load(handle)
    outcomes = read_queue(args.outcomes) if args.outcomes else None
    bar = _progress_bar("QA", "step")
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
    return 0


def _cmd_agreement(args: argparse.Namespace) -> int:
    import json

    from napari_instseg.core._io import atomic_write_text
    from napari_instseg.core.coco import load_coco_json
    from napari_instseg.core.qa.agreement import calibration
    from napari_instseg.core.qa.report import _clean

    result = _clean(calibration(load_coco_json(args.a), load_coco_json(args.b)))
    atomic_write_text(args.output, json.dumps(result, indent=2))
    print(
        f"B against A: AP {result['B_against_A']['AP']}, A against B: AP {result['A_against_B']['AP']}; "
        f"{result['n_matched']} matched; kappa occlusion {result['kappa_occlusion']}, crowd {result['kappa_crowd']}"
    )
    return 0


def _cmd_fetch_weights(args: argparse.Namespace) -> int:
    from napari_instseg.core.prompting.checkpoints import fetch_weights

    path = fetch_weights(args.size, args.dest, progress=_progress_bar("download", "B"))
    print(f"saved {path}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from napari_instseg.core.coco import AnnotatedImage, export_coco, save_coco
    from napari_instseg.core.errors import LabelImageError
    from napari_instseg.core.io import read_image, read_labels, read_table_csv
    from napari_instseg.core.protocol import Protocol, load_protocol
    from napari_instseg.core.store import is_store

    if is_store(args.labels):
        return _export_store(args)
    protocol = load_protocol(args.protocol) if args.protocol else Protocol.default()
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


def _is_geojson(path: str) -> bool:
    return path.lower().endswith((".geojson", ".geo.json"))


def _write_geojson(labels, table, protocol, output: str) -> int:
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
    image = dict(store.image)
    file_name = image.pop("file_name", None) or f"{Path(args.labels).stem}.tif"
    extra = {k: v for k, v in image.items() if k not in ("id", "height", "width")}
    prelabels = store.read_side("prelabel")
    scores = {i: r.score for i, r in prelabels.items() if r is not None and r.score == r.score}  # NaN: none
    labels, amodal = store.read_labels(), store.read_side("amodal")
    item = AnnotatedImage(labels, store.table, file_name, image.get("id"), extra, amodal=amodal, scores=scores)
    exported = export_coco([item], store.protocol, segmentation=args.format)
    save_coco(exported.coco, args.output)
    print(f"wrote {args.output}: {exported.summary}")
    return 0


def _export_tiles(store, args: argparse.Namespace) -> int:
    from napari_instseg.core.coco import AnnotatedImage, export_coco, save_coco
    from napari_instseg.core.slide import tile_grid

    shape = tuple(store._labels.shape)
    slide_name = store.image.get("slide") or store.image.get("file_name") or Path(args.labels).stem
    items = []
    for window in tile_grid(shape, args.per_tile):
        labels = store.read_labels(window.tile_yx)
        if not labels.any():
            continue
        y0, x0 = window.tile_yx[:2]
        items.append(
            AnnotatedImage(
                labels,
                store.table,
                f"{Path(str(slide_name)).stem}_y{y0}_x{x0}.tif",
                metadata={"slide": str(slide_name), "level": 0, "tile_origin": [int(x0), int(y0)]},
            )
        )
    exported = export_coco(items, store.protocol, segmentation=args.format)
    save_coco(exported.coco, args.output)
    print(f"wrote {args.output}: {exported.summary} (tiles of {args.per_tile} px; tile_origin is [x, y] at level 0)")
    return 0


def _cmd_prelabel_slide(args: argparse.Namespace) -> int:
    from napari_instseg.core.batch import BatchConfig, prelabel_slide
    from napari_instseg.core.prompting import default_backend
    from napari_instseg.core.prompts_io import read_boxes_csv, read_points_csv

    prompts = read_points_csv(args.points) if args.points else read_boxes_csv(args.boxes) if args.boxes else None
    backend = args.backend or default_backend()
    from napari_instseg.core.prompting.checkpoints import cache_dir

    cache = str(cache_dir().parent / "embeddings.zarr") if backend == "sam2" else None  # per-tile embeddings
    config = BatchConfig(
        backend=backend,
        size=args.model,
        checkpoint=args.checkpoint,
        device=args.device,
        tile_px=args.tile,
        halo_px=args.halo,
        cache_path=cache,
    )
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
        progress=_progress_bar("tiles", "tile"),
    )
    print(summary)
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from napari_instseg.core.coco import import_coco
    from napari_instseg.core.errors import CocoFormatError
    from napari_instseg.core.io import write_labels_tiff, write_table_csv

    imported = import_coco(args.coco)  # validates and decodes everything before writing
    stems = [Path(im.image["file_name"]).stem for im in imported.images]
    clashes = sorted({s for s in stems if stems.count(s) > 1})
    if clashes:
        raise CocoFormatError(f"{args.coco}: several images share the file stem(s) {clashes}; outputs would collide.")
    outdir = Path(args.outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    for stem, item in tqdm(list(zip(stems, imported.images, strict=False)), desc="writing", unit="image", disable=None):
        write_labels_tiff(outdir / f"{stem}_labels.tif", item.labels_yx)
        write_table_csv(outdir / f"{stem}_instances.csv", item.table)
    imported.protocol.save(outdir / "protocol.json")
    n_instances = sum(len(im.table) for im in imported.images)
    print(
        f"wrote {len(imported.images)} image(s), {n_instances} instances to {outdir}; "
        f"{imported.overlap_px} overlapping pixel(s) resolved by z_order, then area"
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
