"""The on-disk annotation store: exact reopening, journal recovery, the lock, undo history."""

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from napari_instseg.core.store import AnnotationStore, StoreError, is_store


def _rect(shape, y0, x0, y1, x1):
    mask = np.zeros(shape, bool)
    mask[y0:y1, x0:x1] = True
    return mask


@pytest.fixture
def store(tmp_path):
    with AnnotationStore.create(tmp_path / "a.zarr", (96, 96), image={"file_name": "a.tif"}) as opened:
        yield opened


def _fill(session):
    shape = session.shape_yx
    a = session.commit(_rect(shape, 5, 5, 30, 30), source="sam2").instance_id
    b = session.commit(_rect(shape, 20, 20, 50, 50), category=1).instance_id
    c = session.commit(_rect(shape, 60, 10, 90, 40), amodal=True).instance_id
    session.retag(b, occlusion="partial", iscrowd=True)
    session.labels_yx[5:8, 30:40] = a  # a person paints
    session.labels_edited([a])
    session.delete(c)
    session.undo()  # c is back
    return a, b, c


def test_reopen_restores_everything_exactly(tmp_path, store):
    session = store.session(annotator="ann")
    _fill(session)
    store.close()
    with AnnotationStore.open(tmp_path / "a.zarr") as again:
        reopened = again.session()
        np.testing.assert_array_equal(reopened.labels_yx, session.labels_yx)
        pd.testing.assert_frame_equal(reopened.table, session.table)
        assert reopened.prelabels.keys() == session.prelabels.keys()
        np.testing.assert_array_equal(reopened.prelabels[1].full((96, 96)), session.prelabels[1].full((96, 96)))
        assert reopened.amodal.keys() == session.amodal.keys() == {3}
        assert [e.op for e in reopened.undo_stack] == [e.op for e in session.undo_stack]
        assert [e.op for e in reopened.redo_stack] == ["delete"]
        assert reopened.ids.next_id == 4
        assert again.image == {"file_name": "a.tif"}


def test_undo_and_redo_continue_after_reopening(tmp_path, store):
    session = store.session()
    _, b, c = _fill(session)
    store.close()
    with AnnotationStore.open(tmp_path / "a.zarr") as again:
        reopened = again.session()
        assert reopened.redo().op == "delete" and c not in reopened.table.index
        assert reopened.undo().op == "delete" and c in reopened.table.index
        assert reopened.undo().op == "paint"
        assert reopened.undo().op == "retag" and reopened.table.loc[b, "occlusion"] == "none"
        state = reopened.labels_yx.copy(), reopened.table.copy()
    with AnnotationStore.open(tmp_path / "a.zarr") as third:
        final = third.session()
        np.testing.assert_array_equal(final.labels_yx, state[0])
        pd.testing.assert_frame_equal(final.table, state[1])


def test_a_journal_record_written_before_a_crash_is_completed_on_open(tmp_path, store):
    session = store.session()
    session.commit(_rect((96, 96), 10, 10, 20, 20))
    # simulate a crash right after the write-ahead record of the next commit: the record is
    # on disk, nothing of it applied yet
    applied = store._apply
    store._apply = lambda *args: None
    session.commit(_rect((96, 96), 40, 40, 60, 60))
    store._apply = applied
    assert store._db.pending() == [(2, "do", None)]
    store.close()
    with AnnotationStore.open(tmp_path / "a.zarr") as again:
        assert (again.read_labels() == 2).sum() == 400
        assert again.table.index.tolist() == [1, 2]


def test_a_second_writer_opens_read_only_and_says_who_holds_the_lock(tmp_path, store):
    code = (
        "import sys; from napari_instseg.core.store import AnnotationStore;"
        "s = AnnotationStore.open(sys.argv[1]); print(s.read_only); print(s.lock_message)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "a.zarr")], capture_output=True, text=True, check=True
    )
    read_only, message = result.stdout.strip().splitlines()
    assert read_only == "True"
    assert f"being written by process {os.getpid()}" in message and "opened read-only" in message
    viewer = AnnotationStore.open(tmp_path / "a.zarr")
    assert viewer.read_only
    session = viewer.session()
    with pytest.raises(StoreError, match="is open read-only"):
        session.commit(_rect((96, 96), 1, 1, 5, 5))
    assert not session.labels_yx.any() and not len(session.table)  # nothing happened


def test_a_dead_process_lock_is_taken_over(tmp_path, store):
    store.close()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock = tmp_path / "a.zarr" / "instseg" / "lock"
    lock.write_text(json.dumps({"pid": int(dead.stdout), "host": os.uname().nodename}))
    with AnnotationStore.open(tmp_path / "a.zarr") as again:
        assert not again.read_only


def test_store_checks(tmp_path, store):
    assert is_store(tmp_path / "a.zarr") and not is_store(tmp_path)
    with pytest.raises(StoreError, match="already exists"):
        AnnotationStore.create(tmp_path / "a.zarr", (4, 4))
    with pytest.raises(StoreError, match="is not a napari-instseg annotation store"):
        AnnotationStore.open(tmp_path)


def test_cli_exports_a_store_with_amodal_fields(tmp_path, store):
    from napari_instseg.cli import main

    session = store.session()
    session.commit(_rect((96, 96), 10, 10, 40, 40), amodal=True)
    session.commit(_rect((96, 96), 20, 20, 60, 60), amodal=True)
    out = tmp_path / "out.json"
    assert main(["export", str(tmp_path / "a.zarr"), "-o", str(out)]) == 0
    coco = json.loads(out.read_text())
    back = next(a for a in coco["annotations"] if a["instance_id"] == 2)
    assert back["amodal_area"] == 1600 and back["area"] == 1600 - 400
    assert back["occlusion"] == "partial" and coco["images"][0]["file_name"] == "a.tif"


def test_a_reader_completes_a_crashed_action_and_never_blocks_a_writer(tmp_path, store):
    session = store.session()
    store._apply = lambda *args: None  # the next commit stops after its write-ahead record
    session.commit(_rect((96, 96), 40, 40, 60, 60))
    store._lock.release()  # as if the process had died
    store._lock = None
    with AnnotationStore.open(tmp_path / "a.zarr", read_only=True) as reader:
        assert (reader.read_labels() == 1).sum() == 400 and reader.table.index.tolist() == [1]
        with AnnotationStore.open(tmp_path / "a.zarr") as writer:  # a plain reader holds no lock
            assert not writer.read_only
