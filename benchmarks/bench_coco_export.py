"""COCO export speed on an 8192 x 8192 label image with about 50,000 instances.

Prints the export time as ratios against baselines measured in the same run:
- one ``np.bincount`` pass over the same image (target: export <= 5x), and
- the naive per-instance loop ``pycocotools.mask.encode(labels == id)`` over the full frame,
  timed on a sample of instances and extrapolated (target: export >= 50x faster).

Run: ``.venv/bin/python benchmarks/bench_coco_export.py [--side 8192] [--sample 20]``
"""

from __future__ import annotations

import argparse

import numpy as np
from pycocotools import mask as mask_utils

from _timing import median_time
from napari_instseg.core.coco import AnnotatedImage, export_coco


def dense_nuclei(side_px: int, cell_px: int = 36, seed: int = 0) -> np.ndarray:
    """A tile of nucleus-like ellipses, one per cell of a grid, with shuffled ids."""
    rng = np.random.default_rng(seed)
    n = side_px // cell_px
    yy, xx = np.mgrid[0:cell_px, 0:cell_px]
    shapes = []
    for _ in range(32):
        ry, rx = rng.uniform(8, 17, 2)
        cy, cx = rng.uniform(16, 20, 2)
        shapes.append(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1)
    labels = np.zeros((side_px, side_px), np.uint32)
    ids = rng.permutation(n * n).astype(np.uint32) + 1
    for k, (i, j) in enumerate(np.ndindex(n, n)):
        block = labels[i * cell_px : (i + 1) * cell_px, j * cell_px : (j + 1) * cell_px]
        block[shapes[k % len(shapes)]] = ids[k]
    return labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=8192, help="image side in pixels")
    parser.add_argument("--sample", type=int, default=20, help="instances timed in the naive loop")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    labels = dense_nuclei(args.side)
    ids = np.unique(labels)[1:]
    print(f"label image {labels.shape[1]} x {labels.shape[0]}, {ids.size} instances")

    t_bincount = median_time(lambda: np.bincount(labels.ravel()), args.repeats)
    t_export = median_time(lambda: export_coco([AnnotatedImage(labels, None, "bench.tif")]), args.repeats)
    sample = np.random.default_rng(1).choice(ids, size=min(args.sample, ids.size), replace=False)

    def naive_loop() -> None:
        for instance_id in sample:
            mask_utils.encode(np.asfortranarray(labels == instance_id, dtype=np.uint8))

    t_naive = median_time(naive_loop, 1) / sample.size * ids.size

    print(f"bincount pass:            {t_bincount:8.3f} s")
    print(f"export (RLE, one pass):   {t_export:8.3f} s")
    print(f"naive per-instance loop:  {t_naive:8.1f} s (extrapolated from {sample.size} instances)")
    print(f"export / bincount:        {t_export / t_bincount:8.2f}x   (target <= 5x)")
    print(f"naive loop / export:      {t_naive / t_export:8.0f}x   (target >= 50x)")


if __name__ == "__main__":
    main()
