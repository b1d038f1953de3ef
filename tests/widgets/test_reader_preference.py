"""A store made by the command line opens in napari with our reader on its first File > Open
(no "Choose reader" dialog); a plain zarr still goes to napari's reader (or its dialog)."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from napari_instseg.cli import main

PLUGIN = "napari-instseg"


@pytest.fixture
def napari_settings(tmp_path, monkeypatch):
    """napari's settings in a file of this test (the CLI and the viewer share them)."""
    import napari.settings
    from napari.settings import NapariSettings

    monkeypatch.delenv("NAPARI_INSTSEG_READER_PREFERENCE", raising=False)
    settings = NapariSettings(config_path=tmp_path / "napari-settings.yaml")
    monkeypatch.setattr(napari.settings, "_SETTINGS", settings)
    return settings


@pytest.fixture
def dialogs(monkeypatch):
    """Every "Choose reader" dialog napari shows (answered with Cancel)."""
    from napari._qt.dialogs.qt_reader_dialog import QtReaderDialog

    shown: list[str] = []

    def exec_(dialog):
        shown.append(dialog._current_file)
        return 0

    monkeypatch.setattr(QtReaderDialog, "exec_", exec_)
    return shown


def _open_folder(viewer, path, monkeypatch):
    """File > Open Folder... choosing ``path`` in the file dialog."""
    from qtpy.QtWidgets import QFileDialog

    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(path))
    viewer.window._qt_viewer._open_folder_dialog()


def _slide(path):
    image = np.full((256, 256, 3), 235, np.uint8)
    for y, x in ((60, 60), (150, 190), (200, 80)):
        image[y - 6 : y + 6, x - 6 : x + 6] = (90, 40, 120)
    zarr.open_group(str(path), mode="w").create_array("0", data=image, chunks=(128, 128, 3))
    return path


def test_a_store_the_cli_made_opens_with_our_reader_and_a_plain_zarr_does_not(
    make_napari_viewer, napari_settings, dialogs, tmp_path, monkeypatch
):
    slide, store = _slide(tmp_path / "slide.zarr"), tmp_path / "cells.zarr"
    (tmp_path / "p.csv").write_text("y,x\n60,60\n150,190\n")
    options = ["--backend", "classic", "--tile", "128", "--halo", "16", "--points", str(tmp_path / "p.csv")]
    assert main(["prelabel-slide", str(slide), "--store", str(store), *options]) == 0

    viewer = make_napari_viewer()
    _open_folder(viewer, store, monkeypatch)
    assert dialogs == []
    labels = viewer.layers["cells labels"]
    assert labels.source.reader_plugin == PLUGIN
    assert len(labels.features) == 2

    # a plain zarr: napari's question, as before (nothing of ours decides for it) ...
    _open_folder(viewer, slide, monkeypatch)
    assert dialogs == [str(slide)]
    assert [layer.name for layer in viewer.layers] == ["cells labels"]
    # ... and a script's viewer.open(plain) is napari's builtin reader
    viewer.open(str(slide))
    assert viewer.layers[-1].source.reader_plugin == "napari"
    # a script asking napari to choose (plugin=None, as File > Open does) gets ours for the store
    viewer.open(str(store), plugin=None)
    assert viewer.layers[-1].source.reader_plugin == PLUGIN and dialogs == [str(slide)]


def test_project_stores_open_without_a_dialog_and_the_switch_keeps_the_cli_off_settings(
    make_napari_viewer, napari_settings, dialogs, tmp_path, monkeypatch
):
    import tifffile

    image = np.full((64, 64), 30, np.uint8)
    image[20:30, 20:30] = 220
    tifffile.imwrite(tmp_path / "a.tif", image)
    monkeypatch.setenv("NAPARI_INSTSEG_READER_PREFERENCE", "0")
    assert main(["project", "init", str(tmp_path / "off"), "--images", str(tmp_path / "a.tif")]) == 0
    assert napari_settings.plugins.extension2reader == {}
    monkeypatch.delenv("NAPARI_INSTSEG_READER_PREFERENCE")
    project = tmp_path / "proj"
    assert main(["project", "init", str(project), "--images", str(tmp_path / "a.tif")]) == 0
    from napari_instseg.core.project import Project

    with Project.open(project) as opened:  # a store made later, by anyone, is covered too
        item = opened.items()[0]
        opened.open_store(item).close()
        store = opened.store_path(item)

    viewer = make_napari_viewer()
    _open_folder(viewer, store, monkeypatch)
    assert dialogs == []
    assert viewer.layers[-1].source.reader_plugin == PLUGIN


def test_patterns_match_only_the_store_even_with_glob_characters_in_its_path(napari_settings, tmp_path):
    from napari.plugins.utils import get_preferred_reader

    from napari_instseg._reader_preference import prefer_our_reader, prefer_our_reader_for, project_stores_pattern

    folder = tmp_path / "run [1] *"
    store, sibling = folder / "a.zarr", folder / "b.zarr"
    for path in (store, sibling, folder / "proj" / "stores" / "0000001.zarr"):
        path.mkdir(parents=True)
    prefer_our_reader(store)
    prefer_our_reader(store)  # once is enough
    prefer_our_reader_for([project_stores_pattern(folder / "proj")])
    assert len(napari_settings.plugins.extension2reader) == 2
    assert get_preferred_reader(store) == PLUGIN
    assert get_preferred_reader(sibling) is None  # another zarr beside it: napari decides
    assert get_preferred_reader(folder / "proj" / "stores" / "0000001.zarr") == PLUGIN
