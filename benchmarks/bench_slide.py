"""Whole-slide benchmarks.

1. Open a synthetic 100,000 x 100,000 OME-Zarr pyramid and show the first working window
   (read the tile + halo of the image, open a window session on a slide-sized label store),
   in a fresh process: time and peak RSS (targets: <= 1 s, <= 1.5 GB).
2. Bytes written on save versus the edited area (target: proportional; printed per pixel).
3. Batch pre-labelling with 2 dask workers versus 1 (LocalCluster, one thread each) on this
   2-core machine (target >= 1.7x).

Run: ``.venv/bin/python benchmarks/bench_slide.py [--skip-batch]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SIDE = 100_000


def write_big_ome_zarr(path: Path) -> None:
    """A (y, x, c) OME-Zarr pyramid of a 100k x 100k slide; only a few chunks hold data."""
    import zarr

    root = zarr.open_group(str(path), mode="w")
    datasets, size, level = [], SIDE, 0
    while size >= 512:
        array = root.create_array(
            str(level), shape=(size, size, 3), dtype=np.uint8, chunks=(1024, 1024, 3), fill_value=235
        )
        array[:1024, :1024] = 120
        datasets.append(
            {
                "path": str(level),
                "coordinateTransformations": [{"type": "scale", "scale": [0.25 * 2**level, 0.25 * 2**level, 1.0]}],
            }
        )
        size //= 2
        level += 1
    root.attrs["multiscales"] = [
        {
            "version": "0.4",
            "datasets": datasets,
            "axes": [
                {"name": "y", "type": "space", "unit": "micrometer"},
                {"name": "x", "type": "space", "unit": "micrometer"},
                {"name": "c", "type": "channel"},
            ],
        }
    ]


FIRST_WINDOW = """
import json, resource, sys, time
start = time.perf_counter()
from napari_instseg.core.slide import open_slide, window_at
from napari_instseg.core.store import AnnotationStore, is_store
slide = open_slide(sys.argv[1])
store = AnnotationStore.open(sys.argv[2]) if is_store(sys.argv[2]) else AnnotationStore.create(sys.argv[2], slide.shape_yx)
window = window_at(slide.shape_yx, (0, 0), 1024, 64)
image = slide.read_region(window.region_yx)
session = store.window_session(window.region_yx)
levels = slide.napari_levels()   # what napari gets: lazy dask levels
elapsed = time.perf_counter() - start
print(json.dumps({"seconds": elapsed, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "levels": len(levels), "window": list(image.shape)}))
"""


def first_window(slide: Path, store: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", FIRST_WINDOW, str(slide), str(store)], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def bytes_per_edit(store_path: Path) -> list[tuple[int, int]]:
    """(edited pixels, bytes written to disk) for square edits of growing size."""
    from napari_instseg.core.store import AnnotationStore

    rows = []
    with AnnotationStore.open(store_path) as store:
        for k, side in enumerate((32, 128, 512, 2048)):
            origin = 10_000 + 5_000 * k
            session = store.window_session((origin, origin, origin + 2048, origin + 2048))
            before = _sizes(store_path)
            mask = np.zeros((2048, 2048), bool)
            mask[:side, :side] = True
            session.commit(mask)
            after = _sizes(store_path)
            written = sum(size for name, size in after.items() if before.get(name) != size or name not in before)
            rows.append((side * side, written))
    return rows


def _sizes(path: Path) -> dict[str, int]:
    return {
        str(p.relative_to(path)): p.stat().st_size
        for p in path.rglob("*")
        if p.is_file() and "table.json" not in p.name and "state.json" not in p.name
    }


def batch_speedup(tmp: Path) -> tuple[float, float]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "core"))
    from distributed import Client, LocalCluster
    from test_batch import make_slide

    from napari_instseg.core.batch import BatchConfig, prelabel_slide

    slide = make_slide(tmp / "batch.zarr", tiles=4, tile_px=256)
    config = BatchConfig(backend="classic", tile_px=256, halo_px=32)
    times = {}
    for workers in (1, 2):
        with (
            LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
            Client(cluster) as client,
        ):
            client.run(lambda: __import__("napari_instseg.core.batch"))  # warm the workers' imports
            start = time.perf_counter()
            prelabel_slide(slide, tmp / f"batch-{workers}.zarr", detect=True, config=config, scheduler=client)
            times[workers] = time.perf_counter() - start
    return times[1], times[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-batch", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        write_big_ome_zarr(tmp / "big.ome.zarr")
        result = first_window(tmp / "big.ome.zarr", tmp / "big-labels.zarr")
        print(
            f"100k x 100k OME-Zarr ({result['levels']} levels), first window {result['window']}: "
            f"{result['seconds']:.2f} s (target <= 1 s), peak RSS {result['peak_rss_mb']:.0f} MB (target <= 1536 MB)"
        )
        rows = bytes_per_edit(tmp / "big-labels.zarr")
        base = rows[0][1] / rows[0][0]
        for pixels, written in rows:
            print(
                f"edit of {pixels:>9,} px: {written:>10,} bytes written, {written / pixels:6.3f} B/px "
                f"({(written / pixels) / base:5.2f}x the smallest edit's rate)"
            )
        if not args.skip_batch:
            one, two = batch_speedup(tmp)
            print(
                f"batch pre-labelling: 1 worker {one:.1f} s, 2 workers {two:.1f} s -> {one / two:.2f}x (target >= 1.7x)"
            )


if __name__ == "__main__":
    main()
