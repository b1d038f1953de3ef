"""Dock widget "Track": follow objects through a (t, y, x) time series or a (z, y, x) stack.

Click objects on any frame (a point layer "track prompts"; the ``object`` number groups
clicks of one object, Shift+click is a negative point), or take an existing instance of the
tracks layer on the current frame as the prompt; then Propagate. SAM 2's video predictor
follows every object forward, backward or both ways in a worker, with a progress bar per
frame and a Cancel button; each object keeps one id (its track) on every frame, and a whole
propagation is one Undo. The widget is thin: the core's
:func:`~napari_instseg.core.video.tracking.propagate_tracks` does the work on its own copy of
the labels, and each finished frame is copied into the layer on the UI thread.
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from magicgui.types import FileDialogMode
from magicgui.widgets import ComboBox, Container, FileEdit, Label, ProgressBar, PushButton, SpinBox, Widget

from napari_instseg._adapters import labels_layer_kwargs
from napari_instseg._widgets._workers import nothreads

if TYPE_CHECKING:
    import napari

    from napari_instseg.core.video.tracking import TrackProgress

__all__ = ["POINTS_LAYER", "TrackWidget"]

POINTS_LAYER = "track prompts"


class TrackWidget(Container[Widget]):
    """Propagate prompted objects through a stack with SAM 2 (one id per object).

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
        The viewer (napari injects it).
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.stack: Any = None
        self.propagator: Any = None
        self.worker: Any = None
        self.last_result = ""
        self._cancel = threading.Event()
        self._prompted_ids: set[int] = set()
        self._instance_prompts: list[tuple[int, int]] = []
        self.image_combo = ComboBox(label="stack", choices=self._stack_layers, nullable=True)
        self.object_spin = SpinBox(label="object", value=1, min=1, max=10_000)
        self.instance_spin = SpinBox(label="instance id", value=0, min=0, max=2**31 - 1)
        self.use_instance_button = PushButton(text="Prompt with this instance (current frame)")
        self.direction_combo = ComboBox(label="direction", choices=["both", "forward", "backward"], value="both")
        self.first_spin = SpinBox(label="first frame", value=0, min=0, max=1_000_000)
        self.last_spin = SpinBox(label="last frame", value=0, min=0, max=1_000_000)
        self.model_combo = ComboBox(label="SAM 2.1 size", choices=["tiny", "small", "base_plus", "large"], value="tiny")
        self.checkpoint_edit = FileEdit(
            label="checkpoint", mode=FileDialogMode.EXISTING_FILE, filter="*.pt", nullable=True
        )
        self.size_spin = SpinBox(label="model input (px)", value=1024, min=64, max=1024, step=64)
        self.propagate_button = PushButton(text="Propagate")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.undo_button = PushButton(text="Undo propagation")
        self.export_edit = FileEdit(
            label="COCO video", mode=FileDialogMode.OPTIONAL_FILE, filter="*.json", nullable=True
        )
        self.export_button = PushButton(text="Export COCO video")
        self.progress = ProgressBar(label="frames", value=0, min=0, max=1)
        self.status = Label(value="Click objects on a frame, then Propagate.")
        self.extend(
            [
                self.image_combo,
                self.object_spin,
                self.instance_spin,
                self.use_instance_button,
                self.direction_combo,
                self.first_spin,
                self.last_spin,
                self.model_combo,
                self.checkpoint_edit,
                self.size_spin,
                self.propagate_button,
                self.cancel_button,
                self.undo_button,
                self.export_edit,
                self.export_button,
                self.progress,
                self.status,
            ]
        )
        self.image_combo.changed.connect(self._on_stack_changed)
        for model_setting in (self.model_combo, self.checkpoint_edit, self.size_spin):
            model_setting.changed.connect(self._on_model_changed)
        self.object_spin.changed.connect(self._on_object_changed)
        self.use_instance_button.changed.connect(self._on_use_instance)
        self.propagate_button.changed.connect(self._on_propagate)
        self.cancel_button.changed.connect(self._on_cancel)
        self.undo_button.changed.connect(self._on_undo)
        self.export_button.changed.connect(self._on_export)
        self.viewer.layers.events.inserted.connect(lambda *_: self.image_combo.reset_choices())
        self.viewer.layers.events.removed.connect(lambda *_: self.image_combo.reset_choices())
        self.points_layer = self._make_points_layer()
        self._on_stack_changed()

    # -- layers -----------------------------------------------------------------------------
    def _stack_layers(self, *_: Any) -> list[tuple[str, Any]]:
        from napari.layers import Image

        return [
            (layer.name, layer)
            for layer in self.viewer.layers
            if isinstance(layer, Image) and not layer.multiscale and layer.data.ndim - int(layer.rgb) == 3
        ]

    def _make_points_layer(self) -> Any:
        layer = self.viewer.add_points(
            np.zeros((0, 3)),
            ndim=3,
            name=POINTS_LAYER,
            features={"object": np.zeros(0, int), "positive": np.zeros(0, bool)},
            feature_defaults={"object": 1, "positive": True},
            face_color="positive",
            face_color_cycle=["magenta", "cyan"],
            size=4,
        )
        layer.mode = "add"

        def _negative_with_shift(layer: Any, event: Any) -> None:
            shift = "Shift" in [getattr(k, "name", str(k)) for k in event.modifiers]
            layer.feature_defaults["positive"] = not shift

        layer.mouse_drag_callbacks.append(_negative_with_shift)

        return layer

    def _on_object_changed(self, *_: Any) -> None:
        self.points_layer.feature_defaults["object"] = int(self.object_spin.value)

    def _on_stack_changed(self, *_: Any) -> None:
        layer = self.image_combo.value
        if layer is None:
            return
        n_frames = int(layer.data.shape[0])
        self.first_spin.max = self.last_spin.max = n_frames - 1
        self.first_spin.value, self.last_spin.value = 0, n_frames - 1
        self.stack = self.propagator = None
        self._prompted_ids.clear()

    def _on_model_changed(self, *_: Any) -> None:
        self.propagator = None  # built again, with the new settings, at the next Propagate

    @property
    def tracks_layer(self) -> Any:
        """The Labels layer of the chosen stack (created on first use)."""
        layer = self.image_combo.value
        name = f"{layer.name} tracks"
        if name not in self.viewer.layers:
            from napari_instseg.core.instances import empty_table
            from napari_instseg.core.protocol import AnnotationProtocol

            shape = layer.data.shape[:3]
            kwargs = labels_layer_kwargs(name, empty_table(), AnnotationProtocol.default())
            self.viewer.add_labels(np.zeros(shape, np.uint32), **kwargs)
        return self.viewer.layers[name]

    # -- prompts ----------------------------------------------------------------------------
    def _ensure_stack(self) -> Any:
        """The core track stack, synchronised with the layer (paint done in napari is kept)."""
        from napari_instseg._adapters import protocol_from_metadata
        from napari_instseg.core.instances import from_features
        from napari_instseg.core.video.tracks import TrackStack

        layer = self.tracks_layer
        table = from_features(layer.features) if len(layer.features) else None
        if self.stack is None:
            protocol = protocol_from_metadata(layer.metadata, layer.features)
            self.stack = TrackStack(np.array(layer.data, dtype=np.uint32), table, protocol)
        elif not np.array_equal(self.stack.labels_tyx, layer.data):
            np.copyto(self.stack.labels_tyx, np.asarray(layer.data, dtype=np.uint32))
            synced = TrackStack(self.stack.labels_tyx, table, self.stack.protocol)
            self.stack.table = synced.table
            self.stack.ids.observe(synced.track_ids())
        return self.stack

    def _on_use_instance(self, *_: Any) -> None:
        stack = self._ensure_stack()
        frame = int(self.viewer.dims.current_step[0])
        instance_id = int(self.instance_spin.value)
        if not stack.mask_of(frame, instance_id).any():
            self.status.value = f"Instance {instance_id} has no pixels on frame {frame}."
            return
        self._prompted_ids.add(instance_id)
        self.status.value = f"Instance {instance_id} on frame {frame} will be propagated."
        self._instance_prompts.append((instance_id, frame))

    def prompts(self) -> list[tuple[int | None, int, int, Any]]:
        """(object number or None, instance id or 0, frame, Prompt) of the clicks and instances."""
        from napari_instseg.core.prompting.base import Prompt

        stack = self._ensure_stack()
        data = np.asarray(self.points_layer.data)
        features = self.points_layer.features
        groups: dict[tuple[int, int], list[int]] = {}
        for k, (t, _, _) in enumerate(data):
            groups.setdefault((int(features["object"].iloc[k]), round(t)), []).append(k)
        out: list[tuple[int | None, int, int, Any]] = []
        for (obj, t), rows in groups.items():
            labels = features["positive"].iloc[rows].astype(int).to_numpy()
            out.append((obj, 0, t, Prompt.make(data[rows][:, 1:], labels)))
        for instance_id, t in self._instance_prompts:
            out.append((None, instance_id, t, Prompt.make(mask_yx=stack.mask_of(t, instance_id))))
        return out

    # -- propagation ------------------------------------------------------------------------
    def _on_propagate(self, *_: Any) -> Any:
        from napari_instseg.core.errors import InstsegError
        from napari_instseg.core.video.propagate import VideoPropagator

        if self.image_combo.value is None:
            self.status.value = "Choose a (t, y, x) or (z, y, x) image layer."
            return None
        try:
            prompts = self.prompts()
            if self.propagator is None:
                size = None if self.size_spin.value == 1024 else int(self.size_spin.value)
                checkpoint = cast("Path | None", self.checkpoint_edit.value) or None  # mode "r": one path
                self.propagator = VideoPropagator(self.model_combo.value, checkpoint, image_size=size)
        except InstsegError as exc:
            self.status.value = str(exc)
            return None
        self.points_layer.data = np.zeros((0, 3))
        self._instance_prompts = []
        self._cancel.clear()
        self.propagate_button.enabled, self.cancel_button.enabled = False, True
        self.undo_button.enabled = False
        args = (prompts, (int(self.first_spin.value), int(self.last_spin.value)), self.direction_combo.value)
        if nothreads():
            try:
                for step in self._job(*args):
                    self._on_yielded(step)
            except Exception as exc:  # shown to the user, as a worker's error would be
                self._on_error(exc)
            self._on_finished()
            return None
        from napari.qt.threading import create_worker

        from napari_instseg._widgets._workers import ensure_worker_stack

        ensure_worker_stack()
        self.worker = create_worker(self._job, *args, _start_thread=False, _progress={"total": 0, "desc": "tracking"})
        self.worker.yielded.connect(self._on_yielded)
        self.worker.errored.connect(self._on_error)
        self.worker.finished.connect(self._on_finished)
        self.worker.start()
        return self.worker

    def _job(self, prompts: list[Any], frames: tuple[int, int], direction: str) -> Iterator[Any]:
        """Runs in the worker: new tracks, propagation, stop between frames on Cancel; all of
        it one undo step."""
        from napari_instseg.core.video.propagate import ObjectPrompt
        from napari_instseg.core.video.tracking import propagate_tracks

        propagator, stack = self.propagator, self.stack
        if propagator.state is None:
            propagator.start(self.image_combo.value.data)  # read frame by frame (dask / zarr stay lazy)
        with stack.action("propagate"):
            tracks: dict[int, int] = {}
            items = []
            for obj, instance_id, t, prompt in prompts:
                if obj is not None and obj not in tracks:
                    tracks[obj] = stack.new_track(source="sam2")
                items.append(ObjectPrompt(tracks[obj] if obj is not None else instance_id, t, prompt))
            run = cast(  # a generator (close() stops SAM 2 early), annotated as an Iterator
                "Generator[TrackProgress, None, None]",
                propagate_tracks(stack, propagator, items, direction=direction, frames=frames),
            )
            try:
                for step in run:
                    yield step
                    if self._cancel.is_set():
                        break
            finally:
                run.close()

    def _on_yielded(self, step: Any) -> None:
        layer = self.tracks_layer
        layer.data[step.frame] = self.stack.labels_tyx[step.frame]
        self.progress.max = step.total
        self.progress.value = step.done
        self.status.value = f"frame {step.frame}: {step.done} of {step.total}"
        self.viewer.dims.set_current_step(0, step.frame)
        layer.refresh()

    def _on_error(self, exc: Exception) -> None:
        self.status.value = f"Propagation failed: {exc}"

    def _on_finished(self, *_: Any) -> None:
        self._sync_layer()
        self.propagate_button.enabled, self.cancel_button.enabled = True, False
        self.undo_button.enabled = True
        stopped = self._cancel.is_set()
        done = f"{self.progress.value} of {self.progress.max} frames"
        self.last_result = "cancelled" if stopped else "done"
        if not self.status.value.startswith("Propagation failed"):
            self.status.value = f"Cancelled after {done}." if stopped else f"Propagated over {done}."

    def _on_cancel(self, *_: Any) -> None:
        self._cancel.set()
        self.status.value = "Cancelling after this frame..."

    def _on_undo(self, *_: Any) -> None:
        if self.stack is None or self.stack.undo() is None:
            self.status.value = "Nothing to undo."
            return
        self._sync_layer()
        self.status.value = "Propagation undone."

    def _on_export(self, *_: Any) -> None:
        from napari_instseg.core.coco import save_coco
        from napari_instseg.core.coco.video import export_coco_video

        path = cast("Path | None", self.export_edit.value)  # mode "w": one path or None
        if self.image_combo.value is None or path is None or path in (Path(""), Path(".")):
            self.status.value = "Choose the stack and a COCO file (*.json) to write."
            return
        exported = export_coco_video(self._ensure_stack(), name=self.image_combo.value.name)
        save_coco(exported.coco, path)
        self.status.value = (
            f"Wrote {Path(path).name}: {exported.summary.n_annotations} masks in {exported.summary.n_images} frames."
        )

    def _sync_layer(self) -> None:
        from napari_instseg.core.instances import to_features

        if self.stack is None:
            return
        layer = self.tracks_layer
        layer.data[...] = self.stack.labels_tyx
        layer.features = to_features(self.stack.table)
        layer.refresh()
