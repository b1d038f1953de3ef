"""Render an image and its instances in a napari canvas to a PNG, in a process of its own.

``python -m napari_instseg._screenshot IMAGE.npy LABELS.npy OUT.png``. The caller provides the
display (a real one, or Xvfb it started); this process only connects to it and exits, so the
caller never holds an X connection and never loads OpenGL next to torch.
"""

from __future__ import annotations

import sys
import warnings

import numpy as np


def render(image: np.ndarray, labels_yx: np.ndarray, path: str) -> None:
    """Show ``image`` and ``labels_yx`` in a napari viewer and save a canvas screenshot."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="System theme detection", category=UserWarning)
        import napari

        viewer = napari.Viewer(show=True)  # a hidden canvas renders black
    try:
        viewer.add_image(image, name="image", rgb=image.ndim == 3 and image.shape[-1] in (3, 4))
        viewer.add_labels(labels_yx, name="instances", opacity=0.5)
        viewer.window.resize(1000, 1000)
        viewer.reset_view()
        viewer.screenshot(path, canvas_only=True, flash=False)
    finally:
        viewer.close()


def main(argv: list[str]) -> int:
    """Command-line entry: IMAGE.npy LABELS.npy OUT.png."""
    image_path, labels_path, out_path = argv
    render(np.load(image_path), np.load(labels_path), out_path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
