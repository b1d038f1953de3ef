"""The headless demo on the embedded default: the bundled IHC tile, end to end.

Detects nuclei with the classical detector, records them as pre-labels from the classic
source, exports COCO and checks that pycocotools reads the file back, then returns a summary.
"""

from __future__ import annotations

import contextlib
import io
import os
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DemoResult", "run_demo"]


@dataclass(frozen=True)
class DemoResult:
    """Where the demo wrote its files and what they hold."""

    coco_path: Path
    image_path: Path
    n_instances: int
    summary: str
    seconds: float


def run_demo(outdir: str | os.PathLike[str] = "demo-output") -> DemoResult:
    """Run the demo and write ``ihc_tile.tif``, ``annotations.json`` and ``protocol.json``.

    Parameters
    ----------
    outdir : path-like
        Output folder (created if needed).
    """
    import numpy as np
    from pycocotools.coco import COCO
    from skimage import data

    from napari_instseg.core.coco import AnnotatedImage, export_coco, save_coco
    from napari_instseg.core.detect import detect_nuclei
    from napari_instseg.core.instances import make_rows, now_iso
    from napari_instseg.core.protocol import Protocol

    start = time.perf_counter()
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    image = data.immunohistochemistry()
    image_path = out / "ihc_tile.tif"
    _write_image(image_path, image)
    detection = detect_nuclei(image)
    ids = np.unique(detection.labels_yx)
    ids = ids[ids > 0]
    stamp = now_iso()
    table = make_rows(ids, source="classic", review="pre-label", annotator="demo", created=stamp, modified=stamp)
    protocol = Protocol.default()
    exported = export_coco([AnnotatedImage(detection.labels_yx, table, image_path.name)], protocol)
    coco_path = out / "annotations.json"
    save_coco(exported.coco, coco_path)
    protocol.save(out / "protocol.json")
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        reread = COCO(str(coco_path))  # the file loads in pycocotools unchanged
    n_read = len(reread.getAnnIds())
    summary = "\n".join(
        [
            f"image:        {image_path} ({image.shape[1]} x {image.shape[0]} px, scikit-image IHC tile)",
            "backend:      classic (colour deconvolution + watershed; no model weights)",
            f"pre-labels:   {len(ids)} nuclei, review state 'pre-label'",
            f"COCO:         {coco_path} ({n_read} annotations read back by pycocotools)",
            f"export:       {exported.summary}",
        ]
    )
    return DemoResult(coco_path, image_path, len(ids), summary, time.perf_counter() - start)


def _write_image(path: Path, image: "np.ndarray") -> None:  # noqa: F821
    import tifffile

    from napari_instseg.core._io import atomic_path

    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, image, photometric="rgb" if image.ndim == 3 else "minisblack")
