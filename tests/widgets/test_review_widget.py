"""The QA & review dock widget: QA on open layers, then stepping through the review queue."""

import json

import numpy as np
import pytest

from napari_instseg._adapters import labels_layer_kwargs
from napari_instseg.core.instances import make_rows
from napari_instseg.core.protocol import AnnotationProtocol

PLUGIN = "napari-instseg"


def _labels(shift=0):
    labels = np.zeros((128, 128), np.uint32)
    for k in range(16):
        y, x = 8 + 30 * (k // 4), 8 + 30 * (k % 4)
        labels[y : y + 14, x + shift : x + 14 + shift] = k + 1
    return labels


@pytest.fixture
def viewer_and_widget(make_napari_viewer, tmp_path, qtbot):
    viewer = make_napari_viewer()
    table = make_rows(range(1, 17), occlusion=(["none", "partial", "heavy", "none"] * 4))
    reference = viewer.add_labels(
        _labels(), **labels_layer_kwargs("reference", table, AnnotationProtocol.default(), {"file_name": "tile.tif"})
    )
    candidate = viewer.add_labels(
        _labels(shift=3), **labels_layer_kwargs("candidate", table, AnnotationProtocol.default())
    )
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "QA and review")
    widget.reference_combo.value = reference
    widget.candidate_combo.value = candidate
    widget.outdir_edit.value = str(tmp_path / "qa")
    widget._on_run_qa()  # in a worker with a progress bar
    qtbot.waitUntil(lambda: widget.report is not None, timeout=60_000)
    return viewer, widget, tmp_path / "qa"


def test_qa_runs_on_open_layers_and_loads_the_queue(viewer_and_widget):
    _, widget, out = viewer_and_widget
    report = json.loads((out / "report.json").read_text())
    assert report["n_gt"] == 16 and report["overall"]["AP50"] == pytest.approx(1.0)  # IoU 11/17 > 0.5
    assert report["overall"]["AP75"] == pytest.approx(0.0)
    assert widget.queue is not None and len(widget.queue) == report["review_sample"]["n_items"]
    assert "item 1 of" in widget.item_label.value


def test_stepping_zooms_selects_and_saves_each_verdict(viewer_and_widget):
    viewer, widget, out = viewer_and_widget
    from napari_instseg._widgets.instances import viewer_camera

    first = widget.queue.iloc[0]
    x, y, w, h = first["bbox_xywh"]
    np.testing.assert_allclose(viewer_camera(viewer).center[-2:], (y + h / 2, x + w / 2))
    assert viewer.layers["reference"].selected_label == first["instance_id"]
    widget._on_verdict("fail")  # a fail needs a reason
    assert "Say why" in widget.status.value and widget.item_index == 0
    widget.reason_edit.value = "boundary too loose"
    widget._on_verdict("fail")
    widget._on_verdict("pass")
    saved = json.loads((out / "review_queue.json").read_text())["items"]
    assert saved[0]["outcome"] == "fail" and saved[0]["reason"] == "boundary too loose"
    assert saved[1]["outcome"] == "pass" and widget.item_index == 2
    widget.go(0)
    assert "-> fail" in widget.item_label.value


def test_a_second_qa_run_keeps_the_verdicts_and_highlights_the_reference(viewer_and_widget, qtbot):
    viewer, widget, out = viewer_and_widget
    widget.reason_edit.value = "too loose"
    widget._on_verdict("fail")
    # the candidate layer carries the same file name and lies first in the layer list
    candidate = viewer.layers["candidate"]
    candidate.metadata = {**candidate.metadata, "instseg_image": {"file_name": "tile.tif"}}
    viewer.layers.move(viewer.layers.index(candidate), 0)
    widget.report = None
    widget._on_run_qa()
    qtbot.waitUntil(lambda: widget.report is not None, timeout=60_000)
    first = json.loads((out / "review_queue.json").read_text())["items"]
    assert first[0]["outcome"] == "fail" and first[0]["reason"] == "too loose"
    assert widget.queue_path.parent == out.parent / "qa-2"
    item = widget.queue.iloc[widget.item_index]
    assert viewer.layers["reference"].selected_label == item["instance_id"]
    assert viewer.layers["reference"].show_selected_label
    assert not candidate.show_selected_label


def test_the_qa_queue_is_reviewed_with_the_keys(viewer_and_widget, qtbot):
    from _canvas import key, show_at_size

    viewer, widget, out = viewer_and_widget
    show_at_size(viewer, qtbot)
    key(viewer, qtbot, "Y", "Shift")  # pass, saved, next
    key(viewer, qtbot, "Right", "Shift")  # skip one
    widget.reason_edit.value = "misses the tip"
    key(viewer, qtbot, "R", "Shift")  # fail with the reason given
    saved = json.loads((out / "review_queue.json").read_text())["items"]
    assert saved[0]["outcome"] == "pass" and saved[1]["outcome"] == ""
    assert saved[2]["outcome"] == "fail" and saved[2]["reason"] == "misses the tip"
