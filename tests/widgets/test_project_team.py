"""The Project panel with the other panels docked one by one, as a team annotator uses it
(trial 5): real double-clicks on the list, keys on the canvas, clicks on the image, at 1600 x 1000."""

from __future__ import annotations

import numpy as np
import pytest
from _canvas import click, key, show_at_size

from napari_instseg.core.project import Project, refs_from_patterns

PLUGIN = "napari-instseg"


def _disks(shape_yx: tuple[int, int], centres_yx: list[tuple[int, int]], radius_px: int = 9) -> np.ndarray:
    """A dark uint8 image with bright disks (classic prompting segments them)."""
    image = np.full(shape_yx, 20, np.uint8)
    yy, xx = np.mgrid[: shape_yx[0], : shape_yx[1]]
    for cy, cx in centres_yx:
        image[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius_px**2] = 200
    return image


@pytest.fixture
def team_project(tmp_path):
    """Three tiles of alice: two RGB, then one grey (another kind of image layer)."""
    import tifffile

    folder = tmp_path / "tiles"
    folder.mkdir()
    grey = _disks((96, 96), [(30, 30), (60, 64)])
    tifffile.imwrite(folder / "tile_0.tif", np.stack([grey] * 3, axis=-1))
    tifffile.imwrite(folder / "tile_1.tif", np.stack([grey[::-1]] * 3, axis=-1))
    tifffile.imwrite(folder / "tile_2.tif", grey.T.copy())
    with Project.create(tmp_path / "proj", refs_from_patterns([str(folder / "*.tif")])) as project:
        project.manifest.assign([1, 2, 3], "alice")
    return tmp_path / "proj"


@pytest.fixture
def docked(make_napari_viewer, team_project, qtbot, monkeypatch):
    """Project, then Prompt, docked one by one (the Plugins menu's way); the project opened."""
    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest

    monkeypatch.setenv("NAPARI_INSTSEG_NOTHREADS", "1")
    monkeypatch.setenv("NAPARI_INSTSEG_ANNOTATOR", "alice")
    viewer = make_napari_viewer(show=True)
    _, project = viewer.window.add_plugin_dock_widget(PLUGIN, "Project")
    _, prompt = viewer.window.add_plugin_dock_widget(PLUGIN, "Prompt")
    prompt.backend_combo.value = "classic"
    project.then_next_check.setChecked(False)
    show_at_size(viewer, qtbot)
    QTest.keyClicks(project.path_edit, str(team_project))
    QTest.keyClick(project.path_edit, Qt.Key.Key_Return)
    yield viewer, project, prompt
    project.close()


def double_click_row(widget, image_id: int) -> None:
    """Double-click the row of ``image_id`` in the Project panel's list."""
    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest

    row = next(r for r in range(widget.model.rowCount()) if widget.model.item_at(r).image_id == image_id)
    view = widget.table
    rect = view.visualRect(widget.model.index(row, 1))
    args = (view.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, rect.center())
    QTest.mouseClick(*args)  # a double-click as Qt sees it: press, release, then double-click
    QTest.mouseDClick(*args)


def test_the_prompt_panel_follows_the_project_image_from_tile_to_tile(docked, qtbot):
    """Trial 5 defect 6: after the second image the Prompt panel's image was None."""
    viewer, project, prompt = docked
    double_click_row(project, 1)
    seen = []
    for expected in (1, 2, 3, 1):  # 1 -> 2 renames the layer; 2 -> 3 replaces it (grey)
        assert project.current.image_id == expected
        layer = project.image_layer
        assert prompt.image_combo.value is layer, f"image {expected}: {prompt.image_combo.value}"
        assert prompt.labels_combo.value is viewer.layers["project labels"]
        assert sum(1 for lay in viewer.layers if lay.metadata.get("instseg_project_image")) == 1
        viewer.layers.selection.active = prompt.points_layer  # the user picks the prompts layer
        centre = (30, 30) if expected != 2 else (96 - 1 - 30, 30)
        click(viewer, qtbot, centre)  # a click on a nucleus segments it at once
        candidate = viewer.layers["candidate"].data
        assert candidate[centre], f"image {expected}: {prompt.status.value}"
        key(viewer, qtbot, "C", "Shift")  # and one key commits it into this image's store
        assert project.labels_layer.data[centre] > 0, prompt.status.value
        seen.append(layer.name)
        key(viewer, qtbot, "Period")  # next unfinished
    assert seen[:3] == [f"project image {k}: tile_{k - 1}.tif" for k in (1, 2, 3)]


def _store_ids(project_dir, image_id: int) -> list[int]:
    from napari_instseg.core.store import AnnotationStore

    with Project.open(project_dir) as project:
        path = project.store_path(project.manifest.item(image_id))
    with AnnotationStore.open(path, read_only=True) as store:
        return sorted(int(i) for i in store.table.index)


def _commit_click(viewer, qtbot, prompt, centre_yx) -> None:
    viewer.layers.selection.active = prompt.points_layer  # the user picks the prompts layer
    click(viewer, qtbot, centre_yx)
    key(viewer, qtbot, "C", "Shift")


def test_finished_work_reopened_by_its_annotator_is_read_only_outside_review(docked, team_project, qtbot):
    """Trial 5 defect 5: alice reopened her reviewed image and her edit landed in it silently."""
    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest

    viewer, project, prompt = docked
    double_click_row(project, 1)
    _commit_click(viewer, qtbot, prompt, (30, 30))
    assert _store_ids(team_project, 1) == [1]
    QTest.mouseClick(project.submit_button, Qt.MouseButton.LeftButton)  # 'then next' is off
    assert project.current.status == "submitted"
    labels = viewer.layers["project labels"]
    assert not labels.editable and "read-only" in project.summary.text()
    _commit_click(viewer, qtbot, prompt, (60, 64))  # after Submit: refused, not saved
    assert labels.data[60, 64] == 0 and _store_ids(team_project, 1) == [1]
    double_click_row(project, 2)
    assert viewer.layers["project labels"].editable
    double_click_row(project, 1)  # reopened by its owner, review mode off
    labels = viewer.layers["project labels"]
    text = project.summary.text()
    assert "is submitted" in text and "review mode" in text and "read-only" in text, text
    assert not labels.editable and labels.data[30, 30] == 1  # shown, as it was submitted
    assert "is submitted" in prompt.notice.value and "other session" not in prompt.notice.value  # the reason
    _commit_click(viewer, qtbot, prompt, (60, 64))
    assert labels.data[60, 64] == 0, prompt.status.value
    assert "refused" in prompt.status.value or "READ-ONLY" in prompt.notice.value
    project.review_check.click()  # a reviewer may correct it
    double_click_row(project, 1)
    assert viewer.layers["project labels"].editable
    _commit_click(viewer, qtbot, prompt, (60, 64))
    assert _store_ids(team_project, 1) == [1, 2]
    with Project.open(team_project) as opened:
        assert opened.manifest.item(1).status == "submitted"  # a correction keeps the status


def test_the_counts_follow_each_image_opened(docked):
    """Trial 5 defect 11: opening an image claimed it, but the summary kept the old counts."""
    _viewer, project, _prompt = docked
    assert "todo 3" in project.summary.text()
    double_click_row(project, 1)
    assert "todo 2, in progress 1" in project.summary.text(), project.summary.text()
    double_click_row(project, 2)
    assert "todo 1, in progress 2" in project.summary.text(), project.summary.text()
    double_click_row(project, 1)  # already in progress: nothing moves
    assert "todo 1, in progress 2" in project.summary.text(), project.summary.text()


def _cut_buttons(dock) -> list[str]:
    """Buttons of a dock whose visible part is narrower than the button (cut at an edge)."""
    from qtpy.QtWidgets import QAbstractButton

    cut = []
    for button in dock.findChildren(QAbstractButton):
        if not button.isVisibleTo(dock) or not button.text():
            continue
        visible = button.visibleRegion().boundingRect()
        if not visible.isEmpty() and visible.width() < button.width():
            cut.append(f"{button.text()!r} {visible.width()} of {button.width()} px")
    return cut


@pytest.mark.parametrize("middle", ["Review pre-labels", "Instances"])
def test_three_panels_docked_one_by_one_fit_1600_by_1000(make_napari_viewer, qtbot, monkeypatch, tmp_path, middle):
    """Trial 5 defect 12: Project + Review / Instances + Prompt docked one by one grew the
    window to 1580-2013 px high and cut buttons at the right edge."""
    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest

    from napari_instseg._widgets._layout import PANEL_MAX_MIN_HEIGHT, PANEL_MAX_MIN_WIDTH

    monkeypatch.setenv("NAPARI_INSTSEG_NOTHREADS", "1")
    viewer = make_napari_viewer(show=True)
    viewer.add_image(np.zeros((256, 256, 3), np.uint8), name="cells")
    viewer.add_labels(np.zeros((256, 256), np.uint32), name="cells instances")
    docks = {name: viewer.window.add_plugin_dock_widget(PLUGIN, name) for name in ("Project", middle, "Prompt")}
    show_at_size(viewer, qtbot)
    window = viewer.window._qt_window
    qtbot.wait(100)
    window.grab().save(str(tmp_path / f"docked_{middle.split()[0].lower()}.png"))
    assert (window.width(), window.height()) == (1600, 1000)
    for name, (dock, _) in docks.items():
        hint = dock.minimumSizeHint()
        assert hint.width() <= PANEL_MAX_MIN_WIDTH and hint.height() <= PANEL_MAX_MIN_HEIGHT + 40, (name, hint)
        assert not _cut_buttons(dock), (name, _cut_buttons(dock))
    prompt = docks["Prompt"][1]
    prompt.points_layer.add([[100, 100]])
    clear = prompt.clear_button.native  # scrolled into view, then clicked where the user sees it
    area = prompt.native
    area.ensureWidgetVisible(clear)
    qtbot.wait(20)
    assert clear.visibleRegion().boundingRect().width() == clear.width()
    QTest.mouseClick(clear, Qt.MouseButton.LeftButton)
    assert len(prompt.points_layer.data) == 0


def test_the_first_undo_names_a_prelabel_run_of_another_process_before_undoing_it(docked, team_project, qtbot):
    """Trial 5 defect 14: the first Alt+Z in a freshly opened image silently undid the whole
    pre-label run that `project prelabel` had made in another process."""
    from napari_instseg.cli import main

    viewer, project, _prompt = docked
    assert main(["project", "prelabel", str(team_project), "--backend", "classic"]) == 0
    project.refresh_button.click()
    _, instances = viewer.window.add_plugin_dock_widget(PLUGIN, "Instances", tabify=True)
    double_click_row(project, 1)
    labels = viewer.layers["project labels"]
    instances.labels_combo.value = labels
    n = len(_store_ids(team_project, 1))
    assert n > 0 and labels.data.any()
    tip = instances.buttons["undo"].native.toolTip()
    assert tip.startswith("Undo commit-many of ") and f"{n} instance(s)" in tip, tip
    key(viewer, qtbot, "Z", "Alt")  # first press: named, nothing undone
    assert "Nothing undone yet" in instances.status.value and "commit-many" in instances.status.value
    assert len(_store_ids(team_project, 1)) == n and labels.data.any()
    key(viewer, qtbot, "Z", "Alt")  # asked again: undone
    assert not labels.data.any() and _store_ids(team_project, 1) == []
    key(viewer, qtbot, "Y", "Alt")  # and redone
    assert len(_store_ids(team_project, 1)) == n
