"""Edit history of a session: undo / redo stacks and the persistence sink.

Every action is handed to the sink (the on-disk store) before it is applied, so if it cannot
be saved the session is unchanged; applying goes through the one rule,
:func:`napari_instseg.core.edits.apply_edit`.
"""

from __future__ import annotations

from typing import Protocol

from napari_instseg.core.edits import Edit, EditTarget, apply_edit

__all__ = ["EditHistory", "EditSink"]


class EditSink(Protocol):
    """Receives every edit before the action returns (the store persists it)."""

    def record(self, kind: str, edit: Edit) -> None:
        """Persist one action; ``kind`` is ``do``, ``undo`` or ``redo``."""


class EditHistory:
    """Undo / redo stacks over a target, every step persisted first.

    Parameters
    ----------
    target : EditTarget
        Where edits are applied (the session's memory).
    sink : EditSink, optional
        Persists every step before it is applied.
    """

    def __init__(self, target: EditTarget, sink: EditSink | None = None) -> None:
        self.target = target
        self.sink = sink
        self.undo_stack: list[Edit] = []
        self.redo_stack: list[Edit] = []

    def do(self, edit: Edit) -> None:
        """Persist, apply and push a new action (the redo stack is cleared)."""
        self._persist("do", edit)
        apply_edit(edit, self.target, after=True)
        self.undo_stack.append(edit)
        self.redo_stack.clear()

    def undo(self) -> Edit | None:
        """Undo the last action; None if there is none."""
        return self._step("undo", self.undo_stack, self.redo_stack, after=False)

    def redo(self) -> Edit | None:
        """Redo the last undone action; None if there is none."""
        return self._step("redo", self.redo_stack, self.undo_stack, after=True)

    def _step(self, kind: str, source: list[Edit], target: list[Edit], *, after: bool) -> Edit | None:
        if not source:
            return None
        edit = source[-1]
        self._persist(kind, edit)
        source.pop()
        apply_edit(edit, self.target, after=after)
        target.append(edit)
        return edit

    def _persist(self, kind: str, edit: Edit) -> None:
        if self.sink is not None:
            self.sink.record(kind, edit)
