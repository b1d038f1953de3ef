"""``napari-instseg track``: follow prompted objects through a (t, y, x) or (z, y, x) stack."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from napari_instseg.core.prompting.registry import DEFAULT_SIZE, MODEL_SIZES

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``track`` sub-command."""
    track = subparsers.add_parser(
        "track",
        help="propagate point / box prompts through a time series or z-stack with SAM 2 (one id per object)",
        description=(
            "Prompt objects on some frames (CSV files of `prelabel` plus a `frame` column, 0-based; "
            "an `object` column joins rows of one object) and follow them with SAM 2's video "
            "predictor. Writes a COCO video file: one image per frame with video_id, frame_index "
            "and track_id (YouTube-VIS / TAO conventions), per-frame occlusion tiers, and absent frames."
        ),
    )
    track.add_argument("stack", help="TIFF or NPY stack, (t, y, x), (t, y, x, 3) or (z, y, x)")
    prompts = track.add_mutually_exclusive_group(required=True)
    prompts.add_argument("--points", help="CSV with frame,y,x[,label][,object]")
    prompts.add_argument("--boxes", help="CSV with frame,x0,y0,x1,y1[,object]")
    track.add_argument("--frames", type=frame_range, help="first:last frame to track, inclusive (default: all)")
    track.add_argument(
        "--direction",
        choices=("forward", "backward", "both"),
        default="both",
        help="propagate from the prompted frames forward, backward or both ways (default: both)",
    )
    track.add_argument("--model", choices=MODEL_SIZES, default=DEFAULT_SIZE, help="SAM 2.1 size")
    track.add_argument(
        "--checkpoint", help="SAM 2 checkpoint (.pt); default: $NAPARI_INSTSEG_SAM2_CHECKPOINT or the user cache"
    )
    track.add_argument("--device", default=None, help="torch device (default: cuda, mps or cpu)")
    track.add_argument(
        "--image-size", type=int, default=None, help="model input size (default 1024; smaller is faster)"
    )
    track.add_argument("--protocol", help="protocol JSON / YAML")
    track.add_argument("--category", help="category name or id of every track (default: the first)")
    track.add_argument("-o", "--output", required=True, help="COCO video JSON file to write (never an input)")
    track.add_argument("--overwrite", action="store_true", help="replace the output file when it exists")
    track.set_defaults(func=run_track)

    qa = subparsers.add_parser(
        "track-qa",
        help="compare tracks with reference tracks: IDF1, MOTA, ID switches (py-motmetrics), per-frame Mask AP",
    )
    qa.add_argument("gt", help="reference COCO video JSON (as `track` writes, or YouTube-VIS / TAO style)")
    qa.add_argument("dt", help="candidate COCO video JSON")
    qa.add_argument("--video-id", type=int, default=None, help="which video, when a file holds several")
    qa.add_argument("--iou", type=float, default=0.5, help="smallest mask IoU of a match (default 0.5)")
    qa.add_argument("-o", "--output", help="JSON file for the numbers (never an input)")
    qa.add_argument("--overwrite", action="store_true", help="replace the output file when it exists")
    qa.set_defaults(func=run_track_qa)


def frame_range(text: str) -> tuple[int | None, int | None]:
    """Parse ``A:B`` (either side may be empty) into (first, last)."""
    parts = text.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        first, last = (int(p) if p.strip() else None for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected FIRST:LAST frame numbers such as 0:20, got {text!r}") from None
    return first, last


def read_stack(path: str) -> Any:
    """Read a stack lazily where the file allows it (NPY and uncompressed TIFF are memory-mapped)."""
    import numpy as np

    target = Path(path)
    if not target.is_file():
        raise FileNotFoundError(f"{target}: no such file")
    if target.suffix.lower() == ".npy":
        return np.load(target, mmap_mode="r", allow_pickle=False)
    import tifffile

    try:
        return tifffile.memmap(target, mode="r")
    except ValueError:  # compressed or tiled: read it whole
        return tifffile.imread(target)


def run_track(args: argparse.Namespace) -> int:
    """Run ``napari-instseg track`` (errors are InstsegError: the CLI exits with status 2)."""
    from tqdm import tqdm

    from napari_instseg.core.coco import save_coco
    from napari_instseg.core.coco.video import export_coco_video
    from napari_instseg.core.errors import InstsegError
    from napari_instseg.core.paths import check_output_file
    from napari_instseg.core.protocol import AnnotationProtocol, load_protocol
    from napari_instseg.core.video.frames import stack_shape
    from napari_instseg.core.video.prompts import read_track_boxes_csv, read_track_points_csv
    from napari_instseg.core.video.propagate import ObjectPrompt, VideoPropagator
    from napari_instseg.core.video.tracking import propagate_tracks
    from napari_instseg.core.video.tracks import TrackStack

    inputs = (args.stack, args.points or args.boxes, args.protocol, args.checkpoint)
    check_output_file(args.output, inputs=inputs, suffixes=(".json",), overwrite=args.overwrite, what="-o")
    protocol = load_protocol(args.protocol) if args.protocol else AnnotationProtocol.default()
    frames = read_stack(args.stack)
    n_frames, height, width = stack_shape(frames)
    prompts = (
        read_track_points_csv(args.points, n_frames) if args.points else read_track_boxes_csv(args.boxes, n_frames)
    )
    if not prompts:
        raise InstsegError(f"{args.points or args.boxes}: no prompts in the file.")
    first, last = args.frames or (None, None)
    span = (0 if first is None else first, n_frames - 1 if last is None else last)
    import numpy as np

    stack = TrackStack(np.zeros((n_frames, height, width), np.uint32), protocol=protocol)
    category = int(args.category) if args.category and args.category.isdigit() else args.category
    ids: dict[str, int] = {}
    for p in prompts:
        if p.object not in ids:
            ids[p.object] = stack.new_track(category=category, source="sam2")
    propagator = VideoPropagator(args.model, args.checkpoint, args.device, image_size=args.image_size)
    propagator.start(frames)
    items = [ObjectPrompt(ids[p.object], p.frame, p.prompt) for p in prompts]
    bar = None
    for step in propagate_tracks(stack, propagator, items, direction=args.direction, frames=span):
        bar = bar or tqdm(total=step.total, desc="tracking", unit="frame")
        bar.update(1)
    if bar is not None:
        bar.close()
    exported = export_coco_video(stack, name=Path(args.stack).stem)
    save_coco(exported.coco, args.output)
    absent = sum(1 for per in stack.records.values() for rec in per.values() if not rec.present)
    print(f"{len(ids)} object(s) tracked over {len(stack.records)} frame(s); {absent} absent (object, frame) pair(s)")
    print(f"wrote {args.output}: {exported.summary}")
    return 0


def run_track_qa(args: argparse.Namespace) -> int:
    """Run ``napari-instseg track-qa`` (errors are InstsegError: the CLI exits with status 2)."""
    import json

    from napari_instseg.core._io import atomic_write_text
    from napari_instseg.core.paths import check_output_file
    from napari_instseg.core.qa.report import format_score
    from napari_instseg.core.qa.tracks import evaluate_tracks

    if args.output:
        check_output_file(
            args.output, inputs=(args.gt, args.dt), suffixes=(".json",), overwrite=args.overwrite, what="-o"
        )
    qa = evaluate_tracks(args.gt, args.dt, video_id=args.video_id, iou_threshold=args.iou)
    ids = qa.identity
    print(
        f"{qa.n_frames} frames: IDF1 {format_score(float(ids['idf1']))}, MOTA {format_score(float(ids['mota']))}, "
        "ID switches "
        f"{int(ids['num_switches'])}, misses {int(ids['num_misses'])}, false positives "
        f"{int(ids['num_false_positives'])} (IoU >= {args.iou})"
    )
    for name, scores in qa.mask_ap.items():
        print(f"per-frame Mask AP {name}: {format_score(float(scores.AP))} ({scores.n_gt} reference masks)")
    if args.output:
        atomic_write_text(args.output, json.dumps(qa.to_dict(), indent=2))
        print(f"wrote {args.output}")
    return 0
