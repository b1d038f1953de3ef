"""Undo / redo across every kind of action, checked by a hypothesis state machine.

The model is the list of states the session went through: an action appends a state (and
drops the redo branch), undo steps back, redo steps forward. After every step the session
(and, after a reopen, the store) must equal the model's current state exactly.
"""

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from napari_instseg.core.session import CommitError
from napari_instseg.core.store import AnnotationStore

SHAPE = (32, 32)
rects = st.tuples(st.integers(0, 28), st.integers(0, 28), st.integers(2, 14), st.integers(2, 14))


def _mask(rect):
    y, x, h, w = rect
    mask = np.zeros(SHAPE, bool)
    mask[y : y + h, x : x + w] = True
    return mask


class UndoRedoMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        self.path = Path(self.tmp.name) / "s.zarr"
        self.store = AnnotationStore.create(self.path, SHAPE)
        self.session = self.store.session()
        self.states = [self._snapshot()]
        self.position = 0

    def teardown(self):
        self.store.close()
        self.tmp.cleanup()

    def _snapshot(self):
        return (
            self.session.labels_yx.copy(),
            self.session.table.copy(),
            set(self.session.prelabels),
            set(self.session.amodal),
        )

    def _did(self):
        self.states = [*self.states[: self.position + 1], self._snapshot()]
        self.position += 1

    def _ids(self):
        return self.session.table.index.tolist()

    @rule(rect=rects, in_front=st.booleans(), amodal=st.booleans(), source=st.sampled_from(["manual", "sam2"]))
    def commit(self, rect, in_front, amodal, source):
        try:
            self.session.commit(_mask(rect), in_front=in_front, amodal=amodal, source=source)
        except CommitError:
            return
        self._did()

    @precondition(lambda self: len(self.session.table))
    @rule(data=st.data())
    def delete(self, data):
        self.session.delete(data.draw(st.sampled_from(self._ids())))
        self._did()

    @precondition(lambda self: len(self.session.table))
    @rule(data=st.data(), tier=st.sampled_from(["none", "partial", "heavy"]), crowd=st.booleans())
    def retag(self, data, tier, crowd):
        self.session.retag(data.draw(st.sampled_from(self._ids())), occlusion=tier, iscrowd=crowd)
        self._did()

    @precondition(lambda self: len(self.session.table))
    @rule(data=st.data(), forward=st.booleans())
    def reorder(self, data, forward):
        instance_id = data.draw(st.sampled_from(self._ids()))
        (self.session.bring_forward if forward else self.session.send_backward)(instance_id)
        self._did()

    @precondition(lambda self: len(self.session.table))
    @rule(data=st.data(), rect=rects)
    def paint(self, data, rect):
        value = data.draw(st.sampled_from([0, *self._ids()]))
        before = self.session.labels_yx.copy()
        self.session.labels_yx[_mask(rect)] = value
        if (before == self.session.labels_yx).all():
            return
        self.session.labels_edited([value])
        self._did()

    @precondition(lambda self: len(self.session.table))
    @rule(data=st.data())
    def review(self, data):
        instance_id = data.draw(st.sampled_from(self._ids()))
        if self.session.table.loc[instance_id, "review"] == "rejected":
            return
        if data.draw(st.booleans()):
            self.session.accept(instance_id)
        else:
            self.session.reject(instance_id)
        self._did()

    @rule()
    def undo(self):
        if self.session.undo() is not None:
            self.position -= 1

    @rule()
    def redo(self):
        if self.session.redo() is not None:
            self.position += 1

    @rule()
    def reopen(self):
        self.store.close()
        self.store = AnnotationStore.open(self.path)
        self.session = self.store.session()

    @invariant()
    def matches_the_model(self):
        labels, table, prelabels, amodal = self.states[self.position]
        np.testing.assert_array_equal(self.session.labels_yx, labels)
        pd.testing.assert_frame_equal(self.session.table, table)
        assert set(self.session.prelabels) == prelabels and set(self.session.amodal) == amodal
        assert len(self.session.undo_stack) == self.position


UndoRedoMachine.TestCase.settings = settings(max_examples=25, stateful_step_count=25, deadline=None)
TestUndoRedo = UndoRedoMachine.TestCase


class WindowUndoRedoMachine(UndoRedoMachine):
    """The same rules through a window session off the slide's diagonal (edits shifted into
    slide coordinates, rows read through the R-tree); a reopen starts a new window visit."""

    ORIGIN = (16, 48)

    def __init__(self):
        RuleBasedStateMachine.__init__(self)
        self.tmp = tempfile.TemporaryDirectory()
        self.path = Path(self.tmp.name) / "s.zarr"
        self.store = AnnotationStore.create(self.path, (64, 112))
        self._open_window()

    def _open_window(self):
        y, x = self.ORIGIN
        self.session = self.store.window_session((y, x, y + SHAPE[0], x + SHAPE[1]))
        self.states = [self._snapshot()]
        self.position = 0

    @rule()
    def reopen(self):
        before = self._snapshot()
        self.store.close()
        self.store = AnnotationStore.open(self.path)
        self._open_window()
        labels, table, prelabels, amodal = self.states[0]
        np.testing.assert_array_equal(labels, before[0])
        pd.testing.assert_frame_equal(table, before[1])
        assert prelabels == before[2] and amodal == before[3]


WindowUndoRedoMachine.TestCase.settings = settings(max_examples=10, stateful_step_count=20, deadline=None)
TestWindowUndoRedo = WindowUndoRedoMachine.TestCase
