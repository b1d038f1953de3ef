"""``napari-instseg prelabel``, ``prelabel-slide`` and ``fetch-weights``: pre-labelling an
image or a whole slide, and the SAM 2.1 weights it uses."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from napari_instseg.commands.auto import non_negative_int, positive_int
from napari_instseg.core.prompting.registry import BACKENDS, DEFAULT_SIZE, MODEL_SIZES

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``prelabel``, ``prelabel-slide`` and ``fetch-weights`` commands."""
    _register_prelabel(subparsers)
    _register_prelabel_slide(subparsers)
    fetch = subparsers.add_parser("fetch-weights", help="download an official SAM 2.1 checkpoint into the user cache")
    fetch.add_argument("size", choices=MODEL_SIZES, help="SAM 2.1 model size")
    fetch.add_argument("--dest", help="folder (default: the user cache folder)")
    fetch.set_defaults(func=_cmd_fetch_weights)


def _register_prelabel(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from napari_instseg.cli import OVERWRITE_HELP

    pre = subparsers.add_parser("prelabel", help="pre-label an image from point or box prompts (SAM 2 or classic)")
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
    pre.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    pre.set_defaults(func=_cmd_prelabel)
    from napari_instseg.commands.auto import add_auto_arguments

    add_auto_arguments(pre)


def _register_prelabel_slide(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    slide = subparsers.add_parser("prelabel-slide", help="pre-label a whole slide tile by tile on dask, into a store")
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


def _cmd_prelabel(args: argparse.Namespace) -> int:
    import numpy as np

    from napari_instseg.cli import progress_bar
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


def _cmd_prelabel_slide(args: argparse.Namespace) -> int:
    from napari_instseg.cli import progress_bar
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


def _cmd_fetch_weights(args: argparse.Namespace) -> int:
    from napari_instseg.cli import progress_bar
    from napari_instseg.core.paths import check_output_dir
    from napari_instseg.core.prompting.checkpoints import fetch_weights

    if args.dest is not None:
        check_output_dir(args.dest, what="--dest")  # before a download of up to 900 MB
    path = fetch_weights(args.size, args.dest, progress=progress_bar("download", "B"))
    print(f"saved {path}")
    return 0
