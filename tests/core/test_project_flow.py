"""A project end to end: batch pre-labels, review, calibration, one COCO export, QA, throughput."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

from napari_instseg.cli import main
from napari_instseg.core.project import Project
from napari_instseg.core.protocol import AnnotationProtocol, Category


@pytest.fixture
def project_dir(tmp_path, ihc_image):
    """A project over four 128 x 128 IHC tiles with two categories."""
    import tifffile

    folder = tmp_path / "tiles"
    folder.mkdir()
    for k in range(4):
        y, x = divmod(k, 2)
        tifffile.imwrite(folder / f"tile_{k}.tif", ihc_image[y * 128 : (y + 1) * 128, x * 128 : (x + 1) * 128])
    AnnotationProtocol(categories=(Category(1, "nucleus"), Category(2, "mitosis"))).save(tmp_path / "protocol.json")
    target = tmp_path / "proj"
    argv = [
        "project",
        "init",
        str(target),
        "--images",
        str(folder / "*.tif"),
        "--protocol",
        str(tmp_path / "protocol.json"),
    ]
    assert main(argv) == 0
    return target


def _square(y: int, x: int, size: int = 12) -> np.ndarray:
    mask = np.zeros((128, 128), bool)
    mask[y : y + size, x : x + size] = True
    return mask


def _annotate(project: Project, key: tuple[int, str], annotator: str, masks_categories) -> None:
    item = project.manifest.claim(key, annotator)
    store = project.open_store(item)
    session = store.session(annotator=annotator)
    for mask, category in masks_categories:
        session.commit(mask, category=category)
    n = len(store.table)
    store.close()
    project.submit(item, annotator, n_instances=n)


def test_prelabel_review_export_report(project_dir, tmp_path, capsys):
    argv = ["project", "prelabel", str(project_dir), "--backend", "classic", "--workers", "2"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "4 of 4 image(s) pre-labelled (classic)" in out
    with Project.open(project_dir) as project:
        items = project.items()
        assert {it.status for it in items} == {"pre-labelled"}
        assert all(it.n_instances > 0 for it in items)
        # an interrupted run: the store was written, the manifest row not
        project.manifest.set_item(items[0].key, status="todo")
    assert main(argv) == 0  # resumable: nothing is pre-labelled twice
    assert "0 of 1 image(s) pre-labelled (classic), 0 instance(s); 4 already done" in capsys.readouterr().out
    with Project.open(project_dir) as project:
        first = project.items()[0]
        assert first.status == "pre-labelled"
        # review two images: accept every pre-label of image 1, reject one of image 2
        for key, reject in (((1, ""), False), ((2, ""), True)):
            item = project.manifest.claim(key, "alice")
            store = project.open_store(item)
            session = store.session(annotator="alice")
            ids = list(store.table.index)
            if reject:
                session.reject(ids[0])
                ids = ids[1:]
            for instance_id in ids:
                session.accept(instance_id)
            store.close()
            project.submit(item, "alice")
        project.review(project.manifest.item(1))
    output = tmp_path / "all.json"
    assert main(["project", "export", str(project_dir), "-o", str(output)]) == 0
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(output))
    assert sorted(coco.getImgIds()) == [1, 2]
    rejected = json.loads(output.read_text())["instseg_rejected"]  # image 2's rejected pre-label, kept
    assert [(r["image_id"], r["attributes"]["review"]) for r in rejected] == [(2, "rejected")]
    ann_ids = sorted(coco.getAnnIds())
    assert all(a // 1_000_000 in (1, 2) for a in ann_ids)
    # a second export after another submission keeps every id already written
    with Project.open(project_dir) as project:
        _annotate(project, (3, ""), "bob", [(_square(10, 10), "nucleus")])
    assert main(["project", "export", str(project_dir), "-o", str(output)]) == 2  # never overwritten
    assert main(["project", "export", str(project_dir), "-o", str(tmp_path / "all2.json")]) == 0
    again = json.loads((tmp_path / "all2.json").read_text())
    assert {a["id"] for a in again["annotations"]} >= set(ann_ids)
    assert sorted(im["id"] for im in again["images"]) == [1, 2, 3]
    assert main(["project", "export", str(project_dir), "-o", str(tmp_path / "rev.json"), "--reviewed-only"]) == 0
    assert [im["id"] for im in json.loads((tmp_path / "rev.json").read_text())["images"]] == [1]
    # throughput report with a rate
    capsys.readouterr()
    report_path = tmp_path / "throughput.json"
    assert main(["project", "report", str(project_dir), "--rate", "30", "-o", str(report_path)]) == 0
    text = capsys.readouterr().out
    assert "per hour" in text and "accepted as is" in text and "cost per instance" in text
    report = json.loads(report_path.read_text())
    assert report["prelabels"]["review"]["rejected"] == 1
    assert 0 < report["prelabels"]["acceptance_rate"] < 1
    assert set(report["per_annotator"]) >= {"bob"}
    # the QA review sample across the project, per tier at the protocol's rates
    capsys.readouterr()
    argv = [
        "project",
        "sample",
        str(project_dir),
        "-o",
        str(tmp_path / "sample"),
        "--stratify-by",
        "occlusion",
        "category",
    ]
    assert main(argv) == 0
    queue = json.loads((tmp_path / "sample" / "review_queue.json").read_text())["items"]
    assert queue and {q["image_id"] for q in queue} <= {1, 2, 3}
    assert main(argv) == 2  # a second run never overwrites the queue
    # QA against a gold file: the project's own export as gold scores AP 1
    capsys.readouterr()
    assert (
        main(["project", "qa", str(project_dir), "--gold", str(tmp_path / "all2.json"), "-o", str(tmp_path / "qa")])
        == 0
    )
    qa = json.loads((tmp_path / "qa" / "report.json").read_text())
    assert qa["overall"]["AP"] == pytest.approx(1.0)
    assert qa["prelabels"]["overall"]["rejected"] == 1  # the rejected pre-label counts


def test_calibration_round_between_two_annotators(project_dir, tmp_path, capsys):
    argv = ["project", "calibrate", str(project_dir), "--annotators", "alice", "bob", "--count", "2"]
    assert main(argv) == 0
    assert "images [1, 2] assigned to alice, bob" in capsys.readouterr().out
    with Project.open(project_dir) as project:
        assert project.next_item("alice").key == (1, "alice")
        assert project.next_item("carol").key == (3, "")  # calibration images are not carol's
        nuclei = [(_square(10, 10), "nucleus"), (_square(50, 60), "nucleus")]
        for image_id in (1, 2):
            _annotate(project, (image_id, "alice"), "alice", [*nuclei, (_square(90, 90), "mitosis")])
            # bob agrees on nuclei and calls the third object a nucleus elsewhere
            _annotate(project, (image_id, "bob"), "bob", [*nuclei, (_square(100, 20), "mitosis")])
        # an image is submitted once every annotator's set is
        assert project.manifest.image_ids(phase="calibration", statuses=("submitted",)) == [1, 2]
        counts = project.manifest.counts()
        assert counts["phase"] == {"calibration": 4, "production": 2}
    capsys.readouterr()
    out_json = tmp_path / "calibration.json"
    argv = ["project", "calibrate", str(project_dir), "--report", "--min-ap", "0.6", "-o", str(out_json)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "alice vs bob on 2 image(s)" in text and "BELOW THRESHOLD" in text
    report = json.loads(out_json.read_text())
    [pair] = report["pairs"]
    assert pair["per_class_AP"]["nucleus"] == pytest.approx(1.0)
    assert pair["per_class_AP"]["mitosis"] == pytest.approx(0.0)
    assert [f["class"] for f in report["flagged"]] == ["mitosis"]
    assert pair["kappa_category"] is not None and pair["n_matched"] == 4
    assert Project.open(project_dir).settings.calibration_min_ap == 0.6


@pytest.mark.slow
def test_prelabel_with_sam2_random_weights_through_the_real_loader(tmp_path, ihc_image, sam2_checkpoint, capsys):
    """The SAM 2 path end to end (random weights: code paths and bookkeeping only, no quality)."""
    import tifffile

    tifffile.imwrite(tmp_path / "tile.tif", ihc_image[:128, :128])
    assert main(["project", "init", str(tmp_path / "p"), "--images", str(tmp_path / "tile.tif")]) == 0
    argv = ["project", "prelabel", str(tmp_path / "p"), "--backend", "sam2", "--checkpoint", str(sam2_checkpoint)]
    assert main([*argv, "--device", "cpu"]) == 0
    assert "1 of 1 image(s) pre-labelled (sam2)" in capsys.readouterr().out
    with Project.open(tmp_path / "p") as project:
        [item] = project.items()
        assert item.status == "pre-labelled"
        store = project.open_store(item, read_only=True)
        table = store.table
        store.close()
    assert set(table["source"]) <= {"sam2"} and set(table["review"]) <= {"pre-label"}
    assert len(table) == item.n_instances


def test_prelabel_on_a_distributed_scheduler_matches_threads(tmp_path, ihc_image, capsys):
    """A scheduler address (here an in-process LocalCluster) gives the same stores as threads."""
    import tifffile
    from distributed import LocalCluster

    tifffile.imwrite(tmp_path / "a.tif", ihc_image[:128, :128])
    tifffile.imwrite(tmp_path / "b.tif", ihc_image[128:256, :128])
    for name in ("threads", "cluster"):
        assert main(["project", "init", str(tmp_path / name), "--images", str(tmp_path / "*.tif")]) == 0
    assert main(["project", "prelabel", str(tmp_path / "threads"), "--backend", "classic"]) == 0
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster:
        argv = ["project", "prelabel", str(tmp_path / "cluster"), "--backend", "classic"]
        assert main([*argv, "--scheduler", cluster.scheduler_address]) == 0
    assert "2 of 2 image(s) pre-labelled" in capsys.readouterr().out
    for image_id in (1, 2):
        found = []
        for name in ("threads", "cluster"):
            with Project.open(tmp_path / name) as project:
                store = project.open_store(project.manifest.item(image_id), read_only=True)
                found.append(store.read_labels())
                store.close()
        np.testing.assert_array_equal(found[0], found[1])


def test_prelabel_goes_on_past_a_missing_or_changed_image_and_names_slides_left(tmp_path, ihc_image, capsys):
    """A project whose image files changed after ``init`` (one deleted, one replaced by a
    larger image) and which holds a slide: the other images are pre-labelled, the two bad
    ones are named with why (exit status 2), the slide is said to be left to prelabel-slide;
    fixing the files and running again finishes the job."""
    import tifffile
    import zarr

    folder = tmp_path / "tiles"
    folder.mkdir()
    for k in range(3):
        tifffile.imwrite(folder / f"tile_{k}.tif", ihc_image[:128, k * 64 : k * 64 + 128])
    root = zarr.open_group(str(tmp_path / "slide.zarr"), mode="w")
    root.create_array("0", data=np.zeros((1024, 1024, 3), np.uint8), chunks=(512, 512, 3))
    target = tmp_path / "proj"
    argv = ["project", "init", str(target), "--images", str(folder / "*.tif"), "--slides", str(tmp_path / "*.zarr")]
    assert main(argv) == 0
    (folder / "tile_0.tif").rename(tmp_path / "away.tif")
    original = tifffile.imread(folder / "tile_1.tif")
    tifffile.imwrite(folder / "tile_1.tif", ihc_image[:200, :256])  # replaced by a larger image
    capsys.readouterr()
    run = ["project", "prelabel", str(target), "--backend", "classic", "--auto", "cells"]
    assert main(run) == 2
    out = capsys.readouterr().out
    assert "1 of 3 image(s) pre-labelled" in out and "1 slide(s) not pre-labelled here" in out
    assert "tile_0.tif" in out and "No such file" in out
    assert "tile_1.tif is now 200 x 256 px; the project recorded 128 x 128" in out
    with Project.open(target) as project:
        status = {it.file_name: it.status for it in project.items()}
    assert status == {"tile_0.tif": "todo", "tile_1.tif": "todo", "tile_2.tif": "pre-labelled", "slide.zarr": "todo"}
    (tmp_path / "away.tif").rename(folder / "tile_0.tif")
    tifffile.imwrite(folder / "tile_1.tif", original)
    assert main(run) == 0  # a second run: the two fixed images, the third left as it was
    out = capsys.readouterr().out
    assert "2 of 2 image(s) pre-labelled" in out and "1 already done" in out
