"""Screenshots of the real napari window for the documentation (docs/images/*.png).

Opens napari at 1600 x 1000 with scikit-image's IHC tile and the "Instance Segmentation"
panel, then does what the walkthrough in docs/napari.md describes with real mouse and key
events (classic backend: no model weights needed) and saves the whole window at each step,
downscaled to 1200 px wide. Needs a display; without one it starts Xvfb (PyVirtualDisplay).

Run: ``python scripts/screenshots.py [--out docs/images]``
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "widgets"))  # the same event helpers as the tests


def _pump(ms: int = 100) -> None:
    from qtpy.QtCore import QCoreApplication, QElapsedTimer

    timer = QElapsedTimer()
    timer.start()
    while timer.elapsed() < ms:
        QCoreApplication.processEvents()


class _Bot:
    """The two methods of pytest-qt's qtbot the event helpers use."""

    def wait(self, ms: int) -> None:
        _pump(ms)

    def waitExposed(self, widget: object) -> None:
        _pump(200)


def _save(viewer: object, path: Path) -> None:
    from PIL import Image

    _pump(300)
    shot = viewer.screenshot(canvas_only=False, flash=False)  # type: ignore[attr-defined]
    image = Image.fromarray(np.asarray(shot)[..., :3])
    image = image.resize((1200, round(1200 * image.height / image.width)), Image.Resampling.LANCZOS)
    image.quantize(colors=128).save(path, optimize=True)
    print(f"wrote {path} ({path.stat().st_size // 1024} KiB)")


def make_screenshots(out: Path) -> None:
    """Drive napari through the walkthrough and save docs/images/{prompt,instances,review}.png."""
    import napari
    from _canvas import click, drag, key, show_at_size
    from skimage import data

    from napari_instseg.core.detect import detect_nuclei

    os.environ["NAPARI_INSTSEG_NOTHREADS"] = "1"
    os.environ.setdefault("NAPARI_INSTSEG_CONFIG", tempfile.mkdtemp())
    out.mkdir(parents=True, exist_ok=True)
    bot = _Bot()
    viewer = napari.Viewer()
    image = data.immunohistochemistry()
    viewer.add_image(image, name="ihc_tile", rgb=True)
    _, panel = viewer.window.add_plugin_dock_widget("napari-instseg", "Instance Segmentation")
    prompt = panel.prompt
    prompt.backend_combo.value = "classic"
    prompt._on_new_labels()
    show_at_size(viewer, bot)
    viewer.reset_view()
    labels = prompt.labels_combo.value
    nuclei = detect_nuclei(image).centroids_yx
    for y, x in nuclei[:12]:  # prompt and commit a dozen nuclei: one click, one key each
        click(viewer, bot, (float(y), float(x)))
        key(viewer, bot, "C", "Shift")
    y, x = nuclei[12]
    drag(viewer, bot, (float(y) - 12, float(x) - 12), (float(y) + 12, float(x) + 12))  # a box
    _save(viewer, out / "prompt.png")
    key(viewer, bot, "C", "Shift")
    binding = prompt._binding
    for y, x in nuclei[13:40]:  # pre-labels, as a batch run leaves them
        mask = np.zeros(labels.data.shape, bool)
        yy, xx = np.ogrid[: mask.shape[0], : mask.shape[1]]
        mask[(yy - y) ** 2 + (xx - x) ** 2 <= 36] = True
        try:
            binding.run("commit", mask, source="sam2")
        except Exception:
            continue
    panel.setCurrentWidget(panel.instances)
    panel.instances.select(3)
    _save(viewer, out / "instances.png")
    panel.setCurrentWidget(panel.review_mode.root_native_widget)
    panel.review_mode.labels_combo.value = labels
    panel.review_mode.start()
    key(viewer, bot, "Y", "Shift")
    key(viewer, bot, "Y", "Shift")
    _save(viewer, out / "review.png")
    viewer.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images")
    args = parser.parse_args()
    display = None
    if not os.environ.get("DISPLAY"):
        from pyvirtualdisplay import Display

        display = Display(visible=False, size=(1600, 1000))
        display.start()
    try:
        make_screenshots(args.out)
    finally:
        if display is not None:
            display.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
