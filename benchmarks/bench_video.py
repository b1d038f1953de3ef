"""SAM 2 video propagation through the plugin, as ratios against bare sam2 in the same run.

1. Per-frame cost: ``propagate_tracks`` (lazy frames, memory pruning, masks to numpy, the
   per-frame commit rule, occlusion records, one undo step) versus sam2's bare
   ``propagate_in_video`` on the same predictor, frames and prompts (frames preloaded into one
   tensor, as sam2's ``init_state`` does; its loading time is counted). Target <= 1.15x.
2. Peak memory for 50 versus 500 frames, each in a fresh process: the plugin (bounded: frames
   read lazily, memories sam2 can no longer reach dropped) versus bare sam2 (every frame and
   every frame's memory kept). Target: bounded, not linear in frames.

A random-weight SAM 2.1 hiera-tiny checkpoint is built for the run (timings are real; masks
are meaningless). Torch runs on one thread (two cores shared). Run:
``PYTHONPATH=src .venv/bin/python benchmarks/bench_video.py [--frames 20] [--image-size 256]``
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _frames(n: int, shape_yx: tuple[int, int] = (64, 80)) -> np.ndarray:
    rng = np.random.default_rng(0)
    stack = rng.integers(0, 60, (n, *shape_yx), dtype=np.uint8)
    for t in range(n):
        x = 4 + (t % 40)
        stack[t, 20:40, x : x + 20] = 220
    return stack


def _checkpoint(folder: Path) -> Path:
    import torch
    from sam2.build_sam import build_sam2

    torch.manual_seed(0)
    model = build_sam2("configs/sam2.1/sam2.1_hiera_t.yaml", ckpt_path=None, device="cpu")
    path = folder / "sam2.1_hiera_tiny.pt"
    torch.save({"model": model.state_dict()}, path)
    return path


POINTS_XY = (np.array([[14.0, 30.0]], np.float32), np.array([[60.0, 50.0]], np.float32))


STATE: dict[str, object] = {}


def tensor_mib(obj: object, seen: set[int] | None = None) -> float:
    """MiB of the distinct tensors reachable from ``obj`` (dicts, lists, LazyFrames)."""
    import torch

    seen = set() if seen is None else seen
    if isinstance(obj, torch.Tensor):
        key = obj.untyped_storage().data_ptr()
        if key in seen:
            return 0.0
        seen.add(key)
        return obj.untyped_storage().nbytes() / 2**20
    if isinstance(obj, dict):
        return sum(tensor_mib(v, seen) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_mib(v, seen) for v in obj)
    cache = getattr(obj, "_cache", None)
    return tensor_mib(dict(cache), seen) if cache is not None else 0.0


def run_plugin(propagator, frames) -> float:
    from napari_instseg.core.prompting.base import Prompt
    from napari_instseg.core.video.propagate import ObjectPrompt
    from napari_instseg.core.video.tracking import propagate_tracks
    from napari_instseg.core.video.tracks import TrackStack

    start = time.perf_counter()
    stack = TrackStack(np.zeros(frames.shape[:3], np.uint32))
    ids = [stack.new_track() for _ in POINTS_XY]
    propagator.start(frames)
    prompts = [ObjectPrompt(i, 0, Prompt.make(points_yx=xy[:, ::-1])) for i, xy in zip(ids, POINTS_XY, strict=True)]
    for _ in propagate_tracks(stack, propagator, prompts, direction="forward"):
        pass
    STATE["state"] = propagator.state
    return time.perf_counter() - start


def run_bare(predictor, frames) -> float:
    import torch

    from napari_instseg.core.video.frames import LazyFrames
    from napari_instseg.core.video.propagate import new_inference_state

    start = time.perf_counter()
    lazy = LazyFrames(frames, predictor.image_size)
    state = new_inference_state(predictor, lazy, torch.device("cpu"), offload_state=True)
    state["images"] = torch.stack([lazy.tensor_of(lazy.rgb_uint8(t)) for t in range(len(lazy))])  # sam2's preload
    for obj_id, xy in enumerate(POINTS_XY, start=1):
        predictor.add_new_points_or_box(state, 0, obj_id, points=xy, labels=np.ones(1, np.int32))
    for _ in predictor.propagate_in_video(state):
        pass
    STATE["state"] = state
    return time.perf_counter() - start


def per_frame(args: argparse.Namespace, checkpoint: Path) -> dict[str, float]:
    from napari_instseg.core.video.propagate import VideoPropagator

    propagator = VideoPropagator("tiny", checkpoint, device="cpu", image_size=args.image_size)
    frames = _frames(args.frames)
    run_plugin(propagator, frames[:3])  # warm up both paths
    run_bare(propagator.predictor, frames[:3])
    plugin, bare = [], []
    for _ in range(args.repeats):  # interleaved, so load changes hit both alike
        bare.append(run_bare(propagator.predictor, frames) / args.frames)
        plugin.append(run_plugin(propagator, frames) / args.frames)
    p, b = statistics.median(plugin), statistics.median(bare)
    return {"plugin_s_per_frame": p, "bare_s_per_frame": b, "ratio": p / b}


def memory_child(mode: str, n: int, checkpoint: str, image_size: int) -> None:
    """Runs in a fresh process: print peak RSS growth (MiB) over the state before propagating."""
    import torch

    torch.set_num_threads(1)
    from napari_instseg.core.video.propagate import VideoPropagator

    propagator = VideoPropagator("tiny", checkpoint, device="cpu", image_size=image_size)
    frames = _frames(3)
    run_plugin(propagator, frames)  # model built and warmed up in both modes
    frames = _frames(n)
    before = _reset_peak_rss()
    seconds = run_plugin(propagator, frames) if mode == "plugin" else run_bare(propagator.predictor, frames)
    peak = _peak_rss()
    held = tensor_mib(STATE["state"])
    print(json.dumps({"peak_growth_mib": peak - before, "seconds": seconds, "state_mib": held}))


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return float(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak_rss() -> float:
    """Reset the kernel's peak RSS (Linux: clear_refs 5) and return the current RSS in MiB;
    elsewhere return the peak so far (then growth is only seen above it)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _status_mib("VmRSS")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _peak_rss() -> float:
    try:
        return _status_mib("VmHWM")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory(args: argparse.Namespace, checkpoint: Path) -> dict[str, float]:
    out = {}
    for mode in ("plugin", "bare"):
        for n in args.memory_frames:
            cmd = [sys.executable, __file__, "--child", mode, str(n), str(checkpoint), str(args.memory_image_size)]
            done = subprocess.run(cmd, capture_output=True, text=True, check=True)
            result = json.loads(done.stdout.strip().splitlines()[-1])
            out[f"{mode}_{n}_mib"] = result["peak_growth_mib"]
            out[f"{mode}_{n}_s"] = result["seconds"]
            out[f"{mode}_{n}_state"] = result["state_mib"]
            print(
                f"  {mode:6s} {n:4d} frames: peak RSS +{result['peak_growth_mib']:.1f} MiB, tensors held by the "
                f"tracking state {result['state_mib']:.1f} MiB, {result['seconds']:.0f} s",
                flush=True,
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20, help="frames for the per-frame timing")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=256, help="model input size for the timing")
    parser.add_argument("--memory-frames", type=int, nargs="+", default=[50, 500])
    parser.add_argument("--memory-image-size", type=int, default=128)
    parser.add_argument("--skip-timing", action="store_true", help="only the memory measurement")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, n, checkpoint, size = args.child
        memory_child(mode, int(n), checkpoint, int(size))
        return
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = _checkpoint(Path(tmp))
        if not args.skip_timing:
            timing = per_frame(args, checkpoint)
            print(
                f"per frame ({args.frames} frames, 2 objects, model input {args.image_size} px): plugin "
                f"{timing['plugin_s_per_frame'] * 1000:.0f} ms, bare propagate_in_video "
                f"{timing['bare_s_per_frame'] * 1000:.0f} ms -> ratio {timing['ratio']:.3f}x (target <= 1.15x)",
                flush=True,
            )
        print(f"peak memory growth while propagating (model input {args.memory_image_size} px, fresh process each):")
        mem = memory(args, checkpoint)
    small, large = args.memory_frames[0], args.memory_frames[-1]
    for mode in ("plugin", "bare"):
        a, b = mem[f"{mode}_{small}_mib"], mem[f"{mode}_{large}_mib"]
        sa, sb = mem[f"{mode}_{small}_state"], mem[f"{mode}_{large}_state"]
        print(
            f"{mode}: {large} vs {small} frames: peak RSS +{b:.1f} vs +{a:.1f} MiB; state "
            f"{sb:.1f} vs {sa:.1f} MiB (ratio {sb / max(sa, 1e-9):.2f}x)"
        )


if __name__ == "__main__":
    main()
