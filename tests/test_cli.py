"""The napari-instseg command: export, import, demo, errors, and lazy imports."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import tifffile

from napari_instseg.cli import main
from napari_instseg.core.instances import make_rows
from napari_instseg.core.io import read_table_csv, write_table_csv


def test_export_then_import_round_trip(tmp_path, labels_and_table, protocol, capsys):
    labels, table = labels_and_table
    tifffile.imwrite(tmp_path / "tile_labels.tif", labels)
    write_table_csv(tmp_path / "tile.csv", table)
    protocol.save(tmp_path / "protocol.json")
    image = np.zeros((*labels.shape, 3), np.uint8)
    tifffile.imwrite(tmp_path / "tile.tif", image)
    out = tmp_path / "out.json"
    args = ["export", str(tmp_path / "tile_labels.tif"), "-o", str(out), "--table", str(tmp_path / "tile.csv")]
    args += ["--protocol", str(tmp_path / "protocol.json"), "--image", str(tmp_path / "tile.tif")]
    assert main(args) == 0
    assert "4 annotations in 1 image(s)" in capsys.readouterr().out
    coco = json.loads(out.read_text())
    assert coco["images"][0]["file_name"] == "tile.tif"

    assert main(["import", str(out), "-o", str(tmp_path / "imported")]) == 0
    assert "0 overlapping pixel(s)" in capsys.readouterr().out
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "imported" / "tile_labels.tif"), labels)
    back = read_table_csv(tmp_path / "imported" / "tile_instances.csv")
    pd.testing.assert_frame_equal(back, table)


def test_export_without_table_uses_first_category_and_polygons(tmp_path, labels_and_table):
    labels, _ = labels_and_table
    np.save(tmp_path / "l.npy", labels.astype(np.int32))
    out = tmp_path / "o.json"
    assert main(["export", str(tmp_path / "l.npy"), "-o", str(out), "--format", "polygon"]) == 0
    anns = json.loads(out.read_text())["annotations"]
    assert {a["category_id"] for a in anns} == {1}
    assert sum(isinstance(a["segmentation"], list) for a in anns) == 3  # the ring is RLE


def test_table_with_category_names(tmp_path, labels_and_table, protocol):
    labels, _ = labels_and_table
    np.save(tmp_path / "l.npy", labels)
    pd.DataFrame({"id": [3, 9], "category": ["mitosis", "nucleus"]}).to_csv(tmp_path / "t.csv", index=False)
    protocol.save(tmp_path / "p.yaml")
    out = tmp_path / "o.json"
    assert (
        main(
            [
                "export",
                str(tmp_path / "l.npy"),
                "-o",
                str(out),
                "--table",
                str(tmp_path / "t.csv"),
                "--protocol",
                str(tmp_path / "p.yaml"),
            ]
        )
        == 0
    )
    by_id = {a["instance_id"]: a["category_id"] for a in json.loads(out.read_text())["annotations"]}
    assert by_id == {3: 5, 9: 1, 12: 1, 40: 1}


def test_bad_input_exits_2_with_a_message_and_writes_nothing(tmp_path, capsys):
    np.save(tmp_path / "float.npy", np.full((4, 4), 0.5))
    out = tmp_path / "o.json"
    assert main(["export", str(tmp_path / "float.npy"), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "float.npy (dtype float64, shape (4, 4), min 0.5, max 0.5)" in err
    assert not out.exists()

    bad = {
        "images": [{"id": 1, "file_name": "a.png", "height": 4, "width": 4}],
        "categories": [{"id": 1, "name": "c"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[0, 0, 1, 1]]}],
    }
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    assert main(["import", str(tmp_path / "bad.json"), "-o", str(tmp_path / "outdir")]) == 2
    assert "polygon 0 has 2 points" in capsys.readouterr().err
    assert not (tmp_path / "outdir").exists()


def test_import_refuses_colliding_output_names(tmp_path):
    coco = {
        "images": [
            {"id": 1, "file_name": "a/x.png", "height": 2, "width": 2},
            {"id": 2, "file_name": "b/x.png", "height": 2, "width": 2},
        ],
        "categories": [{"id": 1, "name": "c"}],
        "annotations": [],
    }
    (tmp_path / "c.json").write_text(json.dumps(coco))
    assert main(["import", str(tmp_path / "c.json"), "-o", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o").exists()


def test_demo_runs_headless_with_a_screenshot(tmp_path, capsys, monkeypatch):
    from skimage import io as skio

    monkeypatch.delenv("NAPARI_INSTSEG_SAM2_CHECKPOINT", raising=False)
    monkeypatch.setenv("NAPARI_INSTSEG_CACHE", str(tmp_path / "cache"))  # no checkpoint there
    assert main(["demo", "-o", str(tmp_path), "--headless"]) == 0
    out = capsys.readouterr().out
    assert "pycocotools" in out and "backend:     classic" in out
    coco = json.loads((tmp_path / "annotations.json").read_text())
    assert len(coco["annotations"]) > 100  # the IHC tile holds hundreds of nuclei
    assert {a["attributes"]["review"] for a in coco["annotations"]} == {"pre-label"}
    assert {a["attributes"]["source"] for a in coco["annotations"]} == {"classic"}
    shot = skio.imread(tmp_path / "screenshot.png")
    assert shot.ndim == 3 and shot[..., :3].std() > 20  # a rendered canvas, not a blank one


def test_prelabel_with_points_and_boxes(tmp_path, ihc_image, capsys):
    tifffile.imwrite(tmp_path / "tile.tif", ihc_image, photometric="rgb")
    (tmp_path / "points.csv").write_text("y,x,label,object\n100,100,1,a\n104,120,0,a\n300,300,1,b\n")
    (tmp_path / "boxes.csv").write_text("x0,y0,x1,y1\n120,80,90,110\n400,400,430,440\n")
    for kind in ("points", "boxes"):
        out = tmp_path / f"{kind}.json"
        assert (
            main(
                [
                    "prelabel",
                    str(tmp_path / "tile.tif"),
                    f"--{kind}",
                    str(tmp_path / f"{kind}.csv"),
                    "--backend",
                    "classic",
                    "-o",
                    str(out),
                ]
            )
            == 0
        )
        anns = json.loads(out.read_text())["annotations"]
        assert len(anns) == 2
        assert {a["attributes"]["source"] for a in anns} == {"classic"}
        assert {a["attributes"]["review"] for a in anns} == {"pre-label"}
    assert "backend: classic" in capsys.readouterr().out


def test_prelabel_with_sam2_checkpoint(tmp_path, ihc_image, sam2_checkpoint, monkeypatch):
    monkeypatch.setenv("NAPARI_INSTSEG_CACHE", str(tmp_path / "cache"))
    tifffile.imwrite(tmp_path / "tile.tif", ihc_image, photometric="rgb")
    (tmp_path / "boxes.csv").write_text("x0,y0,x1,y1\n120,80,200,160\n")
    out = tmp_path / "o.json"
    args = [
        "prelabel",
        str(tmp_path / "tile.tif"),
        "--boxes",
        str(tmp_path / "boxes.csv"),
        "--backend",
        "sam2",
        "--model",
        "tiny",
        "--checkpoint",
        str(sam2_checkpoint),
        "--device",
        "cpu",
        "-o",
        str(out),
    ]
    assert main(args) == 0
    anns = json.loads(out.read_text())["annotations"]
    assert [a["attributes"]["source"] for a in anns] == ["sam2"]


def test_prelabel_bad_csv_names_file_row_and_column(tmp_path, ihc_image, capsys):
    tifffile.imwrite(tmp_path / "tile.tif", ihc_image, photometric="rgb")
    (tmp_path / "points.csv").write_text("y,x\n10,10\n12,abc\n")
    assert (
        main(
            [
                "prelabel",
                str(tmp_path / "tile.tif"),
                "--points",
                str(tmp_path / "points.csv"),
                "--backend",
                "classic",
                "-o",
                str(tmp_path / "o.json"),
            ]
        )
        == 2
    )
    assert "points.csv: row 3 (line in file), column 'x': 'abc' is not a number" in capsys.readouterr().err
    assert not (tmp_path / "o.json").exists()


def test_prelabel_sam2_without_checkpoint_says_how_to_get_one(tmp_path, ihc_image, capsys, monkeypatch):
    monkeypatch.delenv("NAPARI_INSTSEG_SAM2_CHECKPOINT", raising=False)
    monkeypatch.setenv("NAPARI_INSTSEG_CACHE", str(tmp_path / "cache"))
    tifffile.imwrite(tmp_path / "tile.tif", ihc_image, photometric="rgb")
    (tmp_path / "p.csv").write_text("y,x\n10,10\n")
    assert (
        main(
            [
                "prelabel",
                str(tmp_path / "tile.tif"),
                "--points",
                str(tmp_path / "p.csv"),
                "--backend",
                "sam2",
                "-o",
                str(tmp_path / "o.json"),
            ]
        )
        == 2
    )
    assert "napari-instseg fetch-weights tiny" in capsys.readouterr().err


def test_fetch_weights_offline_fails_clearly(tmp_path, capsys, monkeypatch):
    import urllib.error

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no route")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    assert main(["fetch-weights", "tiny", "--dest", str(tmp_path)]) == 2
    assert f"to {tmp_path / 'sam2.1_hiera_tiny.pt'}" in capsys.readouterr().err


HEAVY = ("torch", "sam2", "napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "superqt")

_IMPORT_PROBE = """
import sys, contextlib, io, json
import numpy as np
import napari_instseg
from napari_instseg.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    try:
        main(["--help"])
    except SystemExit:
        pass
from napari_instseg.core.coco import AnnotatedImage, export_coco, import_coco
labels = np.zeros((8, 8), np.uint32); labels[2:5, 2:5] = 1
import_coco(export_coco([AnnotatedImage(labels, None, "a.png")], segmentation="polygon").coco)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in %r)))
"""


def test_package_cli_help_and_coco_paths_import_neither_torch_nor_qt():
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_PROBE % (HEAVY,)], capture_output=True, text=True, check=True
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_console_script_help(tmp_path):
    exe = [sys.executable, "-m", "napari_instseg.cli", "--help"]
    result = subprocess.run(exe, capture_output=True, text=True, check=True)
    for command in ("demo", "export", "import", "prelabel", "fetch-weights"):
        assert command in result.stdout


def test_read_table_csv_names_the_file(tmp_path):
    (tmp_path / "t.csv").write_text("foo,bar\n1,2\n")
    from napari_instseg.core.errors import TableError

    with pytest.raises(TableError, match=r"t.csv: no 'id' column"):
        read_table_csv(tmp_path / "t.csv")
    write_table_csv(tmp_path / "ok.csv", make_rows([1]))
    assert read_table_csv(tmp_path / "ok.csv").index.tolist() == [1]
