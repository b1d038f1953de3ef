"""Classic automatic mode on real hand-annotated nuclei, scored by the project's own QA.

Fluorescence: stardist's bundled 2018 Data Science Bowl image (125 hand-annotated nuclei).
Bright-field H&E: five 400 x 400 crops of the MICCAI 2015 nuclei segmentation challenge
(TCGA tiles, hand-annotated; see tests/data/README.md). The AP50 of every image is printed
(``pytest -s``); the bounds below are regression guards at the measured values.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_instseg.core.prompting.auto_classic import ClassicAutoSettings, classic_auto_labels
from napari_instseg.core.qa.metrics import stratified_ap

DATA = Path(__file__).parent.parent / "data" / "nuclei_he"
HE_IMAGES = ("01", "02", "03", "08", "10")


def _coco(labels_yx, scores=None):
    """COCO annotations of a label image (with ``score`` when ``scores`` is given)."""
    from pycocotools import mask as mask_utils

    annotations = []
    for k, instance_id in enumerate(i for i in np.unique(labels_yx) if i):
        rle = mask_utils.encode(np.asfortranarray((labels_yx == instance_id).astype(np.uint8)))
        rle["counts"] = rle["counts"].decode("ascii")
        ann = {
            "id": k + 1,
            "image_id": 1,
            "category_id": 1,
            "segmentation": rle,
            "area": float(mask_utils.area(rle)),
            "bbox": [float(v) for v in mask_utils.toBbox(rle)],
            "iscrowd": 0,
        }
        if scores is not None:
            ann["score"] = float(scores[int(instance_id)])
        annotations.append(ann)
    return annotations


def mask_ap50(truth_yx, labels_yx, scores):
    height, width = truth_yx.shape
    gt = {
        "images": [{"id": 1, "width": width, "height": height, "file_name": "x.png"}],
        "categories": [{"id": 1, "name": "nucleus"}],
        "annotations": _coco(truth_yx),
    }
    return stratified_ap(gt, _coco(labels_yx, scores))["overall"].AP50


@pytest.fixture(scope="module")
def dsb():
    data = pytest.importorskip("stardist.data")
    return data.test_image_nuclei_2d(return_mask=True)


def _he(name):
    from skimage import io

    return io.imread(DATA / f"tcga_{name}.png"), io.imread(DATA / f"tcga_{name}_labels.png").astype(np.uint32)


def test_fluorescence_nuclei_ap50(dsb):
    image, truth = dsb
    result = classic_auto_labels(image)
    ap50 = mask_ap50(truth, result.labels_yx, result.scores)
    print(f"\nclassic-auto AP50 DSB 2018 fluorescence: {ap50:.3f} ({result.labels_yx.max()} objects)")
    assert ap50 >= 0.78


def test_brightfield_he_nuclei_ap50():
    values = {}
    for name in HE_IMAGES:
        image, truth = _he(name)
        result = classic_auto_labels(image)
        values[name] = mask_ap50(truth, result.labels_yx, result.scores)
    print("\nclassic-auto AP50 H&E (TCGA): " + ", ".join(f"{k} {v:.3f}" for k, v in values.items()))
    assert min(values.values()) >= 0.43
    assert np.mean(list(values.values())) >= 0.58


def test_beats_the_detector_it_replaces(dsb):
    from napari_instseg.core.detect import detect_nuclei

    for image, truth in [dsb, _he("08")]:
        old = detect_nuclei(image).labels_yx
        new = classic_auto_labels(image)
        assert mask_ap50(truth, new.labels_yx, new.scores) > mask_ap50(truth, old, dict.fromkeys(np.unique(old), 1.0))


def test_flat_and_bad_images():
    empty = classic_auto_labels(np.zeros((64, 64), np.uint8))
    assert empty.labels_yx.max() == 0 and empty.scores == {}
    with pytest.raises(ValueError, match=r"got shape \(4, 4, 4, 4\)"):
        classic_auto_labels(np.zeros((4, 4, 4, 4)))
    with pytest.raises(ValueError, match="mode must be"):
        classic_auto_labels(np.zeros((8, 8)), ClassicAutoSettings(mode="xray"))
