"""``napari-instseg prelabel IMAGE --auto``: pre-label everything in one image.

The ``prelabel`` sub-command itself is defined in :mod:`napari_instseg.cli` (its ``--auto``
option lands here); this module registers no command of its own.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import Any

__all__ = ["add_auto_arguments", "prelabel_auto", "register"]


def register(subparsers: Any) -> None:
    """No sub-command of its own: ``prelabel --auto``, ``prelabel-slide --auto`` and
    ``project prelabel --auto`` use this module."""


def add_auto_arguments(parser: argparse.ArgumentParser, *, workers: bool = True) -> None:
    """Tiling and parallelism options of the automatic mode (shared by ``prelabel`` and
    ``project prelabel``; the latter runs images in parallel, so without ``workers``)."""
    parser.add_argument(
        "--auto-tile",
        type=int,
        default=None,
        help="automatic mode: tile size in pixels (default: 1024 sam2, 512 classic)",
    )
    parser.add_argument("--auto-halo", type=int, default=64, help="automatic mode: halo in pixels (default: 64)")
    parser.add_argument(
        "--auto-points", type=int, default=None, help="SAM 2 automatic mode: points per side (default: the preset's)"
    )
    if workers:
        parser.add_argument(
            "--auto-workers", type=int, default=1, help="automatic mode: tiles in parallel on dask threads (default: 1)"
        )


def prelabel_auto(args: argparse.Namespace, progress: Any) -> int:
    """Run ``prelabel IMAGE --auto PRESET``: every object, tiled and stitched, to COCO with scores."""
    import numpy as np

    from napari_instseg.core.coco import AnnotatedImage, export_coco, save_coco
    from napari_instseg.core.io import read_image
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
    image = read_image(args.image)
    backend = args.backend or default_backend()
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
    from napari_instseg.core.prompting.registry import auto_tile_px

    tile = args.auto_tile or auto_tile_px(backend)
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
    category = int(args.category) if args.category and args.category.isdigit() else args.category
    source = "sam2-auto" if backend == "sam2" else "classic-auto"
    summary = commit_auto(session, objects, source, category=category)
    item = AnnotatedImage(session.labels_yx, session.table, Path(args.image).name, scores=prelabel_scores(session))
    exported = export_coco([item], protocol)
    save_coco(exported.coco, args.output)
    print(summary)
    print(f"wrote {args.output}: {exported.summary}")
    return 0
