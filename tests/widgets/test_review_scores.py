"""A scored COCO file in napari: the reader puts each annotation's ``score`` in the layer's
features, the review pass goes best score first (as ``qa`` ranks them), and a store made from
the layer exports the same scores."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from _canvas import key, show_at_size

from napari_instseg.cli import main

PLUGIN = "napari-instseg"
NUCLEI = Path(__file__).resolve().parents[1] / "data" / "nuclei_dsb2018" / "fluo_1d4a5e72.png"


def _rescored_prelabels(tmp_path: Path) -> tuple[Path, dict[int, float]]:
    """Our own ``prelabel --auto`` export of a real nuclei image, re-scored by another tool
    (so the best score is not the first id), beside its image. Returns the file and the
    scores by instance id."""
    image = tmp_path / NUCLEI.name
    shutil.copyfile(NUCLEI, image)
    auto = tmp_path / "auto.json"
    assert main(["prelabel", str(image), "--auto", "--backend", "classic", "-o", str(auto)]) == 0
    coco = json.loads(auto.read_text())
    rng = np.random.default_rng(3)
    for ann in coco["annotations"]:
        ann["score"] = float(rng.random())
    path = tmp_path / "rescored.json"
    path.write_text(json.dumps(coco))
    return path, {a["instance_id"]: a["score"] for a in coco["annotations"]}


def test_scored_prelabels_open_with_scores_review_best_first_and_save_them(
    make_napari_viewer, qtbot, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("NAPARI_INSTSEG_NOTHREADS", "1")
    from napari_instseg._widgets._binding import layer_session

    path, scores = _rescored_prelabels(tmp_path)
    best_first = sorted(scores, key=lambda i: -scores[i])
    assert best_first[0] != min(scores)
    viewer = make_napari_viewer()
    image, labels = viewer.open(str(path), plugin=PLUGIN)  # the image lies beside the file
    assert image.data.shape[:2] == labels.data.shape
    assert labels.features.set_index("index")["score"].to_dict() == scores
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Review pre-labels")
    show_at_size(viewer, qtbot)
    widget.labels_combo.value = labels
    widget.start()
    assert widget.current == best_first[0] and widget.items() == best_first
    key(viewer, qtbot, "Y", "Shift")  # accept: on to the next best
    assert widget.current == best_first[1]
    key(viewer, qtbot, "Right", "Shift")
    assert widget.current == best_first[2]
    widget.stop()
    # saved to a store as the Prompt panel does, then exported on the command line
    binding = layer_session(labels)
    binding.attach_store(tmp_path / "nuclei.zarr")
    assert {i: r.score for i, r in binding.session.prelabels.items()} == scores
    binding.close()
    out = tmp_path / "out.json"
    assert main(["export", str(tmp_path / "nuclei.zarr"), "-o", str(out)]) == 0
    capsys.readouterr()
    exported = json.loads(out.read_text())["annotations"]
    assert {a["instance_id"]: a["score"] for a in exported} == scores
    accepted = [a for a in exported if a["attributes"]["review"] == "accepted"]
    assert [a["instance_id"] for a in accepted] == [best_first[0]]
