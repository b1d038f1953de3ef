"""Classic automatic mode on real hand-annotated nuclei, scored by the project's own QA.

Every image is a 2018 Data Science Bowl image (BBBC038, CC0) with its hand-made nucleus masks,
read from the file as a user would (RGBA PNG for the grey fluorescence ones): stardist's
bundled image plus ``tests/data/nuclei_dsb2018/`` (see tests/data/README.md). The images are
split once into a *calibration* set (what the defaults were tuned on) and a *held-out* set
(only reported), per kind. ``pytest -s`` prints every image's AP50.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pytest

from napari_instseg.core.prompting.auto_classic import ClassicAutoSettings, classic_auto_labels, image_kind
from napari_instseg.core.qa.metrics import stratified_ap

DATA = Path(__file__).parent.parent / "data" / "nuclei_dsb2018"
FLUO_CALIBRATION = ("stardist", "212b858a", "449a9c32", "4ee5850b", "1d4a5e72")
FLUO_HELD_OUT = ("b24ea5c2", "da31f2aa", "76c44d1a", "3441821e", "1c8b905c")
HE_CALIBRATION = ("15039b3a", "1631352d", "44afae18", "1d9eacb3")
HE_HELD_OUT = ("1ec74a26", "da6c5934", "3c4c6758", "b83d1d77", "c8e79ff4")


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


def load(kind, name):
    """(image as read from its file, labels uint32) of one annotated image."""
    if name == "stardist":
        data = pytest.importorskip("stardist.data")
        image, truth = data.test_image_nuclei_2d(return_mask=True)
        return image, truth.astype(np.uint32)
    from skimage import io

    return io.imread(DATA / f"{kind}_{name}.png"), io.imread(DATA / f"{kind}_{name}_labels.png").astype(np.uint32)


@cache
def ap50(kind, name):
    image, truth = load(kind, name)
    result = classic_auto_labels(image)
    return mask_ap50(truth, result.labels_yx, result.scores)


def _report(kind, calibration, held_out):
    values = {
        split: {n: ap50(kind, n) for n in names}
        for split, names in (("calibration", calibration), ("held-out", held_out))
    }
    for split, by_name in values.items():
        text = ", ".join(f"{n} {v:.2f}" for n, v in by_name.items())
        print(f"\nclassic-auto AP50 {kind} {split}: {text} (mean {np.mean(list(by_name.values())):.3f})")
    everything = [v for by_name in values.values() for v in by_name.values()]
    return (
        np.mean(list(values["calibration"].values())),
        np.mean(list(values["held-out"].values())),
        np.mean(everything),
    )


def test_fluorescence_nuclei_ap50():
    calibration, held_out, mean = _report("fluo", FLUO_CALIBRATION, FLUO_HELD_OUT)
    assert mean >= 0.8
    assert min(calibration, held_out) >= 0.82


def test_brightfield_he_nuclei_ap50_regression_guard():
    calibration, held_out, mean = _report("he", HE_CALIBRATION, HE_HELD_OUT)
    # + blob merge and outline inward limit (fifth round): measured 0.695 / 0.727 / 0.713
    assert calibration >= 0.685 and held_out >= 0.72 and mean >= 0.705


@pytest.mark.xfail(reason="issue 15 target (AP50 >= 0.8 on H&E) not reached by the classic mode yet", strict=True)
def test_brightfield_he_nuclei_reach_the_target():
    assert np.mean([ap50("he", n) for n in HE_CALIBRATION + HE_HELD_OUT]) >= 0.8


def test_kind_is_decided_from_the_image():
    fluo, _ = load("fluo", "1c8b905c")
    he, _ = load("he", "c8e79ff4")
    assert fluo.shape[-1] == 4 and image_kind(fluo) == "fluorescence"  # grey stored as RGBA
    assert image_kind(fluo[..., 0]) == "fluorescence"
    assert image_kind(255 - fluo[..., 0]) == "brightfield"  # grey bright-field: nuclei dark
    assert image_kind(he) == "brightfield" and image_kind(he[..., :3]) == "brightfield"
    composite = np.zeros((*fluo.shape[:2], 3), np.uint8)
    composite[..., 2] = fluo[..., 0]  # nuclei in the blue channel of a colour composite on black
    assert image_kind(composite) == "fluorescence"
    assert classic_auto_labels(fluo).mode == "fluorescence"
    assert classic_auto_labels(he).mode == "brightfield"


@pytest.mark.parametrize(("kind", "name", "least"), [("fluo", "212b858a", 0.9), ("he", "1d9eacb3", 0.75)])
def test_detector_puts_one_point_prompt_on_each_nucleus(kind, name, least):
    """The ``--detect`` prompts: one centroid inside each hand-annotated nucleus, few on the
    background (the detector before this mode: 0.87 and 0.44 on these images)."""
    from napari_instseg.core.detect import detect_nuclei

    image, truth = load(kind, name)
    centres = np.round(detect_nuclei(image).centroids_yx).astype(int)
    hit = truth[centres[:, 0], centres[:, 1]]
    per_nucleus = np.bincount(hit, minlength=int(truth.max()) + 1)[np.unique(truth)[1:]]
    assert (per_nucleus == 1).mean() >= least
    assert (hit == 0).mean() <= 0.05


def test_flat_and_bad_images():
    empty = classic_auto_labels(np.zeros((64, 64), np.uint8))
    assert empty.labels_yx.max() == 0 and empty.scores == {}
    with pytest.raises(ValueError, match=r"got shape \(4, 4, 4, 4\)"):
        classic_auto_labels(np.zeros((4, 4, 4, 4)))
    with pytest.raises(ValueError, match="mode must be"):
        classic_auto_labels(np.zeros((8, 8)), ClassicAutoSettings(mode="xray"))


def test_nucleus_like_objects_rank_first():
    """The score ranks a round, isolated nucleus before a speck, a cross-shaped blob and the two
    touching halves of a figure eight (what a clump cut leaves)."""
    yy, xx = np.mgrid[:120, :200]
    image = np.full((120, 200), 10.0)
    image[(yy - 30) ** 2 + (xx - 30) ** 2 <= 10**2] = 200  # a nucleus
    image[(yy - 30) ** 2 + (xx - 80) ** 2 <= 4**2] = 200  # a speck
    image[((abs(yy - 30) <= 2) & (abs(xx - 140) <= 14)) | ((abs(xx - 140) <= 2) & (abs(yy - 30) <= 14))] = 200
    image[((yy - 85) ** 2 + (xx - 50) ** 2 <= 10**2) | ((yy - 85) ** 2 + (xx - 68) ** 2 <= 10**2)] = 200
    result = classic_auto_labels(image.astype(np.uint8), ClassicAutoSettings(mode="fluorescence", radius_px=10.0))
    labels, scores = result.labels_yx, result.scores
    nucleus = scores[int(labels[30, 30])]
    others = [int(labels[30, 80]), int(labels[30, 140]), int(labels[85, 48]), int(labels[85, 70])]
    assert 0 not in others and len(set(others)) == 4
    assert all(nucleus > scores[i] for i in others)
