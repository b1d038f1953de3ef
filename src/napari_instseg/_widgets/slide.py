"""Dock widget "Slide": edit a whole slide through working windows.

napari cannot paint a multiscale Labels layer, so the slide's labels live in an annotation
store on disk and the user edits one window (tile + halo) at a time as an ordinary Labels
layer placed at its slide offset. Moving the window records pending paint, and every action
is saved to the store where it belongs (only the changed chunks are written); instance ids
are unique across the slide, and objects crossing a seam keep their id (the halo shows them).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from magicgui.types import FileDialogMode
from magicgui.widgets import ComboBox, Container, FileEdit, Label, ProgressBar, PushButton, SpinBox, Widget

from napari_instseg._adapters import STORE_KEY, labels_layer_kwargs
from napari_instseg._widgets._layers import image_layers, preselect
from napari_instseg._widgets._layout import DockedScrolls, compact, tooltips
from napari_instseg._widgets._workers import ProgressRun

if TYPE_CHECKING:
    import napari

__all__ = ["PRELABEL_MODES", "WINDOW_KEY", "WINDOW_LAYER", "SlideWidget"]

WINDOW_LAYER = "slide window"
WINDOW_KEY = "instseg_window"
"""Labels-layer metadata: the window's region (y0, x0, y1, x1) in slide pixels."""
PRELABEL_MODES: dict[str, dict[str, Any]] = {
    "detected nuclei": {"detect": True},
    "everything (cells)": {"auto": "cells"},
}
"""Batch pre-labelling of the whole slide: what prompts each tile with tissue."""


class SlideWidget(DockedScrolls, Container[Widget]):
    """Open a slide's label store and move a working window over the slide.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
        The viewer (napari injects it).
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True, scrollable=True)
        self.viewer = napari_viewer
        self.store: Any = None
        self.window: Any = None
        self.slide_combo = ComboBox(label="slide image", choices=self._image_layers, nullable=True)
        self.store_edit = FileEdit(
            label="label store", mode=FileDialogMode.OPTIONAL_FILE, filter="*.zarr", nullable=True
        )
        self.open_button = PushButton(text="Open / create store")
        self.tile_spin = SpinBox(label="tile (px)", value=1024, min=128, max=8192, step=128)
        self.halo_spin = SpinBox(label="halo (px)", value=64, min=0, max=1024, step=16)
        self.here_button = PushButton(text="Window at view centre")
        self.next_button = PushButton(text="Next tile")
        from napari_instseg.core.prompting import BACKENDS, default_backend

        self.backend_combo = ComboBox(label="backend", choices=list(BACKENDS), value=default_backend())
        self.mode_combo = ComboBox(label="pre-label", choices=list(PRELABEL_MODES))
        self.prelabel_button = PushButton(text="Pre-label the slide")
        self.progress = ProgressBar(label="tiles", value=0, min=0, max=1)
        self.cancel_button = PushButton(text="Cancel")
        self.batch = ProgressRun(self.progress, self.cancel_button, "Pre-labelling slide tiles")
        self.status = Label(value="")
        self.extend(
            [
                self.slide_combo,
                self.store_edit,
                self.open_button,
                self.tile_spin,
                self.halo_spin,
                self.here_button,
                self.next_button,
                self.backend_combo,
                self.mode_combo,
                self.prelabel_button,
                self.progress,
                self.cancel_button,
                self.status,
            ]
        )
        self.prelabel_button.changed.connect(self._on_prelabel_slide)
        self.open_button.changed.connect(self._on_open_store)
        self.here_button.changed.connect(self._on_window_here)
        self.next_button.changed.connect(self._on_next_tile)
        self.viewer.layers.events.inserted.connect(self._refresh_choices)
        self.viewer.layers.events.removed.connect(self._refresh_choices)
        self._refresh_choices()
        tooltips(
            {
                self.slide_combo: "The slide (a multiscale image layer).",
                self.store_edit: "The slide's label store (*.zarr): opened, or created at the slide's size.",
                self.open_button: "Open or create the store and show the first working window.",
                self.tile_spin: "Working window size in slide pixels (level 0).",
                self.halo_spin: "Margin around the tile, so objects on a seam show whole.",
                self.here_button: "Move the working window to the tile at the centre of the view.",
                self.next_button: "Save this window and move to the next tile.",
                self.backend_combo: "Model for batch pre-labelling (sam2 needs a checkpoint).",
                self.mode_combo: "What each tile with tissue is prompted with.",
                self.prelabel_button: "Pre-label every tile not done yet into the store, in the background "
                "(resumable: tiles done are skipped).",
                self.progress: "Tiles pre-labelled so far.",
                self.cancel_button: "Stop after the current tile; the tiles done stay in the store.",
                self.status: "Where the working window is.",
            }
        )
        compact(self.inner)

    def _refresh_choices(self, *_: Any) -> None:
        self.slide_combo.reset_choices()
        preselect(self.slide_combo)

    def _image_layers(self, *_: Any) -> list[tuple[str, Any]]:
        return image_layers(self.viewer)

    def slide_shape_yx(self) -> tuple[int, int]:
        """(height, width) of the slide's full-resolution level."""
        layer = self.slide_combo.value
        level0 = layer.data[0] if layer.multiscale else layer.data
        return int(level0.shape[0]), int(level0.shape[1])

    def _on_open_store(self, *_: Any) -> None:
        from napari_instseg.core.store import AnnotationStore, is_store

        path = cast("Path | None", self.store_edit.value)  # mode "w": one path or None
        if self.slide_combo.value is None or path is None or path in (Path(""), Path(".")):
            self.status.value = "Choose the slide image layer and a store path (*.zarr)."
            return
        if self.store is not None:
            self._leave_window()
            self.store.close()
        shape = self.slide_shape_yx()
        self.store = (
            AnnotationStore.open(path)
            if is_store(path)
            else AnnotationStore.create(path, shape, image={"file_name": self.slide_combo.value.name})
        )
        from napari_instseg._reader_preference import prefer_our_reader

        prefer_our_reader(path)
        note = f" ({self.store.lock_message})" if self.store.read_only else ""
        self.status.value = f"Store {path}: {self.store.n_instances} instances{note}."
        self.show_window((0, 0))

    def _on_window_here(self, *_: Any) -> None:
        from napari_instseg._widgets.instances import viewer_camera

        centre = viewer_camera(self.viewer).center[-2:]
        self.show_window((float(centre[0]), float(centre[1])))

    def _on_next_tile(self, *_: Any) -> None:
        if self.window is None:
            self.show_window((0, 0))
            return
        tile = self.tile_spin.value
        height, width = self.slide_shape_yx()
        y0, x0 = self.window.tile_yx[:2]
        x0 += tile
        if x0 >= width:
            x0, y0 = 0, y0 + tile
        if y0 >= height:
            y0 = 0
        self.show_window((y0, x0))

    def slide_path(self) -> str | None:
        """The file or folder the slide layer was read from (None: an in-memory image)."""
        layer = self.slide_combo.value
        if layer is None:
            return None
        recorded = (layer.metadata.get("instseg_slide") or {}).get("source")
        path = recorded or getattr(layer.source, "path", None)
        return str(path) if path else None

    def _on_prelabel_slide(self, *_: Any) -> Any:
        """Pre-label the whole slide into the store in a worker (progress per tile, cancellable)."""
        from napari_instseg.core.batch import BatchConfig, prelabel_slide

        slide_path = self.slide_path()
        if self.store is None or slide_path is None:
            self.status.value = "Open the slide from a file and its store first."
            return None
        if self.batch.running:
            self.status.value = "Already pre-labelling; Cancel first."
            return None
        if self.store.read_only:
            self.status.value = f"Store {self.store.path} is read-only ({self.store.lock_message}); nothing done."
            return None
        store_path, centre = Path(self.store.path), self._window_centre()
        self._leave_window()
        self.store.close()  # the batch takes the store's writer lock; given back when it ends
        self.store = None
        config = BatchConfig(
            backend=self.backend_combo.value, tile_px=self.tile_spin.value, halo_px=self.halo_spin.value
        )
        self._enable_store_actions(False)  # the store is the batch's until it ends
        self.status.value = f"Pre-labelling {Path(slide_path).name} into {store_path.name}..."

        def back(message: str) -> None:
            from napari_instseg.core.store import AnnotationStore

            self._enable_store_actions(True)
            self.store = AnnotationStore.open(store_path)
            self.show_window(centre)
            self.status.value = f"{message} Store: {self.store.n_instances} instances."

        return self.batch.start(
            prelabel_slide,
            slide_path,
            store_path,
            config=config,
            workers=1,
            on_returned=lambda summary: back(f"{summary}."),
            on_error=lambda exc: back(f"Pre-labelling failed: {type(exc).__name__}: {exc}."),
            on_cancelled=lambda exc: back(f"{exc} tiles: those are saved, the others untouched (run again to resume)."),
            **PRELABEL_MODES[self.mode_combo.value],
        )

    def _enable_store_actions(self, enabled: bool) -> None:
        for button in (self.open_button, self.here_button, self.next_button, self.prelabel_button):
            button.enabled = enabled

    def _window_centre(self) -> tuple[float, float]:
        if self.window is None:
            return (0.0, 0.0)
        y0, x0, y1, x1 = self.window.tile_yx
        return ((y0 + y1) / 2, (x0 + x1) / 2)

    def show_window(self, centre_yx: tuple[float, float]) -> Any:
        """Save the current window and show the one whose tile holds ``centre_yx`` (slide pixels)."""
        from napari_instseg._widgets._binding import layer_session
        from napari_instseg.core.slide import window_at

        if self.store is None:
            self.status.value = "Open a store first."
            return None
        self._leave_window()
        window = window_at(self.slide_shape_yx(), centre_yx, self.tile_spin.value, self.halo_spin.value)
        session = self.store.window_session(window.region_yx, annotator=self.store.image.get("annotator", ""))
        kwargs = labels_layer_kwargs(WINDOW_LAYER, session.table, self.store.protocol, self.store.image)
        kwargs["metadata"][WINDOW_KEY] = list(window.region_yx)
        kwargs["metadata"][STORE_KEY] = None  # saved through the window session, not opened again
        layer = self.viewer.add_labels(session.labels_yx, translate=window.origin_yx, **kwargs)
        binding = layer_session(layer)
        binding.use_session(session, self.store)
        self.window = window
        self.viewer.layers.selection.active = layer
        y0, x0, y1, x1 = window.tile_yx
        self.status.value = f"Window: tile y {y0}-{y1}, x {x0}-{x1} (+{self.halo_spin.value} px halo)."
        return layer

    def _leave_window(self) -> None:
        """Record pending paint of the current window and remove its layer."""
        from napari_instseg._widgets._binding import layer_session

        if WINDOW_LAYER in self.viewer.layers:
            layer = self.viewer.layers[WINDOW_LAYER]
            layer_session(layer).flush()
            self.viewer.layers.remove(layer)

    def window_image(self) -> np.ndarray | None:
        """The slide's pixels under the current window (level 0), for prompting."""
        if self.window is None or self.slide_combo.value is None:
            return None
        layer = self.slide_combo.value
        level0 = layer.data[0] if layer.multiscale else layer.data
        y0, x0, y1, x1 = self.window.region_yx
        return np.asarray(level0[y0:y1, x0:x1])
