"""Version-1 stores (table.json / state.json / npz journal, written by the version-1 code:
``tests/core/fixtures/store_v1.zarr``, with an action a crash interrupted) upgrade to
version 2 on open, keeping a backup until the upgrade has succeeded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from napari_instseg.core.store import AnnotationStore, StoreError

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def v1_store(tmp_path):
    path = tmp_path / "store_v1.zarr"
    shutil.copytree(FIXTURES / "store_v1.zarr", path)
    return path


def _expected():
    data = np.load(FIXTURES / "store_v1_expected.npz")
    table = pd.DataFrame(json.loads((FIXTURES / "store_v1_expected_table.json").read_text())).set_index("id")
    return data["labels"], table, data["prelabels"].tolist(), data["amodal"].tolist()


def test_a_version_1_store_upgrades_on_open_with_everything(v1_store):
    labels, table, prelabels, amodal = _expected()
    with AnnotationStore.open(v1_store) as store:
        assert json.loads((v1_store / "zarr.json").read_text())["attributes"]["version"] == 2
        session = store.session()
        np.testing.assert_array_equal(session.labels_yx, labels)
        assert session.table.index.tolist() == table.index.tolist() == [7, 8, 9, 10, 12]
        for column in ("occlusion", "review", "source", "iscrowd", "category_id", "z_order"):
            assert session.table[column].tolist() == table[column].tolist(), column
        assert sorted(session.prelabels) == prelabels and sorted(session.amodal) == amodal
        assert [e.op for e in session.undo_stack] == ["commit", "commit", "commit", "retag", "paint", "commit"]
        assert session.ids.next_id == 13  # ids are never reused across the upgrade
        assert store.image == {"file_name": "v1.tif"}
        # the history goes on: undo the interrupted-then-completed commit, then the paint
        session.undo()
        assert 12 not in session.table.index
        session.undo()
        assert (session.labels_yx[5:8, 30:40] == 0).all()
        assert session.commit(np.pad(np.ones((4, 4), bool), ((90, 2), (2, 90)))).instance_id == 13
    names = {p.name for p in (v1_store / "instseg").iterdir()}
    assert "store.sqlite" in names and not names & {"table.json", "state.json", "journal", "side"}
    assert not (v1_store / "instseg-v1-backup").exists()
    with AnnotationStore.open(v1_store) as again:
        assert again.table.index.tolist() == [7, 8, 9, 10, 13]


def test_an_interrupted_upgrade_leaves_the_version_1_store_and_runs_again(v1_store, monkeypatch):
    from napari_instseg.core.store import _upgrade

    def crash(*args, **kwargs):
        raise OSError(5, "Input/output error (injected)")

    monkeypatch.setattr(_upgrade, "write_attrs", crash)
    with pytest.raises(OSError, match="injected"):
        AnnotationStore.open(v1_store)
    assert json.loads((v1_store / "zarr.json").read_text())["attributes"]["version"] == 1
    assert (v1_store / "instseg" / "table.json").is_file() and (v1_store / "instseg-v1-backup").is_dir()
    monkeypatch.undo()
    with AnnotationStore.open(v1_store) as store:
        np.testing.assert_array_equal(store.read_labels(), _expected()[0])


def test_a_damaged_interrupted_record_stops_the_upgrade_with_a_clear_error(v1_store):
    record = v1_store / "instseg" / "journal" / "00000010.npz"
    record.write_bytes(record.read_bytes()[:100])  # truncated
    with pytest.raises(StoreError, match=r"00000010.npz is damaged .*interrupted"):
        AnnotationStore.open(v1_store)
    assert json.loads((v1_store / "zarr.json").read_text())["attributes"]["version"] == 1
    assert (v1_store / "instseg-v1-backup" / "journal" / "00000010.npz").is_file()


def test_export_of_a_version_1_store_upgrades_it(v1_store, tmp_path):
    from napari_instseg.cli import main

    assert main(["export", str(v1_store), "-o", str(tmp_path / "out.json")]) == 0
    coco = json.loads((tmp_path / "out.json").read_text())
    assert sorted(a["instance_id"] for a in coco["annotations"]) == [7, 8, 9, 10, 12]


def test_a_version_1_store_with_garbage_state_says_what_is_wrong(v1_store):
    (v1_store / "instseg" / "state.json").write_text("{not json")
    with pytest.raises(StoreError, match=r"state.json is not valid JSON"):
        AnnotationStore.open(v1_store)
    (v1_store / "instseg" / "state.json").unlink()
    with pytest.raises(StoreError, match=r"state.json is missing"):
        AnnotationStore.open(v1_store)


def test_a_version_1_store_without_its_journal_folder_keeps_labels_and_table(v1_store):
    shutil.rmtree(v1_store / "instseg" / "journal")  # the history (and the crashed action) is gone
    labels = _expected()[0]
    with AnnotationStore.open(v1_store) as store:
        session = store.session()
        np.testing.assert_array_equal(session.labels_yx, np.where(labels == 12, 0, labels))
        assert session.undo_stack == [] and session.redo_stack == []
        assert session.table.index.tolist() == [7, 8, 9, 10]  # 12 was only in the lost record
        assert session.ids.next_id == 12  # the lost action was never reported: 12 was never given out
