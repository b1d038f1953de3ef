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

Medians, printed with ratios against the 1k store measured in the same run; the
measurements are interleaved across the stores (round by round), so the load of a shared
machine falls on every size alike. Targets: commit
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
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from napari_instseg.core.store import AnnotationStore

CELL = 32  # grid pitch; each cell holds a 20 x 20 square at (2, 2)
TILE = 1024  # bulk tile: 32 x 32 cells
BAND = 2048  # empty band at the bottom for the batch writer (4 rows of 512-px tiles)
HALO = 64
REPEATS = 21


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


def _window(store: AnnotationStore) -> tuple[int, int, int, int]:
    """The same 1024 x 1024 window (an 896-px tile + 64-px halo) at every size, in the middle."""
    height, width = store.shape_yx
    cy, cx = ((height - BAND) // 2) // TILE * TILE, (width // 2) // TILE * TILE
    return (cy, cx, cy + TILE, cx + TILE)


def measure_all(stores: dict[int, AnnotationStore]) -> dict[int, dict[str, float]]:
    """Every measurement, interleaved across the stores round by round, so that the load of
    a shared machine falls on all sizes alike."""
    samples: dict[int, dict[str, list[float]]] = {n: {} for n in stores}

    def timed(n: int, key: str, func: Any) -> Any:
        before, start = _wchar(), time.perf_counter()
        out = func()
        samples[n].setdefault(key, []).append(time.perf_counter() - start)
        samples[n].setdefault(f"{key}_bytes", []).append(_wchar() - before)
        return out

    sessions = {}
    for _ in range(9):
        for n, store in stores.items():
            sessions[n] = timed(n, "window_open_s", lambda store=store: store.window_session(_window(store)))
    for k in range(REPEATS):  # an 8 x 8 mask in the gap right of cell (k, k)
        for n, session in sessions.items():
            mask = np.zeros(session.shape_yx, bool)
            mask[k * CELL + 4 : k * CELL + 12, k * CELL + 23 : k * CELL + 31] = True
            timed(n, "commit_s", lambda session=session, mask=mask: session.commit(mask))
    for _ in range(REPEATS):
        for n, session in sessions.items():
            timed(n, "undo_s", session.undo)
    for k in range(8):
        for n, store in stores.items():
            timed(n, "batch_tile_s", lambda store=store, k=k: batch_tile(store, k))
    out = {}
    for n in stores:
        med = {key: statistics.median(values) for key, values in samples[n].items()}
        out[n] = {
            "window_open_s": med["window_open_s"],
            "commit_s": med["commit_s"],
            "undo_s": med["undo_s"],
            "bytes_per_commit": med["commit_s_bytes"],
            "window_rows": float(len(sessions[n].table)),
            "batch_tiles_per_s": 1.0 / med["batch_tile_s"],
        }
    return out


def batch_tile(store: AnnotationStore, k: int, tile: int = 512) -> None:
    """One tile of the batch writer (as core.batch._commit_tile does it: a window session and
    one ``commit_many`` of 16 masks); tile ``k`` of 4 rows x 2 columns in the empty band."""
    from napari_instseg.core.batch import BatchConfig, _commit_tile
    from napari_instseg.core.edits import CroppedMask
    from napari_instseg.core.slide import window_at

    height, width = store.shape_yx
    row, col = divmod(k, 2)
    window = window_at((height, width), (height - BAND + row * tile + tile // 2, col * tile + tile // 2), tile, 32)
    masks = []
    for j in range(16):
        full = np.zeros(window.shape_yx, bool)
        r, c = divmod(j, 4)
        full[40 + r * 110 : 60 + r * 110, 40 + c * 110 : 60 + c * 110] = True
        masks.append((CroppedMask.from_full(full), 0.9, "classic"))
    committed, _ = _commit_tile(store, window, masks, BatchConfig())
    if committed != 16:
        raise RuntimeError(f"batch tile {k}: {committed} of 16 masks committed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000,1000000")
    args = parser.parse_args()
    sizes = [int(v) for v in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        stores, built = {}, {}
        try:
            for n in sizes:
                store, added, build_s = build(Path(tmp) / f"s{n}.zarr", n)
                stores[n], built[n] = store, (added, build_s)
                print(f"built {added:,} instances in {build_s:.1f} s (bulk path)", flush=True)
            results = measure_all(stores)
        finally:
            for store in stores.values():
                store.close()
    for n in sizes:
        r = results[n]
        r["instances"] = float(built[n][0])
        print(
            f"{built[n][0]:>9,} instances: window open {r['window_open_s'] * 1e3:7.1f} ms, "
            f"commit {r['commit_s'] * 1e3:6.1f} ms, undo {r['undo_s'] * 1e3:6.1f} ms, "
            f"{r['bytes_per_commit'] / 1e3:7.1f} kB/commit, batch {r['batch_tiles_per_s']:5.2f} tiles/s, "
            f"{r['window_rows']:.0f} rows in the window"
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
