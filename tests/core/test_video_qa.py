"""Track QA on hand-built cases whose numbers are known."""

import json

import numpy as np
import pytest

from napari_instseg.cli import main
from napari_instseg.core.coco.video import export_coco_video
from napari_instseg.core.qa.tracks import TrackQAError, evaluate_tracks, identity_metrics, mask_ious
from napari_instseg.core.video.tracks import TrackStack


def _reference():
    """Two objects over 4 frames, apart from each other."""
    gt = np.zeros((4, 20, 30), np.uint32)
    for t in range(4):
        gt[t, 2:8, 2 + t : 8 + t] = 1
        gt[t, 12:18, 15:21] = 2
    return gt


def test_mask_ious():
    gt = np.array([[1, 1, 0, 2]])
    dt = np.array([[5, 0, 0, 5]])
    gt_ids, dt_ids, ious = mask_ious(gt, dt)
    assert gt_ids == [1, 2] and dt_ids == [5]
    np.testing.assert_allclose(ious, [[1 / 3], [1 / 2]])


def test_an_identity_swap_is_two_switches():
    gt = _reference()
    dt = gt.copy()
    dt[2:][gt[2:] == 1], dt[2:][gt[2:] == 2] = 2, 1  # the ids swap from frame 2 on
    m = identity_metrics(gt, dt)
    assert m["num_switches"] == 2 and m["mota"] == pytest.approx(0.75)
    assert m["idf1"] == pytest.approx(0.5) and m["num_objects"] == 8 and m["num_misses"] == 0


def test_a_miss_and_a_false_positive():
    gt = _reference()
    dt = gt.copy()
    dt[3][gt[3] == 2] = 0  # object 2 lost on the last frame
    dt[3, 0:2, 25:30] = 9  # a spurious object
    m = identity_metrics(gt, dt)
    assert (m["num_misses"], m["num_false_positives"], m["num_switches"]) == (1, 1, 0)
    assert m["mota"] == pytest.approx(0.75) and m["idf1"] == pytest.approx(14 / 16)


def test_evaluate_tracks_from_coco_video_files(tmp_path):
    gt = _reference()
    stack = TrackStack(gt)
    dt = gt.copy()
    dt[2:][gt[2:] == 1], dt[2:][gt[2:] == 2] = 2, 1
    paths = []
    for name, labels in (("gt", gt), ("dt", dt)):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(export_coco_video(TrackStack(labels), name=name).coco))
        paths.append(path)
    qa = evaluate_tracks(*paths)
    assert qa.identity["num_switches"] == 2 and qa.n_frames == 4
    assert abs(qa.mask_ap["overall"].AP - 1.0) < 1e-9  # every frame's masks are right
    assert qa.mask_ap["overall"].n_gt == 8 and qa.mask_ap["heavy"].n_gt == 0
    assert json.dumps(qa.to_dict())
    out = tmp_path / "qa.json"
    assert main(["track-qa", str(paths[0]), str(paths[1]), "-o", str(out)]) == 0
    assert json.loads(out.read_text())["identity"]["num_switches"] == 2
    assert main(["track-qa", str(paths[0]), str(tmp_path / "missing.json")]) == 2
    short = export_coco_video(TrackStack(gt[:3])).coco
    with pytest.raises(TrackQAError, match=r"\(4, 20, 30\), the candidate \(3, 20, 30\)"):
        evaluate_tracks(export_coco_video(stack).coco, short)
