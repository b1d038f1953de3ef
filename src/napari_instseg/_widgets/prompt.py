"""Dock widget "Prompt": click or box -> SAM 2 (or classic) candidate -> committed instance.

Thin by design: napari layers are turned into core types by :mod:`napari_instseg._adapters`,
every rule lives in :class:`napari_instseg.core.session.AnnotationSession`, and this widget
only wires layers, buttons, keys and workers to it.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, Label, PushButton

from napari_instseg._adapters import (
    box_from_shape,
    labels_layer_kwargs,
    prompt_from_points,
    protocol_from_metadata,
)
from napari_instseg._widgets._binding import layer_session
from napari_instseg._widgets._layers import image_layers, labels_layers
from napari_instseg._widgets._workers import SingleSlot, run_worker

if TYPE_CHECKING:
    import napari

__all__ = ["SHORTCUTS", "PromptWidget"]

logger = logging.getLogger(__name__)

POINTS_NAME = "prompts"
BOXES_NAME = "boxes"
CANDIDATE_NAME = "candidate"
POSITIVE_COLOR = "#2ca02c"
NEGATIVE_COLOR = "#d62728"

SHORTCUTS = {
    "Shift-S": ("segment", "segment from the prompts"),
    "Shift-C": ("commit", "commit the candidate as a new instance"),
    "Escape": ("clear", "clear prompts and candidate"),
    "Shift-N": ("next_candidate", "next candidate mask"),
    "Shift-A": ("accept", "accept the selected pre-label"),
    "Shift-R": ("reject", "reject the selected pre-label"),
    "T": ("toggle_polarity", "toggle positive / negative clicks"),
}
"""Key -> (widget action, description); bound on the prompt, box and target labels layers."""

GESTURES = (
    "Click (points layer, add mode): positive point.  Shift+click: negative point.  "
    "Draw a rectangle on the 'boxes' layer: box prompt."
)


def _import_sam2() -> None:
    from napari_instseg.core.prompting.sam2 import avoid_llvm_clash, sam2_available

    if not sam2_available():  # without the sam2 extra; prompting then says what to install
        return
    avoid_llvm_clash()
    import sam2.build_sam
    import sam2.sam2_image_predictor  # noqa: F401


class PromptWidget(Container):
    """Prompt SAM 2 or the classic backend with points and boxes; commit and review instances.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
        The viewer to work in (napari injects it).
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self._binding: Any = None
        from napari_instseg.core.prompting.lifecycle import PrompterHolder

        self._prompters = PrompterHolder()  # the widget owns its prompter; dropped on close
        self.native.destroyed.connect(lambda *_, holder=self._prompters: holder.clear())
        self._image_key: Any = None
        self._shift_down = False
        self._decoder = SingleSlot()
        self._encoding = None
        self._refining: int | None = None
        self._warmup: threading.Thread | None = None
        self._build_controls()
        self._connect_layer_list()
        self.points_layer = self._ensure_points_layer()
        self.boxes_layer = self._ensure_boxes_layer()
        self._bind_keys(self.points_layer)
        self._bind_keys(self.boxes_layer)
        self._refresh_choices()
        self._warm_up_backend()

    # -- construction ----------------------------------------------------------------------
    def _build_controls(self) -> None:
        from napari_instseg.core.prompting import default_backend
        from napari_instseg.core.prompting.registry import BACKENDS, DEFAULT_SIZE, DEVICES, MODEL_SIZES

        self.image_combo = ComboBox(label="image", choices=self._image_layers, nullable=True)
        self.labels_combo = ComboBox(label="target labels", choices=self._labels_layers, nullable=True)
        self.new_labels_button = PushButton(text="New labels layer")
        self.backend_combo = ComboBox(label="backend", choices=list(BACKENDS), value=default_backend())
        self.model_combo = ComboBox(label="SAM 2 model", choices=list(MODEL_SIZES), value=DEFAULT_SIZE)
        self.checkpoint_edit = FileEdit(label="checkpoint", mode="r", filter="*.pt", nullable=True)
        self.device_combo = ComboBox(label="device", choices=["auto", *DEVICES], value="auto")
        self.category_combo = ComboBox(label="category", choices=self._category_choices)
        self.in_front_check = CheckBox(text="put in front (may cover committed instances)", value=False)
        self.amodal_check = CheckBox(text="amodal: the mask is the full outline (the object lies behind)", value=False)
        self.outline_button = PushButton(text="Use candidate as outline of selected")
        self.store_edit = FileEdit(label="annotation store", mode="w", filter="*.zarr", nullable=True)
        self.store_button = PushButton(text="Save to store (open or create)")
        self.negative_check = CheckBox(text="next clicks are negative (T)", value=False)
        self.segment_button = PushButton(text="Segment (Shift-S)")
        self.next_button = PushButton(text="Next candidate (Shift-N)")
        self.commit_button = PushButton(text="Commit (Shift-C)")
        self.clear_button = PushButton(text="Clear (Esc)")
        self.refine_button = PushButton(text="Refine selected instance")
        self.accept_button = PushButton(text="Accept selected (Shift-A)")
        self.reject_button = PushButton(text="Reject selected (Shift-R)")
        self.status = Label(value="")
        help_lines = [GESTURES] + [f"{key}: {desc}" for key, (_, desc) in SHORTCUTS.items()]
        self.help = Label(value="\n".join(help_lines))
        self.extend(
            [
                self.image_combo,
                self.labels_combo,
                self.new_labels_button,
                self.backend_combo,
                self.model_combo,
                self.checkpoint_edit,
                self.device_combo,
                self.category_combo,
                self.in_front_check,
                self.amodal_check,
                self.outline_button,
                self.store_edit,
                self.store_button,
                self.negative_check,
                self.segment_button,
                self.next_button,
                self.commit_button,
                self.clear_button,
                self.refine_button,
                self.accept_button,
                self.reject_button,
                self.status,
                self.help,
            ]
        )
        self.new_labels_button.changed.connect(self._on_new_labels)
        self.segment_button.changed.connect(self._on_segment)
        self.next_button.changed.connect(self._on_next_candidate)
        self.commit_button.changed.connect(self._on_commit)
        self.clear_button.changed.connect(self._on_clear)
        self.refine_button.changed.connect(self._on_refine)
        self.accept_button.changed.connect(self._on_accept)
        self.reject_button.changed.connect(self._on_reject)
        self.outline_button.changed.connect(self._on_outline_from_candidate)
        self.store_button.changed.connect(self._on_store)
        self.negative_check.changed.connect(self._on_polarity_changed)
        self.labels_combo.changed.connect(lambda *_: self._bind_session())
        self.image_combo.changed.connect(lambda *_: self._forget_image())
        for combo in (self.backend_combo, self.model_combo, self.device_combo):
            combo.changed.connect(lambda *_: self._forget_prompter())
        self.backend_combo.changed.connect(lambda *_: self._warm_up_backend())
        self.checkpoint_edit.changed.connect(lambda *_: self._forget_prompter())

    def _warm_up_backend(self) -> None:
        """Import torch and sam2 in a background thread as soon as SAM 2 may be used.

        Loading their shared libraries holds the GIL for up to a few hundred ms at a time;
        doing it ahead keeps that pause away from the first click and from encoding.
        """
        if self.backend_combo.value != "sam2" or self._warmup is not None:
            return
        self._warmup = threading.Thread(target=_import_sam2, name="napari-instseg-warmup", daemon=True)
        self._warmup.start()

    def _image_layers(self, *_: Any) -> list[tuple[str, Any]]:
        return image_layers(self.viewer)

    def _labels_layers(self, *_: Any) -> list[tuple[str, Any]]:
        return labels_layers(self.viewer, exclude=(CANDIDATE_NAME,))

    def _category_choices(self, *_: Any) -> list[tuple[str, int]]:
        protocol = self._protocol()
        return [(f"{c.name} ({c.id})", c.id) for c in protocol.categories]

    def _protocol(self) -> Any:
        if self.session is not None:
            return self.session.protocol
        layer = getattr(self, "labels_combo", None) and self.labels_combo.value
        return protocol_from_metadata(getattr(layer, "metadata", None))

    def _connect_layer_list(self) -> None:
        events = self.viewer.layers.events
        events.inserted.connect(self._refresh_choices)
        events.removed.connect(self._refresh_choices)

    def _refresh_choices(self, *_: Any) -> None:
        self.image_combo.reset_choices()
        self.labels_combo.reset_choices()
        self.category_combo.reset_choices()

    def _ensure_points_layer(self) -> Any:
        if POINTS_NAME in self.viewer.layers:
            return self.viewer.layers[POINTS_NAME]
        layer = self.viewer.add_points(
            np.zeros((0, 2)),
            name=POINTS_NAME,
            ndim=2,
            size=8,
            features={"positive": np.zeros(0, dtype=bool)},
            face_color="positive",
            face_color_cycle=[NEGATIVE_COLOR, POSITIVE_COLOR],
        )
        layer.feature_defaults["positive"] = True
        layer.mode = "add"
        layer.mouse_drag_callbacks.insert(0, self._remember_shift)
        layer.events.data.connect(self._on_points_changed)
        return layer

    def _ensure_boxes_layer(self) -> Any:
        if BOXES_NAME in self.viewer.layers:
            return self.viewer.layers[BOXES_NAME]
        layer = self.viewer.add_shapes(
            name=BOXES_NAME, ndim=2, edge_color="yellow", face_color="transparent", edge_width=2
        )
        layer.mode = "add_rectangle"
        layer.events.data.connect(self._on_boxes_changed)
        return layer

    def _bind_keys(self, layer: Any) -> None:
        for key, (action, _) in SHORTCUTS.items():
            handler = getattr(self, f"_on_{action}")
            layer.bind_key(key, lambda _layer, handler=handler: handler(), overwrite=True)

    # -- session and prompter ------------------------------------------------------------
    @property
    def session(self) -> Any:
        """The annotation session of the target labels layer (None without one)."""
        return None if self._binding is None else self._binding.session

    def _bind_session(self) -> Any:
        """Bind to the target labels layer's shared session (made on first use)."""
        layer = self.labels_combo.value
        if layer is None:
            self._binding = None
            return None
        if self._binding is None or self._binding.layer is not layer:
            self._binding = layer_session(layer)
            self._bind_keys(layer)
            self.category_combo.reset_choices()
        return self._binding.session

    def _forget_prompter(self) -> None:
        self._prompters.clear()
        self._forget_image()

    def _forget_image(self) -> None:
        self._image_key = None

    def _config(self) -> Any:
        from napari_instseg.core.prompting.lifecycle import PrompterConfig

        return PrompterConfig.from_settings(
            self.backend_combo.value, self.model_combo.value, self.checkpoint_edit.value, self.device_combo.value
        )

    def image_key(self, layer: Any, region: Any = None) -> Any:
        """Cache identity of an image layer (its file with size and mtime, or its name and
        shape) and of the region prompted (a slide window), if any: the core's keys, so
        ``prelabel-slide`` and this widget share cache entries."""
        from napari_instseg.core.prompting.cache import file_image_key, named_image_key, slide_tile_key

        path = getattr(getattr(layer, "source", None), "path", None)
        if region is not None:
            return slide_tile_key(path or layer.name, tuple(int(v) for v in region))
        if path and Path(path).is_file():
            return file_image_key(path, tuple(layer.data.shape[:2]))
        return named_image_key(layer.name, tuple(layer.data.shape), str(layer.data.dtype))

    def _prepare(self, then: Any) -> None:
        """Make sure a prompter exists and holds the current image, then call ``then()``.

        Model loading and image encoding run in a thread worker with a progress bar.
        """
        session = self._bind_session()
        image_layer = self.image_combo.value
        if session is None or image_layer is None:
            self._say("Choose an image layer and a target labels layer (or make a new one).")
            return
        region = self._binding.layer.metadata.get("instseg_window")
        key = self.image_key(image_layer, region)
        if self._prompters.current(self._config()) is not None and self._image_key == key:
            then()
            return
        if self._encoding is not None:
            self._say("Still encoding the image...")
            return
        config = self._config()
        image = _pixels(image_layer, region)

        def prepare() -> Any:
            prompter = self._prompters.get(config)  # builds (loads the model) when needed
            prompter.set_image(image, key)
            return prompter

        def done(prompter: Any) -> None:
            self._encoding = None
            self._prompters.keep(config, prompter)
            self._image_key = key
            self.session.prompter = prompter
            cached = getattr(prompter, "last_from_cache", False)
            self._say(f"{prompter.name}: image ready{' (from cache)' if cached else ''}.")
            then()

        self._say(f"Preparing {config.backend} on {image_layer.name}...")
        self._encoding = (
            run_worker(
                prepare,
                on_returned=done,
                on_error=self._on_worker_error,
                progress=f"Encoding {image_layer.name} ({config.backend})",
            )
            or None
        )

    # -- actions (named _on_* so tests and key bindings can call them) ---------------------
    def _on_new_labels(self, *_: Any) -> None:
        from napari_instseg.core.instances import empty_table

        image_layer = self.image_combo.value
        if image_layer is None:
            self._say("Choose an image layer first.")
            return
        shape_yx = tuple(image_layer.data.shape[:2])
        kwargs = labels_layer_kwargs(f"{image_layer.name} instances", empty_table(), self._protocol())
        layer = self.viewer.add_labels(np.zeros(shape_yx, dtype=np.uint32), **kwargs)
        self.labels_combo.reset_choices()
        self.labels_combo.value = layer
        self.viewer.layers.selection.active = self.points_layer

    def _on_segment(self, *_: Any) -> None:
        self._prepare(self._predict_from_layers)

    def _predict_from_layers(self) -> None:
        points, labels = prompt_from_points(self.points_layer.data, self.points_layer.features.get("positive"))
        boxes = list(self.boxes_layer.data)
        box = box_from_shape(boxes[-1]) if boxes else None
        if not len(points) and box is None and self._refining is None:
            self._say("Add a point or draw a box first.")
            return
        session = self.session
        session.prompter = self._prompters.current(self._config())
        self._binding.flush()  # painting first, so the prompt sees it
        from napari_instseg.core.session import CommitError

        try:
            mask = session.refine_mask(self._refining) if self._refining is not None else None
        except CommitError as exc:
            self._say(str(exc), error=True)
            return
        clicks = (points, labels) if len(points) else (None, None)

        def predict() -> Any:  # in the worker: the session is not changed here
            if mask is not None:
                return session.predict(*clicks, mask_yx=mask, multimask=False)
            return session.predict(*clicks, box)

        def show(candidates: Any) -> None:  # on the UI thread
            session.show_candidates(candidates)
            self._on_candidates(candidates)

        self._decoder.submit(predict, on_returned=show, on_error=self._on_worker_error)

    def _on_candidates(self, candidates: Any) -> None:
        self._show_candidate()
        scores = ", ".join(f"{s:.2f}" for s in candidates.scores)
        self._say(f"{len(candidates)} candidate(s) from {candidates.source}; scores {scores}.")

    def _on_next_candidate(self, *_: Any) -> None:
        if self.session is None or self.session.candidates is None:
            self._say("No candidates yet: segment first.")
            return
        index = self.session.next_candidate()
        self._show_candidate()
        self._say(f"Candidate {index + 1} of {len(self.session.candidates)}.")

    def _on_commit(self, *_: Any) -> Any:
        from napari_instseg.core.session import CommitError

        session = self.session
        if session is None or session.candidate is None:
            self._say("Nothing to commit: segment first.")
            return None
        try:
            if self._refining is not None:
                self._binding.run("replace_mask", self._refining, session.candidate)
                result = self._refining
                self._say(f"Instance {result} refined.")
            else:
                result = self._binding.run(
                    "commit",
                    category=self.category_combo.value,
                    in_front=self.in_front_check.value,
                    amodal=self.amodal_check.value,
                )
                self._say(
                    f"Committed instance {result.instance_id} ({result.painted_px} px"
                    f"{f', {result.skipped_px} px under other instances kept' if result.skipped_px else ''})."
                )
        except CommitError as exc:
            self._say(str(exc), error=True)
            return None
        self._refining = None
        self._clear_prompts()
        return result

    def _on_clear(self, *_: Any) -> None:
        if self.session is not None:
            self.session.clear()
        self._refining = None
        self._clear_prompts()
        self._say("Cleared.")

    def _on_refine(self, *_: Any) -> None:
        session = self._bind_session()
        selected = int(self._binding.layer.selected_label) if self._binding is not None else 0
        if session is None or selected not in session.table.index:
            self._say("Select an existing instance (pick it in the labels layer) to refine.")
            return
        self._refining = selected
        self._say(f"Refining instance {selected}: add points, then Segment and Commit.")
        self._prepare(self._predict_from_layers)

    def _on_accept(self, *_: Any) -> None:
        self._review("accept")

    def _on_reject(self, *_: Any) -> None:
        self._review("reject")

    def _on_outline_from_candidate(self, *_: Any) -> None:
        from napari_instseg.core.session import CommitError

        session = self._bind_session()
        selected = int(self._binding.layer.selected_label) if self._binding is not None else 0
        if session is None or session.candidate is None or selected not in session.table.index:
            self._say("Select an instance and segment its whole outline (a box around the whole object) first.")
            return
        try:
            self._binding.run("set_amodal", selected, session.candidate)
        except CommitError as exc:
            self._say(str(exc), error=True)
            return
        self._clear_prompts()
        fraction = session.table.loc[selected, "occluded_fraction"]
        self._say(f"Instance {selected}: outline set; {fraction:.0%} occluded.")

    def _on_store(self, *_: Any) -> None:
        from napari_instseg.core.errors import InstsegError

        path = self.store_edit.value
        if self._bind_session() is None or path in (None, Path(""), Path(".")):
            self._say("Choose a target labels layer and a store path (*.zarr).")
            return
        try:
            message = self._binding.attach_store(path)
        except (InstsegError, OSError) as exc:
            self._say(f"Cannot use {path}: {exc}", error=True)
            return
        self._say(message, error=self._binding.store.read_only)

    def _on_toggle_polarity(self, *_: Any) -> None:
        self.negative_check.value = not self.negative_check.value

    def _on_polarity_changed(self, negative: bool) -> None:
        self.points_layer.feature_defaults["positive"] = not negative

    # -- layer events ----------------------------------------------------------------------
    def _remember_shift(self, layer: Any, event: Any) -> None:
        self._shift_down = "Shift" in {str(m) for m in getattr(event, "modifiers", ())}

    def _on_points_changed(self, event: Any) -> None:
        if str(getattr(event, "action", "added")) not in ("added", "ActionType.ADDED"):
            return
        if self._shift_down and len(self.points_layer.data):
            positive = self.points_layer.features["positive"].to_numpy().copy()
            positive[-1] = False
            self.points_layer.features = {"positive": positive}
            self.points_layer.refresh_colors()
        if len(self.points_layer.data):
            self._on_segment()

    def _on_boxes_changed(self, event: Any) -> None:
        if str(getattr(event, "action", "added")) in ("added", "ActionType.ADDED") and len(self.boxes_layer.data):
            self._on_segment()

    # -- helpers ---------------------------------------------------------------------------
    def _review(self, action: str) -> None:
        from napari_instseg.core.session import CommitError

        session = self._bind_session()
        if session is None:
            self._say("Choose a target labels layer first.")
            return
        selected = int(self._binding.layer.selected_label)
        try:
            outcome = self._binding.run(action, selected) or "rejected"
        except CommitError as exc:
            self._say(str(exc), error=True)
            return
        self._say(f"Instance {selected}: {outcome}.")

    def _show_candidate(self) -> None:
        mask = None if self.session is None else self.session.candidate
        data = np.zeros(self.session.shape_yx if self.session else (1, 1), dtype=np.uint8)
        if mask is not None:
            data[mask] = 1
        if CANDIDATE_NAME in self.viewer.layers:
            self.viewer.layers[CANDIDATE_NAME].data = data
        else:
            self.viewer.add_labels(data, name=CANDIDATE_NAME, opacity=0.6)
        self.viewer.layers.selection.active = self.points_layer

    def _clear_prompts(self) -> None:
        with self.points_layer.events.data.blocker(), self.boxes_layer.events.data.blocker():
            self.points_layer.data = np.zeros((0, 2))
            self.boxes_layer.data = []
        if CANDIDATE_NAME in self.viewer.layers:
            layer = self.viewer.layers[CANDIDATE_NAME]
            layer.data = np.zeros_like(layer.data)

    def _sync_layer(self) -> None:
        if self._binding is not None:
            self._binding.sync()

    def _on_worker_error(self, exc: Exception) -> None:
        self._encoding = None
        self._say(f"{type(exc).__name__}: {exc}", error=True)
        logger.debug("worker error", exc_info=exc)

    def _say(self, message: str, *, error: bool = False) -> None:
        self.status.value = message
        from napari.utils.notifications import show_error, show_info

        (show_error if error else show_info)(message)


def _pixels(layer: Any, region: Any) -> np.ndarray:
    """An image layer's pixels, or (for a slide window) those of the window at level 0."""
    level0 = layer.data[0] if layer.multiscale else layer.data
    if region is None:
        return np.asarray(level0)
    y0, x0, y1, x1 = (int(v) for v in region)
    return np.asarray(level0[y0:y1, x0:x1])
