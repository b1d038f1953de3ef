"""Annotation store at scale (issue 13): does an action cost the same at 10^3 and 10^6
instances?

For stores holding about 1k, 10k, 100k and 1M instances (20 x 20 px cells on a 32-px grid,
so the density - and a working window's content - is the same at every size; the store is
built through the bulk path, one transaction per 1024-px tile, not a million commits):

- window open: ``window_session`` of a 1024 x 1024 window (tile + halo) in the populated middle;
- commit and undo through that window session (an 8 x 8 mask in a gap between cells);
- bytes written per commit (``wchar`` of /proc/self/io: SQLite, WAL and chunk files);
- batch writer throughput: tiles per second of the prelabel-slide writer (window session +
  ``commit_many`` of 16 masks per 512-px tile) in an empty band of the slide.

Medians, printed with ratios against the 1k store measured in the same run. Targets: commit
at 1M within 2x of 1k; window open at 1M within 2x of 1k; bytes per commit independent of
the instance count.

Run: ``.venv/bin/python benchmarks/bench_store_scale.py [--sizes 1000,10000,100000,1000000]``
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from napari_instseg.core.store import AnnotationStore

CELL = 32  # grid pitch; each cell holds a 20 x 20 square at (2, 2)
TILE = 1024  # bulk tile: 32 x 32 cells
BAND = 1024  # empty band at the bottom for the batch writer
HALO = 64
REPEATS = 15


def _pattern() -> np.ndarray:
    """Cell number (1..1024) of every pixel of one bulk tile, 0 between cells."""
    tile = np.zeros((TILE, TILE), np.uint32)
    n = TILE // CELL
    for row in range(n):
        for col in range(n):
            y, x = row * CELL + 2, col * CELL + 2
            tile[y : y + 20, x : x + 20] = row * n + col + 1
    return tile


def build(path: Path, n_instances: int) -> tuple[AnnotationStore, int, float]:
    """A store with about ``n_instances`` cells, built tile by tile (bulk path)."""
    per_tile = (TILE // CELL) ** 2
    tiles = math.ceil(n_instances / per_tile)
    side = math.ceil(math.sqrt(tiles))
    rows = math.ceil(tiles / side)
    store = AnnotationStore.create(path, (rows * TILE + BAND, side * TILE))
    pattern = _pattern()
    start = time.perf_counter()
    next_id, added = 1, 0
    for k in range(tiles):
        ty, tx = divmod(k, side)
        labels = np.where(pattern > 0, pattern + (next_id - 1), 0).astype(np.uint32)
        added += store.bulk_write((ty * TILE, tx * TILE), labels)
        next_id += per_tile
    return store, added, time.perf_counter() - start


def _wchar() -> int:
    with open("/proc/self/io") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith("wchar"))


def measure(store: AnnotationStore) -> dict[str, float]:
    height, width = store.shape_yx
    populated = height - BAND
    # the same 1024 x 1024 window (an 896-px tile + 64-px halo) at every size, in the middle
    cy, cx = (populated // 2) // TILE * TILE, (width // 2) // TILE * TILE
    region = (cy, cx, cy + TILE, cx + TILE)
    opens = []
    for _ in range(9):
        start = time.perf_counter()
        session = store.window_session(region)
        opens.append(time.perf_counter() - start)
    commits, undos, written = [], [], []
    y0, x0 = region[0], region[1]
    for k in range(REPEATS):  # an 8 x 8 mask in the gap right of cell (k, k)
        gy, gx = (cy - y0) + k * CELL + 4, (cx - x0) + k * CELL + 23
        mask = np.zeros(session.shape_yx, bool)
        mask[gy : gy + 8, gx : gx + 8] = True
        before, start = _wchar(), time.perf_counter()
        session.commit(mask)
        commits.append(time.perf_counter() - start)
        written.append(_wchar() - before)
    for _ in range(REPEATS):
        start = time.perf_counter()
        session.undo()
        undos.append(time.perf_counter() - start)
    return {
        "window_open_s": statistics.median(opens),
        "commit_s": statistics.median(commits),
        "undo_s": statistics.median(undos),
        "bytes_per_commit": statistics.median(written),
        "window_rows": float(len(session.table)),
        "batch_tiles_per_s": batch_throughput(store),
    }


def batch_throughput(store: AnnotationStore, n_tiles: int = 4, tile: int = 512) -> float:
    """Tiles per second of the batch writer (as core.batch._commit_tile does it): a window
    session per tile and one ``commit_many`` of 16 masks."""
    from napari_instseg.core.batch import BatchConfig, _commit_tile
    from napari_instseg.core.edits import CroppedMask
    from napari_instseg.core.slide import window_at

    height, width = store.shape_yx
    y = height - BAND + 128
    elapsed = 0.0
    for k in range(n_tiles):
        window = window_at((height, width), (y + tile // 2, k * tile + tile // 2), tile, 32)
        masks = []
        for j in range(16):
            full = np.zeros(window.shape_yx, bool)
            r, c = divmod(j, 4)
            full[40 + r * 110 : 60 + r * 110, 40 + c * 110 : 60 + c * 110] = True
            masks.append((CroppedMask.from_full(full), 0.9, "classic"))
        start = time.perf_counter()
        _commit_tile(store, window, masks, BatchConfig())
        elapsed += time.perf_counter() - start
    return n_tiles / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000,1000000")
    args = parser.parse_args()
    sizes = [int(v) for v in args.sizes.split(",")]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            store, added, build_s = build(Path(tmp) / f"s{n}.zarr", n)
            try:
                results[n] = {"instances": float(added), "build_s": build_s, **measure(store)}
            finally:
                store.close()
            r = results[n]
            print(
                f"{added:>9,} instances (built in {build_s:6.1f} s): window open {r['window_open_s'] * 1e3:7.1f} ms, "
                f"commit {r['commit_s'] * 1e3:6.1f} ms, undo {r['undo_s'] * 1e3:6.1f} ms, "
                f"{r['bytes_per_commit'] / 1e3:7.1f} kB/commit, batch {r['batch_tiles_per_s']:5.2f} tiles/s, "
                f"{r['window_rows']:.0f} rows in the window",
                flush=True,
            )
    base = results[sizes[0]]
    print(f"\nratios against {int(base['instances']):,} instances (same run):")
    print(f"{'instances':>10} {'window open':>12} {'commit':>8} {'undo':>8} {'bytes/commit':>13} {'batch tiles/s':>14}")
    for n in sizes:
        r = results[n]
        print(
            f"{int(r['instances']):>10,} {r['window_open_s'] / base['window_open_s']:>11.2f}x "
            f"{r['commit_s'] / base['commit_s']:>7.2f}x {r['undo_s'] / base['undo_s']:>7.2f}x "
            f"{r['bytes_per_commit'] / base['bytes_per_commit']:>12.2f}x "
            f"{r['batch_tiles_per_s'] / base['batch_tiles_per_s']:>13.2f}x"
        )


if __name__ == "__main__":
    main()
