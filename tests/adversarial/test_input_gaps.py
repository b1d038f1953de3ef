"""Tests for gaps that let plausible one-line bugs through: where batch pre-labels land on a
non-square slide (x / y swapped), QA with equal IoUs, equal scores and overlapping
references, a point on the image border, review sample sizes rounding down, erasing part of a
pre-label, outputs checked before the compute, and help on every CLI option.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io

import numpy as np
import pytest
import zarr

from napari_instseg.cli import _build_parser, main
from napari_instseg.core.prompting import Prompt
from napari_instseg.core.prompting.base import PromptError

# --- batch pre-labels on a non-square slide ----------------------------------------------------


def _disk(shape, centre, radius):
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def test_batch_prelabels_land_where_their_points_are_on_a_non_square_slide(tmp_path):
    from napari_instseg.core.batch import BatchConfig, prelabel_slide
    from napari_instseg.core.store import AnnotationStore

    shape = (96, 320)  # wide: a swapped (x, y) lands outside the slide or on glass
    image = np.full((*shape, 3), 235, np.uint8)
    nuclei_yx = [(30, 250), (70, 40), (20, 150)]
    for centre in nuclei_yx:
        image[_disk(shape, centre, 7)] = (70, 40, 120)
    root = zarr.open_group(str(tmp_path / "wide.zarr"), mode="w")
    root.create_array("0", data=image, chunks=(64, 64, 3))
    prompts = [Prompt.make(points_yx=[c]) for c in nuclei_yx]
    config = BatchConfig(backend="classic", tile_px=64, halo_px=16)
    summary = prelabel_slide(tmp_path / "wide.zarr", tmp_path / "store.zarr", prompts, config=config, workers=1)
    assert summary.n_committed == 3
    with AnnotationStore.open(tmp_path / "store.zarr", read_only=True) as store:
        labels = store.read_labels()
    assert labels.shape == shape
    for y, x in nuclei_yx:
        instance = labels[y, x]
        assert instance != 0, f"nothing at (y={y}, x={x})"
        mask = labels == instance
        assert (mask & _disk(shape, (y, x), 9)).sum() >= 0.9 * mask.sum()  # on the nucleus, not elsewhere


# --- QA: ties and overlapping references, against pycocotools -----------------------------------


def _rle(mask):
    from pycocotools import mask as mask_utils

    encoded = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    encoded["counts"] = encoded["counts"].decode()
    return encoded


def _rect(y0, x0, y1, x1, shape=(20, 24)):
    mask = np.zeros(shape, bool)
    mask[y0:y1, x0:x1] = True
    return mask


def _gt(*masks):
    return {
        "images": [{"id": 1, "file_name": "a.png", "height": 20, "width": 24}],
        "categories": [{"id": 1, "name": "n"}],
        "annotations": [
            {
                "id": i + 1,
                "image_id": 1,
                "category_id": 1,
                "segmentation": _rle(m),
                "area": float(m.sum()),
                "iscrowd": 0,
            }
            for i, m in enumerate(masks)
        ],
    }


def _dt(*scored):
    return [{"image_id": 1, "category_id": 1, "segmentation": _rle(m), "score": s} for m, s in scored]


def _pycocotools(gt, dt):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = copy.deepcopy(gt)
        coco.createIndex()
        evaluator = COCOeval(coco, coco.loadRes(copy.deepcopy(dt)), "segm")
        evaluator.params.maxDets = [1000]
        evaluator.evaluate()
        evaluator.accumulate()
    return evaluator.eval["precision"][:, :, :, 0, -1], evaluator.eval["recall"][:, :, 0, -1]


def _ours(gt, dt):
    from napari_instseg.core.qa import prepare, scores_of

    scores = scores_of(prepare(gt, dt))
    return scores


def _assert_same_as_pycocotools(gt, dt):
    precision, recall = _pycocotools(gt, dt)
    ours = _ours(gt, dt)
    np.testing.assert_allclose(ours.precision, precision, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours.recall, recall, rtol=0, atol=1e-12)
    return ours


def test_qa_candidate_with_equal_ious_to_two_overlapping_references():
    a, b = _rect(0, 0, 10, 12), _rect(0, 4, 10, 16)  # references overlap each other
    middle = _rect(0, 2, 10, 14)  # IoU 100/140 with both
    ours = _assert_same_as_pycocotools(_gt(a, b), _dt((middle, 0.9), (a, 0.8)))
    assert pytest.approx(1.0) == ours.AP50  # the tie must leave A free for the exact candidate


def test_qa_candidates_with_equal_scores_keep_their_order():
    a = _rect(2, 2, 12, 12)
    loose, tight = _rect(2, 2, 12, 16), _rect(2, 2, 12, 13)  # IoU 0.71 and 0.91, same score
    _assert_same_as_pycocotools(_gt(a), _dt((loose, 0.5), (tight, 0.5)))
    _assert_same_as_pycocotools(_gt(a), _dt((tight, 0.5), (loose, 0.5)))


def test_qa_overlapping_references_each_found_exactly():
    a, b = _rect(0, 0, 12, 12), _rect(6, 6, 18, 18)
    ours = _assert_same_as_pycocotools(_gt(a, b), _dt((a, 0.6), (b, 0.6)))
    assert pytest.approx(1.0) == ours.AP


def test_qa_identical_candidates_one_true_positive_one_false():
    a = _rect(2, 2, 12, 12)
    ours = _assert_same_as_pycocotools(_gt(a), _dt((a, 0.7), (a, 0.7)))
    assert pytest.approx(1.0) == ours.AP50  # precision at recall 1 is 1 (the first one)


# --- a point on the image border -----------------------------------------------------------------


@pytest.mark.parametrize("point_yx", [(0, 0), (19, 29), (0, 29), (19, 0), (19.5, 29.5)])
def test_a_point_on_the_last_row_or_column_is_inside(point_yx):
    Prompt.make(points_yx=[point_yx]).check_inside((20, 30))


@pytest.mark.parametrize("point_yx", [(20, 5), (5, 30), (-0.5, 5), (5, -1)])
def test_a_point_one_past_the_border_is_outside(point_yx):
    with pytest.raises(PromptError, match="is outside the image"):
        Prompt.make(points_yx=[point_yx]).check_inside((20, 30))


def test_prelabel_segments_an_object_touching_the_border_from_a_border_point(tmp_path, capsys):
    import json

    import tifffile

    image = np.full((40, 50), 230, np.uint8)
    image[_disk((40, 50), (39, 49), 8)] = 30  # a nucleus cut by the bottom-right corner
    tifffile.imwrite(tmp_path / "img.tif", image)
    (tmp_path / "p.csv").write_text("y,x\n39,49\n")
    args = ["prelabel", str(tmp_path / "img.tif"), "--points", str(tmp_path / "p.csv"), "--backend", "classic"]
    assert main([*args, "-o", str(tmp_path / "o.json")]) == 0
    annotations = json.loads((tmp_path / "o.json").read_text())["annotations"]
    assert len(annotations) == 1
    x, y, w, h = annotations[0]["bbox"]
    assert x + w == pytest.approx(50) and y + h == pytest.approx(40)


# --- review sample sizes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "rate", "expected"), [(15, 0.1, 2), (11, 0.2, 3), (1, 0.01, 1), (10, 0.1, 1), (7, 1.0, 7)]
)
def test_review_sample_sizes_round_up_never_down(n, rate, expected):
    import pandas as pd

    from napari_instseg.core.protocol import SamplingRates
    from napari_instseg.core.qa.sampling import review_sample

    instances = pd.DataFrame(
        {
            "ann_id": range(1, n + 1),
            "image_id": 1,
            "file_name": "a.png",
            "instance_id": range(1, n + 1),
            "category": "n",
            "occlusion": "none",
            "annotator": "",
            "bbox_xywh": [[0, 0, 1, 1]] * n,
        }
    )
    queue = review_sample(instances, SamplingRates(none=rate, min_per_tier=0))
    assert len(queue) == expected


# --- erasing part of a pre-label ------------------------------------------------------------------


def test_erasing_part_of_a_prelabel_marks_it_corrected():
    from napari_instseg.core.prompting.classic import ClassicPrompter
    from napari_instseg.core.session import AnnotationSession

    shape = (40, 40)
    image = np.full(shape, 230, np.uint8)
    image[_disk(shape, (20, 20), 8)] = 30
    session = AnnotationSession(np.zeros(shape, np.uint32), prompter=ClassicPrompter())
    session.set_image(image)
    session.prompt(points_yx=[(20, 20)])
    instance = session.commit().instance_id
    assert session.table.at[instance, "review"] == "pre-label"
    area = int((session.labels_yx == instance).sum())
    session.labels_yx[20:, :] = 0  # napari's eraser: half of it, in place on the layer data
    assert session.labels_edited() is not None
    row = session.table.loc[instance]
    assert row["review"] == "corrected"
    assert 0.3 < row["prelabel_iou"] < 0.7
    assert int((session.labels_yx == instance).sum()) < area


# --- outputs are checked before the compute ------------------------------------------------------


def _forbid(monkeypatch, target: str) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError(f"{target} ran before the output was checked")

    monkeypatch.setattr(target, refuse)


@pytest.mark.parametrize(
    ("argv", "compute"),
    [
        (["export", "{t}/l.npy", "-o", "/proc/x.json"], "napari_instseg.core.coco.export_coco"),
        (["export", "{t}/l.npy", "-o", "{t}/l.npy"], "napari_instseg.core.io.read_labels"),
        (["import", "{t}/c.json", "-o", "/proc/out"], "napari_instseg.core.coco.import_coco"),
        (["import", "{t}/c.json", "-o", "{t}/c.json"], "napari_instseg.core.coco.import_coco"),
        (["qa", "--gt", "{t}/c.json", "--dt", "{t}/c.json", "-o", "/proc/qa"], "napari_instseg.core.qa.report.run_qa"),
        (
            ["agreement", "{t}/c.json", "{t}/c.json", "-o", "/proc/a.json"],
            "napari_instseg.core.qa.agreement.calibration",
        ),
        (
            ["prelabel", "{t}/l.npy", "--points", "{t}/p.csv", "--backend", "classic", "-o", "/proc/o.json"],
            "napari_instseg.core.io.read_image",
        ),
    ],
)
def test_unusable_outputs_are_refused_before_the_compute(argv, compute, tmp_path, monkeypatch, capsys):
    np.save(tmp_path / "l.npy", np.ones((4, 4), np.uint8))
    (tmp_path / "c.json").write_text('{"images": [], "annotations": [], "categories": []}')
    (tmp_path / "p.csv").write_text("y,x\n1,1\n")
    _forbid(monkeypatch, compute)
    assert main([a.replace("{t}", str(tmp_path)) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"napari-instseg {argv[0]}: error: -o ")


def test_an_earlier_qa_run_is_never_replaced_without_overwrite(tmp_path, capsys):
    """A second ``qa`` into the same folder is refused (its review queue may hold verdicts,
    its summary notes), as ``project qa`` and every other ``-o`` is; ``--overwrite`` replaces."""
    import json

    a, b = _rect(0, 0, 10, 12), _rect(10, 10, 18, 20)
    (tmp_path / "gt.json").write_text(json.dumps(_gt(a, b)))
    (tmp_path / "dt.json").write_text(json.dumps(_dt((a, 0.9))))
    argv = ["qa", "--gt", str(tmp_path / "gt.json"), "--dt", str(tmp_path / "dt.json"), "-o", str(tmp_path / "qa")]
    assert main(argv) == 0
    queue_path = tmp_path / "qa" / "review_queue.json"
    queue = json.loads(queue_path.read_text())
    queue["items"][0]["outcome"] = "fail"
    queue_path.write_text(json.dumps(queue))
    before = {p.name: p.read_bytes() for p in (tmp_path / "qa").iterdir()}
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "already holds report.json" in err and "review_queue.json" in err and "--overwrite" in err
    assert {p.name: p.read_bytes() for p in (tmp_path / "qa").iterdir()} == before
    assert main([*argv, "--overwrite"]) == 0
    assert json.loads(queue_path.read_text())["items"][0]["outcome"] == ""


# --- help on every option of every command -------------------------------------------------------


def _subparsers(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.items()


def test_every_option_of_every_command_has_help():
    missing = []
    for name, sub in _subparsers(_build_parser()):
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            if not action.help:
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, f"options without help: {missing}"


def test_qa_gallery_leaves_out_unreadable_and_wrong_size_images(tmp_path):
    import json

    a, b = _rect(0, 0, 10, 12), _rect(10, 10, 18, 20)
    gt = _gt(a, b)
    gt["images"].append({"id": 2, "file_name": "b.png", "height": 20, "width": 24})
    gt["annotations"].append(dict(gt["annotations"][0], id=3, image_id=2))
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(_dt((a, 0.9))))
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.png").write_bytes(b"not a png")
    from skimage import io as skio

    skio.imsave(images / "b.png", np.zeros((3, 3), np.uint8), check_contrast=False)  # not 20 x 24
    argv = ["qa", "--gt", str(tmp_path / "gt.json"), "--dt", str(tmp_path / "dt.json"), "-o", str(tmp_path / "qa")]
    assert main([*argv, "--images", str(images)]) == 0
    assert (tmp_path / "qa" / "report.html").is_file()
