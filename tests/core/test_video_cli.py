"""``napari-instseg track`` as a user runs it (random-weight SAM 2: plumbing only)."""

import json

import numpy as np
import pytest
import tifffile
import torch
from pycocotools.coco import COCO

from napari_instseg.cli import main


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def inputs(tmp_path):
    stack = np.random.default_rng(0).integers(0, 4000, (5, 36, 48), dtype=np.uint16)  # a grey z-stack
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, stack)
    points = tmp_path / "points.csv"
    points.write_text("frame,y,x,label,object\n2,10,12,1,cell\n2,12,14,1,cell\n2,30,40,0,cell\n2,25,30,1,other\n")
    return path, points


def _run(inputs, out, *extra, checkpoint):
    stack, points = inputs
    args = ["track", str(stack), "--points", str(points), "--checkpoint", str(checkpoint), "--device", "cpu"]
    return main([*args, "--image-size", "64", "-o", str(out), *extra])


def test_track_writes_a_coco_video_with_one_id_per_object(inputs, tmp_path, sam2_checkpoint, capsys):
    out = tmp_path / "out.json"
    before = [p.read_bytes() for p in inputs]
    assert _run(inputs, out, "--frames", "1:4", checkpoint=sam2_checkpoint) == 0
    assert "2 object(s) tracked over 4 frame(s)" in capsys.readouterr().out
    coco = json.loads(out.read_text())
    api = COCO(str(out))
    assert len(api.getImgIds()) == 5 and coco["videos"][0]["length"] == 5
    assert {t["id"] for t in coco["tracks"]} <= {1, 2}
    assert all(a["track_id"] in (1, 2) and a["image_id"] - 1 in (1, 2, 3, 4) for a in coco["annotations"])
    assert [p.read_bytes() for p in inputs] == before  # inputs untouched
    again = tmp_path / "again.json"  # a second run gives the same file
    assert _run(inputs, again, "--frames", "1:4", checkpoint=sam2_checkpoint) == 0

    def key(anns):
        return [(a["image_id"], a["track_id"], a["segmentation"]["counts"], a["occlusion"]) for a in anns]

    assert key(json.loads(again.read_text())["annotations"]) == key(coco["annotations"])


def test_boxes_forward_only(inputs, tmp_path, sam2_checkpoint):
    boxes = tmp_path / "boxes.csv"
    boxes.write_text("frame,x0,y0,x1,y1\n3,5,5,20,18\n")
    out = tmp_path / "boxes.json"
    args = ["track", str(inputs[0]), "--boxes", str(boxes), "--checkpoint", str(sam2_checkpoint), "--device", "cpu"]
    assert main([*args, "--image-size", "64", "--direction", "forward", "-o", str(out)]) == 0
    assert {a["image_id"] - 1 for a in json.loads(out.read_text())["annotations"]} <= {3, 4}


@pytest.mark.parametrize(
    ("csv", "extra", "message"),
    [
        ("y,x\n1,1\n", (), "missing column(s) ['frame']"),
        ("frame,y,x\n7,1,1\n", (), "row 2, column 'frame': 7 is not a frame (the stack has frames 0 to 4)"),
        ("frame,y,x\n1,100,1\n", (), "Point (y=100, x=1) is outside the image"),
        ("frame,y,x\n3,1,1\n", ("--frames", "0:2"), "Start frame 3 is outside the range 0:2"),
    ],
)
def test_errors_exit_2_with_a_clear_message(inputs, tmp_path, sam2_checkpoint, capsys, csv, extra, message):
    points = tmp_path / "bad.csv"
    points.write_text(csv)
    out = tmp_path / "out.json"
    assert _run((inputs[0], points), out, *extra, checkpoint=sam2_checkpoint) == 2
    assert message in capsys.readouterr().err and not out.exists()


def test_bad_arguments(inputs, tmp_path, sam2_checkpoint, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _run(inputs, tmp_path / "o.json", "--frames", "a:b", checkpoint=sam2_checkpoint)
    assert exit_info.value.code == 2 and "expected FIRST:LAST" in capsys.readouterr().err
    assert _run(inputs, inputs[1], checkpoint=sam2_checkpoint) == 2
    assert "must end with one of ['.json']" in capsys.readouterr().err
