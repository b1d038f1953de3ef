"""Automatic pre-labelling overheads, as ratios against baselines measured in the same run.

1. One 1024 x 1024 tile: the plugin's SAM 2 automatic pre-labelling (``Sam2AutoSegmenter``:
   encode, sam2's ``SAM2AutomaticMaskGenerator`` on that embedding, masks to crops, and
   ``commit_auto`` into a session: the commit rules, one undo step) versus a bare
   ``SAM2AutomaticMaskGenerator.generate`` on the same image and settings. Target <= 1.15x.
2. A tiled image (4096 x 4096 by default, 1024 px tiles, 64 px halo): the plugin's tiles
   (``iter_auto_tiles``), ``stitch`` and ``commit_auto``, versus the sum of bare ``generate``
   runs on the same windows. Target <= 1.2x (stitching costs little).
3. 16 tiles on dask's threaded scheduler with 2 workers versus 1 (classic automatic mode by
   default; ``--workers-backend sam2`` for SAM 2 with one model per worker).

The machine this runs on may be shared, so every comparison is interleaved in one process:
each plugin run sits next to its bare run (alternating which goes first), the one-tile
comparison is repeated (``--repeats``) and its median ratio reported, and in the tiled run each
window's bare ``generate`` runs just before or after the plugin's own tile (its time is taken
out of the plugin's clock). Wall-clock and process CPU-time ratios are both printed (CPU time
hardly moves with other jobs' load); the load average at the start and the end.

A randomly initialised SAM 2.1 hiera-tiny checkpoint is built for the run (timings are real;
masks are meaningless, so the predicted-IoU and stability filters are opened to let masks
through). Run: ``.venv/bin/python benchmarks/bench_auto.py [--points-per-side 8] [--size 4096]``
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np


def _image(size: int) -> np.ndarray:
    """A real-tissue image of ``size`` x ``size`` (scikit-image's IHC tile, repeated)."""
    from skimage import data

    ihc = data.immunohistochemistry()
    reps = -(-size // ihc.shape[0])
    return np.ascontiguousarray(np.tile(ihc, (reps, reps, 1))[:size, :size])


def _clock() -> np.ndarray:
    """(wall, process CPU) seconds: CPU time hardly moves with other jobs' load."""
    return np.array([time.perf_counter(), time.process_time()])


def _load() -> str:
    return "load average " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def _bare(model: Any, settings: Any, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(seconds of a bare ``SAM2AutomaticMaskGenerator.generate``, seconds of the whole call
    with building the generator), each as (wall, CPU)."""
    import torch
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

    called = _clock()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        generator = SAM2AutomaticMaskGenerator(model, output_mode="binary_mask", **settings.generator_kwargs())
    start = _clock()
    with torch.inference_mode():
        generator.generate(image)
    end = _clock()
    return end - start, end - called


def _plugin_one(prompter: Any, settings: Any, image: np.ndarray) -> tuple[np.ndarray, int]:
    from napari_instseg.core.prompting.auto import Sam2AutoSegmenter, commit_auto
    from napari_instseg.core.session import AnnotationSession

    session = AnnotationSession(np.zeros(image.shape[:2], np.uint32))
    start = _clock()
    objects = Sam2AutoSegmenter(prompter, settings)(image, None)
    summary = commit_auto(session, objects, "sam2-auto")
    return _clock() - start, summary.n_committed


def _one_tile(prompter: Any, model: Any, settings: Any, repeats: int) -> None:
    image = _image(1024)
    _bare(model, settings, image)  # warm-up of both paths
    _plugin_one(prompter, settings, image)
    plugin, bare, ratios = [], [], []
    for k in range(repeats):
        if k % 2:
            p, n = _plugin_one(prompter, settings, image)
            b = _bare(model, settings, image)[0]
        else:
            b = _bare(model, settings, image)[0]
            p, n = _plugin_one(prompter, settings, image)
        plugin.append(p)
        bare.append(b)
        ratios.append(p / b)
    p_med, b_med, r_med = np.median(plugin, axis=0), np.median(bare, axis=0), np.median(ratios, axis=0)
    print(
        f"1. 1024 px tile ({repeats} interleaved pairs): plugin median {p_med[0]:.2f} s ({n} committed) vs bare "
        f"generate median {b_med[0]:.2f} s: median of pair ratios {r_med[0]:.3f}x wall, {r_med[1]:.3f}x CPU "
        f"(ratio of medians {p_med[0] / b_med[0]:.3f}x wall; wall pairs {', '.join(f'{r[0]:.2f}' for r in ratios)})"
    )


class _Interleaved:
    """The plugin's segmenter with a bare ``generate`` on the same window beside each call
    (before or after, alternating); the bare calls' time is recorded to leave it out."""

    def __init__(self, inner: Any, model: Any, settings: Any) -> None:
        self.inner, self.model, self.settings = inner, model, settings
        self.source = inner.source
        self.bare_s: list[np.ndarray] = []
        self.plugin_s: list[np.ndarray] = []
        self.excluded_s = np.zeros(2)

    def _bare(self, image: np.ndarray) -> None:
        from napari_instseg.core.prompting.base import as_rgb_uint8

        generate_s, call_s = _bare(self.model, self.settings, as_rgb_uint8(image))
        self.bare_s.append(generate_s)
        self.excluded_s += call_s

    def __call__(self, image: np.ndarray, key: Any = None) -> Any:
        first = len(self.bare_s) % 2 == 0
        if first:
            self._bare(image)
        start = _clock()
        objects = self.inner(image, key)
        self.plugin_s.append(_clock() - start)
        if not first:
            self._bare(image)
        return objects


def _tiled(prompter: Any, model: Any, settings: Any, size: int, tile: int, halo: int) -> None:
    from napari_instseg.core.prompting.auto import Sam2AutoSegmenter, commit_auto, iter_auto_tiles
    from napari_instseg.core.session import AnnotationSession
    from napari_instseg.core.stitch import stitch

    image = _image(size)
    segmenter = _Interleaved(Sam2AutoSegmenter(prompter, settings), model, settings)
    start = _clock()
    tiled = [(r.tile, r.objects) for r in iter_auto_tiles(image, segmenter, tile_px=tile, halo_px=halo)]
    tiles_s = _clock() - start - segmenter.excluded_s
    start = _clock()
    objects = stitch(tiled)
    stitch_s = _clock() - start
    session = AnnotationSession(np.zeros(image.shape[:2], np.uint32))
    start = _clock()
    commit_auto(session, objects, "sam2-auto")
    commit_s = _clock() - start
    plugin, bare = tiles_s + stitch_s + commit_s, np.sum(segmenter.bare_s, axis=0)
    per_window = np.median(np.array(segmenter.plugin_s) / np.array(segmenter.bare_s), axis=0)
    print(
        f"2. {size} px tiled ({len(tiled)} windows of {tile} px + {halo} px halo, each beside its bare run): "
        f"plugin {plugin[0]:.1f} s (tiles {tiles_s[0]:.1f} s, stitch {stitch_s[0]:.2f} s, commit {commit_s[0]:.2f} s; "
        f"{len(objects)} objects) vs sum of bare runs on the windows {bare[0]:.1f} s: {plugin[0] / bare[0]:.3f}x "
        f"wall, {plugin[1] / bare[1]:.3f}x CPU (median per-window ratio {per_window[0]:.3f}x wall, "
        f"{per_window[1]:.3f}x CPU)"
    )


def _workers(image: np.ndarray, tile: int, factory: Any, repeats: int) -> dict[int, float]:
    from napari_instseg.core.prompting.auto import auto_objects

    times: dict[int, list[float]] = {1: [], 2: []}
    order = [1, 2, 2, 1] * max(repeats // 2, 1)
    for workers in order:
        start = time.perf_counter()
        auto_objects(image, factory, tile_px=tile, halo_px=32, workers=workers)
        times[workers].append(time.perf_counter() - start)
    return {w: float(np.median(t)) for w, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--points-per-side", type=int, default=8)
    parser.add_argument("--size", type=int, default=4096, help="side of the tiled image (default 4096)")
    parser.add_argument("--tile", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5, help="interleaved pairs of the 1024 px comparison")
    parser.add_argument("--workers-backend", choices=("classic", "sam2"), default="classic")
    parser.add_argument("--workers-tile", type=int, default=512, help="tile size of the 16-tile workers run")
    parser.add_argument("--skip", nargs="*", default=(), choices=("one", "tiled", "workers"))
    args = parser.parse_args()

    import torch
    from sam2.build_sam import build_sam2

    from napari_instseg.core.prompting.auto import AutoSettings, ClassicAutoSegmenter, Sam2AutoSegmenter
    from napari_instseg.core.prompting.sam2 import Sam2Prompter

    settings = AutoSettings(
        points_per_side=args.points_per_side,
        pred_iou_thresh=0.0,
        stability_score_thresh=0.0,
        min_area_px=0,
        max_area_fraction=1.0,
    )
    print(f"start: {_load()}")
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(tmp) / "sam2.1_hiera_tiny.pt"
        torch.save({"model": build_sam2("configs/sam2.1/sam2.1_hiera_t.yaml", device="cpu").state_dict()}, checkpoint)
        prompter = Sam2Prompter("tiny", checkpoint, device="cpu")
        model = prompter.predictor.model
        print(f"torch threads: {torch.get_num_threads()}; points per side: {args.points_per_side}")
        if "one" not in args.skip:
            _one_tile(prompter, model, settings, args.repeats)
            print(f"   ({_load()})")
        if "tiled" not in args.skip:
            _tiled(prompter, model, settings, args.size, args.tile, 64)
            print(f"   ({_load()})")
        if "workers" not in args.skip:
            image = _image(4 * args.workers_tile)
            if args.workers_backend == "sam2":

                def factory() -> Any:
                    return Sam2AutoSegmenter(Sam2Prompter("tiny", checkpoint, device="cpu"), settings)

            else:
                factory = ClassicAutoSegmenter
            times = _workers(image, args.workers_tile, factory, 2)
            print(
                f"3. 16 tiles of {args.workers_tile} px ({args.workers_backend}; medians of interleaved runs): "
                f"1 worker {times[1]:.1f} s, 2 workers {times[2]:.1f} s: speed-up {times[1] / times[2]:.2f}x"
            )
    print(f"end: {_load()}")


if __name__ == "__main__":
    main()
