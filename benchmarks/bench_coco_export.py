"""COCO export speed and memory on dense label images (8192² / ~50k and 16384² / ~200k instances).

What is timed: ``export_coco`` of one uint32 label image with no instance table (RLE), from
the call until its result (the COCO dict with every annotation record) is freed again, as the
median wall time of ``--repeats`` calls; the baseline is one plain ``np.bincount`` pass over
the same label image, timed the same way in the same process (numpy casts the uint32 image to
intp inside bincount, so the baseline allocates twice the image's bytes each call; on a
machine short of free huge pages that makes it noisy, hence the CPU-time ratio beside it).

Prints, for each size, ratios against baselines measured in the same run:
- export / one ``np.bincount`` pass over the same image (target: <= 3x), wall time, CPU time
  (user + system) and user CPU time;
- the naive per-instance loop ``pycocotools.mask.encode(labels == id)`` over the full frame,
  timed on a sample of instances and extrapolated (target: export >= 50x faster);
- peak RSS of an RLE export in a fresh process that loads the label image, as a multiple of
  the label image's bytes (target: < 2x; the label image itself is included);
- the CLI's start-up: a fresh ``napari-instseg export`` up to the moment the export starts
  (the label file is read next), in seconds (target: < 0.2 s).

Run: ``.venv/bin/python benchmarks/bench_coco_export.py [--sides 8192 16384] [--sample 20]``
(about 4 GB of memory at 16384²; note the machine's load, e.g. ``uptime``, with the figures).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from _timing import median_time
from napari_instseg.core.coco import AnnotatedImage, export_coco

SRC = str(Path(__file__).resolve().parents[1] / "src")


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


_RSS_CHILD = """
import sys, numpy as np
sys.path.insert(0, {src!r})
from napari_instseg.core.coco import AnnotatedImage, export_coco
def high_water_bytes():  # VmHWM: reset by exec (ru_maxrss is not: it keeps the forking parent's)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
labels = np.load({path!r})
before = high_water_bytes()
exported = export_coco([AnnotatedImage(labels, None, "bench.tif")])
peak = high_water_bytes()
print(before, peak, len(exported.coco["annotations"]))
"""

_STARTUP_CHILD = """
import sys, time
start = time.perf_counter()
sys.path.insert(0, {src!r})
import napari_instseg.core.io as io
def stop(*args, **kwargs):
    print(time.perf_counter() - start, "pandas" in sys.modules)
    raise SystemExit(0)
io.read_labels = stop
from napari_instseg.cli import main
main(["export", "labels.tif", "-o", "out.json"])
"""


def peak_rss_ratio(labels: np.ndarray) -> tuple[float, int]:
    """Peak RSS of an RLE export in a fresh process / label image bytes, and the annotation count."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "labels.npy")
        np.save(path, labels)
        out = subprocess.run(
            [sys.executable, "-c", _RSS_CHILD.format(src=SRC, path=path)], capture_output=True, text=True, check=True
        ).stdout.split()
    _before, peak, n = (int(v) for v in out)
    return peak / labels.nbytes, n


def cli_startup_s(repeats: int = 5) -> tuple[float, bool]:
    """Median seconds from a fresh interpreter to the moment ``export`` reads its labels."""
    times, pandas = [], False
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, "-c", _STARTUP_CHILD.format(src=SRC)], capture_output=True, text=True, check=True
        ).stdout.split()
        times.append(float(out[0]))
        pandas = out[1] == "True"
    return float(np.median(times)), pandas


def median_cpu_times(func, repeats: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Median CPU seconds (this process) of ``repeats`` calls: user + system, and user alone.

    Both are less sensitive to a loaded machine than wall time; user time also leaves out the
    kernel's work on page faults (zeroing and compacting huge pages), which varies most with
    what else runs.
    """
    total, user = [], []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_SELF)
        func()
        after = resource.getrusage(resource.RUSAGE_SELF)
        user.append(after.ru_utime - before.ru_utime)
        total.append(user[-1] + after.ru_stime - before.ru_stime)
    return float(np.median(total)), float(np.median(user))


def numpy_import_s(repeats: int = 5) -> float:
    """Median seconds a fresh interpreter takes to import numpy (the floor of any start-up)."""
    code = "import time; t = time.perf_counter(); import numpy; print(time.perf_counter() - t)"
    runs = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)]
    runs += [
        float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
        for _ in range(repeats - 1)
    ]
    return float(np.median(runs))


def measure(side: int, sample: int, repeats: int) -> dict[str, float]:
    start = time.perf_counter()
    labels = dense_nuclei(side)
    ids = np.unique(labels)[1:]
    print(f"\nlabel image {side} x {side}, {ids.size} instances (built in {time.perf_counter() - start:.0f} s)")
    t_bincount = median_time(lambda: np.bincount(labels.ravel()), repeats)
    t_export = median_time(lambda: export_coco([AnnotatedImage(labels, None, "bench.tif")]), repeats)
    picked = np.random.default_rng(1).choice(ids, size=min(sample, ids.size), replace=False)

    def naive_loop() -> None:
        for instance_id in picked:
            mask_utils.encode(np.asfortranarray(labels == instance_id, dtype=np.uint8))

    t_naive = median_time(naive_loop, 1) / picked.size * ids.size
    cpu_bincount, user_bincount = median_cpu_times(lambda: np.bincount(labels.ravel()), repeats)
    cpu_export, user_export = median_cpu_times(
        lambda: export_coco([AnnotatedImage(labels, None, "bench.tif")]), repeats
    )
    rss, n_annotations = peak_rss_ratio(labels)
    print(f"bincount pass:            {t_bincount:8.3f} s")
    print(f"export (RLE, one pass):   {t_export:8.3f} s  ({n_annotations} annotations)")
    print(f"naive per-instance loop:  {t_naive:8.1f} s (extrapolated from {picked.size} instances)")
    print(f"export / bincount:        {t_export / t_bincount:8.2f}x   (target <= 3x; wall time)")
    print(
        f"export / bincount (CPU):  {cpu_export / cpu_bincount:8.2f}x   ({cpu_export:.2f} s / {cpu_bincount:.2f} s CPU)"
    )
    print(
        f"export / bincount (user): {user_export / user_bincount:8.2f}x   "
        f"({user_export:.2f} s / {user_bincount:.2f} s user CPU)"
    )
    print(f"naive loop / export:      {t_naive / t_export:8.0f}x   (target >= 50x)")
    print(f"peak RSS / label image:   {rss:8.2f}x   (target < 2x; label image {labels.nbytes / 2**30:.2f} GiB)")
    print("load average (1, 5, 15 min): {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    return {
        "side": side,
        "instances": int(ids.size),
        "bincount_s": t_bincount,
        "export_s": t_export,
        "export_over_bincount": t_export / t_bincount,
        "export_over_bincount_cpu": cpu_export / cpu_bincount,
        "export_over_bincount_user_cpu": user_export / user_bincount,
        "naive_over_export": t_naive / t_export,
        "peak_rss_over_labels": rss,
        "load_average_1min": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sides", type=int, nargs="+", default=[8192, 16384], help="image sides in pixels")
    parser.add_argument("--sample", type=int, default=20, help="instances timed in the naive loop")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()
    print("load average (1, 5, 15 min): {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    startup, pandas = cli_startup_s()
    numpy_s = numpy_import_s()
    print(f"CLI export start-up:      {startup:8.3f} s   (target < 0.2 s; pandas imported: {pandas})")
    print(f"  of which numpy import:  {numpy_s:8.3f} s   (same machine, fresh interpreter)")
    results = {
        "cli_startup_s": startup,
        "numpy_import_s": numpy_s,
        "sizes": [measure(s, args.sample, args.repeats) for s in args.sides],
    }
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
