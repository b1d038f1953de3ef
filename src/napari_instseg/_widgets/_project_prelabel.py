"""*Pre-label everything* in the Project panel: the controls, and the run in a worker.

The run itself lives in :mod:`napari_instseg.core.project` (resumable, one image saved at a
time); this part of the panel only picks the images and settings, starts it with a progress
bar and Cancel, and re-reads the table when it ends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qtpy.QtWidgets import QComboBox, QFormLayout, QHBoxLayout, QPushButton, QVBoxLayout

from napari_instseg._widgets._project_table import reporting
from napari_instseg._widgets._workers import ProgressRun

__all__ = ["PRELABEL_TARGETS", "ProjectPrelabel"]

PRELABEL_TARGETS = ("all not started", "selected rows")
"""Which images *Pre-label everything* runs on: every production image still to do (the
core's resumable project run), or the rows selected in the table (those not started)."""


class ProjectPrelabel:
    """The Project widget's *Pre-label everything* part (a mixin of ``ProjectWidget``: it uses
    the widget's ``project``, ``model``, ``table``, ``summary`` and ``_show_summary``)."""

    project: Any
    model: Any
    table: Any
    summary: Any
    last_prelabel: str
    _show_summary: Callable[..., None]
    _select_current: Callable[[], None]

    def _build_prelabel(self) -> QVBoxLayout:
        """The *Pre-label everything* controls: backend, preset, which images, run, progress, Cancel."""
        from magicgui.widgets import ProgressBar, PushButton

        from napari_instseg.core.prompting import default_backend
        from napari_instseg.core.prompting.auto import PRESETS
        from napari_instseg.core.prompting.registry import AUTO_SOURCES, BACKENDS

        self.prelabel_backend = QComboBox()
        for backend, source in zip(BACKENDS, AUTO_SOURCES, strict=True):
            self.prelabel_backend.addItem(source, backend)
        self.prelabel_backend.setCurrentIndex(BACKENDS.index(default_backend()))
        self.prelabel_preset = QComboBox()
        self.prelabel_preset.addItems(list(PRESETS))
        self.prelabel_preset.setCurrentText("cells")  # the CLI's default preset
        self.prelabel_target = QComboBox()
        self.prelabel_target.addItems(list(PRELABEL_TARGETS))
        self.prelabel_button = QPushButton("Pre-label everything")
        self.prelabel_progress = ProgressBar(label="images", value=0, min=0, max=1)
        self.prelabel_cancel = PushButton(text="Cancel")
        self.prelabel_run = ProgressRun(self.prelabel_progress, self.prelabel_cancel, "Pre-labelling project images")
        choices = QFormLayout()
        choices.addRow("pre-label with", self.prelabel_backend)
        choices.addRow("preset", self.prelabel_preset)
        choices.addRow("images", self.prelabel_target)
        buttons = QHBoxLayout()
        buttons.addWidget(self.prelabel_button)
        buttons.addWidget(self.prelabel_cancel.native)
        section = QVBoxLayout()
        section.addLayout(choices)
        section.addLayout(buttons)
        section.addWidget(self.prelabel_progress.native)
        self.prelabel_button.clicked.connect(self._on_prelabel)
        return section

    def _prelabel_config(self) -> Any:
        """The run's settings; for SAM 2, its checkpoint (a clear error when there is none)."""
        from napari_instseg.core.project import ProjectPrelabelConfig
        from napari_instseg.core.prompting.lifecycle import auto_checkpoint
        from napari_instseg.core.prompting.registry import DEFAULT_SIZE

        backend, preset = self.prelabel_backend.currentData(), self.prelabel_preset.currentText()
        checkpoint = auto_checkpoint(DEFAULT_SIZE) if backend == "sam2" else None
        return ProjectPrelabelConfig(backend=backend, size=DEFAULT_SIZE, checkpoint=checkpoint, auto=preset)

    def _selected_keys(self) -> list[tuple[int, str]]:
        model = self.table.selectionModel()
        rows = sorted({index.row() for index in model.selectedRows()}) if model is not None else []
        return [self.model.keys[row] for row in rows]

    @reporting
    def _on_prelabel(self, *_: Any) -> Any:
        """Pre-label every object of the chosen images in a worker (returns it; None inline or refused)."""
        if self.project is None:
            self.summary.setText("Open a project first.")
            return None
        if self.prelabel_run.running:
            self._show_summary("Already pre-labelling; Cancel first.", counts=False)
            return None
        from napari_instseg.core.project import prelabel_not_started, prelabel_refusal, prelabel_selected

        refused = prelabel_refusal(self.project.path)
        if refused:
            self._show_summary(refused, counts=False)
            return None
        config = self._prelabel_config()
        args: tuple[Any, ...] = (self.project.path, config)
        func: Any = prelabel_not_started
        if self.prelabel_target.currentText() == PRELABEL_TARGETS[1]:
            keys = self._selected_keys()
            if not keys:
                self._show_summary("Select rows in the table first (Ctrl / Shift + click).", counts=False)
                return None
            func, args = prelabel_selected, (self.project.path, keys, config)
        self.prelabel_button.setEnabled(False)
        self._show_summary(f"Pre-labelling ({config.source_name})...", counts=False)
        return self.prelabel_run.start(
            func,
            *args,
            on_returned=lambda text: self._prelabel_ended(f"{text}."),
            on_error=lambda exc: self._prelabel_ended(f"Pre-labelling failed: {type(exc).__name__}: {exc}"),
            on_cancelled=lambda exc: self._prelabel_ended(
                f"{exc}: the images done are pre-labelled, the others untouched (run again to resume)."
            ),
        )

    def _prelabel_ended(self, message: str) -> None:
        """On the UI thread: re-read the list (statuses and counts changed) and say what was done."""
        self.prelabel_button.setEnabled(True)
        self.last_prelabel = message
        if self.project is not None:
            selected = self._selected_keys()
            self.model.refresh()
            self._select_current()
            self._reselect(selected)  # the rows stay selected across the re-read
            self._show_summary(message)

    def _reselect(self, keys: list[tuple[int, str]]) -> None:
        from qtpy.QtCore import QItemSelection, QItemSelectionModel

        model = self.table.selectionModel()
        if model is None:
            return
        last = len(self.model.COLUMNS) - 1
        for key in keys:
            row = self.model.row_of(key)
            if row >= 0:
                whole_row = QItemSelection(self.model.index(row, 0), self.model.index(row, last))
                model.select(whole_row, QItemSelectionModel.SelectionFlag.Select)
