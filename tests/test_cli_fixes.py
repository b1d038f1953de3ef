"""Defects a tester found using the command line as a new user (issue: fixcli).

Each test drives ``napari_instseg.cli.main`` as a user does and checks the exit status, the
message (naming the file / field) and that no input or earlier output changed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_instseg.cli import main


def _snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (relative path -> digest)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _refused(argv: list[str], root: Path, capsys: pytest.CaptureFixture[str], *fragments: str) -> str:
    """Run ``argv``: exit 2, every fragment in stderr, nothing under ``root`` changed."""
    capsys.readouterr()
    before = _snapshot(root)
    assert main(argv) == 2
    err = capsys.readouterr().err
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in {err!r}"
    assert "Traceback" not in err
    assert _snapshot(root) == before
    return err


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project over three small grey images (no annotations)."""
    rng = np.random.default_rng(0)
    for k in range(3):
        tifffile.imwrite(tmp_path / f"img_{k}.tif", rng.integers(0, 255, (32, 32), dtype=np.uint8))
    target = tmp_path / "P"
    assert main(["project", "init", str(target), "--images", str(tmp_path / "img_*.tif")]) == 0
    return target


# 1. outputs never clobber a project, an input or an earlier output ---------------------------


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["project", "report", "{P}", "-o", "{P}/project.json"], "lies inside the input folder"),
        (["project", "report", "{P}", "-o", "{P}/manifest.sqlite"], "must end with one of ['.json']"),
        (["project", "report", "{P}", "-o", "{P}/other.json"], "lies inside the input folder"),
        (["project", "calibrate", "{P}", "--report", "-o", "{P}/project.json"], "lies inside the input folder"),
        (["project", "export", "{P}", "-o", "{T}/x.txt"], "must end with one of ['.json']"),
        (["project", "export", "{P}", "-o", "{P}/all.json"], "lies inside the input folder"),
        (["project", "sample", "{P}", "-o", "{P}"], "lies inside the input folder"),
        (["project", "qa", "{P}", "--gold", "{T}/gold.json", "-o", "{P}"], "lies inside the input folder"),
        (["project", "qa", "{P}", "--gold", "{T}/gold.json", "-o", "{P}/qa"], "lies inside the input folder"),
        (["project", "export", "{P}", "-o", "{T}/o.json", "--slides-geojson", "{P}/g"], "lies inside the input"),
    ],
)
def test_project_outputs_never_land_in_the_project(project, tmp_path, capsys, argv, fragment):
    (tmp_path / "gold.json").write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    argv = [a.replace("{P}", str(project)).replace("{T}", str(tmp_path)) for a in argv]
    _refused(argv, tmp_path, capsys, fragment)
    assert main(["project", "status", str(project)]) == 0  # the project still opens


def test_an_existing_report_is_replaced_only_with_overwrite(project, tmp_path, capsys):
    (tmp_path / "out.json").write_text("{}")
    for command in (["report", str(project)], ["calibrate", str(project), "--report"]):
        argv = ["project", *command, "-o", str(tmp_path / "out.json")]
        _refused(argv, tmp_path, capsys, f"-o {tmp_path}/out.json already exists", "--overwrite")
    argv = ["project", "report", str(project), "-o", str(tmp_path / "out.json")]
    assert main([*argv, "--overwrite"]) == 0
    assert json.loads((tmp_path / "out.json").read_text()) != {}


def test_export_never_replaces_an_existing_file_silently(tmp_path, capsys):
    labels = np.zeros((16, 16), np.uint32)
    labels[2:6, 2:6] = 1
    tifffile.imwrite(tmp_path / "labels.tif", labels)
    (tmp_path / "out.json").write_text("precious")
    argv = ["export", str(tmp_path / "labels.tif"), "-o", str(tmp_path / "out.json")]
    _refused(argv, tmp_path, capsys, "out.json already exists; choose another name or pass --overwrite")
    assert main([*argv, "--overwrite"]) == 0
    assert json.loads((tmp_path / "out.json").read_text())["annotations"]


def test_export_never_overwrites_the_file_a_folder_was_imported_from(tmp_path, capsys, monkeypatch):
    feature = {
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": [[[2, 2], [10, 2], [10, 10], [2, 10], [2, 2]]]},
        "properties": {"objectType": "annotation", "classification": {"name": "nucleus"}},
    }
    (tmp_path / "q.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    monkeypatch.chdir(tmp_path)  # a relative path at import time, as users type it
    assert main(["import", "q.geojson", "--shape", "32", "32", "-o", "imp"]) == 0
    for extra in ([], ["--overwrite"]):
        _refused(["export", "imp", "-o", "q.geojson", *extra], tmp_path, capsys, "is the input", "q.geojson")


# 2. ragged CSV rows are an error naming the file and line --------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "fields"),
    [("y,x\n100,200,1\n", 2, 3), ("y,x\n1,2\n3\n", 3, 1), ("y,x,label\n1,2,1\n\n3,4,1,9\n", 4, 4)],
)
def test_a_ragged_prompt_csv_is_refused_naming_the_line(tmp_path, capsys, text, line, fields):
    tifffile.imwrite(tmp_path / "img.tif", np.zeros((300, 300), np.uint8))
    (tmp_path / "p.csv").write_text(text)
    argv = ["prelabel", str(tmp_path / "img.tif"), "--points", str(tmp_path / "p.csv"), "-o", str(tmp_path / "o.json")]
    _refused(argv, tmp_path, capsys, f"{tmp_path}/p.csv: cannot read the CSV file: line {line} has {fields} field(s)")


@pytest.mark.parametrize(
    ("text", "line", "fields"),
    [("id,category_id\n1,1,0\n2,1,0\n", 2, 3), ("id,category_id,occlusion\n1,1\n", 2, 2)],
)
def test_a_ragged_instance_table_is_refused_naming_the_line(tmp_path, capsys, recwarn, text, line, fields):
    labels = np.zeros((16, 16), np.uint32)
    labels[2:6, 2:6] = 1
    labels[8:12, 8:12] = 2
    tifffile.imwrite(tmp_path / "labels.tif", labels)
    (tmp_path / "t.csv").write_text(text)
    argv = ["export", str(tmp_path / "labels.tif"), "--table", str(tmp_path / "t.csv"), "-o", str(tmp_path / "o.json")]
    _refused(argv, tmp_path, capsys, f"{tmp_path}/t.csv: cannot read the CSV table: line {line} has {fields} field(s)")
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_a_well_formed_prompt_csv_with_quotes_and_blank_lines_still_reads(tmp_path):
    from napari_instseg.core.prompts_io import read_points_csv

    (tmp_path / "p.csv").write_text('y,x,object\n10,20,"a,b"\n\n30,40,"a,b"\n')
    [prompt] = read_points_csv(tmp_path / "p.csv")
    assert prompt.points_yx.tolist() == [[10, 20], [30, 40]]


# 3. GeoJSON export in one pass over the label image ---------------------------------------------


def _many_instances(shape_yx: tuple[int, int], n: int, seed: int, id_step: int = 1) -> np.ndarray:
    """Random overlapping discs and rings (holes, several parts after overlap) with ids step apart."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape_yx, np.uint32)
    yy, xx = np.mgrid[: shape_yx[0], : shape_yx[1]]
    for k in range(1, n + 1):
        cy, cx, r = rng.integers(0, shape_yx[0]), rng.integers(0, shape_yx[1]), rng.integers(3, 14)
        d2 = (yy - cy) ** 2 + (xx - cx) ** 2
        mask = d2 <= r * r
        if k % 7 == 0:
            mask &= d2 > (r // 2) ** 2  # a ring: a polygon with a hole
        labels[mask] = k * id_step
    return labels


@pytest.mark.parametrize("id_step", [1, 1_000_003])  # dense ids, and sparse ids beyond the find_objects range
def test_geojson_export_is_identical_to_the_per_instance_scan(id_step):
    from napari_instseg.core.geojson import labels_to_geojson, new_feature
    from napari_instseg.core.instances import table_for_ids
    from napari_instseg.core.protocol import AnnotationProtocol

    labels = _many_instances((400, 500), 400, seed=1, id_step=id_step)
    protocol = AnnotationProtocol.default()
    ids = np.unique(labels)[1:].astype(np.int64)
    assert len(ids) > 300
    rows = table_for_ids(ids, None, defaults={"category_id": protocol.categories[0].id})
    old = [new_feature(labels, int(i), rows.loc[int(i)], protocol, (5, 7)) for i in ids.tolist()]  # whole-image scan
    new = labels_to_geojson(labels, None, protocol, origin_yx=(5, 7))["features"]
    assert json.dumps(new) == json.dumps([f for f in old if f is not None])
    assert any(f["geometry"]["type"] == "MultiPolygon" for f in new)
    assert any(len(f["geometry"]["coordinates"]) > 1 for f in new if f["geometry"]["type"] == "Polygon")


# 4. finished work is never taken from its annotator; calibration images are unstarted ------------


def _submit(project_dir: Path, image_id: int, annotator: str, *, review: bool = False) -> None:
    from napari_instseg.core.project import Project

    with Project.open(project_dir) as project:
        item = project.manifest.claim((image_id, ""), annotator)
        project.open_store(item).close()
        item = project.submit(item, annotator, n_instances=0)
        if review:
            project.review(item)


def test_assign_refuses_submitted_and_reviewed_images(project, tmp_path, capsys):
    _submit(project, 1, "alice")
    _submit(project, 2, "alice", review=True)
    argv = ["project", "assign", str(project), "bob", "--ids", "3", "1", "2"]
    _refused(argv, tmp_path, capsys, "image(s) 1 (submitted), 2 (reviewed) cannot be (re)assigned")
    assert main(["project", "assign", str(project), "bob", "--ids", "3"]) == 0


def test_calibrate_refuses_prelabelled_images(project, tmp_path, capsys):
    from napari_instseg.core.project import Project

    with Project.open(project) as p:
        p.manifest.set_item((2, ""), status="pre-labelled")
    argv = ["project", "calibrate", str(project), "--annotators", "a", "b", "--ids", "1", "2"]
    _refused(argv, tmp_path, capsys, "image(s) 2 (pre-labelled) are already started")
    assert main(["project", "calibrate", str(project), "--annotators", "a", "b", "--ids", "1"]) == 0
    _refused(["project", "assign", str(project), "bob", "--ids", "1"], tmp_path, capsys, "1 (calibration)")


# 6. help, docs and messages match the code ------------------------------------------------------


def test_prelabel_with_every_prompt_outside_the_image_is_refused(tmp_path, capsys):
    tifffile.imwrite(tmp_path / "img.tif", np.zeros((50, 60), np.uint8))
    (tmp_path / "p.csv").write_text("y,x\n100,10\n10,70\n")
    argv = ["prelabel", str(tmp_path / "img.tif"), "--points", str(tmp_path / "p.csv"), "-o", str(tmp_path / "o.json")]
    _refused(argv, tmp_path, capsys, f"{tmp_path}/p.csv: all 2 prompt(s) lie outside the image (shape (y, x) (50, 60))")
    assert not (tmp_path / "o.json").exists()


def test_project_init_help_names_the_default_category(capsys):
    from napari_instseg.core.protocol import AnnotationProtocol

    with pytest.raises(SystemExit):
        main(["project", "init", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert f"one category '{AnnotationProtocol.default().categories[0].name}'" in help_text


def test_project_status_counts_work_items_under_their_own_heading(project, capsys):
    assert main(["project", "calibrate", str(project), "--annotators", "a", "b", "--ids", "1"]) == 0
    capsys.readouterr()
    assert main(["project", "status", str(project)]) == 0
    out = capsys.readouterr().out
    assert "3 image(s), 4 work item(s)" in out  # 2 production images + image 1 for a and for b
    assert "work items by" in out and "status:   todo 4" in out


# 5. messages say what happened -----------------------------------------------------------------


def test_per_tile_export_counts_only_rows_with_no_pixels_anywhere(tmp_path, capsys):
    from napari_instseg.core.instances import make_rows
    from napari_instseg.core.protocol import AnnotationProtocol
    from napari_instseg.core.store import AnnotationStore

    labels = np.zeros((64, 64), np.uint32)
    for k in range(1, 9):  # instances spread over the four 32-px tiles
        y, x = divmod(k - 1, 4)
        labels[y * 30 + 2 : y * 30 + 8, x * 15 + 2 : x * 15 + 8] = k
    table = make_rows(list(range(1, 10)), category_id=[1] * 9)  # row 9 has no pixels
    AnnotationStore.create(tmp_path / "s.zarr", labels, AnnotationProtocol.default(), table=table).close()
    assert main(["export", str(tmp_path / "s.zarr"), "-o", str(tmp_path / "o.json"), "--per-tile", "32"]) == 0
    out = capsys.readouterr().out
    assert "1 table row(s) without pixels were skipped" in out


def test_polygon_export_of_an_import_folder_names_only_real_rle(tmp_path, capsys):
    from pycocotools import mask as mask_utils

    crowd = np.zeros((40, 40), np.uint8, order="F")
    crowd[33:38, 33:38] = 1
    rle = mask_utils.encode(crowd)
    rle["counts"] = rle["counts"].decode()
    annotations = [  # a big square under a small one: its visible mask has a hole, kept as it came in
        {"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "segmentation": [[2, 2, 30, 2, 30, 30, 2, 30]]},
        {"id": 2, "image_id": 1, "category_id": 1, "iscrowd": 0, "segmentation": [[10, 10, 16, 10, 16, 16, 10, 16]]},
        {"id": 3, "image_id": 1, "category_id": 1, "iscrowd": 1, "segmentation": rle},
    ]
    for a in annotations:
        a["bbox"], a["area"] = [0, 0, 1, 1], 1
    coco = {
        "images": [{"id": 1, "file_name": "a.tif", "height": 40, "width": 40}],
        "annotations": annotations,
        "categories": [{"id": 1, "name": "n"}],
    }
    (tmp_path / "c.json").write_text(json.dumps(coco))
    assert main(["import", str(tmp_path / "c.json"), "-o", str(tmp_path / "imp")]) == 0
    capsys.readouterr()
    assert main(["export", str(tmp_path / "imp"), "-o", str(tmp_path / "o.json"), "--format", "polygon"]) == 0
    out = capsys.readouterr().out
    assert "with holes written as RLE" not in out
    assert "RLE annotation id(s), not polygons: 1 crowd (3)" in out


def test_a_truncated_svs_prints_our_error_only(tmp_path, capsys):
    image = np.random.default_rng(0).integers(0, 255, (512, 512, 3), dtype=np.uint8)
    with tifffile.TiffWriter(tmp_path / "s.svs") as writer:
        writer.write(image, tile=(256, 256), subifds=0, compression="zlib")
        writer.write(image[::2, ::2], tile=(256, 256), compression="zlib", subfiletype=1)
    data = (tmp_path / "s.svs").read_bytes()
    (tmp_path / "s.svs").write_bytes(data[: len(data) // 2])
    argv = ["prelabel-slide", str(tmp_path / "s.svs"), "--store", str(tmp_path / "st.zarr"), "--detect"]
    err = _refused(argv, tmp_path, capsys, f"{tmp_path}/s.svs: cannot open the slide: the file is truncated")
    assert err.count("\n") == 1 and err.startswith("napari-instseg prelabel-slide: error:")


def test_store_check_of_a_missing_path_says_so(tmp_path, capsys):
    _refused(["store", "check", str(tmp_path / "nope.zarr")], tmp_path, capsys, "nope.zarr does not exist")


def test_qa_names_a_geojson_file_and_how_to_convert_it(tmp_path, capsys):
    (tmp_path / "gt.json").write_text(
        json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "n"}]})
    )
    (tmp_path / "x.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    argv = ["qa", "--gt", str(tmp_path / "gt.json"), "--dt", str(tmp_path / "x.geojson"), "-o", str(tmp_path / "qa")]
    _refused(argv, tmp_path, capsys, "--dt", "x.geojson is QuPath GeoJSON, not COCO", "napari-instseg import")


def test_an_image_with_a_bad_size_is_the_only_problem_reported(tmp_path, capsys):
    images = [{"id": 764, "file_name": "a.tif", "height": -5, "width": 20}]
    annotations = [
        {"id": i, "image_id": 764, "category_id": 1, "iscrowd": 0, "segmentation": [[0, 0, 2, 0, 2, 2]]}
        for i in range(1, 16)
    ]
    coco = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "n"}]}
    (tmp_path / "c.json").write_text(json.dumps(coco))
    err = _refused(["import", str(tmp_path / "c.json"), "-o", str(tmp_path / "imp")], tmp_path, capsys, "-5 x 20")
    assert "(1 problem(s))" in err and "not a known image id" not in err


def test_track_qa_prints_n_a_for_empty_tiers_as_qa_does(tmp_path, capsys):
    from napari_instseg.core.coco.video import export_coco_video
    from napari_instseg.core.video.tracks import TrackStack

    labels = np.zeros((3, 20, 30), np.uint32)
    labels[:, 2:8, 2:8] = 1
    path = tmp_path / "v.json"
    path.write_text(json.dumps(export_coco_video(TrackStack(labels), name="v").coco))
    assert main(["track-qa", str(path), str(path)]) == 0
    out = capsys.readouterr().out
    assert "nan" not in out and "per-frame Mask AP heavy: n/a" in out


def test_track_qa_output_follows_the_one_output_rule(tmp_path, capsys):
    from napari_instseg.core.coco.video import export_coco_video
    from napari_instseg.core.video.tracks import TrackStack

    labels = np.zeros((2, 20, 30), np.uint32)
    labels[:, 2:8, 2:8] = 1
    path = tmp_path / "v.json"
    path.write_text(json.dumps(export_coco_video(TrackStack(labels), name="v").coco))
    (tmp_path / "old.json").write_text("{}")
    _refused(["track-qa", str(path), str(path), "-o", str(path)], tmp_path, capsys, "is the input")
    _refused(["track-qa", str(path), str(path), "-o", str(tmp_path / "old.json")], tmp_path, capsys, "--overwrite")
    assert main(["track-qa", str(path), str(path), "-o", str(tmp_path / "old.json"), "--overwrite"]) == 0
