"""The Prompt panel driven as a person drives it: real Qt mouse and key events on the canvas of
a 1600 x 1000 window (Xvfb). Each test counts the person's actions where that is the point."""

import numpy as np
import pytest
from _canvas import click, drag, key, napari_bindings, normalise, show_at_size

from napari_instseg._widgets._keys import KEYS
from napari_instseg.core.instances import from_features

PLUGIN = "napari-instseg"


@pytest.fixture
def prompting(make_napari_viewer, qtbot, monkeypatch):
    """A viewer at 1600 x 1000 with bright disks, the Prompt panel (classic backend) and a new
    labels layer; the prompt layer is active, as after "New labels layer"."""
    monkeypatch.setenv("NAPARI_INSTSEG_NOTHREADS", "1")
    viewer = make_napari_viewer()
    image = np.full((128, 128), 20, np.uint8)
    yy, xx = np.mgrid[:128, :128]
    for cy, cx in ((40, 40), (40, 64), (90, 90)):
        image[(yy - cy) ** 2 + (xx - cx) ** 2 <= 10**2] = 200
    viewer.add_image(image, name="cells")
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Prompt")
    widget.backend_combo.value = "classic"
    widget.image_combo.value = viewer.layers["cells"]
    widget._on_new_labels()
    show_at_size(viewer, qtbot)
    viewer.reset_view()
    qtbot.wait(20)
    return viewer, widget


def test_click_then_one_key_commits_a_reviewed_selected_instance(prompting, qtbot):
    viewer, widget = prompting
    labels = widget.labels_combo.value
    actions = 0
    click(viewer, qtbot, (90, 90))  # 1: the candidate shows at once
    actions += 1
    assert viewer.layers["candidate"].data[90, 90]
    key(viewer, qtbot, "C", "Shift")  # 2: commit
    actions += 1
    assert labels.data[90, 90] == 1 and actions == 2
    row = from_features(labels.features).loc[1]
    assert row["review"] == "accepted" and row["annotator"] == widget.session.annotator
    assert labels.selected_label == 1  # commit selects the new instance
    assert len(widget.points_layer.data) == 0


def test_drag_is_a_box_on_the_same_layer_and_one_key_commits(prompting, qtbot):
    viewer, widget = prompting
    labels = widget.labels_combo.value
    drag(viewer, qtbot, (28, 28), (52, 52))  # 1: a box, without switching layers
    assert len(widget.points_layer.data) == 0 and len(widget.boxes_layer.data) == 1
    assert viewer.layers["candidate"].data[40, 40] and not viewer.layers["candidate"].data[90, 90]
    key(viewer, qtbot, "C", "Shift")  # 2: commit
    assert labels.data[40, 40] == 1 and labels.selected_label == 1
    assert viewer.layers.selection.active.name == "prompts"  # ready for the next object


def test_shift_click_makes_a_negative_point(prompting, qtbot):
    viewer, widget = prompting
    click(viewer, qtbot, (40, 40))
    click(viewer, qtbot, (40, 64), "Shift")
    assert widget.points_layer.features["positive"].tolist() == [True, False]
    key(viewer, qtbot, "T", "Shift")  # the polarity key works too
    click(viewer, qtbot, (41, 41))
    assert widget.points_layer.features["positive"].tolist() == [True, False, False]


def test_a_click_outside_the_image_is_removed_and_reported_once(prompting, qtbot):
    viewer, widget = prompting
    from napari.utils.notifications import notification_manager

    said = []
    notification_manager.notification_ready.connect(lambda n: said.append(n.message))
    click(viewer, qtbot, (-20, 60))  # above the image
    assert len(widget.points_layer.data) == 0
    errors = [m for m in said if "outside the image" in m]
    assert len(errors) == 1 and "y=-20" in errors[0], said
    click(viewer, qtbot, (90, 90))  # the next click just works
    assert widget.session.candidate is not None and widget.session.candidate[90, 90], said
    assert len([m for m in said if "outside the image" in m]) == 1


def test_put_in_front_covering_an_instance_flags_it_and_undo_restores(prompting, qtbot):
    viewer, widget = prompting
    labels = widget.labels_combo.value
    _, instances = viewer.window.add_plugin_dock_widget(PLUGIN, "Instances")
    instances.labels_combo.value = labels
    show_at_size(viewer, qtbot)  # the new panel changed the canvas
    viewer.reset_view()
    qtbot.wait(20)
    small = np.zeros((128, 128), bool)
    small[88:92, 88:92] = True
    first = widget._binding.run("commit", small).instance_id
    widget.in_front_check.value = True
    drag(viewer, qtbot, (76, 76), (104, 104))
    key(viewer, qtbot, "C", "Shift")
    assert not (labels.data == first).any()
    assert f"covers instance(s) {first} completely" in widget.status.value
    row = instances.row_ids().index(first)
    assert "hidden" in instances.table.item(row, 1).text()
    key(viewer, qtbot, "Z", "Alt")
    assert (labels.data == first).sum() == 16


def test_plugin_keys_clash_with_nothing_napari_binds(prompting):
    viewer, _ = prompting
    theirs = napari_bindings(viewer)
    ours = {normalise(k.key) for k in KEYS.values()}
    assert len(ours) == len(KEYS)
    assert not ours & theirs, f"plugin keys napari already binds: {sorted(ours & theirs)}"
    from napari.utils.action_manager import action_manager

    assert all(f"napari-instseg:{name}" in action_manager._actions for name in KEYS)


def test_a_candidate_covering_most_of_the_image_is_flagged(prompting, qtbot):
    from napari.utils.notifications import notification_manager

    from napari_instseg.core.prompting.base import Candidates

    viewer, widget = prompting
    click(viewer, qtbot, (90, 90))  # a real prompt first, then a huge candidate in its place
    said = []
    notification_manager.notification_ready.connect(lambda n: said.append(n.message))
    huge = np.ones((1, 128, 128), bool)
    huge[0, :10] = False
    widget.session.candidates = Candidates.sorted(huge, [0.9], "classic")
    widget._on_candidates(widget.session.candidates)
    assert any("covers 92% of the image" in m for m in said), said
