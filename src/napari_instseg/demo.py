"""The main job on the embedded default: the bundled IHC tile, end to end.

1. scikit-image's immunohistochemistry tile (real tissue, 512 x 512 RGB);
2. point prompts from the classical nuclei detector (:mod:`napari_instseg.core.detect`);
3. pre-labels committed through an annotation session with the default backend: SAM 2 when a
   checkpoint is configured, else the classic one (the summary says which);
4. COCO export, read back by pycocotools;
5. a PNG screenshot of the napari canvas with the instances (under a virtual X server when
   there is no display), and a one-screen summary.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DemoResult", "open_in_napari", "run_demo", "save_screenshot"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoResult:
    """Where the demo wrote its files and what they hold."""

    outdir: Path
    coco_path: Path
    image_path: Path
    screenshot_path: Path | None
    backend: str
    n_prompts: int
    n_instances: int
    summary: str
    seconds: float
    image: Any
    session: Any


def run_demo(
    outdir: str | os.PathLike[str] = "demo-output",
    *,
    backend: str | None = None,
    screenshot: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> DemoResult:
    """Run the demo; write ``ihc_tile.tif``, ``annotations.json``, ``protocol.json`` and
    ``screenshot.png`` into ``outdir``.

    Parameters
    ----------
    outdir : path-like
        Output folder (created if needed).
    backend : {'sam2', 'classic'}, optional
        Default: SAM 2 when a checkpoint is configured, else classic.
    screenshot : bool
        Render the napari canvas to ``screenshot.png``.
    progress : callable, optional
        ``progress(done, total)`` per prompt.
    """
    from pycocotools.coco import COCO
    from skimage import data

    from napari_instseg.core.coco import AnnotatedImage, export_coco, save_coco
    from napari_instseg.core.detect import detect_nuclei
    from napari_instseg.core.prelabel import prelabel_image
    from napari_instseg.core.prompting import Prompt, default_backend
    from napari_instseg.core.prompting.cache import named_image_key
    from napari_instseg.core.prompting.lifecycle import PrompterConfig, build_prompter
    from napari_instseg.core.protocol import AnnotationProtocol

    start = time.perf_counter()
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    image = data.immunohistochemistry()
    image_path = out / "ihc_tile.tif"
    _write_image(image_path, image)
    backend = backend or default_backend()
    detection = detect_nuclei(image)
    prompts = [Prompt.make(points_yx=[c]) for c in detection.centroids_yx]
    prompter = build_prompter(PrompterConfig(backend), load_model=False)  # the shared embedding cache
    protocol = AnnotationProtocol.default()
    key = named_image_key("skimage:immunohistochemistry", image.shape, str(image.dtype))
    session, summary = prelabel_image(image, prompts, prompter, key=key, progress=progress)
    session.annotator = "demo"
    exported = export_coco([AnnotatedImage(session.labels_yx, session.table, image_path.name)], protocol)
    coco_path = out / "annotations.json"
    save_coco(exported.coco, coco_path)
    protocol.save(out / "protocol.json")
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        n_read = len(COCO(str(coco_path)).getAnnIds())  # the file loads in pycocotools unchanged
    shot, shot_note = (
        save_screenshot(image, session.labels_yx, out / "screenshot.png") if screenshot else (None, "skipped")
    )
    backend_line = (
        "SAM 2.1 tiny (checkpoint configured)"
        if backend == "sam2"
        else "classic (random walker / watershed / threshold; no model weights - "
        "configure a SAM 2 checkpoint to use SAM 2)"
    )
    lines = [
        f"image:       {image_path} ({image.shape[1]} x {image.shape[0]} px, scikit-image IHC tile)",
        f"prompts:     {len(prompts)} points from the classical nuclei detector",
        f"backend:     {backend_line}",
        f"pre-labels:  {summary}",
        f"COCO:        {coco_path} ({n_read} annotations read back by pycocotools; review state 'pre-label')",
        f"export:      {exported.summary}",
        f"screenshot:  {shot if shot else shot_note}",
    ]
    return DemoResult(
        out,
        coco_path,
        image_path,
        shot,
        backend,
        len(prompts),
        summary.n_committed,
        "\n".join(lines),
        time.perf_counter() - start,
        image,
        session,
    )


def _write_image(path: Path, image: np.ndarray) -> None:
    import tifffile

    from napari_instseg.core._io import atomic_path

    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, image, photometric="rgb" if image.ndim == 3 else "minisblack")


def save_screenshot(image: np.ndarray, labels_yx: np.ndarray, path: Path) -> tuple[Path | None, str]:
    """Render image + instances in a napari canvas to ``path``; return (path or None, note).

    The rendering runs in a child process; without a display, a virtual X server (Xvfb via
    PyVirtualDisplay) is started for it and stopped afterwards.
    """
    import subprocess
    import sys
    import tempfile

    env = dict(os.environ)
    display = None
    if not (env.get("DISPLAY") or env.get("WAYLAND_DISPLAY")):
        try:
            from pyvirtualdisplay.display import Display

            display = Display(visible=False, size=(1280, 1024))
            display.start()
        except Exception as exc:  # no Xvfb binary, or it failed to start
            return None, f"skipped: no display and no Xvfb ({type(exc).__name__}); run scripts/system-deps.sh"
        env["DISPLAY"] = display.new_display_var
    try:
        with tempfile.TemporaryDirectory() as tmp:
            np.save(Path(tmp) / "image.npy", image)
            np.save(Path(tmp) / "labels.npy", labels_yx)
            cmd = [
                sys.executable,
                "-m",
                "napari_instseg._screenshot",
                str(Path(tmp) / "image.npy"),
                str(Path(tmp) / "labels.npy"),
                str(path),
            ]
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    finally:
        if display is not None:
            display.stop()
    if done.returncode != 0 or not Path(path).is_file():
        logger.warning("screenshot failed: %s", done.stderr[-2000:])
        return (
            None,
            f"failed (exit {done.returncode}): {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ''}",
        )
    return path, "ok"


def open_in_napari(result: DemoResult) -> None:
    """Open napari with the demo's image, its pre-labels and the plugin's tabbed panel docked."""
    import napari

    viewer = napari.Viewer()
    show_demo(viewer, result.image, result.session)
    napari.run()


def show_demo(viewer: Any, image: np.ndarray, session: Any) -> Any:
    """Put the demo's image and pre-labels in ``viewer`` with the tabbed "Instance
    Segmentation" panel, in a 1600 x 1000 window where the canvas keeps most of the width.
    Returns the panel."""
    from napari_instseg._adapters import labels_layer_kwargs

    viewer.add_image(image, name="IHC tile", rgb=image.ndim == 3)
    kwargs = labels_layer_kwargs("IHC tile instances", session.table, session.protocol)
    viewer.add_labels(session.labels_yx, **kwargs)
    _, panel = viewer.window.add_plugin_dock_widget("napari-instseg", "Instance Segmentation")
    panel.prompt.image_combo.value = viewer.layers["IHC tile"]
    panel.prompt.labels_combo.value = viewer.layers["IHC tile instances"]
    panel.review_mode.labels_combo.value = viewer.layers["IHC tile instances"]
    viewer.window._qt_window.resize(1600, 1000)
    viewer.reset_view()
    return panel
