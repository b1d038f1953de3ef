"""Failure-safe saving (issue 9): an I/O error at *any* write of an action leaves the store
and the session exactly as before; sequence numbers and ids are never reused."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from napari_instseg.core.store import AnnotationStore, StoreError

SHAPE = (300, 300)  # larger than one 256-px chunk: an action can span several chunk writes


def _rect(y0, x0, y1, x1, shape=SHAPE):
    mask = np.zeros(shape, bool)
    mask[y0:y1, x0:x1] = True
    return mask


def _store_state(store):
    conn = store._db.conn
    journal = conn.execute("SELECT seq, kind, state, stack FROM journal WHERE state != 'void' ORDER BY seq").fetchall()
    side = {k: sorted(store.read_side(k)) for k in ("prelabel", "amodal")}
    return store.read_labels(), store.table, side, journal, store._db.meta()


def _session_state(session):
    return (
        session.labels_yx.copy(),
        session.table.copy(),
        sorted(session.prelabels),
        sorted(session.amodal),
        len(session.undo_stack),
        len(session.redo_stack),
        session.ids.next_id,
    )


def _assert_same(a, b):
    for x, y in zip(a, b, strict=True):
        if isinstance(x, np.ndarray):
            np.testing.assert_array_equal(x, y)
        elif isinstance(x, pd.DataFrame):
            pd.testing.assert_frame_equal(x, y)
        else:
            assert x == y


ACTIONS = {
    "commit across chunks": lambda s: s.commit(_rect(240, 240, 280, 280), source="sam2"),
    "commit amodal": lambda s: s.commit(_rect(10, 200, 60, 290), amodal=True),
    "retag": lambda s: s.retag(1, occlusion="heavy"),
    "paint": lambda s: s.labels_edited([1]),  # recording a stroke napari painted (see _prepared)
    "delete": lambda s: s.delete(2),
    "replace mask": lambda s: s.replace_mask(2, _rect(90, 90, 150, 130)),
    "undo": lambda s: s.undo(),
    "redo": lambda s: s.redo(),  # of the commit undone in _prepared
    "commit many": lambda s: s.commit_many([_rect(200, 10, 220, 30), _rect(260, 260, 290, 290)]),
}


def _prepared(tmp_path, name=""):
    store = AnnotationStore.create(tmp_path / "f.zarr", SHAPE)
    session = store.session()
    session.commit(_rect(5, 5, 40, 40), source="sam2")
    session.commit(_rect(100, 100, 140, 140))
    if name == "redo":
        session.undo()
    if name == "paint":
        session.labels_yx[250:270, 100:120] = 1  # napari painted; the 'paint' action records it
    return store, session


class _Fault:
    """Raise OSError at the ``fail_at``-th write of an action (counted from arming)."""

    def __init__(self, fail_at):
        self.fail_at, self.calls, self.fired, self.step = fail_at, 0, False, ""

    def __call__(self, step):
        self.calls += 1
        if self.calls == self.fail_at and not self.fired:
            self.fired, self.step = True, step
            raise OSError(28, f"No space left on device (injected at write {self.calls}: {step})")


@pytest.mark.parametrize("name", list(ACTIONS))
def test_an_io_error_at_every_write_of_an_action_changes_nothing(tmp_path, name):
    action = ACTIONS[name]
    fail_at = 1
    while True:
        store, session = _prepared(tmp_path / f"{fail_at}", name)
        store_before, session_before = _store_state(store), _session_state(session)
        last_seq = store._db.last_seq()
        fault = _Fault(fail_at)
        store._io = fault
        try:
            action(session)
        except StoreError as exc:
            message = str(exc)
        else:
            message = ""
        if message:
            assert "nothing was saved" in message
            assert fault.fired
            _assert_same(_store_state(store), store_before)
            _assert_same(_session_state(session), session_before)
            store._io = lambda step: None
            action(session)  # the same action, once the disk is fine again
            if fault.step != "journal":  # a record was written, then voided: its number stays used
                assert store._db.last_seq() > last_seq + 1
            state = _session_state(session)
            store.close()
            with AnnotationStore.open(tmp_path / f"{fail_at}" / "f.zarr") as again:
                _assert_same(_session_state(again.session()), state)
            fail_at += 1
            continue
        store.close()
        assert not fault.fired and fail_at > 2  # every write point of the action was tried
        break


def test_a_real_chunk_write_error_midway_leaves_store_and_session_unchanged(tmp_path, monkeypatch):
    """zarr itself fails on the second chunk file of a four-chunk commit."""
    from zarr.storage import LocalStore

    store, session = _prepared(tmp_path)
    store_before, session_before = _store_state(store), _session_state(session)
    original = LocalStore.set
    calls = {"n": 0}

    async def failing_set(self, key, value):
        if key.startswith("labels/c/"):
            calls["n"] += 1
            if calls["n"] == 2:
                raise OSError(5, "Input/output error (injected)")
        return await original(self, key, value)

    monkeypatch.setattr(LocalStore, "set", failing_set)
    with pytest.raises(StoreError, match="nothing was saved"):
        session.commit(_rect(240, 240, 280, 280))
    monkeypatch.setattr(LocalStore, "set", original)
    _assert_same(_store_state(store), store_before)
    _assert_same(_session_state(session), session_before)
    assert session.commit(_rect(240, 240, 280, 280)).instance_id == 3
    store.close()


@pytest.mark.parametrize("batch", [False, True])
def test_ids_are_never_reused_after_undo_and_reopen(tmp_path, batch):
    path = tmp_path / "ids.zarr"
    store = AnnotationStore.create(path, (300, 1000))  # not square
    window = store.window_session((0, 500, 300, 1000))  # off the diagonal
    masks = [_rect(10, 10 + 40 * i, 30, 40 + 40 * i, (300, 500)) for i in range(3)]
    if batch:
        first = [r.instance_id for r in window.commit_many(masks, source="sam2")[0]]
    else:
        first = [window.commit(m, source="sam2").instance_id for m in masks]
    for _ in range(1 if batch else 3):
        window.undo()
    store.close()
    with AnnotationStore.open(path) as again:
        assert not again.read_labels().any() and again.n_instances == 0
        window = again.window_session((0, 500, 300, 1000))
        new = window.commit(masks[0], source="sam2").instance_id
        assert new == max(first) + 1
        assert sorted(again.read_side("prelabel")) == [new]  # the proposal landed off the diagonal
        box = again.read_side("prelabel")[new].proposal.bbox_yx
        assert box == (10, 510, 30, 540)
