"""The Instances dock widget and the on-disk store behind both widgets, in a real viewer."""

import numpy as np
import pytest
from _canvas import key, show_at_size

from napari_instseg._widgets._binding import PAINT_SAVE_DELAY_MS
from napari_instseg._widgets.instances import viewer_camera
from napari_instseg.core.instances import from_features
from napari_instseg.core.store import AnnotationStore

PLUGIN = "napari-instseg"


def _disk(shape, centre, radius):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


@pytest.fixture
def viewer_with_widgets(make_napari_viewer, monkeypatch):
    monkeypatch.setenv("NAPARI_INSTSEG_NOTHREADS", "1")
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((96, 96), np.uint8), name="cells")
    _, prompt = viewer.window.add_plugin_dock_widget(PLUGIN, "Prompt")
    prompt.backend_combo.value = "classic"
    prompt.image_combo.value = viewer.layers["cells"]
    prompt._on_new_labels()
    _, instances = viewer.window.add_plugin_dock_widget(PLUGIN, "Instances")
    instances.labels_combo.value = prompt.labels_combo.value
    return viewer, prompt, instances


def _commit(prompt, mask, **kwargs):
    binding = prompt._binding
    return binding.run("commit", mask, **kwargs).instance_id


def test_table_shows_instances_and_a_click_selects_and_centres(viewer_with_widgets):
    viewer, prompt, instances = viewer_with_widgets
    a = _commit(prompt, _disk((96, 96), (20, 20), 8))
    b = _commit(prompt, _disk((96, 96), (70, 60), 8), source="sam2")
    assert instances.row_ids() == [a, b]
    header = [instances.table.horizontalHeaderItem(c).text() for c in range(instances.table.columnCount())]
    assert header == ["id", "px", "category", "occlusion", "visible", "crowd", "z", "source", "review", "annotator"]
    instances.select(b)
    layer = prompt.labels_combo.value
    assert layer.selected_label == b
    np.testing.assert_allclose(viewer_camera(viewer).center[-2:], (70, 60), atol=0.5)
    instances.review_filter.value = "pre-label"
    assert instances.row_ids() == [b]
    instances.review_filter.value = "all"
    prompt._binding.run("retag", a, occlusion="heavy")
    instances.tier_filter.value = "heavy"
    assert instances.row_ids() == [a]
    instances.tier_filter.value = "all"
    instances.category_filter.value = 1
    assert instances.row_ids() == [a, b]


def test_retag_reorder_delete_undo_redo_reach_the_features(viewer_with_widgets):
    _, prompt, instances = viewer_with_widgets
    layer = prompt.labels_combo.value
    a = _commit(prompt, _disk((96, 96), (20, 20), 8))
    instances.select(a)
    instances.tier_combo.value = "partial"
    instances._on_apply()
    instances._on_toggle_crowd()
    instances._on_bring_forward()
    table = from_features(layer.features)
    assert table.loc[a, "occlusion"] == "partial" and table.loc[a, "occlusion_manual"]
    assert bool(table.loc[a, "iscrowd"]) and table.loc[a, "z_order"] == 1
    instances._on_delete()
    assert a not in from_features(layer.features).index and not (layer.data == a).any()
    instances._on_undo()
    assert (layer.data == a).any() and a in from_features(layer.features).index
    instances._on_undo()
    assert from_features(layer.features).loc[a, "z_order"] == 0
    instances._on_redo()
    assert from_features(layer.features).loc[a, "z_order"] == 1


def test_tier_keys_in_the_visible_rule(viewer_with_widgets, qtbot):
    viewer, prompt, instances = viewer_with_widgets
    show_at_size(viewer, qtbot)
    layer = prompt.labels_combo.value
    a = _commit(prompt, _disk((96, 96), (20, 20), 8))
    layer.selected_label = a
    instances.table.clearSelection()
    assert viewer.layers.selection.active.name == "prompts"  # while prompting
    key(viewer, qtbot, "3", "Alt")  # real key presses on the canvas
    assert from_features(layer.features).loc[a, "occlusion"] == "heavy"
    key(viewer, qtbot, "2", "Alt")
    assert from_features(layer.features).loc[a, "occlusion"] == "partial"
    key(viewer, qtbot, "Z", "Alt")  # undo works while the prompt layer is active
    assert from_features(layer.features).loc[a, "occlusion"] == "heavy"
    key(viewer, qtbot, "Y", "Alt")
    assert from_features(layer.features).loc[a, "occlusion"] == "partial"


def test_paint_an_amodal_outline_and_see_the_tier_appear(viewer_with_widgets):
    viewer, prompt, instances = viewer_with_widgets
    layer = prompt.labels_combo.value
    front = _commit(prompt, _disk((96, 96), (40, 30), 12))
    back = _commit(prompt, _disk((96, 96), (40, 50), 12))  # visible part only: behind 'front'
    instances.select(back)
    instances._on_edit_outline()
    outline = viewer.layers["amodal outline"]
    outline.brush_size = 30
    outline.paint((40, 44), 1)  # paint the hidden part of the outline too
    instances._on_apply_outline()
    row = from_features(layer.features).loc[back]
    assert 0 < row["occluded_fraction"] < 1 and row["occlusion"] in ("partial", "heavy")
    assert "amodal outline" not in viewer.layers
    assert (layer.data == front).sum() == _disk((96, 96), (40, 30), 12).sum()  # front still owns the overlap


def test_store_saves_commits_and_debounced_paint_and_reopens(viewer_with_widgets, tmp_path, qtbot):
    _viewer, prompt, _instances = viewer_with_widgets
    layer = prompt.labels_combo.value
    prompt.store_edit.value = str(tmp_path / "cells.zarr")
    prompt._on_store()
    assert "Saving to" in prompt.status.value
    a = _commit(prompt, _disk((96, 96), (20, 20), 8), source="sam2")
    with AnnotationStore.open(tmp_path / "cells.zarr", read_only=True) as saved:
        assert (saved.read_labels() == a).sum() == _disk((96, 96), (20, 20), 8).sum()  # saved before returning
    layer.selected_label = a
    layer.brush_size = 4
    layer.paint((20, 32), a)  # a stroke with napari's own tool
    qtbot.wait(PAINT_SAVE_DELAY_MS + 300)
    with AnnotationStore.open(tmp_path / "cells.zarr", read_only=True) as saved:
        np.testing.assert_array_equal(saved.read_labels(), layer.data)
        assert saved.table.loc[a, "review"] == "corrected"
    # a second viewer (another napari) on the same store opens it read-only and says so
    prompt._binding.close()
    with AnnotationStore.open(tmp_path / "cells.zarr") as reopened:
        session = reopened.session()
        np.testing.assert_array_equal(session.labels_yx, layer.data)
        assert session.undo_stack[-1].op == "paint"


def test_outline_from_a_box_candidate(viewer_with_widgets):
    viewer, prompt, _instances = viewer_with_widgets
    image = np.full((96, 96), 20, np.uint8)
    image[_disk((96, 96), (40, 50), 14)] = 200
    viewer.layers["cells"].data = image
    prompt._forget_image()
    layer = prompt.labels_combo.value
    front = _commit(prompt, _disk((96, 96), (40, 34), 10))
    back = _commit(prompt, _disk((96, 96), (40, 50), 14))  # only its visible part
    layer.selected_label = back
    prompt.boxes_layer.add_rectangles(np.array([[24, 34], [24, 66], [56, 66], [56, 34]], float))
    assert prompt.session.candidate is not None
    prompt._on_outline_from_candidate()
    row = from_features(layer.features).loc[back]
    assert back in prompt.session.amodal and row["occluded_fraction"] > 0
    assert (layer.data == front).sum() == _disk((96, 96), (40, 34), 10).sum()


def test_close_napari_reopen_the_store_and_find_everything(make_napari_viewer, viewer_with_widgets, tmp_path):
    viewer, prompt, _ = viewer_with_widgets
    layer = prompt.labels_combo.value
    prompt.store_edit.value = str(tmp_path / "cells.zarr")
    prompt._on_store()
    binding = prompt._binding
    front = binding.run("commit", _disk((96, 96), (40, 34), 12), amodal=True).instance_id
    back = binding.run("commit", _disk((96, 96), (40, 52), 12), amodal=True, source="sam2").instance_id
    expected_labels, expected_table = layer.data.copy(), from_features(layer.features)
    assert expected_table.loc[back, "occlusion"] in ("partial", "heavy")
    binding.close()  # napari closes (a killed napari leaves a stale lock; it is taken over)
    viewer.close()

    again = make_napari_viewer()
    again.open(str(tmp_path / "cells.zarr"), plugin=PLUGIN)
    reopened = again.layers["cells labels"]
    np.testing.assert_array_equal(reopened.data, expected_labels)
    from pandas.testing import assert_frame_equal

    assert_frame_equal(from_features(reopened.features), expected_table)
    from napari_instseg._widgets._binding import layer_session

    bound = layer_session(reopened)
    assert bound.store is not None and not bound.store.read_only
    assert set(bound.session.amodal) == {front, back}
    bound.run("undo")  # the history came back too
    assert back not in bound.session.table.index
    bound.run("redo")
    out = tmp_path / "cells.json"
    reopened.save(str(out), plugin=PLUGIN)
    import json

    anns = {a["instance_id"]: a for a in json.loads(out.read_text())["annotations"]}
    assert anns[back]["amodal_area"] > anns[back]["area"]
    bound.close()


def test_napari_own_undo_of_a_stroke_is_recorded_before_the_next_action(viewer_with_widgets):
    _, prompt, _ = viewer_with_widgets
    layer = prompt.labels_combo.value
    a = _commit(prompt, _disk((96, 96), (20, 20), 8))
    layer.brush_size = 4
    layer.paint((20, 32), a)
    prompt._binding.flush()
    assert prompt.session.undo_stack[-1].op == "paint"
    layer.undo()  # napari's Ctrl-Z: no paint event
    b = _commit(prompt, _disk((96, 96), (70, 70), 6))
    np.testing.assert_array_equal(prompt.session.labels_yx, layer.data)
    assert [e.op for e in prompt.session.undo_stack[-3:]] == ["paint", "paint", "commit"]
    assert b in from_features(layer.features).index


def test_save_to_store_keeps_the_proposals_of_earlier_prelabels(viewer_with_widgets, tmp_path, qtbot):
    _, prompt, _ = viewer_with_widgets
    layer = prompt.labels_combo.value
    a = _commit(prompt, _disk((96, 96), (20, 20), 8), source="sam2")  # a pre-label before saving
    prompt.store_edit.value = str(tmp_path / "cells.zarr")
    prompt._on_store()
    with AnnotationStore.open(tmp_path / "cells.zarr", read_only=True) as saved:
        assert a in saved.read_side("prelabel")
    layer.brush_size = 4
    layer.paint((20, 32), a)  # a correction after saving
    prompt._binding.flush()
    row = from_features(layer.features).loc[a]
    assert row["review"] == "corrected" and 0 < row["prelabel_iou"] < 1


def test_a_store_held_elsewhere_shows_who_and_refuses_edits(make_napari_viewer, tmp_path, monkeypatch, request):
    import socket
    import subprocess
    import sys

    monkeypatch.setenv("NAPARI_INSTSEG_NOTHREADS", "1")
    labels = np.zeros((96, 96), np.uint32)
    labels[_disk((96, 96), (20, 20), 8)] = 1
    path = tmp_path / "cells.zarr"
    AnnotationStore.create(path, labels, image={"file_name": "cells.tif"}).close()
    code = (  # another live process holds the store's writer lock
        "import sys, time; from napari_instseg.core.store import AnnotationStore;"
        "s = AnnotationStore.open(sys.argv[1]); print(s.read_only, flush=True); time.sleep(120)"
    )
    child = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True)
    request.addfinalizer(lambda: (child.kill(), child.wait()))
    assert child.stdout.readline().strip() == "False"
    holder = {"pid": child.pid, "host": socket.gethostname()}
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin=PLUGIN)
    _, instances = viewer.window.add_plugin_dock_widget(PLUGIN, "Instances")
    instances.labels_combo.value = viewer.layers["cells labels"]
    assert f"process {holder['pid']}" in instances.notice.value and not instances.notice.native.isHidden()
    instances.select(1)
    instances.tier_combo.value = "heavy"
    instances._on_apply()
    assert "refused" in instances.status.value and f"process {holder['pid']}" in instances.status.value
    assert from_features(viewer.layers["cells labels"].features).loc[1, "occlusion"] == "none"
    assert not viewer.layers["cells labels"].editable  # no painting either


def test_reopen_a_store_without_a_reader_dialog_image_and_file_name_restored(make_napari_viewer, tmp_path, monkeypatch):
    import json

    import tifffile

    monkeypatch.setenv("NAPARI_INSTSEG_NOTHREADS", "1")
    image = np.zeros((96, 96), np.uint8)
    image[_disk((96, 96), (40, 40), 10)] = 200
    tifffile.imwrite(tmp_path / "cells.tif", image)
    viewer = make_napari_viewer()
    viewer.open(str(tmp_path / "cells.tif"))  # napari's own tiff reader
    _, prompt = viewer.window.add_plugin_dock_widget(PLUGIN, "Prompt")
    prompt.backend_combo.value = "classic"
    assert prompt.image_combo.value is viewer.layers["cells"]  # preselected: the only image
    prompt._on_new_labels()
    prompt.store_edit.value = str(tmp_path / "cells.zarr")
    prompt._on_store()
    prompt.points_layer.add([[40, 40]])
    assert prompt._on_commit() is not None
    prompt._binding.close()
    viewer.close()

    again = make_napari_viewer()
    # as File > Open and drag-and-drop do (plugin=None): no "which reader?" question
    again.open(str(tmp_path / "cells.zarr"), plugin=None)
    assert [layer.name for layer in again.layers] == ["cells", "cells labels"]
    out = tmp_path / "cells.json"
    again.layers["cells labels"].save(str(out), plugin=PLUGIN)
    assert json.loads(out.read_text())["images"][0]["file_name"] == "cells.tif"


def test_categories_added_in_the_gui_go_with_the_store_and_the_annotator_is_remembered(
    viewer_with_widgets, tmp_path, monkeypatch
):
    monkeypatch.setenv("NAPARI_INSTSEG_CONFIG", str(tmp_path / "config"))
    _, prompt, instances = viewer_with_widgets
    instances.annotator_edit.value = "dr-jones"
    from napari_instseg._widgets._settings import remembered_annotator

    assert remembered_annotator() == "dr-jones"  # the next napari session starts with it
    instances.new_category_edit.value = "mitosis"
    instances.new_color_edit.value = "#ff00ff"
    instances._on_add_category()
    assert "mitosis" in [c.name for c in prompt.session.protocol.categories]
    assert any("mitosis" in str(choice) for choice in prompt.category_combo.choices) or [
        c for c in prompt.category_combo.choices if c == 2
    ]
    prompt.category_combo.value = 2
    a = prompt._binding.run("commit", _disk((96, 96), (20, 20), 8), category=2).instance_id
    prompt.store_edit.value = str(tmp_path / "cells.zarr")
    prompt._on_store()  # the store is created with the protocol as it is now
    with AnnotationStore.open(tmp_path / "cells.zarr", read_only=True) as saved:
        assert saved.protocol.category(2).name == "mitosis" and saved.protocol.category(2).color == "#ff00ff"
        assert saved.table.loc[a, "category_id"] == 2 and saved.table.loc[a, "annotator"] == "dr-jones"
    protocol_file = tmp_path / "protocol.json"
    from napari_instseg.core.protocol import AnnotationProtocol, Category

    AnnotationProtocol(categories=(Category(1, "tumour cell"), Category(2, "lymphocyte")), name="TIL study").save(
        protocol_file
    )
    instances.protocol_edit.value = str(protocol_file)
    instances._on_load_protocol()
    assert prompt.session.protocol.name == "TIL study"


def test_one_forward_key_press_brings_the_back_outline_in_front(viewer_with_widgets, qtbot):
    """Two amodal commits (z -1, -2): one Shift+Up on the canvas puts the selected back one in
    front, pixels and occluded fractions change at once; Alt+Z undoes it in one step; the
    Backward button sends it back."""
    viewer, prompt, instances = viewer_with_widgets
    show_at_size(viewer, qtbot)
    layer = prompt.labels_combo.value
    a, b = _disk((96, 96), (40, 34), 12), _disk((96, 96), (40, 52), 12)
    front = _commit(prompt, a, amodal=True)
    back = _commit(prompt, b, amodal=True)
    before = layer.data.copy()
    instances.select(back)
    key(viewer, qtbot, "Up", "Shift")
    table = from_features(layer.features)
    assert (layer.data[a & b] == back).all() and table.loc[back, "occluded_fraction"] == 0.0
    assert table.loc[front, "occluded_fraction"] == pytest.approx((a & b).sum() / a.sum())
    key(viewer, qtbot, "Z", "Alt")
    np.testing.assert_array_equal(layer.data, before)
    key(viewer, qtbot, "Y", "Alt")
    instances.buttons["send_backward"].native.click()
    np.testing.assert_array_equal(layer.data, before)
    assert from_features(layer.features).loc[back, "occluded_fraction"] > 0
