"""Automatic pre-labelling overheads, as ratios against baselines measured in the same run.

1. One 1024 x 1024 tile: the plugin's SAM 2 automatic pre-labelling (``Sam2AutoSegmenter``:
   encode, sam2's ``SAM2AutomaticMaskGenerator`` on that embedding, area filter, and
   ``commit_auto`` into a session: the commit rules, one undo step) versus a bare
   ``SAM2AutomaticMaskGenerator.generate`` on the same image and settings. Target <= 1.15x.
2. A tiled image (4096 x 4096 by default, 1024 px tiles, 64 px halo): ``auto_objects`` (every
   tile's window, then the stitching) plus ``commit_auto``, versus the sum of bare
   ``generate`` runs on the same windows. Target <= 1.2x (stitching costs little).
3. 16 tiles on dask's threaded scheduler with 2 workers versus 1 (classic automatic mode by
   default; ``--workers-backend sam2`` for SAM 2 with one model per worker).

A randomly initialised SAM 2.1 hiera-tiny checkpoint is built for the run (timings are real;
masks are meaningless, so the predicted-IoU and stability filters are opened to let masks
through). Run: ``.venv/bin/python benchmarks/bench_auto.py [--points-per-side 8] [--size 4096]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np


def _image(size: int) -> np.ndarray:
    """A real-tissue image of ``size`` x ``size`` (scikit-image's IHC tile, repeated)."""
    from skimage import data

    ihc = data.immunohistochemistry()
    reps = -(-size // ihc.shape[0])
    return np.ascontiguousarray(np.tile(ihc, (reps, reps, 1))[:size, :size])


def _bare(model, settings, image: np.ndarray) -> float:
    """Seconds of a bare ``SAM2AutomaticMaskGenerator.generate`` (fresh generator)."""
    import torch
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        generator = SAM2AutomaticMaskGenerator(model, output_mode="binary_mask", **settings.generator_kwargs())
    start = time.perf_counter()
    with torch.inference_mode():
        generator.generate(image)
    return time.perf_counter() - start


def _plugin_one(prompter, settings, image: np.ndarray) -> tuple[float, int]:
    from napari_instseg.core.prompting.auto import Sam2AutoSegmenter, commit_auto
    from napari_instseg.core.session import AnnotationSession

    session = AnnotationSession(np.zeros(image.shape[:2], np.uint32))
    start = time.perf_counter()
    objects = Sam2AutoSegmenter(prompter, settings)(image, None)
    summary = commit_auto(session, objects, "sam2-auto")
    return time.perf_counter() - start, summary.n_committed


def _tiled(prompter, model, settings, image: np.ndarray, tile: int, halo: int) -> tuple[float, float, int]:
    from napari_instseg.core.prompting.auto import Sam2AutoSegmenter, auto_objects, commit_auto
    from napari_instseg.core.session import AnnotationSession
    from napari_instseg.core.stitch import tile_grid

    bare = sum(_bare(model, settings, image[t.slices]) for t in tile_grid(image.shape[:2], tile, halo))
    session = AnnotationSession(np.zeros(image.shape[:2], np.uint32))
    start = time.perf_counter()
    objects = auto_objects(image, Sam2AutoSegmenter(prompter, settings), tile_px=tile, halo_px=halo)
    commit_auto(session, objects, "sam2-auto")
    return time.perf_counter() - start, bare, len(objects)


def _workers(image: np.ndarray, tile: int, backend: str, factory) -> dict[int, float]:
    from napari_instseg.core.prompting.auto import auto_objects

    out = {}
    for workers in (1, 2):
        start = time.perf_counter()
        auto_objects(image, factory, tile_px=tile, halo_px=32, workers=workers)
        out[workers] = time.perf_counter() - start
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points-per-side", type=int, default=8)
    parser.add_argument("--size", type=int, default=4096, help="side of the tiled image (default 4096)")
    parser.add_argument("--tile", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=2, help="runs of the 1024 px comparison (median)")
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
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(tmp) / "sam2.1_hiera_tiny.pt"
        torch.save({"model": build_sam2("configs/sam2.1/sam2.1_hiera_t.yaml", device="cpu").state_dict()}, checkpoint)
        prompter = Sam2Prompter("tiny", checkpoint, device="cpu")
        model = prompter.predictor.model
        print(f"torch threads: {torch.get_num_threads()}; points per side: {args.points_per_side}")
        if "one" not in args.skip:
            one = _image(1024)
            _bare(model, settings, one)  # warm-up
            plugin, bare = [], []
            for _ in range(args.repeats):
                bare.append(_bare(model, settings, one))
                seconds, n = _plugin_one(prompter, settings, one)
                plugin.append(seconds)
            p, b = float(np.median(plugin)), float(np.median(bare))
            print(f"1. 1024 px tile: plugin {p:.2f} s ({n} committed) vs bare generate {b:.2f} s: {p / b:.3f}x")
        if "tiled" not in args.skip:
            big = _image(args.size)
            seconds, bare_sum, n = _tiled(prompter, model, settings, big, args.tile, 64)
            print(
                f"2. {args.size} px tiled ({args.tile} px + 64 px halo): plugin {seconds:.1f} s ({n} objects) vs "
                f"sum of bare runs on the windows {bare_sum:.1f} s: {seconds / bare_sum:.3f}x"
            )
        if "workers" not in args.skip:
            side = 4 * args.workers_tile
            image = _image(side)
            if args.workers_backend == "sam2":

                def factory():
                    return Sam2AutoSegmenter(Sam2Prompter("tiny", checkpoint, device="cpu"), settings)

            else:
                factory = ClassicAutoSegmenter
            times = _workers(image, args.workers_tile, args.workers_backend, factory)
            print(
                f"3. 16 tiles of {args.workers_tile} px ({args.workers_backend}): 1 worker {times[1]:.1f} s, "
                f"2 workers {times[2]:.1f} s: speed-up {times[1] / times[2]:.2f}x"
            )


if __name__ == "__main__":
    main()
