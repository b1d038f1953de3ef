"""Shared fixtures: small label images with known instances, protocols, COCO files."""

from __future__ import annotations

import numpy as np
import pytest

try:  # tqdm's monitor thread races with Qt's event loop in tests
    import tqdm

    tqdm.tqdm.monitor_interval = 0
except ImportError:  # pragma: no cover
    pass

from napari_instseg.core.instances import make_rows
from napari_instseg.core.protocol import AnnotationProtocol, Category


@pytest.fixture(autouse=True)
def _cli_leaves_napari_settings_alone(monkeypatch):
    """Commands that make stores record them in napari's reader settings; not from tests
    (tests/widgets/test_reader_preference.py turns it on with settings of its own)."""
    monkeypatch.setenv("NAPARI_INSTSEG_READER_PREFERENCE", "0")


@pytest.fixture
def protocol() -> AnnotationProtocol:
    """Two categories with supercategories, visible rule."""
    return AnnotationProtocol(
        categories=(Category(1, "nucleus", "cell", "#ff7f0e"), Category(5, "mitosis", "cell")),
        name="test project",
    )


@pytest.fixture
def labels_and_table():
    """A 64 x 80 label image with a disk, a two-part instance, a ring (hole) and an edge object.

    Returns (labels_yx, table): ids 3 (disk), 9 (two parts), 12 (ring with a hole), 40 (touches
    the right and bottom edges, crowd).
    """
    from skimage.draw import disk

    labels = np.zeros((64, 80), dtype=np.uint32)
    rr, cc = disk((16, 16), 9)
    labels[rr, cc] = 3
    labels[40:46, 4:12] = 9
    labels[52:60, 20:24] = 9
    rr, cc = disk((20, 50), 10)
    labels[rr, cc] = 12
    rr, cc = disk((20, 50), 4)
    labels[rr, cc] = 0
    labels[50:, 70:] = 40
    table = make_rows(
        [3, 9, 12, 40],
        category_id=[1, 5, 1, 1],
        occlusion=["none", "partial", "heavy", "none"],
        occlusion_manual=[False, True, False, False],
        occluded_fraction=[0.0, 0.2, np.nan, 0.0],
        iscrowd=[False, False, False, True],
        z_order=[0, 3, -1, 2],
        source=["manual", "sam2", "classic", "import"],
        review=["accepted", "corrected", "pre-label", "accepted"],
        annotator=["ann-a", "ann-b", "", "ann-a"],
        time_s=[1.5, 12.25, 0.0, 3.0],
        prelabel_iou=[np.nan, 0.87, np.nan, np.nan],
        created="2026-11-25T10:00:00+00:00",
        modified="2026-11-25T10:05:00+00:00",
    )
    return labels, table


@pytest.fixture(scope="session")
def sam2_checkpoint(tmp_path_factory):
    """A randomly initialised SAM 2.1 hiera-tiny checkpoint, built once per test run.

    Saved as sam2 expects (``{"model": state_dict}``) and loaded by the tests through the real
    ``build_sam2`` path. Its masks are meaningless: tests check code paths, never quality.
    """
    import torch
    from sam2.build_sam import build_sam2

    torch.manual_seed(0)
    model = build_sam2("configs/sam2.1/sam2.1_hiera_t.yaml", ckpt_path=None, device="cpu")
    path = tmp_path_factory.mktemp("sam2") / "sam2.1_hiera_tiny.pt"
    torch.save({"model": model.state_dict()}, path)
    return path


@pytest.fixture(scope="session")
def ihc_image():
    """scikit-image's bundled IHC tile (512 x 512 RGB)."""
    from skimage import data

    return data.immunohistochemistry()


@pytest.fixture(scope="session")
def loose_auto_settings():
    """SAM 2 automatic-mask settings that let every mask of a random-weight model through the
    filters, so the code paths run (plumbing only: never judge mask quality with them)."""
    from napari_instseg.core.prompting.auto import AutoSettings

    return AutoSettings(
        points_per_side=4,
        points_per_batch=16,
        pred_iou_thresh=0.0,
        stability_score_thresh=0.0,
        min_area_px=1,
        max_area_fraction=1.0,
    )
