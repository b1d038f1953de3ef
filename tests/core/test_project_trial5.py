"""Defects of the fifth trial (a team lead's use of projects), each reproduced through the
command line as the user ran it: exit status 2 with what and where, inputs and outputs
untouched on error."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from napari_instseg.cli import main
from napari_instseg.core.project import Project


@pytest.fixture
def tiles(tmp_path, ihc_image):
    """Three 128 x 128 IHC tiles (TIFF)."""
    import tifffile

    folder = tmp_path / "tiles"
    folder.mkdir()
    for k in range(3):
        tifffile.imwrite(folder / f"tile_{k}.tif", ihc_image[:128, k * 128 : (k + 1) * 128])
    return folder


@pytest.fixture
def project_dir(tmp_path, tiles):
    target = tmp_path / "proj"
    assert main(["project", "init", str(target), "--images", str(tiles / "*.tif")]) == 0
    return target


def _square(y: int, x: int, size: int = 12) -> np.ndarray:
    mask = np.zeros((128, 128), bool)
    mask[y : y + size, x : x + size] = True
    return mask


def _annotate(project_dir: Path, image_id: int, annotator: str = "alice", *, submit: bool = True) -> None:
    """Two hand-drawn squares in image ``image_id``, then submitted."""
    with Project.open(project_dir) as project:
        item = project.manifest.claim((image_id, ""), annotator)
        store = project.open_store(item)
        session = store.session(annotator=annotator)
        for y, x in ((10, 10), (60, 70)):
            session.commit(_square(y, x))
        n = len(store.table)
        store.close()
        if submit:
            project.submit(item, annotator, n_instances=n)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _refused(argv: list[str], capsys, *fragments: str) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "error:" in err
    for fragment in fragments:
        assert fragment in err, err
    return err


# 1. project qa -o never replaces a review queue (verdicts) or a report without --overwrite ------


def test_qa_again_into_the_same_folder_refuses_and_keeps_the_verdicts(project_dir, tmp_path, capsys):
    _annotate(project_dir, 1)
    gold = tmp_path / "gold.json"
    assert main(["project", "export", str(project_dir), "-o", str(gold)]) == 0
    qa = ["project", "qa", str(project_dir), "--gold", str(gold), "-o", str(tmp_path / "qa1")]
    assert main(qa) == 0
    queue_path = tmp_path / "qa1" / "review_queue.json"
    queue = json.loads(queue_path.read_text())
    queue["items"][0].update(outcome="fail", reason="MY VERDICT")
    queue_path.write_text(json.dumps(queue))
    with (tmp_path / "qa1" / "summary.md").open("a") as handle:
        handle.write("my note\n")
    before = _snapshot(tmp_path / "qa1")
    err = _refused(qa, capsys, f"-o {tmp_path / 'qa1'} already holds", "review_queue.json", "review_queue.csv")
    assert "--overwrite" in err
    assert _snapshot(tmp_path / "qa1") == before  # the verdict and the note are kept
    assert main([*qa, "--overwrite"]) == 0  # asked for: replaced
    assert "MY VERDICT" not in queue_path.read_text()
    # never over the gold, even with --overwrite
    gold_bytes = gold.read_bytes()
    inside = ["project", "qa", str(project_dir), "--gold", str(tmp_path / "qa1" / "report.json")]
    _refused([*inside, "-o", str(tmp_path / "qa1"), "--overwrite"], capsys, "would overwrite the input")
    assert gold.read_bytes() == gold_bytes


# 2. a new project folder gets the umask's mode (mkdtemp made it 0700: private to its creator) ---


def test_a_new_project_folder_is_as_open_as_any_folder_the_user_makes(project_dir, tmp_path):
    (tmp_path / "plain").mkdir()
    expected = stat.S_IMODE((tmp_path / "plain").stat().st_mode)  # what the umask gives a folder
    umask = os.umask(0o022)
    os.umask(umask)
    assert expected == 0o777 & ~umask
    _annotate(project_dir, 1, submit=False)  # a store is made too
    for folder in (project_dir, project_dir / "stores", project_dir / "stores" / "0000001.zarr"):
        assert stat.S_IMODE(folder.stat().st_mode) == expected, folder
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".proj.")]  # no build folder left


# 3. export and sample offer the --overwrite their messages advise (never over an input) -----------


def test_export_and_sample_again_refuse_then_replace_with_overwrite(project_dir, tmp_path, capsys):
    _annotate(project_dir, 1)
    out = tmp_path / "out"
    out.mkdir()
    export = ["project", "export", str(project_dir), "-o", str(out / "dataset.json")]
    assert main(export) == 0
    first = (out / "dataset.json").read_text()
    _annotate(project_dir, 2)
    _refused(export, capsys, f"-o {out / 'dataset.json'} already exists", "--overwrite")
    assert (out / "dataset.json").read_text() == first
    assert main([*export, "--overwrite"]) == 0
    assert [im["id"] for im in json.loads((out / "dataset.json").read_text())["images"]] == [1, 2]
    assert not [p.name for p in out.iterdir() if p.name != "dataset.json"]  # no temporary file left
    # a COCO file another tool wrote (e.g. the one the images were listed from) is never replaced
    (out / "source.json").write_text('{"images": [], "annotations": [], "categories": []}')
    _refused([*export[:-1], str(out / "source.json"), "--overwrite"], capsys, "was not written by napari-instseg")
    assert (out / "source.json").read_text() == '{"images": [], "annotations": [], "categories": []}'
    project_before = _snapshot(project_dir)
    inside = ["project", "export", str(project_dir), "-o", str(project_dir / "project.json"), "--overwrite"]
    _refused(inside, capsys, "lies inside the input folder")
    assert _snapshot(project_dir) == project_before
    sample = ["project", "sample", str(project_dir), "-o", str(tmp_path / "samp")]
    assert main(sample) == 0
    queue = tmp_path / "samp" / "review_queue.json"
    queue.write_text('{"items": []}')
    _refused(sample, capsys, "already holds review_queue.json, review_queue.csv", "--overwrite")
    assert queue.read_text() == '{"items": []}'
    assert main([*sample, "--overwrite"]) == 0
    assert json.loads(queue.read_text())["items"]


# 4. pre-labels are reviewed, never taken silently -------------------------------------------------


def test_unreviewed_prelabels_are_counted_on_submit_and_export_and_block_reviewed(project_dir, tmp_path, capsys):
    assert main(["project", "prelabel", str(project_dir), "--backend", "classic", "--workers", "1"]) == 0
    with Project.open(project_dir) as project:
        n_pre = project.manifest.item(1).n_instances
    assert n_pre > 0
    capsys.readouterr()
    assert main(["project", "submit", str(project_dir), "1", "--annotator", "alice"]) == 0
    err = capsys.readouterr().err
    assert f"{n_pre} pre-label(s) no person has reviewed were submitted" in err
    assert "image id 1 (tile_0.tif, submitted)" in err
    before = (project_dir / "manifest.sqlite").read_bytes()
    err = _refused(
        ["project", "submit", str(project_dir), "1", "--annotator", "bob", "--reviewed"],
        capsys,
        f"Image id 1 (tile_0.tif): {n_pre} pre-label(s) in {project_dir / 'stores' / '0000001.zarr'}",
        "were never reviewed",
    )
    assert (project_dir / "manifest.sqlite").read_bytes() == before
    assert Project.open(project_dir).manifest.item(1).status == "submitted"
    out = tmp_path / "dataset.json"
    assert main(["project", "export", str(project_dir), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"{n_pre} pre-label(s) no person has reviewed were exported to {out}" in err
    pending = [a for a in json.loads(out.read_text())["annotations"] if a["attributes"]["review"] == "pre-label"]
    assert len(pending) == n_pre  # the file says which they are
    # once every pre-label is reviewed (one rejected), the image can be marked reviewed, silently
    with Project.open(project_dir) as project:
        store = project.open_store(project.manifest.item(1))
        session = store.session(annotator="bob")
        ids = list(store.table.index)
        session.reject(ids[0])
        for instance_id in ids[1:]:
            session.accept(instance_id)
        store.close()
    assert main(["project", "submit", str(project_dir), "1", "--reviewed"]) == 0
    assert "pre-label" not in capsys.readouterr().err
    assert main(["project", "export", str(project_dir), "-o", str(out), "--overwrite"]) == 0
    assert "pre-label" not in capsys.readouterr().err


# 7. two images with one file name in different folders ----------------------------------------------


def test_a_second_image_with_the_same_file_name_is_refused_until_named_by_its_path(
    project_dir, tiles, tmp_path, capsys
):
    import shutil

    dup = tmp_path / "dup"
    dup.mkdir()
    shutil.copy(tiles / "tile_1.tif", dup / "tile_0.tif")  # another slide's tile 0
    before = _snapshot(project_dir)
    add = ["project", "add", str(project_dir), "--images", str(dup / "*.tif")]
    _refused(add, capsys, f"'tile_0.tif': {dup / 'tile_0.tif'} and image id 1 ({tiles / 'tile_0.tif'})", "--image-root")
    assert _snapshot(project_dir) == before
    # init with both folders: refused before the folder is made
    both = ["project", "init", str(tmp_path / "both"), "--images", str(tiles / "*.tif"), str(dup / "*.tif")]
    _refused(both, capsys, f"'tile_0.tif': {dup / 'tile_0.tif'} and {tiles / 'tile_0.tif'}")
    assert not (tmp_path / "both").exists()
    assert main([*both, "--image-root", str(tmp_path)]) == 0  # named tiles/tile_0.tif, dup/tile_0.tif
    # the existing project keeps its names (gold files match them); the new image is named by its path
    _refused([*add, "--image-root", str(tiles)], capsys, f"is not inside --image-root {tiles}")
    assert main([*add, "--image-root", str(tmp_path)]) == 0
    with Project.open(project_dir) as project:
        names = {it.image_id: it.file_name for it in project.items()}
    assert names == {1: "tile_0.tif", 2: "tile_1.tif", 3: "tile_2.tif", 4: "dup/tile_0.tif"}
    for image_id in (1, 4):
        _annotate(project_dir, image_id)
    gold = tmp_path / "gold.json"
    assert main(["project", "export", str(project_dir), "-o", str(gold)]) == 0
    assert [im["file_name"] for im in json.loads(gold.read_text())["images"]] == ["tile_0.tif", "dup/tile_0.tif"]
    capsys.readouterr()
    assert main(["project", "qa", str(project_dir), "--gold", str(gold), "-o", str(tmp_path / "qa")]) == 0
    report = json.loads((tmp_path / "qa" / "report.json").read_text())
    assert report["n_images"] == 2 and report["overall"]["AP"] == pytest.approx(1.0)
    # a project made before the check, with two images of one name: qa says so in one line
    import sqlite3

    with sqlite3.connect(project_dir / "manifest.sqlite") as db:
        db.execute("UPDATE images SET file_name = 'tile_0.tif' WHERE id = 4")
    db.close()
    _refused(
        ["project", "qa", str(project_dir), "--gold", str(gold), "-o", str(tmp_path / "qa2")],
        capsys,
        "the project's export names 1 file name(s) for more than one image: 'tile_0.tif' (image ids [1, 4])",
    )
    assert not (tmp_path / "qa2").exists()


# 10. assign --count must be a positive number -------------------------------------------------------


@pytest.mark.parametrize("count", ["0", "-1", "two"])
def test_assign_count_below_one_exits_2_and_assigns_nothing(project_dir, capsys, count):
    before = (project_dir / "manifest.sqlite").read_bytes()
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        main(["project", "assign", str(project_dir), "alice", "--count", count])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "argument --count: expected a positive integer" in err and count in err
    assert (project_dir / "manifest.sqlite").read_bytes() == before


# 9. report --rate nan / inf would be written as non-standard JSON ----------------------------------


@pytest.mark.parametrize("rate", ["nan", "inf", "-5", "thirty"])
def test_report_rate_must_be_a_finite_number(project_dir, tmp_path, capsys, rate):
    before = _snapshot(project_dir)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        main(["project", "report", str(project_dir), "--rate", rate, "-o", str(tmp_path / "rep.json")])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "argument --rate: expected a" in err and f"got {rate!r}" in err
    assert _snapshot(project_dir) == before and not (tmp_path / "rep.json").exists()


def test_a_project_json_holding_infinity_is_named(project_dir, capsys):
    meta = json.loads((project_dir / "project.json").read_text())
    meta["settings"]["cost_per_hour"] = float("inf")
    (project_dir / "project.json").write_text(json.dumps(meta))  # as the unchecked --rate inf wrote it
    _refused(
        ["project", "report", str(project_dir)],
        capsys,
        f"{project_dir / 'project.json'}: cost_per_hour must be a finite number >= 0, got inf",
    )
    meta["settings"]["cost_per_hour"] = 30.0
    (project_dir / "project.json").write_text(json.dumps(meta))
    with Project.open(project_dir) as project, pytest.raises(ValueError, match="finite number >= 0, got nan"):
        project.update_settings(cost_per_hour=float("nan"))  # from Python too
    assert json.loads((project_dir / "project.json").read_text()) == meta


# 8. assign never silently takes an image someone else has started -----------------------------------


def test_assign_names_the_previous_owner_and_refuses_work_in_progress_without_force(project_dir, capsys):
    assert main(["project", "assign", str(project_dir), "alice", "--ids", "1", "2"]) == 0
    _annotate(project_dir, 1, "alice", submit=False)  # alice is working on image 1
    before = (project_dir / "manifest.sqlite").read_bytes()
    for who in ("bob", ""):
        _refused(
            ["project", "assign", str(project_dir), who, "--ids", "3", "1"],
            capsys,
            "image(s) 1 (alice's, in progress) are being annotated by someone else",
            "--force",
            "nothing was assigned",
        )
    assert (project_dir / "manifest.sqlite").read_bytes() == before
    capsys.readouterr()
    assert main(["project", "assign", str(project_dir), "bob", "--ids", "2"]) == 0  # not started: moved, and said
    assert "note: reassigned image(s) 2 from alice (todo)" in capsys.readouterr().out
    assert main(["project", "assign", str(project_dir), "bob", "--ids", "1", "--force"]) == 0
    assert "reassigned image(s) 1 from alice (in progress)" in capsys.readouterr().out
    with Project.open(project_dir) as project:
        assert project.manifest.item(1).assignee == "bob" and project.manifest.item(1).status == "in progress"
        store = project.open_store(project.manifest.item(1), read_only=True)
        assert len(store.table) == 2  # alice's edits are kept
        store.close()


# 13. messages: the path once, a damaged project.json, the calibration hint --------------------------


def test_prelabel_names_a_truncated_image_once(tmp_path, ihc_image, capsys):
    from skimage import io

    io.imsave(tmp_path / "whole.png", ihc_image[:128, :128], check_contrast=False)
    data = (tmp_path / "whole.png").read_bytes()
    assert main(["project", "init", str(tmp_path / "p"), "--images", str(tmp_path / "whole.png")]) == 0
    (tmp_path / "whole.png").write_bytes(data[: len(data) // 2])  # truncated after init
    capsys.readouterr()
    assert main(["project", "prelabel", str(tmp_path / "p"), "--backend", "classic"]) == 2
    out = capsys.readouterr().out
    path = str(tmp_path / "whole.png")
    assert f"image 1: {path}: not a readable image" in out and out.count(path) == 1, out


def test_a_damaged_project_json_is_called_damaged(project_dir, capsys):
    meta = project_dir / "project.json"
    meta.write_text(meta.read_text()[:20])
    before = _snapshot(project_dir)
    err = _refused(["project", "status", str(project_dir)], capsys, f"{meta} is damaged: not readable JSON")
    assert "no napari-instseg-project project.json" not in err
    assert _snapshot(project_dir) == before
    meta.write_text('{"format": "something-else"}')
    _refused(["project", "status", str(project_dir)], capsys, "format 'something-else', expected")
    meta.unlink()
    _refused(["project", "status", str(project_dir)], capsys, "is not a napari-instseg project (no ")


def test_submit_of_a_calibration_image_hints_calibration(project_dir, capsys):
    assert main(["project", "calibrate", str(project_dir), "--annotators", "alice", "bob", "--ids", "3"]) == 0
    before = (project_dir / "manifest.sqlite").read_bytes()
    _refused(
        ["project", "submit", str(project_dir), "3", "--annotator", "alice"],
        capsys,
        "Image id 3 is a calibration image",
        f"project submit {project_dir} 3 --annotator alice --calibration",
    )
    _refused(
        ["project", "submit", str(project_dir), "1", "--annotator", "alice", "--calibration"],
        capsys,
        "Image id 1 is a production image",
    )
    assert (project_dir / "manifest.sqlite").read_bytes() == before
