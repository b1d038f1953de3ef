"""Dock widget "Pre-label everything": every object of the image, the view or the slide window.

Thin by design: the pixels of the chosen extent go to the core's tiled runner
(:func:`napari_instseg.core.prompting.auto.auto_objects`) in a napari thread worker that
reports after every tile (the panel's progress bar, tiles done / total, and Cancel stops it
between tiles: :class:`~napari_instseg._widgets._workers.ProgressRun`); the stitched
objects are committed on the UI thread through the labels layer's session
(:func:`napari_instseg.core.prompting.auto.commit_auto`): ``pre-label`` instances, never over
committed ones, one undo step per run.

With the SAM 2 backend the model is the one chosen in an open Prompt panel (its checkpoint,
size and device), else the standard checkpoint lookup; a prompter already loaded with it (the
labels layer's session's, the Prompt panel's) is reused, so the model is not loaded and the
image not encoded a second time.
"""

from __future__ import annotations

import logging
import weakref
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import ComboBox, Container, Label, ProgressBar, PushButton, SpinBox

from napari_instseg._widgets._binding import layer_session
from napari_instseg._widgets._keys import KEYS, offer
from napari_instseg._widgets._layers import image_layers, labels_layers, reset_keeping
from napari_instseg._widgets._layout import DockedScrolls, compact, tooltips
from napari_instseg._widgets._workers import ProgressRun

if TYPE_CHECKING:
    import napari

__all__ = ["AutoWidget"]

logger = logging.getLogger(__name__)

EXTENTS = ("image", "view")
"""What is pre-labelled: the whole labels layer (a slide window when the layer is one), or
the part of it visible in the canvas."""


class AutoWidget(DockedScrolls, Container):  # type: ignore[type-arg]
    """Pre-label everything with SAM 2's automatic masks or the classic automatic mode.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
        The viewer to work in (napari injects it).
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True, scrollable=True)
        self.viewer = napari_viewer
        self._prompter: Any = None  # this panel's SAM 2 prompter, when no other fits
        self.last_summary: Any = None
        self._run_layers: tuple[Any, ...] = ()  # weak references to (image, labels) of the run on
        self._abandoned = ""  # why the run on will not be committed (a layer of it was removed)
        self._build_controls()
        self.viewer.layers.events.inserted.connect(self._refresh_choices)
        self.viewer.layers.events.removed.connect(self._on_layer_removed)
        self.viewer.layers.events.renamed.connect(self._refresh_choices)
        self._refresh_choices()
        # Alt+Z / Alt+Y undo / redo in the target labels (a run is one step) while this panel
        # is open; a panel that offers them too (Instances) keeps them while it is open.
        offer(self.viewer, {"undo": self._on_undo, "redo": self._on_redo}, fallback=True)

    def _build_controls(self) -> None:
        from napari_instseg.core.prompting import default_backend
        from napari_instseg.core.prompting.auto import PRESETS
        from napari_instseg.core.prompting.registry import BACKENDS, auto_tile_px

        self.image_combo = ComboBox(label="image", choices=lambda *_: image_layers(self.viewer), nullable=True)
        self.labels_combo = ComboBox(
            label="target labels", choices=lambda *_: labels_layers(self.viewer), nullable=True
        )
        self.backend_combo = ComboBox(label="backend", choices=list(BACKENDS), value=default_backend())
        self.preset_combo = ComboBox(label="preset", choices=list(PRESETS), value="cells")
        self.extent_combo = ComboBox(label="extent", choices=list(EXTENTS), value="image")
        self.tile_spin = SpinBox(
            label="tile (px)", min=64, max=8192, step=64, value=auto_tile_px(self.backend_combo.value)
        )
        self.halo_spin = SpinBox(label="halo (px)", min=0, max=1024, step=8, value=64)
        self.run_button = PushButton(text="Pre-label everything")
        self.progress = ProgressBar(label="tiles", value=0, min=0, max=1)
        self.cancel_button = PushButton(text="Cancel")
        self.batch = ProgressRun(self.progress, self.cancel_button, "Pre-labelling tiles")
        self.undo_button = PushButton(text=f"Undo ({KEYS['undo'].key})")
        self.redo_button = PushButton(text=f"Redo ({KEYS['redo'].key})")
        self.status = Label(value="")
        self.extend(
            [
                self.image_combo,
                self.labels_combo,
                self.backend_combo,
                self.preset_combo,
                self.extent_combo,
                self.tile_spin,
                self.halo_spin,
                self.run_button,
                self.progress,
                self.cancel_button,
                Container(widgets=[self.undo_button, self.redo_button], layout="horizontal", labels=False),
                self.status,
            ]
        )
        self.run_button.changed.connect(self._on_run)
        self.undo_button.changed.connect(lambda *_: self._on_undo())
        self.redo_button.changed.connect(lambda *_: self._on_redo())
        self.backend_combo.changed.connect(self._on_backend)
        self._tooltips()
        compact(self.inner)
        from qtpy.QtWidgets import QSizePolicy

        # messages (a checkpoint's path, a store's holder) are long: they wrap in the width given
        self.status.native.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)

    def _tooltips(self) -> None:
        tooltips(
            {
                self.image_combo: "The image to pre-label (for a slide window: the slide).",
                self.labels_combo: "The labels layer the pre-labels go into (never over committed instances).",
                self.backend_combo: "sam2: SAM 2's automatic masks (needs a checkpoint: the Prompt panel's, "
                "else the standard one); classic: no model, works offline.",
                self.tile_spin: "Tile size in pixels; each backend has its default (the CLI's).",
                self.halo_spin: "Margin around each tile, larger than the largest object.",
                self.run_button: "Pre-label every object of the extent, in the background (one undo step).",
                self.progress: "Tiles segmented so far.",
                self.cancel_button: "Stop after the current tile; nothing is committed.",
                self.undo_button: "Undo the last action in the target labels (a whole run is one step).",
                self.redo_button: "Redo the last undone action in the target labels.",
            }
        )

    def reset_choices(self, *_: Any) -> None:
        """Re-read the layer lists, keeping the chosen layers (renamed or not); choose the
        image / labels layer when there is one to choose (napari calls this on a docked panel)."""
        combos = [getattr(self, name) for name in ("image_combo", "labels_combo") if hasattr(self, name)]
        reset_keeping(super().reset_choices, combos)

    def _refresh_choices(self, *_: Any) -> None:
        """Re-read the layer lists; choose the image / labels layer when there is one to choose."""
        self.reset_choices()

    def _on_layer_removed(self, event: Any) -> None:
        """A layer of the run on was removed: cancel it (nothing is committed)."""
        layer = getattr(event, "value", None)
        run_layers = [ref() for ref in self._run_layers]  # weak: a removed layer is not kept alive
        if self.batch.running and layer is not None and any(layer is run_layer for run_layer in run_layers):
            kind = "image" if layer is run_layers[0] else "labels"
            self._abandoned = f"The {kind} layer {layer.name} was removed: pre-labelling cancelled, nothing committed."
            self.batch.cancel()
            self._say(self._abandoned)
        self._refresh_choices()

    def _on_backend(self, backend: str) -> None:
        """Use the backend's default tile unless another size was chosen."""
        from napari_instseg.core.prompting.registry import AUTO_TILE_PX, auto_tile_px

        if int(self.tile_spin.value) in AUTO_TILE_PX.values():
            self.tile_spin.value = auto_tile_px(backend)

    # -- what to pre-label -------------------------------------------------------------------
    def _frame(self, labels_layer: Any) -> tuple[int, int, int, int]:
        """(y0, x0, y1, x1) to pre-label, in the labels layer's own pixels."""
        height, width = labels_layer.data.shape[:2]
        if self.extent_combo.value != "view":
            return 0, 0, height, width
        corners = np.asarray(labels_layer.corner_pixels)[:, -2:]  # visible data, layer pixels
        (y0, x0), (y1, x1) = corners[0], corners[1] + 1
        frame = (max(int(y0), 0), max(int(x0), 0), min(int(y1), height), min(int(x1), width))
        if frame[2] <= frame[0] or frame[3] <= frame[1]:
            raise ValueError(f"The view shows none of {labels_layer.name} (visible corners {corners.tolist()}).")
        return frame

    def _pixels(self, image_layer: Any, labels_layer: Any, frame: tuple[int, int, int, int]) -> np.ndarray:
        """The image pixels under ``frame`` of the labels layer (a slide window: its region)."""
        level0 = image_layer.data[0] if image_layer.multiscale else image_layer.data
        oy, ox = 0, 0
        region = labels_layer.metadata.get("instseg_window")
        if region is not None:
            oy, ox = int(region[0]), int(region[1])
        y0, x0, y1, x1 = frame
        return np.asarray(level0[oy + y0 : oy + y1, ox + x0 : ox + x1])

    def _identity(self, image_layer: Any, labels_layer: Any) -> str:
        """The cache identity the Prompt widget uses for this image (same keys, same cache)."""
        from napari_instseg._widgets.prompt import PromptWidget

        region = labels_layer.metadata.get("instseg_window")
        return str(PromptWidget.image_key(None, image_layer, region).identity)  # type: ignore[arg-type]

    # -- segmenter --------------------------------------------------------------------------
    def _segmenter(self, labels_layer: Any) -> Any:
        """The automatic segmenter. SAM 2: the model chosen in an open Prompt panel (the one
        on this labels layer first), else the standard checkpoint lookup. This panel keeps a
        model of its own (reused from run to run): the Prompt panel's model may be asked for a
        prompt while a run goes on in its worker, and one SAM 2 predictor holds one image at a
        time. An image the Prompt panel already encoded comes from the embedding cache.

        Raises
        ------
        CheckpointError
            When there is no usable SAM 2 checkpoint (the message says what to do).
        """
        from napari_instseg.core.prompting.auto import PRESETS, ClassicAutoSegmenter, Sam2AutoSegmenter
        from napari_instseg.core.prompting.lifecycle import build_prompter

        if self.backend_combo.value == "classic":
            return ClassicAutoSegmenter()
        panels = sorted(self._prompt_panels(), key=lambda panel: panel.labels_combo.value is not labels_layer)
        config = self._sam2_config(panels[0].prompter_config() if panels else None)
        prompter = self._prompter if _built_for(self._prompter, config) else None
        if prompter is None:
            prompter = build_prompter(config, load_model=False)  # the model loads in the worker
            self._prompter = prompter
        return Sam2AutoSegmenter(prompter, PRESETS[self.preset_combo.value])

    @staticmethod
    def _sam2_config(chosen: Any) -> Any:
        """SAM 2 settings from a Prompt panel's (None: the defaults), checkpoint resolved."""
        from dataclasses import replace

        from napari_instseg.core.prompting.lifecycle import PrompterConfig, auto_checkpoint
        from napari_instseg.core.prompting.registry import DEFAULT_SIZE

        base = chosen if chosen is not None else PrompterConfig("sam2", DEFAULT_SIZE)
        checkpoint = auto_checkpoint(base.size, base.checkpoint, instead="classic")
        return replace(base, backend="sam2", checkpoint=checkpoint)

    def _prompt_panels(self) -> list[Any]:
        """The Prompt panels open in this panel's window (alone or in the tabbed panel)."""
        from qtpy.QtWidgets import QWidget

        from napari_instseg._widgets.prompt import PromptWidget

        top = self.native
        while top.parentWidget() is not None:
            top = top.parentWidget()
        found = (getattr(child, "_magic_widget", None) for child in top.findChildren(QWidget))
        return [widget for widget in found if isinstance(widget, PromptWidget)]

    # -- actions -----------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """True while a run is on (from Run until it is committed, failed or cancelled)."""
        return bool(self.batch.running)

    def _on_run(self, *_: Any) -> Any:
        """Start pre-labelling in a worker (returns the worker; None when run inline or refused)."""
        from napari_instseg.core.errors import InstsegError

        image_layer, labels_layer = self.image_combo.value, self.labels_combo.value
        if image_layer is None or labels_layer is None:
            self._say("Choose an image layer and a target labels layer.")
            return None
        if self.batch.running:
            self._say("Already pre-labelling; Cancel first.")
            return None
        not_2d = _not_2d(image_layer, labels_layer)
        if not_2d:
            self._say(not_2d, error=True)
            return None
        binding = layer_session(labels_layer)
        if binding.read_only:  # refused before the segmentation, not after it
            self._say(f"Nothing pre-labelled in {labels_layer.name}: {binding.notice}", error=True)
            return None
        try:
            frame = self._frame(labels_layer)
        except ValueError as exc:
            self._say(str(exc), error=True)
            return None
        image = self._pixels(image_layer, labels_layer, frame)
        if image.shape[:2] != (frame[2] - frame[0], frame[3] - frame[1]):
            self._say(f"Image {image_layer.name} does not cover labels {labels_layer.name} there.", error=True)
            return None
        try:
            segmenter = self._segmenter(labels_layer)
        except InstsegError as exc:  # no SAM 2 checkpoint: say what to do, start nothing
            self._say(str(exc), error=True)
            return None
        identity = self._identity(image_layer, labels_layer) if frame[:2] == (0, 0) else None
        return self._start(image, segmenter, identity, binding, frame)

    def _start(self, image: np.ndarray, segmenter: Any, identity: str | None, binding: Any, frame: Any) -> Any:
        """Segment in a worker with the panel's progress bar and Cancel; commit when it returns."""
        from napari_instseg.core.stitch import tile_grid

        tile, halo = int(self.tile_spin.value), int(self.halo_spin.value)
        n_tiles = len(tile_grid((int(image.shape[0]), int(image.shape[1])), tile, halo))
        self._say(f"Pre-labelling {binding.layer.name} ({n_tiles} tile(s), {self.backend_combo.value})...")
        self.run_button.enabled = False
        self._run_layers = (weakref.ref(self.image_combo.value), weakref.ref(binding.layer))
        self._abandoned = ""
        return self.batch.start(
            _segment_all,
            image,
            segmenter,
            n_tiles=n_tiles,
            tile_px=tile,
            halo_px=halo,
            identity=identity,
            on_returned=lambda objects: self._finish(objects, binding, segmenter.source, frame),
            on_error=self._on_error,
            on_cancelled=self._on_cancelled,
        )

    def _finish(self, objects: Any, binding: Any, source: str, frame: tuple[int, ...]) -> None:
        """Commit the stitched objects (UI thread): one undo step."""
        from napari_instseg.core.errors import InstsegError
        from napari_instseg.core.prompting.auto import commit_auto

        self._end_run()
        if self._abandoned:  # a layer of the run was removed as the last tile finished
            self._say(self._abandoned)
            return
        objects = [obj.shifted(frame[0], frame[1]) for obj in objects]
        if binding.read_only:  # the store was taken read-only while the run was on
            self._say(f"Nothing committed: {binding.notice}", error=True)
            return
        binding.flush()
        try:
            summary = commit_auto(binding.session, objects, source)
        except InstsegError as exc:  # the store refused to save the run: nothing committed
            self._say(f"Nothing committed: {type(exc).__name__}: {exc}", error=True)
            return
        finally:
            binding.sync()
        self.last_summary = summary
        self._say(f"{summary}.")

    def _on_cancelled(self, exc: Exception) -> None:
        self._end_run()
        if self._abandoned:  # said when the layer was removed
            self.status.value = self._abandoned
            return
        self._say(f"{exc} tile(s): nothing committed.")

    def _end_run(self) -> None:
        self.run_button.enabled = True
        self._run_layers = ()

    def _on_undo(self) -> None:
        self._step("undo", "Undid")

    def _on_redo(self) -> None:
        self._step("redo", "Redid")

    def _step(self, action: str, done: str) -> None:
        """Undo / redo in the target labels layer's session (a run is one step)."""
        from napari_instseg.core.errors import InstsegError

        layer = self.labels_combo.value
        if layer is None:
            self._say("Choose a target labels layer first.", error=True)
            return
        try:
            edit, warning = layer_session(layer).step(action)
        except InstsegError as exc:  # a read-only store
            self._say(str(exc), error=True)
            return
        if warning:  # work of an earlier session: named first, undone on the next undo
            self._say(warning)
            return
        if edit is None:
            self._say(f"Nothing to {action} in {layer.name}.")
            return
        self._say(f"{done} {edit.op} of {len(edit.ids)} instance(s) in {layer.name}.")

    def _on_error(self, exc: Exception) -> None:
        self._end_run()
        self._say(f"{type(exc).__name__}: {exc}", error=True)
        logger.debug("worker error", exc_info=exc)

    def _say(self, message: str, *, error: bool = False) -> None:
        self.status.value = message
        from napari.utils.notifications import show_error, show_info

        (show_error if error else show_info)(message)


def _not_2d(image_layer: Any, labels_layer: Any) -> str:
    """Why these layers cannot be pre-labelled (one is 3-D or more), or "" when both are 2-D
    (an RGB image's colour axis is not a dimension)."""
    level0 = image_layer.data[0] if image_layer.multiscale else image_layer.data
    image_shape = tuple(level0.shape[:-1] if image_layer.rgb else level0.shape)
    labels_shape = tuple(labels_layer.data.shape)
    for kind, layer, shape in (("image", image_layer, image_shape), ("labels", labels_layer, labels_shape)):
        if len(shape) != 2:
            return (
                f"3-D layers are not supported: {kind} layer {layer.name} has shape {shape}. "
                "Choose a 2-D image / labels layer, or a plane."
            )
    return ""


def _segment_all(
    image: np.ndarray,
    segmenter: Any,
    *,
    n_tiles: int,
    tile_px: int,
    halo_px: int,
    identity: str | None,
    progress: Any,
) -> list[Any]:
    """Every object of ``image``, stitched (in a worker): ``progress(done, total)`` after each
    tile, and ``(0, n_tiles)`` first so the bar shows the total at once."""
    from napari_instseg.core.prompting.auto import auto_objects

    progress(0, n_tiles)
    return auto_objects(image, segmenter, tile_px=tile_px, halo_px=halo_px, identity=identity, progress=progress)


def _built_for(prompter: Any, config: Any) -> bool:
    """True when ``prompter`` is a SAM 2 prompter of ``config``'s size and checkpoint (and
    device, when the config names one)."""
    from pathlib import Path

    if getattr(prompter, "name", "") != "sam2" or prompter.size != config.size:
        return False
    if config.device is not None and prompter.device != config.device:
        return False
    return Path(prompter.checkpoint).resolve() == Path(config.checkpoint).resolve()
