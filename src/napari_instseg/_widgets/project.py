"""Dock widget "Project": a dataset of images, one after the other, with one key to move on.

Open a project folder, see its images with status, phase, assignee and instance counts (a
model/view table that reads only the rows on screen, so 100,000 images open at once), open
one (the image, plus a Labels layer bound to its annotation store, which the Prompt and
Instances widgets then edit), submit it, and move to the next / previous unfinished image
with one key each (napari actions ``napari-instseg:project_next`` / ``project_previous``,
default ``.`` and ``,``; rebind them in napari's shortcut settings). Moving on records
pending paint and saves it first (autosave on switch). Each annotator sees and takes what is
theirs; a store somebody else has open is shown read-only. *Pre-label everything* runs the
automatic mode (classic or SAM 2) over the images not started, or the selected rows, in a
worker with a progress bar and Cancel; each finished image is saved as it is done.
"""

from __future__ import annotations

import os
import weakref
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import QModelIndex
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from napari_instseg._adapters import IMAGE_KEY, STORE_KEY, labels_layer_kwargs, rgb_or_grey
from napari_instseg._widgets._binding import layer_session
from napari_instseg._widgets._layers import PROJECT_IMAGE_KEY
from napari_instseg._widgets._layout import compact, scrolled, tooltips
from napari_instseg._widgets._project_prelabel import PRELABEL_TARGETS, ProjectPrelabel
from napari_instseg._widgets._project_table import ProjectTableModel, reporting

if TYPE_CHECKING:
    import napari

__all__ = [
    "IMAGE_LAYER",
    "LABELS_LAYER",
    "PRELABEL_TARGETS",
    "PROJECT_ACTIONS",
    "ProjectTableModel",
    "ProjectWidget",
]

IMAGE_LAYER = "project image"
"""Name prefix of the image layer; the full name also names the image (``project image 3:
tile_2.tif``), so the Prompt widget's embedding cache, which keys on the layer name, never
takes one image for another."""
LABELS_LAYER = "project labels"
ANY = "(any)"
PROJECT_ACTIONS = {
    "napari-instseg:project_next": (".", "next", "Project: save and open the next unfinished image"),
    "napari-instseg:project_previous": (",", "previous", "Project: save and open the previous unfinished image"),
}
"""Action name -> (default key, widget action, description)."""
_WIDGETS: weakref.WeakKeyDictionary[Any, ProjectWidget] = weakref.WeakKeyDictionary()
"""The Project widget of each viewer (the actions receive the viewer)."""


def _trigger(action: str) -> Any:
    def command(viewer: Any) -> None:
        widget = _WIDGETS.get(viewer)
        if widget is not None:
            getattr(widget, f"_on_{action}")()

    return command


def register_actions() -> None:
    """Register the project actions with napari's action manager and bind their default keys
    (once; a key the user rebound in napari's settings is left as they set it)."""
    from napari.components import ViewerModel
    from napari.utils.action_manager import action_manager

    for name, (key, action, description) in PROJECT_ACTIONS.items():
        if name in action_manager._actions:
            continue
        action_manager.register_action(name, _trigger(action), description, ViewerModel)
        if not action_manager._shortcuts.get(name):
            action_manager.bind_shortcut(name, key)


def _default_annotator() -> str:
    import getpass

    try:
        user = getpass.getuser()
    except (OSError, KeyError):
        user = ""
    return os.environ.get("NAPARI_INSTSEG_ANNOTATOR") or user or "annotator"


class ProjectWidget(ProjectPrelabel, QWidget):
    """Open a project and annotate its images one after the other.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
        The viewer (napari injects it).
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.project: Any = None
        self.current: Any = None
        self._by_status: dict[str, int] | None = None  # the project's counts, kept current
        self._viewing: Any = None  # a store opened read-only (somebody else's image)
        self._loading: Any = None  # the item whose image is being read
        self._last_note = ""
        self.last_prelabel = ""  # what the last *Pre-label everything* run did
        self._build()
        register_actions()
        _WIDGETS[napari_viewer] = self

    # -- layout -----------------------------------------------------------------------------------
    def _build(self) -> None:
        self.path_edit = QLineEdit()
        self.path_edit.setPlaceholderText("project folder")
        self.open_button = QPushButton("Open")
        self.images_edit = QLineEdit()
        self.images_edit.setPlaceholderText("images for a new project: tiles/*.tif (several: separate with ;)")
        self.create_button = QPushButton("Create")
        self.annotator_edit = QLineEdit(_default_annotator())
        self.status_filter = QComboBox()
        self.phase_filter = QComboBox()
        from napari_instseg.core.project import PHASES, STATUSES

        self.status_filter.addItems([ANY, *STATUSES])
        self.phase_filter.addItems([ANY, *PHASES])
        self.mine_check = QCheckBox("only mine")
        self.mine_check.setChecked(True)
        self.refresh_button = QPushButton("Refresh")
        self.model = ProjectTableModel(self)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        rows_header, columns_header = self.table.verticalHeader(), self.table.horizontalHeader()
        if rows_header is not None and columns_header is not None:
            rows_header.setVisible(False)
            rows_header.setDefaultSectionSize(20)  # fixed row height: no per-row measuring
            columns_header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
            columns_header.setStretchLastSection(True)
        for column, width in enumerate((50, 110, 80, 80, 70, 60)):  # never sized to contents: 100k rows
            self.table.setColumnWidth(column, width)
        longest_status = max(STATUSES, key=self.table.fontMetrics().horizontalAdvance)
        self.table.setColumnWidth(2, self.table.fontMetrics().horizontalAdvance(longest_status) + 16)
        self.prev_button = QPushButton("< Prev (,)")
        self.next_button = QPushButton("Next (.) >")
        self.submit_button = QPushButton("Submit")
        self.then_next_check = QCheckBox("then next")
        self.then_next_check.setChecked(True)
        self.review_check = QCheckBox("review mode")
        self.reviewed_button = QPushButton("Mark reviewed")
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        form = QFormLayout()
        form.addRow("annotator", self.annotator_edit)
        form.addRow("status", self.status_filter)
        form.addRow("phase", self.phase_filter)
        row = QHBoxLayout()
        row.addWidget(self.path_edit)
        row.addWidget(self.open_button)
        create_row = QHBoxLayout()
        create_row.addWidget(self.images_edit)
        create_row.addWidget(self.create_button)
        moves = QHBoxLayout()
        for widget in (self.prev_button, self.next_button, self.submit_button, self.then_next_check):
            moves.addWidget(widget)
        content = QWidget()  # docked above or below other panels, it scrolls instead of growing
        layout = QVBoxLayout(content)
        layout.addLayout(row)
        layout.addLayout(create_row)
        layout.addLayout(form)
        checks = QHBoxLayout()
        checks.addWidget(self.mine_check)
        checks.addWidget(self.refresh_button)
        layout.addLayout(checks)
        layout.addWidget(self.table, stretch=1)
        layout.addLayout(moves)
        review_row = QHBoxLayout()
        review_row.addWidget(self.review_check)
        review_row.addWidget(self.reviewed_button)
        layout.addLayout(review_row)
        layout.addLayout(self._build_prelabel())
        layout.addWidget(self.summary)
        compact(content)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scrolled(content))
        self.open_button.clicked.connect(self._on_open)
        self.path_edit.returnPressed.connect(self._on_open)
        self.create_button.clicked.connect(self._on_create)
        for combo in (self.status_filter, self.phase_filter):
            combo.currentIndexChanged.connect(self._on_filter)
        self.mine_check.toggled.connect(self._on_filter)
        self.refresh_button.clicked.connect(self._on_filter)
        self.annotator_edit.editingFinished.connect(self._on_filter)
        self.table.doubleClicked.connect(self._on_double_click)
        self.prev_button.clicked.connect(self._on_previous)
        self.next_button.clicked.connect(self._on_next)
        self.submit_button.clicked.connect(self._on_submit)
        self.reviewed_button.clicked.connect(self._on_reviewed)
        self._set_tooltips()

    def _set_tooltips(self) -> None:
        tooltips(
            {
                self.path_edit: "The project folder: type or paste it and press Enter to open it.",
                self.open_button: "Open the project folder typed on the left (or press Enter in it).",
                self.images_edit: "Images of a new project (globs; several separated by ;).",
                self.create_button: "Create a project in the folder above, referencing the images matched on the left.",
                self.annotator_edit: "Who annotates ($NAPARI_INSTSEG_ANNOTATOR, else your login).",
                self.status_filter: "Show only images in this state.",
                self.phase_filter: "Show only calibration or production images.",
                self.mine_check: "Show only your images and unassigned ones (else everyone's).",
                self.refresh_button: "Re-read the list and the counts (others change them as they work).",
                self.table: "The project's images; double-click one to open it.",
                self.prev_button: "Save and open the previous unfinished image (key ,; in review mode: the previous to review).",
                self.next_button: "Save and open the next unfinished image (key .; in review mode: the next to review).",
                self.submit_button: "Save and mark the current image submitted.",
                self.then_next_check: "After Submit / Mark reviewed, open the next image.",
                self.review_check: "Review mode: move through submitted images (anyone's) and correct them; "
                "outside it, finished images open read-only.",
                self.reviewed_button: "Save and mark the current image reviewed, then open the next one.",
                self.prelabel_backend: "Automatic pre-labels: classic-auto (offline, no weights) or "
                "sam2-auto (SAM 2's automatic masks; needs a SAM 2.1 checkpoint).",
                self.prelabel_preset: "Settings of the automatic mode: cells (small, dense) or objects.",
                self.prelabel_target: "Every production image not started yet, or the rows selected "
                "in the table (only those not started are pre-labelled).",
                self.prelabel_button: "Propose every object of each image as pre-labels, saved into its store, "
                "in the background (resumable: images already pre-labelled are skipped).",
                self.prelabel_progress: "Images pre-labelled so far.",
                self.prelabel_cancel: "Stop before the next image is saved; the images done stay pre-labelled.",
                self.summary: "The project's counts and the last message.",
            }
        )

    # -- project --------------------------------------------------------------------------------
    @property
    def annotator(self) -> str:
        """Who is annotating (checked: letters, digits, '.', '_', '-')."""
        from napari_instseg.core.project._manifest import check_annotator

        return check_annotator(self.annotator_edit.text().strip())

    @reporting
    def _on_open(self, *_: Any) -> None:
        self.open_project(self.path_edit.text())

    @reporting
    def _on_create(self, *_: Any) -> None:
        """Make a project in the folder typed above, referencing the images matched."""
        from napari_instseg.core.project import Project, refs_from_patterns

        patterns = [p.strip() for p in self.images_edit.text().split(";") if p.strip()]
        refs = refs_from_patterns(patterns) if patterns else []
        Project.create(self.path_edit.text(), refs).close()
        self.open_project(self.path_edit.text())

    def open_project(self, path: str | os.PathLike[str]) -> None:
        """Open the project folder at ``path`` and list its images."""
        from napari_instseg.core.project import Project

        self._leave_current()
        if self.project is not None:
            self.project.close()
        self.project = Project.open(path)
        from napari_instseg._reader_preference import prefer_our_reader_for, project_stores_pattern

        prefer_our_reader_for([project_stores_pattern(self.project.path)])  # File > Open of a store: no dialog
        self.path_edit.setText(str(self.project.path))
        self._on_filter()

    def _filter(self) -> Any:
        from napari_instseg.core.project import ItemFilter

        status, phase = self.status_filter.currentText(), self.phase_filter.currentText()
        return ItemFilter(
            status=None if status == ANY else status,
            phase=None if phase == ANY else phase,
            annotator=self.annotator if self.mine_check.isChecked() else None,
        )

    @reporting
    def _on_filter(self, *_: Any) -> None:
        if self.project is None:
            return
        self.model.set_source(self.project, self._filter())
        self._select_current()
        self._show_summary()

    def _show_summary(self, note: str = "", *, counts: bool = True) -> None:
        """Show ``note`` and the counts: re-read (``counts``) or as kept by :meth:`_count_move`."""
        from napari_instseg.core.project import STATUSES

        if counts or self._by_status is None:
            self._by_status = dict(self.project.manifest.counts()["status"])
        counts_text = ", ".join(f"{k} {self._by_status[k]}" for k in STATUSES if self._by_status.get(k))
        text = f"{self.model.rowCount()} shown; {counts_text}"
        if self.current is not None:
            text = f"image {self.current.image_id} ({self.current.file_name}): {self.current.status}. " + text
        self.summary.setText(f"{note}\n{text}" if note else text)

    def _select_current(self) -> None:
        if self.current is None:
            return
        row = self.model.row_of(self.current.key)
        if row >= 0:
            self.table.selectRow(row)
            self.table.scrollTo(self.model.index(row, 0))

    # -- opening images ---------------------------------------------------------------------------
    @property
    def labels_layer(self) -> Any:
        """The Labels layer bound to the current image's store (None before one is opened)."""
        return self.viewer.layers[LABELS_LAYER] if LABELS_LAYER in self.viewer.layers else None  # noqa: SIM401

    @property
    def image_layer(self) -> Any:
        """The image layer of the current image (None before one is opened)."""
        return next((lay for lay in self.viewer.layers if lay.metadata.get(PROJECT_IMAGE_KEY)), None)

    def open_item(self, item: Any) -> str:
        """Save the current image, then open ``item``: its image and its store's labels.

        The image is read in a thread worker (a progress bar shows it); a request while one
        is loading is refused. Returns the message shown (read-only and lock notes included)
        once the image is open: at once with ``NAPARI_INSTSEG_NOTHREADS=1``, else the previous one.
        """
        from napari_instseg._widgets._workers import run_worker
        from napari_instseg.core.project import FINISHED, ProjectError

        if self._loading is not None:
            self._show_summary(f"Still opening image {self._loading.image_id}...", counts=False)
            return self._last_note
        self._leave_current()
        note = ""
        if self.review_check.isChecked() and item.status in FINISHED:
            item = self.project.manifest.item(*item.key)  # a reviewer corrects; status unchanged
        else:
            try:
                before = self.project.manifest.item(*item.key).status  # the list's row may be older
                item = self.project.manifest.claim(item.key, self.annotator)
                self._count_move(before, item.status)
            except ProjectError as exc:  # someone else's image, or finished: look, but do not take it
                note = f"{exc} Opened read-only."
        store = self.project.open_store(item)  # made on first visit
        store.close()
        self._loading = item
        run_worker(
            self._read_image,
            item,
            on_returned=lambda image: self._finish_open(item, note, image),
            on_error=self._on_open_error,
            progress=f"opening {item.file_name}",
        )
        return self._last_note

    def _count_move(self, before: str, after: str) -> None:
        """Keep the shown counts current when this panel changed one item's status (moving on
        stays one query: the whole project is re-counted on Submit, Refresh and filters)."""
        if self._by_status is None or before == after:
            return
        self._by_status[before] = max(0, self._by_status.get(before, 0) - 1)
        self._by_status[after] = self._by_status.get(after, 0) + 1

    def _finish_open(self, item: Any, note: str, image: Any) -> None:
        """On the UI thread: show the image, bind the labels, update the list."""
        self._loading = None
        self._show_image(item, image)
        if item.kind == "slide":  # napari cannot paint a slide-sized Labels layer
            if self.labels_layer is not None:
                layer_session(self.labels_layer).close()
                self.viewer.layers.remove(self.labels_layer)
            note = f"{note} A slide: annotate it in the Slide widget with the store {self.project.store_path(item)}."
        else:
            binding = self._bind_labels(item, read_only=note)
            if binding.store.read_only and not note:
                note = f"{binding.store.lock_message}: changes will not be saved."
            binding.session.annotator = self.annotator
        self.current = item
        self._last_note = note.strip()
        self.model.touch()  # the list keeps its rows until the filter changes: moving on stays fast
        self._select_current()
        self._show_summary(self._last_note, counts=False)

    def _on_open_error(self, exc: Exception) -> None:
        from napari.utils.notifications import show_error

        self._loading = None
        self.summary.setText(str(exc))
        show_error(str(exc))

    def _read_image(self, item: Any) -> Any:
        from napari_instseg.core.io import read_image

        path = self.project.image_path(item)
        if item.kind == "slide":
            from napari_instseg.core.slide import open_slide

            return open_slide(path).levels
        return read_image(path)

    def _show_image(self, item: Any, image: Any) -> None:
        """Show ``image`` in the project's image layer, renamed after ``item``.

        An image of another kind (RGB vs grey, multiscale) needs a new layer: it is added
        before the old one is removed, so the panels that follow the project's image (Prompt,
        Automatic) move to the new layer instead of to no layer or to another image.
        """
        multiscale = isinstance(image, list)
        rgb = rgb_or_grey(image[0] if multiscale else image)["rgb"]
        name = f"{IMAGE_LAYER} {item.image_id}: {item.file_name}"
        metadata = {IMAGE_KEY: self.project.image_record(item), PROJECT_IMAGE_KEY: True}
        layer = self.image_layer
        if layer is not None and layer.rgb == rgb and layer.multiscale == multiscale:
            layer.data = image
            layer.reset_contrast_limits()
            layer.name = name
            layer.metadata = {**layer.metadata, **metadata}
            return
        new = self.viewer.add_image(image, name=name, rgb=rgb, multiscale=multiscale, metadata=metadata)
        self.viewer.layers.move(self.viewer.layers.index(new), 0)
        if layer is not None:
            self.viewer.layers.remove(layer)

    def _bind_labels(self, item: Any, *, read_only: str = "", keep_view: bool = False) -> Any:
        """Bind the labels layer to the item's store: writable (taking its lock), or, for
        somebody else's image or a finished one, read-only (its lock stays free); ``read_only``
        then says why (the panels show it)."""
        from napari_instseg.core.instances import empty_table

        path = str(self.project.store_path(item).resolve())
        layer = self.labels_layer
        created = layer is None
        if layer is None:
            record = self.project.image_record(item)
            kwargs = labels_layer_kwargs(LABELS_LAYER, empty_table(), self.project.protocol, record)
            if not read_only:
                kwargs["metadata"][STORE_KEY] = path
            layer = self.viewer.add_labels(np.zeros(item.shape_yx, np.uint32), **kwargs)
        else:
            layer.metadata = {**layer.metadata, IMAGE_KEY: self.project.image_record(item)}
        binding = layer_session(layer)  # a new layer opens the store named in its metadata
        if read_only:
            binding.close()  # the previous image's store, if this binding opened it: lock released
            self._viewing = self.project.open_store(item, read_only=True)
            binding.use_session(self._viewing.session(annotator=self.annotator), self._viewing, why_read_only=read_only)
        elif not created:
            binding.attach_store(path)
        if not keep_view:
            self.viewer.layers.selection.active = layer
            self.viewer.reset_view()
        return binding

    def _show_finished_read_only(self) -> None:
        """The current image was just finished (and stays open): show it read-only from now on,
        so a later edit is refused instead of landing silently in finished work."""
        if self.current is None or self.current.kind == "slide" or self.labels_layer is None:
            return
        self._last_note = (
            f"Image id {self.current.image_id} is {self.current.status}: shown read-only; "
            "turn on review mode to correct it."
        )
        self._bind_labels(self.current, read_only=self._last_note, keep_view=True)

    def _leave_current(self) -> None:
        """Autosave: record pending paint into the store, note the count in the manifest."""
        if self.current is None or self.labels_layer is None:
            return
        binding = layer_session(self.labels_layer)
        binding.flush()
        if binding.store is not None and not binding.store.read_only:
            self.project.manifest.set_item(self.current.key, n_instances=len(binding.session.table))
        if self._viewing is not None:
            self._viewing.close()
            self._viewing = None

    @reporting
    def _on_double_click(self, index: QModelIndex) -> None:
        item = self.model.item_at(index.row())
        if item is not None:
            self.open_item(item)

    # -- moving on --------------------------------------------------------------------------------
    @reporting
    def _on_next(self, *_: Any) -> Any:
        return self._move(forward=True)

    @reporting
    def _on_previous(self, *_: Any) -> Any:
        return self._move(forward=False)

    def _move(self, *, forward: bool) -> Any:
        if self.project is None:
            return None
        if self.review_check.isChecked():
            item = self.project.next_to_review(self.current, forward=forward)
            if item is not None and self.current is not None and item.key == self.current.key:
                item = None  # the only one left is this one
        else:
            item = self.project.next_item(self.annotator, self.current, forward=forward)
        if item is None:
            self._leave_current()
            what = "to review" if self.review_check.isChecked() else f"to do for {self.annotator}"
            self._show_summary(f"Nothing left {what}.")
            return None
        self.open_item(item)
        return item

    @reporting
    def _on_submit(self, *_: Any) -> Any:
        """Save and submit the current image (then open the next one when 'then next' is on)."""
        from napari_instseg.core.project import ProjectError

        if self.current is None or self.labels_layer is None:
            return None
        self._leave_current()
        binding = layer_session(self.labels_layer)
        try:
            self.current = self.project.submit(self.current, self.annotator, n_instances=len(binding.session.table))
        except ProjectError as exc:
            self._show_summary(str(exc))
            return None
        self.model.touch()
        if self.then_next_check.isChecked():
            return self._on_next()
        if self.review_check.isChecked():
            self._show_summary()
        else:
            self._show_finished_read_only()
            self._show_summary(self._last_note)
        return self.current

    @reporting
    def _on_reviewed(self, *_: Any) -> Any:
        """Save the current image, mark it reviewed, then open the next one to review."""
        if self.current is None:
            return None
        self._leave_current()
        self.current = self.project.review(self.current)
        self._show_summary()
        self.model.touch()
        if self.then_next_check.isChecked():
            return self._move(forward=True)
        return self.current

    def closeEvent(self, event: Any) -> None:
        """Save and release the store lock when the panel closes."""
        self._leave_current()
        if self.labels_layer is not None:
            layer_session(self.labels_layer).close()
        super().closeEvent(event)
