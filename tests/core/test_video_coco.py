"""COCO video export / import (YouTube-VIS / TAO conventions), read back by pycocotools."""

import json

import numpy as np
import pytest
from pycocotools.coco import COCO

from napari_instseg.core.coco.video import export_coco_video, import_coco_video
from napari_instseg.core.errors import CocoFormatError
from napari_instseg.core.video.tracks import TrackStack


@pytest.fixture
def stack():
    """Two tracks over 3 frames: 2 passes behind 1 on frame 1 and is absent on frame 2."""
    stack = TrackStack(np.zeros((3, 16, 24), np.uint32))
    front, back = stack.new_track(in_front=True), stack.new_track(category=1)
    with stack.action("propagate"):
        for t in range(3):
            a = np.zeros((16, 24), bool)
            a[2:12, 8:16] = True
            b = np.zeros((16, 24), bool)
            if t < 2:
                b[4:14, 10 * t : 6 + 10 * t] = True
            stack.apply_frame(t, [front, back], np.stack([a, b]), [1.0, 1.0 if t < 2 else -2.0])
    stack.refresh_rows()
    return stack


def test_export_is_coco_per_frame_with_video_fields(stack, tmp_path):
    coco = export_coco_video(stack, name="clip").coco
    path = tmp_path / "video.json"
    path.write_text(json.dumps(coco))
    api = COCO(str(path))
    assert coco["videos"] == [{"id": 1, "name": "clip", "width": 24, "height": 16, "length": 3}]
    assert [(im["video_id"], im["frame_index"]) for im in coco["images"]] == [(1, 0), (1, 1), (1, 2)]
    for im in coco["images"]:
        t = im["frame_index"]
        for ann in api.loadAnns(api.getAnnIds(imgIds=im["id"])):
            assert ann["track_id"] == ann["instance_id"] and ann["video_id"] == 1
            np.testing.assert_array_equal(api.annToMask(ann).astype(bool), stack.labels_tyx[t] == ann["track_id"])
    by_frame = {(a["image_id"] - 1, a["track_id"]): a for a in coco["annotations"]}
    assert by_frame[(0, 2)]["occlusion"] == "none" and by_frame[(1, 2)]["occlusion"] in ("partial", "heavy")
    assert (2, 2) not in by_frame  # absent
    assert {t["id"]: t["absent_frames"] for t in coco["tracks"]} == {1: [], 2: [2]}


def test_round_trip(stack):
    coco = export_coco_video(stack).coco
    before = json.dumps(coco, sort_keys=True)
    video = import_coco_video(coco)
    assert json.dumps(coco, sort_keys=True) == before  # the input is not changed
    np.testing.assert_array_equal(video.labels_tyx, stack.labels_tyx)
    back = video.track_stack()
    for t in range(3):
        for track_id in (1, 2):
            ours, theirs = back.record(t, track_id), stack.record(t, track_id)
            assert (ours.present, ours.occlusion, ours.visible_px) == (
                theirs.present,
                theirs.occlusion,
                theirs.visible_px,
            )
    assert back.table["occlusion"].to_dict() == stack.table["occlusion"].to_dict()
    again = export_coco_video(back).coco
    assert again["annotations"] == coco["annotations"] and again["tracks"] == coco["tracks"]


def test_files_from_other_tools_use_track_id_and_errors_name_the_problem(stack):
    coco = export_coco_video(stack).coco
    for ann in coco["annotations"]:
        del ann["instance_id"]
        ann["track_id"] += 10
    video = import_coco_video(coco)
    assert sorted(set(np.unique(video.labels_tyx)) - {0}) == [11, 12]
    bad = export_coco_video(stack).coco
    bad["images"][1]["frame_index"] = 5
    with pytest.raises(CocoFormatError, match=r"frame_index values \[0, 2, 5\]"):
        import_coco_video(bad)
    with pytest.raises(CocoFormatError, match="no video with id 4"):
        import_coco_video(export_coco_video(stack).coco, video_id=4)
