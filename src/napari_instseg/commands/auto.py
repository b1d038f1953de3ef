"""``napari-instseg prelabel IMAGE --auto``: pre-label everything in one image.

The ``prelabel`` sub-command itself is defined in :mod:`napari_instseg.commands.prelabel`
(its ``--auto`` option lands here); this module registers no command of its own.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

__all__ = [
    "add_auto_arguments",
    "check_auto_grid",
    "check_auto_tiling",
    "check_category",
    "non_negative_int",
    "positive_int",
    "prelabel_auto",
    "register",
]


def _integer_at_least(minimum: int, expected: str) -> Callable[[str], int]:
    """An argparse type: an integer >= ``minimum`` (``expected`` names it in the error)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {value}")
        return value

    return parse


positive_int = _integer_at_least(1, "a positive integer")
"""argparse type: an integer >= 1."""

non_negative_int = _integer_at_least(0, "an integer >= 0")
"""argparse type: an integer >= 0."""


def register(subparsers: Any) -> None:
    """No sub-command of its own: ``prelabel --auto``, ``prelabel-slide --auto`` and
    ``project prelabel --auto`` use this module."""


def add_auto_arguments(parser: argparse.ArgumentParser, *, workers: bool = True) -> None:
    """Tiling and parallelism options of the automatic mode (shared by ``prelabel`` and
    ``project prelabel``; the latter runs images in parallel, so without ``workers``)."""
    parser.add_argument(
        "--auto-tile",
        type=positive_int,
        default=None,
        metavar="PX",
        help="automatic mode: tile size in pixels, >= 1 (default: 1024 sam2, 512 classic)",
    )
    parser.add_argument(
        "--auto-halo",
        type=non_negative_int,
        default=64,
        metavar="PX",
        help="automatic mode: halo in pixels, 1 to tile size - 1; about the largest object's diameter (default: 64)",
    )
    parser.add_argument(
        "--auto-points",
        type=positive_int,
        default=None,
        metavar="N",
        help="SAM 2 automatic mode: points per side, >= 1 (default: the preset's)",
    )
    if workers:
        parser.add_argument(
            "--auto-workers",
            type=positive_int,
            default=1,
            metavar="N",
            help="automatic mode: tiles in parallel on dask threads, >= 1 (default: 1)",
        )


def check_auto_tiling(tile_px: int, halo_px: int, *, tile_flag: str, halo_flag: str) -> None:
    """Refuse a halo the automatic mode cannot stitch with: 0 (objects cut by a seam never
    overlap, each part would become a pre-label of its own), or not smaller than the tile.

    Raises
    ------
    InstsegError
        Naming the options and their values.
    """
    from napari_instseg.core.errors import InstsegError

    if halo_px == 0:
        raise InstsegError(
            f"{halo_flag} 0: the automatic mode stitches objects cut by tile seams on the halo's overlap; "
            f"with no halo each part of such an object would be a pre-label of its own. Give a halo about the "
            f"largest object's diameter (default 64)."
        )
    if halo_px >= tile_px:
        raise InstsegError(
            f"{halo_flag} {halo_px} is not smaller than the tile ({tile_flag} {tile_px}); give a halo smaller "
            "than the tile (about the largest object's diameter), or larger tiles."
        )


def check_auto_grid(shape_yx: tuple[int, int], tile_px: int, *, path: str, tile_flag: str) -> None:
    """Refuse a tile size that cuts the image into more than
    :data:`~napari_instseg.core.prompting.auto.MAX_TILES` tiles (before any work).

    Raises
    ------
    InstsegError
        Naming the option, the image, its shape, the number of tiles and a tile size that fits.
    """
    from napari_instseg.core.errors import InstsegError
    from napari_instseg.core.prompting.auto import AutoTilingError, check_tiling

    try:
        check_tiling(shape_yx, tile_px, 0, name=path)
    except AutoTilingError as exc:
        raise InstsegError(f"{tile_flag} {tile_px}: {exc}") from exc


def check_category(protocol: Any, category: str | None) -> int | str | None:
    """The ``--category`` value (an id when all digits, else a name), refused now when the
    protocol lacks it (not after the segmentation ran).

    Raises
    ------
    ProtocolError
        Naming the known categories.
    """
    value: int | str | None = int(category) if category and category.isdigit() else category
    if isinstance(value, int):
        protocol.category(value)
    elif value is not None:
        protocol.category_by_name(value)
    return value


def prelabel_auto(args: argparse.Namespace, progress: Any) -> int:
    """Run ``prelabel IMAGE --auto PRESET``: every object, tiled and stitched, to COCO with scores."""
    import numpy as np

    from napari_instseg.core.coco import AnnotatedImage, export_coco, save_coco
    from napari_instseg.core.io import check_grey_or_rgb, read_image
    from napari_instseg.core.prompting import default_backend, make_prompter
    from napari_instseg.core.prompting.auto import (
        PRESETS,
        ClassicAutoSegmenter,
        Sam2AutoSegmenter,
        auto_objects,
        commit_auto,
        prelabel_scores,
    )
    from napari_instseg.core.protocol import AnnotationProtocol, load_protocol
    from napari_instseg.core.session import AnnotationSession

    protocol = load_protocol(args.protocol) if args.protocol else AnnotationProtocol.default()
    category = check_category(protocol, args.category)
    image = read_image(args.image)
    check_grey_or_rgb(image, args.image)
    backend = args.backend or default_backend()
    from napari_instseg.core.prompting.registry import auto_tile_px

    tile = args.auto_tile or auto_tile_px(backend)
    check_auto_tiling(tile, args.auto_halo, tile_flag="--auto-tile", halo_flag="--auto-halo")
    check_auto_grid(image.shape[:2], tile, path=args.image, tile_flag="--auto-tile")
    path = Path(args.image).resolve()
    identity = f"file:{path}:{path.stat().st_size}:{path.stat().st_mtime_ns}"
    settings = PRESETS[args.auto]
    if getattr(args, "auto_points", None):
        settings = replace(settings, points_per_side=args.auto_points)
    segmenter: Any = ClassicAutoSegmenter()
    if backend == "sam2":

        def build() -> Any:  # one model per worker thread
            prompter = make_prompter("sam2", size=args.model, checkpoint=args.checkpoint, device=args.device)
            return Sam2AutoSegmenter(prompter, settings)

        segmenter = build() if args.auto_workers <= 1 else build
    print(f"automatic mode: {backend} ({args.auto} preset); tiles of {tile} px + {args.auto_halo} px halo")
    objects = auto_objects(
        image,
        segmenter,
        tile_px=tile,
        halo_px=args.auto_halo,
        identity=identity,
        workers=args.auto_workers,
        progress=progress,
    )
    session = AnnotationSession(np.zeros(image.shape[:2], np.uint32), protocol=protocol)
    source = "sam2-auto" if backend == "sam2" else "classic-auto"
    summary = commit_auto(session, objects, source, category=category)
    item = AnnotatedImage(session.labels_yx, session.table, Path(args.image).name, scores=prelabel_scores(session))
    exported = export_coco([item], protocol)
    save_coco(exported.coco, args.output)
    print(summary)
    print(f"wrote {args.output}: {exported.summary}")
    return 0
