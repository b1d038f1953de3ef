"""Project scale benchmark: a 100,000-image synthetic project (references only).

Measures, against the issue's targets and against a 1,000-image project built the same way
in the same run (the scaling ratio):

1. ``napari-instseg project status DIR``: in-process (open + counts) and as a fresh process
   (Python start and imports included). Target: <= 1 s.
2. Opening the Project panel on the project: widget made, project opened, the table listed
   and painted; then a jump to the last row. Target: <= 1 s.
3. Next unfinished image for an annotator, from random places. Target: <= 100 ms.

Run (the panel needs a display; Xvfb will do):
``xvfb-run -a .venv/bin/python benchmarks/bench_project.py [--images 100000]``
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _timing import median_time


def build_project(folder: Path, n_images: int) -> tuple[Path, float]:
    """A project referencing ``n_images`` tiles that need not exist; returns (path, seconds)."""
    from napari_instseg.core.project import ImageRef, Project

    start = time.perf_counter()
    target = folder / f"project_{n_images}"
    with Project.create(target) as project:
        refs = (
            (f"tiles/tile_{i:07d}.tif", ImageRef(Path(f"/data/tile_{i:07d}.tif"), f"tile_{i:07d}.tif", (512, 512)))
            for i in range(n_images)
        )
        project.manifest.add_images(refs)
        ids = list(range(1, n_images + 1))
        project.manifest.assign(ids[0 : n_images // 3], "alice")
        project.manifest.assign(ids[n_images // 3 : 2 * n_images // 3], "bob")
        with project.manifest.transaction() as db:  # a project well under way
            db.execute("UPDATE images SET status = 'submitted' WHERE id % 3 = 0")
            db.execute("UPDATE images SET status = 'pre-labelled' WHERE id % 3 = 1")
            db.execute("UPDATE images SET status = 'reviewed' WHERE id % 10 = 0")
        project.manifest.start_calibration(ids[-20:], ["alice", "bob"])
    return target, time.perf_counter() - start


def time_status(project_dir: Path) -> tuple[float, float]:
    """(in-process median, fresh-process median) seconds of ``project status``."""
    import contextlib
    import io

    from napari_instseg.cli import main

    def in_process() -> None:
        with contextlib.redirect_stdout(io.StringIO()):
            main(["project", "status", str(project_dir)])

    command = [sys.executable, "-m", "napari_instseg.cli", "project", "status", str(project_dir)]
    fresh = median_time(lambda: subprocess.run(command, check=True, capture_output=True), 3)
    return median_time(in_process, 5), fresh


def time_panel(viewer: Any, project_dir: Path) -> tuple[float, float]:
    """(open, jump to the last row) seconds for the Project panel, medians of 3."""
    from qtpy.QtWidgets import QApplication

    from napari_instseg._widgets.project import ProjectWidget

    opens, jumps = [], []
    for _ in range(3):
        start = time.perf_counter()
        widget = ProjectWidget(viewer)
        widget.resize(420, 900)
        widget.show()
        widget.open_project(project_dir)
        QApplication.processEvents()
        opens.append(time.perf_counter() - start)
        start = time.perf_counter()
        widget.table.scrollToBottom()
        QApplication.processEvents()
        jumps.append(time.perf_counter() - start)
        widget.close()
        widget.project.close()
    return statistics.median(opens), statistics.median(jumps)


def time_next(project_dir: Path, n_images: int, calls: int = 200) -> tuple[float, float]:
    """(median, max) seconds of next-unfinished for alice and for carol, from random places."""
    from napari_instseg.core.project import Project

    rng = random.Random(0)
    times = []
    with Project.open(project_dir) as project:
        for k in range(calls):
            after = project.manifest.item(rng.randint(1, n_images - 21))
            annotator = "alice" if k % 2 else "carol"
            start = time.perf_counter()
            project.next_item(annotator, after)
            times.append(time.perf_counter() - start)
    return statistics.median(times), max(times)


def measure(folder: Path, n_images: int, viewer: Any) -> dict[str, float]:
    project_dir, build_s = build_project(folder, n_images)
    status_s, status_fresh_s = time_status(project_dir)
    panel_s, jump_s = time_panel(viewer, project_dir)
    next_s, next_max_s = time_next(project_dir, n_images)
    return {
        "build_s": build_s,
        "status_s": status_s,
        "status_fresh_process_s": status_fresh_s,
        "panel_open_s": panel_s,
        "panel_jump_to_end_s": jump_s,
        "next_median_s": next_s,
        "next_max_s": next_max_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--baseline", type=int, default=1_000)
    args = parser.parse_args()
    os.environ.setdefault("NAPARI_INSTSEG_ANNOTATOR", "alice")  # the panel lists alice's work
    import napari

    viewer = napari.Viewer(show=False)
    with tempfile.TemporaryDirectory() as tmp:
        base = measure(Path(tmp), args.baseline, viewer)
        big = measure(Path(tmp), args.images, viewer)
    viewer.close()
    targets = {"status_s": 1.0, "status_fresh_process_s": 1.0, "panel_open_s": 1.0, "next_median_s": 0.1}
    targets["next_max_s"] = 0.1
    print(f"{'measure':26} {args.baseline:>10,} {args.images:>10,}  ratio  target  within")
    for key, value in big.items():
        target = targets.get(key)
        verdict = "" if target is None else ("yes" if value <= target else "NO")
        print(
            f"{key:26} {base[key]:10.4f} {value:10.4f} {value / base[key]:6.1f}"
            f"  {'' if target is None else f'{target:6.2f}'}  {verdict}"
        )


if __name__ == "__main__":
    main()
