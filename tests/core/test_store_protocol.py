"""A store's protocol can change after it was made: saved like an action (write-ahead record,
atomic zarr.json, checksum), read back on reopen, refused by a read-only store."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_instseg.core.protocol import AnnotationProtocol, Category
from napari_instseg.core.store import AnnotationStore, StoreError, check_store, repair_store


def _store(tmp_path):
    labels = np.zeros((64, 64), np.uint32)
    labels[10:20, 10:20] = 1
    return AnnotationStore.create(tmp_path / "s.zarr", labels, AnnotationProtocol.default())


def _with_mitosis(protocol):
    return AnnotationProtocol(
        categories=(*protocol.categories, Category(7, "mitosis", "cell", "#ff00ff")), name=protocol.name
    )


def test_set_protocol_is_read_back_on_reopen_and_checked(tmp_path):
    store = _store(tmp_path)
    store.set_protocol(_with_mitosis(store.protocol))
    assert store.protocol.category(7).color == "#ff00ff"
    store.close()
    with AnnotationStore.open(tmp_path / "s.zarr", read_only=True) as again:
        assert again.protocol.category(7).name == "mitosis"
    assert check_store(tmp_path / "s.zarr").ok


def test_a_read_only_store_refuses_a_protocol_change(tmp_path):
    writer = _store(tmp_path)
    reader = AnnotationStore.open(tmp_path / "s.zarr")  # the writer holds the lock
    assert reader.read_only
    with pytest.raises(StoreError, match=r"open read-only .*nothing was saved"):
        reader.set_protocol(_with_mitosis(reader.protocol))
    reader.close()
    writer.close()
    with AnnotationStore.open(tmp_path / "s.zarr", read_only=True) as again:
        assert [c.name for c in again.protocol.categories] == [c.name for c in AnnotationProtocol.default().categories]


@pytest.mark.parametrize("step", ["protocol journal", "protocol attributes", "protocol apply"])
def test_an_io_error_while_saving_the_protocol_changes_nothing(tmp_path, step):
    store = _store(tmp_path)
    before = json.loads((tmp_path / "s.zarr" / "zarr.json").read_text())

    def fault(at):
        if at == step:
            raise OSError(28, f"No space left on device (injected at {at})")

    store._io = fault
    with pytest.raises(StoreError, match="nothing was saved"):
        store.set_protocol(_with_mitosis(store.protocol))
    assert json.loads((tmp_path / "s.zarr" / "zarr.json").read_text()) == before
    assert "protocol_pending" not in store._db.meta() and store.protocol.categories[-1].id != 7
    store._io = lambda at: None
    store.set_protocol(_with_mitosis(store.protocol))  # the disk is fine again
    store.close()
    with AnnotationStore.open(tmp_path / "s.zarr") as again:
        assert again.protocol.category(7).name == "mitosis"


def test_a_change_interrupted_after_its_record_is_completed_on_open(tmp_path, monkeypatch):
    import napari_instseg.core.store._protocol as saving

    store = _store(tmp_path)

    def crash(at):
        if at == "protocol attributes":
            raise KeyboardInterrupt  # stands for the process dying here

    def dead(store, before, exc):  # a dead process rolls nothing back
        raise exc

    store._io = crash
    monkeypatch.setattr(saving, "_roll_back", dead)
    with pytest.raises(KeyboardInterrupt):
        store.set_protocol(_with_mitosis(store.protocol))
    store.close()
    with AnnotationStore.open(tmp_path / "s.zarr", read_only=True) as again:  # a reader completes it
        assert again.protocol.category(7).name == "mitosis"
    assert check_store(tmp_path / "s.zarr").ok


def test_a_hand_edited_protocol_is_reported_and_repair_writes_the_saved_one_back(tmp_path):
    store = _store(tmp_path)
    store.set_protocol(_with_mitosis(store.protocol))
    store.close()
    meta = tmp_path / "s.zarr" / "zarr.json"
    document = json.loads(meta.read_text())
    document["attributes"]["protocol"]["categories"][-1]["name"] = "tampered"
    meta.write_text(json.dumps(document))
    with pytest.raises(StoreError, match=r"protocol in zarr\.json differs"):
        AnnotationStore.open(tmp_path / "s.zarr")
    report = repair_store(tmp_path / "s.zarr")
    assert "wrote the saved protocol back into zarr.json" in report.repaired
    with AnnotationStore.open(tmp_path / "s.zarr") as again:
        assert again.protocol.category(7).name == "mitosis"
