"""Projects from the command line: init, add, status, assign, next, submit - and their errors."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest

from napari_instseg.cli import main
from napari_instseg.core.project import ItemFilter, Project, ProjectError


@pytest.fixture
def tiles(tmp_path, ihc_image):
    """A folder of six 128 x 128 IHC tiles (TIFF and PNG), as a user would have."""
    import tifffile
    from skimage import io

    folder = tmp_path / "tiles"
    folder.mkdir()
    for k in range(6):
        y, x = divmod(k, 3)
        tile = ihc_image[y * 128 : (y + 1) * 128, x * 128 : (x + 1) * 128]
        if k < 4:
            tifffile.imwrite(folder / f"tile_{k}.tif", tile)
        else:
            io.imsave(folder / f"tile_{k}.png", tile, check_contrast=False)
    return folder


def _status(project_dir, capsys):
    capsys.readouterr()
    assert main(["project", "status", str(project_dir), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_init_add_status_assign_next_submit(tmp_path, tiles, capsys):
    project_dir = tmp_path / "proj"
    assert main(["project", "init", str(project_dir), "--images", str(tiles / "*.tif")]) == 0
    assert "4 image(s)" in capsys.readouterr().out
    assert sorted(p.name for p in project_dir.iterdir()) == [
        "manifest.sqlite",
        "project.json",
        "protocol.json",
        "stores",
    ]
    # a second add of overlapping globs adds only the new files
    assert main(["project", "add", str(project_dir), "--images", str(tiles / "*")]) == 0
    assert "added 2 image(s) to" in capsys.readouterr().out  # tile_0..3.tif were listed: skipped
    counts = _status(project_dir, capsys)
    assert counts["images"]["total"] == 6 and counts["status"] == {"todo": 6}
    assert main(["project", "assign", str(project_dir), "alice", "--ids", "1", "2"]) == 0
    assert main(["project", "assign", str(project_dir), "bob", "--count", "2"]) == 0
    counts = _status(project_dir, capsys)
    assert counts["assignee"] == {"alice": 2, "bob": 2, "": 2}
    capsys.readouterr()
    assert main(["project", "next", str(project_dir), "--annotator", "bob"]) == 0
    assert capsys.readouterr().out.startswith("3\t")
    with Project.open(project_dir) as project:  # images are referenced, never copied
        item = project.manifest.item(3)
        assert project.image_path(item) == (tiles / "tile_2.tif").resolve()
        assert not list((project_dir / "stores").iterdir())
        store = project.open_store(project.manifest.claim(item.key, "bob"))
        store.session(annotator="bob").commit(np.pad(np.ones((10, 10), bool), ((5, 113), (5, 113))))
        store.close()
    assert main(["project", "submit", str(project_dir), "3", "--annotator", "bob"]) == 0
    assert main(["project", "submit", str(project_dir), "3", "--reviewed"]) == 0
    capsys.readouterr()
    assert main(["project", "next", str(project_dir), "--annotator", "bob", "--after", "3"]) == 0
    assert capsys.readouterr().out.startswith("4\t")
    counts = _status(project_dir, capsys)
    assert counts["status"] == {"todo": 5, "reviewed": 1}
    # the plain text status names every state
    assert main(["project", "status", str(project_dir)]) == 0
    assert "reviewed 1" in capsys.readouterr().out


def test_coco_file_images_are_referenced(tmp_path, tiles, capsys):
    coco = {"images": [{"id": 7, "file_name": "tile_0.tif", "height": 128, "width": 128}], "annotations": []}
    (tiles / "set.json").write_text(json.dumps(coco))
    assert main(["project", "init", str(tmp_path / "p"), "--coco", str(tiles / "set.json")]) == 0
    with Project.open(tmp_path / "p") as project:
        [item] = project.items()
        assert item.file_name == "tile_0.tif" and item.shape_yx == (128, 128)


def _manifest_bytes(project_dir):
    return (project_dir / "manifest.sqlite").read_bytes(), (project_dir / "project.json").read_text()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["project", "init", "{proj}", "--images", "{tiles}/*.tif"], "already exists"),
        (["project", "init", "{tmp}/new", "--images", "{tmp}/nothing/*.tif"], "matches no image"),
        (["project", "status", "{tmp}"], "is not a napari-instseg project"),
        (["project", "add", "{proj}", "--images", "{tmp}/missing.tif"], "matches no image"),
        (["project", "assign", "{proj}", "alice", "--ids", "99"], "no image with id [99]"),
        (["project", "assign", "{proj}", "al/ice", "--ids", "1"], "not usable"),
        (["project", "submit", "{proj}", "1", "--annotator", "alice"], "no annotations to submit"),
        (["project", "submit", "{proj}", "1", "--reviewed"], "only submitted images"),
        (["project", "next", "{proj}", "--annotator", "alice", "--after", "42"], "no annotation set of image id 42"),
        (["project", "export", "{proj}", "-o", "{tmp}/out.json"], "no submitted or reviewed"),
        (["project", "calibrate", "{proj}", "--annotators", "alice", "alice", "--count", "1"], "two or more"),
        (["project", "calibrate", "{proj}", "--report"], "no two annotators"),
    ],
)
def test_errors_exit_2_and_change_nothing(tmp_path, tiles, capsys, argv, message):
    project_dir = tmp_path / "proj"
    assert main(["project", "init", str(project_dir), "--images", str(tiles / "*.tif")]) == 0
    before = _manifest_bytes(project_dir)
    args = [a.format(proj=project_dir, tiles=tiles, tmp=tmp_path) for a in argv]
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "error:" in err
    assert _manifest_bytes(project_dir) == before
    assert not (tmp_path / "new").exists() and not (tmp_path / "out.json").exists()


def test_a_damaged_manifest_is_a_clear_error(tmp_path, tiles, capsys):
    assert main(["project", "init", str(tmp_path / "p"), "--images", str(tiles / "*.tif")]) == 0
    (tmp_path / "p" / "manifest.sqlite").write_bytes(b"not a database" * 100)
    capsys.readouterr()
    assert main(["project", "status", str(tmp_path / "p")]) == 2
    assert "not a readable project manifest" in capsys.readouterr().err


def test_manifest_is_wal_and_assignment_respected(tmp_path, tiles):
    with Project.create(tmp_path / "p") as project:
        from napari_instseg.core.project import refs_from_patterns

        project.add(refs_from_patterns([str(tiles / "*.tif")]))
        project.manifest.assign([1], "alice")
        with pytest.raises(ProjectError, match="assigned to 'alice', not 'bob'"):
            project.manifest.claim((1, ""), "bob")
        assert project.next_item("bob").image_id == 2
        assert project.next_item("bob", project.manifest.item(4)).image_id == 2  # wraps around
        assert project.next_item("alice", project.manifest.item(2), forward=False).image_id == 1
        assert project.manifest.count_items(ItemFilter(annotator="alice")) == 4
        assert project.manifest.count_items(ItemFilter(annotator="bob")) == 3
    mode = sqlite3.connect(tmp_path / "p" / "manifest.sqlite").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_slides_are_referenced_with_their_level0_size(tmp_path, tiles):
    import zarr

    root = zarr.open_group(str(tmp_path / "slide.zarr"), mode="w")
    root.create_array("0", data=np.zeros((2048, 1024, 3), np.uint8), chunks=(512, 512, 3))
    root.create_array("1", data=np.zeros((1024, 512, 3), np.uint8), chunks=(512, 512, 3))
    argv = [
        "project",
        "init",
        str(tmp_path / "p"),
        "--images",
        str(tiles / "*.png"),
        "--slides",
        str(tmp_path / "*.zarr"),
    ]
    assert main(argv) == 0
    with Project.open(tmp_path / "p") as project:
        kinds = {it.file_name: (it.kind, it.shape_yx) for it in project.items()}
    assert kinds["slide.zarr"] == ("slide", (2048, 1024))
    assert kinds["tile_4.png"] == ("image", (128, 128))
    with Project.open(tmp_path / "p") as project:  # annotate both, in a slide window and a tile
        for item in project.items():
            store = project.open_store(project.manifest.claim(item.key, "alice"))
            session = store.window_session((1500, 500, 1756, 756)) if item.kind == "slide" else store.session()
            mask = np.zeros(session.shape_yx, bool)
            mask[50:70, 50:70] = True
            session.commit(mask)
            store.close()
            project.submit(item, "alice")
    out = ["-o", str(tmp_path / "tiles.json"), "--slides-geojson", str(tmp_path / "geo")]
    assert main(["project", "export", str(tmp_path / "p"), *out]) == 0
    [geo] = (tmp_path / "geo").iterdir()
    [feature] = json.loads(geo.read_text())["features"]
    xs, ys = zip(*feature["geometry"]["coordinates"][0], strict=True)
    assert min(xs) == 550 and min(ys) == 1550  # level-0 slide pixels
    assert [im["file_name"] for im in json.loads((tmp_path / "tiles.json").read_text())["images"]] == [
        "tile_4.png",
        "tile_5.png",
    ]


_CHILD = """
import sys
from napari_instseg.core.project import Project
project = Project.open(sys.argv[1])
item = project.manifest.claim((1, ""), "bob")
store = project.open_store(item)
print("ready", flush=True)
sys.stdin.readline()
store.close()
"""


def test_two_people_share_a_project_folder(tmp_path, tiles):
    """Another process (bob) holds image 1: alice can neither take it nor write its store."""
    import os
    import subprocess
    import sys

    with Project.create(tmp_path / "p") as project:
        from napari_instseg.core.project import refs_from_patterns

        project.add(refs_from_patterns([str(tiles / "*.tif")]))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(tmp_path / "p")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert child.stdout.readline().strip() == "ready"
        with Project.open(tmp_path / "p") as project:
            with pytest.raises(ProjectError, match="assigned to 'bob', not 'alice'"):
                project.manifest.claim((1, ""), "alice")
            store = project.open_store(project.manifest.item(1))
            assert store.read_only and str(child.pid) in store.lock_message
            store.close()
            assert project.next_item("alice").image_id == 2
    finally:
        child.communicate("\n", timeout=60)
    with Project.open(tmp_path / "p") as project:
        store = project.open_store(project.manifest.item(1))
        assert not store.read_only  # released when bob closed it
        store.close()


def test_a_read_only_project_folder_answers_queries_and_refuses_changes(tmp_path, tiles, capsys, monkeypatch):
    """A shared project copied read-only: status and next work; assign and add say the
    folder is read-only (exit 2) and leave the manifest as it was."""
    import os
    import stat

    project_dir = tmp_path / "proj"
    assert main(["project", "init", str(project_dir), "--images", str(tiles / "*.tif")]) == 0
    assert main(["project", "assign", str(project_dir), "alice", "--ids", "1"]) == 0
    before = (project_dir / "manifest.sqlite").read_bytes()
    modes = {p: p.stat().st_mode for p in [project_dir, *project_dir.rglob("*")]}
    for path in modes:
        path.chmod(stat.S_IMODE(path.stat().st_mode) & ~0o222)
    if os.geteuid() == 0:  # root writes anyway: report what an ordinary user would be told
        real_access = os.access
        monkeypatch.setattr(
            os,
            "access",
            lambda p, mode, **kw: (
                False if mode & os.W_OK and str(p).startswith(str(project_dir)) else real_access(p, mode, **kw)
            ),
        )
    try:
        assert _status(project_dir, capsys)["assignee"] == {"alice": 1, "": 3}
        assert main(["project", "next", str(project_dir), "--annotator", "alice"]) == 0
        assert capsys.readouterr().out.startswith("1\t")
        for argv in (
            ["assign", str(project_dir), "bob", "--ids", "2"],
            ["add", str(project_dir), "--images", str(tiles / "*.png")],
        ):
            assert main(["project", *argv]) == 2
            err = capsys.readouterr().err
            assert "read-only" in err and str(project_dir) in err and "Traceback" not in err
    finally:
        for path, mode in modes.items():
            path.chmod(mode)
    assert (project_dir / "manifest.sqlite").read_bytes() == before
