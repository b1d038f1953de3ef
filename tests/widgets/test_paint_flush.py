"""A brush stroke on a store-bound layer is saved even when napari closes within the second
the save timer waits: on viewer close, layer removal, store switch, export and QA."""

import json

import numpy as np
import pytest
from _canvas import drag, show_at_size

from napari_instseg._widgets._binding import layer_session
from napari_instseg.core.instances import from_features
from napari_instseg.core.store import AnnotationStore

PLUGIN = "napari-instseg"
STROKE_ID = 7


@pytest.fixture
def painted(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    """A labels layer saving to a store, and one brush stroke made with the mouse (new id 7),
    its save timer still pending."""
    monkeypatch.setenv("NAPARI_INSTSEG_NOTHREADS", "1")
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((96, 96), np.uint8), name="cells")
    layer = viewer.add_labels(np.zeros((96, 96), np.uint32), name="cells labels")
    binding = layer_session(layer)
    binding.attach_store(tmp_path / "cells.zarr")
    show_at_size(viewer, qtbot)
    viewer.layers.selection.active = layer
    layer.mode, layer.selected_label, layer.brush_size = "paint", STROKE_ID, 6
    drag(viewer, qtbot, (40, 30), (40, 60))
    stroke = layer.data == STROKE_ID
    assert stroke.sum() > 50 and binding._timer.isActive()  # painted, not yet saved
    return viewer, layer, binding, stroke, tmp_path


def _saved(path):
    with AnnotationStore.open(path, read_only=True) as store:
        return store.read_labels(), store.table


def test_stroke_survives_closing_the_viewer_at_once(painted):
    viewer, _layer, _binding, stroke, tmp_path = painted
    viewer.close()  # within the second: no timer fires
    labels, table = _saved(tmp_path / "cells.zarr")
    np.testing.assert_array_equal(labels == STROKE_ID, stroke)
    assert STROKE_ID in table.index and table.loc[STROKE_ID, "source"] == "manual"
    with AnnotationStore.open(tmp_path / "cells.zarr") as again:  # the lock was released
        assert not again.read_only


def test_stroke_survives_removing_the_layer(painted):
    viewer, layer, binding, stroke, tmp_path = painted
    viewer.layers.remove(layer)
    labels, _ = _saved(tmp_path / "cells.zarr")
    np.testing.assert_array_equal(labels == STROKE_ID, stroke)
    assert not binding._timer.isActive()
    viewer.add_layer(layer)  # back in the viewer: a new binding, saving to the store again
    assert layer_session(layer) is not binding and layer_session(layer).store is not None


def test_stroke_survives_the_window_closing(painted, qtbot):
    viewer, _layer, _binding, stroke, tmp_path = painted
    from qtpy.QtCore import QEvent
    from qtpy.QtWidgets import QApplication

    window = viewer.window._qt_window
    QApplication.sendEvent(window, QEvent(QEvent.Type.Close))  # what the window's X button sends
    labels, _ = _saved(tmp_path / "cells.zarr")
    np.testing.assert_array_equal(labels == STROKE_ID, stroke)


def test_stroke_is_in_the_store_it_was_made_for_when_the_store_is_switched(painted):
    _viewer, _layer, binding, stroke, tmp_path = painted
    binding.attach_store(tmp_path / "other.zarr")
    labels, _ = _saved(tmp_path / "cells.zarr")
    np.testing.assert_array_equal(labels == STROKE_ID, stroke)
    binding.close()


def test_stroke_is_exported_and_counted_by_qa_at_once(painted):
    _viewer, layer, binding, stroke, tmp_path = painted
    out = tmp_path / "cells.json"
    layer.save(str(out), plugin=PLUGIN)  # File > Save Selected Layers as COCO
    annotations = json.loads(out.read_text())["annotations"]
    assert [a["instance_id"] for a in annotations] == [STROKE_ID]
    assert annotations[0]["attributes"]["source"] == "manual"
    assert STROKE_ID in from_features(layer.features).index
    labels, _ = _saved(tmp_path / "cells.zarr")
    np.testing.assert_array_equal(labels == STROKE_ID, stroke)
    layer.paint((80, 80), STROKE_ID + 1)  # a second stroke, then QA reads the layer at once
    from napari_instseg._widgets.review import layer_to_coco

    assert {a["instance_id"] for a in layer_to_coco(layer)["annotations"]} == {STROKE_ID, STROKE_ID + 1}
    assert STROKE_ID + 1 in binding.session.table.index
    binding.close()
