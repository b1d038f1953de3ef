"""Store marks: small named records saved atomically with an action (the slide batch's
finished tiles). After a crash a mark is in the store exactly when its action is; a save
that fails saves neither; stores made before the mark tables get them from their writer."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from napari_instseg.core.store import AnnotationStore, StoreError

SHAPE = (300, 300)
MARKS = {"batch/done/0,1": None, "batch/pending": b"\x00seam objects"}


class _Crash(BaseException):
    """A process dying: nothing after it runs."""


def _rect(y0, x0, y1, x1):
    mask = np.zeros(SHAPE, bool)
    mask[y0:y1, x0:x1] = True
    return mask


def _commit_with_marks(store, marks=MARKS):
    session = store.window_session((0, 0, *SHAPE), annotator="t", marks=marks)
    return session.commit(_rect(10, 10, 40, 40), source="sam2")


def test_marks_are_saved_with_the_action_and_read_back(tmp_path):
    with AnnotationStore.create(tmp_path / "s.zarr", SHAPE) as store:
        assert store.read_marks() == {}
        _commit_with_marks(store)
        store.set_marks({"other": b"x"})
    with AnnotationStore.open(tmp_path / "s.zarr", read_only=True) as store:
        assert store.n_instances == 1
        assert store.read_marks("batch/") == MARKS
        assert store.read_marks() == {**MARKS, "other": b"x"}
        assert store._db.conn.execute("SELECT COUNT(*) FROM marks_pending").fetchone()[0] == 0


def test_read_marks_selects_by_prefix(tmp_path):
    with AnnotationStore.create(tmp_path / "s.zarr", SHAPE) as store:
        store.set_marks({"p/1,1": None, "p/11,1": None, "p/1,10": b"", "q/1,1": None})
        assert store.read_marks("p/1,") == {"p/1,1": None, "p/1,10": b""}
        assert set(store.read_marks("p/")) == {"p/1,1", "p/11,1", "p/1,10"}


def test_a_failed_save_saves_neither_the_action_nor_its_marks(tmp_path, monkeypatch):
    with AnnotationStore.create(tmp_path / "s.zarr", SHAPE) as store:

        def fail(step):
            if step == "apply":
                raise OSError("disk full")

        monkeypatch.setattr(store, "_io", fail)
        with pytest.raises(StoreError, match="nothing was saved"):
            _commit_with_marks(store)
        assert store.read_marks() == {} and store.n_instances == 0
        assert store._db.conn.execute("SELECT COUNT(*) FROM marks_pending").fetchone()[0] == 0


def test_a_crash_after_the_write_ahead_record_completes_action_and_marks(tmp_path, monkeypatch):
    store = AnnotationStore.create(tmp_path / "s.zarr", SHAPE)

    def crash(step):
        if step == "apply":
            raise _Crash

    def no_roll_back(seq, kind, edit, exc):  # a dead process rolls nothing back
        raise exc

    monkeypatch.setattr(store, "_io", crash)
    monkeypatch.setattr(store, "_roll_back", no_roll_back)
    with pytest.raises(_Crash):
        _commit_with_marks(store)
    assert store.read_marks() == {}  # not applied yet: staged with the record
    store.close()
    with AnnotationStore.open(tmp_path / "s.zarr") as reopened:  # replays the record, marks included
        assert reopened.n_instances == 1
        assert reopened.read_marks() == MARKS


def test_marks_go_with_do_actions_only_and_a_damaged_mark_is_reported(tmp_path):
    with AnnotationStore.create(tmp_path / "s.zarr", SHAPE) as store:
        session = store.session()
        session.commit(_rect(10, 10, 40, 40), source="sam2")
        edit = session.undo_stack[-1]
        with pytest.raises(StoreError, match="'do' action only"):
            store.record("undo", edit, marks={"x": None})
        store.set_marks({"x": b"abc"})
        store._db.conn.execute("UPDATE marks SET value = ? WHERE key = 'x'", (b"abd",))
        with pytest.raises(StoreError, match="mark 'x' is damaged"):
            store.read_marks()


def test_a_store_made_before_the_mark_tables_gets_them_from_its_writer(tmp_path):
    path = tmp_path / "s.zarr"
    AnnotationStore.create(path, SHAPE).close()
    conn = sqlite3.connect(path / "instseg" / "store.sqlite")
    conn.execute("DROP TABLE marks")
    conn.execute("DROP TABLE marks_pending")
    conn.commit()
    conn.close()
    with AnnotationStore.open(path, read_only=True) as reader:
        assert reader.read_marks() == {}
    with AnnotationStore.open(path) as writer:
        _commit_with_marks(writer)
    with AnnotationStore.open(path, read_only=True) as reader:
        assert reader.read_marks() == MARKS
