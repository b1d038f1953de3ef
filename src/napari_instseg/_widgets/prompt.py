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
from magicgui.types import FileDialogMode
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, Label, PushButton

from napari_instseg._adapters import (
    box_from_shape,
    labels_layer_kwargs,
    prompt_from_points,
    protocol_from_metadata,
)
from napari_instseg._widgets._binding import layer_session
from napari_instseg._widgets._keys import KEYS, help_text, offer
from napari_instseg._widgets._layers import image_layers, labels_layers, reset_keeping
from napari_instseg._widgets._layout import DockedScrolls, collapsible, compact, tooltips
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

PROMPT_ACTIONS = ("commit", "segment", "clear", "next_candidate", "toggle_polarity", "accept", "reject")
"""The plugin actions (see :mod:`._keys`) this panel answers."""

SHORTCUTS = {KEYS[name].key: (name, KEYS[name].description) for name in PROMPT_ACTIONS}
"""Key -> (widget action, description), registered through napari's action manager."""

GESTURES = (
    "Click: positive point. Shift+click: negative point. Drag: box. The candidate shows at once; Shift+C commits it."
)

DRAG_PX = 5
"""A press that moves more than this many canvas pixels draws a box instead of a point."""

MOST_OF_IMAGE = 0.5
"""A candidate covering more than this fraction of the image is flagged."""


def _import_sam2() -> None:
    from napari_instseg.core.prompting.sam2 import avoid_llvm_clash, sam2_available

    if not sam2_available():  # without the sam2 extra; prompting then says what to install
        return
    avoid_llvm_clash()
    import sam2.build_sam
    import sam2.sam2_image_predictor  # noqa: F401


class PromptWidget(DockedScrolls, Container):  # type: ignore[type-arg]
    """Prompt SAM 2 or the classic backend with points and boxes; commit and review instances.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
        The viewer to work in (napari injects it).
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True, scrollable=True)
        self.viewer = napari_viewer
        self._binding: Any = None
        from napari_instseg.core.prompting.lifecycle import PrompterHolder

        self._prompters = PrompterHolder()  # the widget owns its prompter; dropped on close
        self.inner.destroyed.connect(lambda *_, holder=self._prompters: holder.clear())
        self._image_key: Any = None
        self._shift_down = False
        self._dragged_box = False
        self._decoder = SingleSlot()
        self._encoding = None
        self._refining: int | None = None
        self._warmup: threading.Thread | None = None
        self._build_controls()
        self._connect_layer_list()
        self.points_layer = self._ensure_points_layer()
        self.boxes_layer = self._ensure_boxes_layer()
        offer(self.viewer, {name: getattr(self, f"_on_{name}") for name in PROMPT_ACTIONS})
        self._refresh_choices()
        self._warm_up_backend()

    # -- construction ----------------------------------------------------------------------
    def _build_controls(self) -> None:
        from napari_instseg.core.prompting import default_backend
        from napari_instseg.core.prompting.registry import BACKENDS, DEFAULT_SIZE, DEVICES, MODEL_SIZES

        self.notice = Label(value="")
        self.image_combo = ComboBox(label="image", choices=self._image_layers, nullable=True)
        self.labels_combo = ComboBox(label="labels", choices=self._labels_layers, nullable=True)
        self.new_labels_button = PushButton(text="New labels layer")
        self.backend_combo = ComboBox(label="backend", choices=list(BACKENDS), value=default_backend())
        self.model_combo = ComboBox(label="SAM 2 model", choices=list(MODEL_SIZES), value=DEFAULT_SIZE)
        self.checkpoint_edit = FileEdit(
            label="checkpoint", mode=FileDialogMode.EXISTING_FILE, filter="*.pt", nullable=True
        )
        self.device_combo = ComboBox(label="device", choices=["auto", *DEVICES], value="auto")
        self.category_combo = ComboBox(label="category", choices=self._category_choices)
        self.in_front_check = CheckBox(text="put in front", value=False)
        self.amodal_check = CheckBox(text="amodal (full outline)", value=False)
        self.outline_button = PushButton(text="Candidate = outline of selected")
        self.store_edit = FileEdit(label="store", mode=FileDialogMode.OPTIONAL_FILE, filter="*.zarr", nullable=True)
        self.store_button = PushButton(text="Save to store (open or create)")
        self.negative_check = CheckBox(text=f"negative clicks ({KEYS['toggle_polarity'].key})", value=False)
        self.segment_button = PushButton(text="Segment")
        self.next_button = PushButton(text="Next mask")
        self.commit_button = PushButton(text=f"Commit ({KEYS['commit'].key})")
        self.clear_button = PushButton(text=f"Clear ({KEYS['clear'].key})")
        self.refine_button = PushButton(text="Refine selected")
        self.accept_button = PushButton(text=f"Accept selected ({KEYS['accept'].key})")
        self.reject_button = PushButton(text=f"Reject selected ({KEYS['reject'].key})")
        self.status = Label(value="")
        self.help = Label(value=GESTURES + "\n" + help_text(list(PROMPT_ACTIONS)))
        self.extend(
            [
                self.notice,
                self.image_combo,
                self.labels_combo,
                self.new_labels_button,
                self.category_combo,
                Container(widgets=[self.commit_button, self.clear_button], layout="horizontal", labels=False),
                Container(widgets=[self.next_button, self.segment_button], layout="horizontal", labels=False),
                Container(widgets=[self.in_front_check, self.amodal_check], layout="horizontal", labels=False),
                self.status,
            ]
        )
        self.notice.visible = False
        sections = [
            collapsible(
                "Review and refine",
                [self.accept_button, self.reject_button, self.refine_button, self.outline_button, self.negative_check],
            ),
            collapsible("Model", [self.backend_combo, self.model_combo, self.checkpoint_edit, self.device_combo]),
            collapsible("Save to a store", [self.store_edit, self.store_button]),
            collapsible("Keys and gestures", [self.help]),
        ]
        for section in sections:
            self.inner.layout().addWidget(section)
        self.inner.layout().addStretch(1)
        self._sections = sections
        self._set_tooltips()
        compact(self.inner)

    def _set_tooltips(self) -> None:
        k = {name: KEYS[name].key for name in KEYS}
        tooltips(
            {
                self.image_combo: "The image to segment (chosen for you when there is one).",
                self.labels_combo: "The labels layer that receives committed instances.",
                self.new_labels_button: "Add an empty labels layer the size of the image and make it the target.",
                self.category_combo: "Category of the next committed instance (add categories in the Instances tab).",
                self.commit_button: f"Commit the candidate as a new instance, reviewed by you ({k['commit']}).",
                self.clear_button: f"Drop the prompts and the candidate ({k['clear']}).",
                self.next_button: f"Show the next candidate mask SAM 2 proposed ({k['next_candidate']}).",
                self.segment_button: f"Segment again from the current prompts ({k['segment']}).",
                self.in_front_check: "Commit in front: the new instance may cover instances committed before.",
                self.amodal_check: "The mask is the whole outline of an object lying behind others (amodal rule).",
                self.accept_button: f"Accept the selected pre-label as it is ({k['accept']}).",
                self.reject_button: f"Reject the selected pre-label: its pixels are cleared ({k['reject']}).",
                self.refine_button: "Re-segment the selected instance from its own mask plus your clicks.",
                self.outline_button: "Use the candidate (a box around the whole object) as the selected instance's outline.",
                self.negative_check: f"Clicks add negative points (Shift+click always does; {k['toggle_polarity']}).",
                self.backend_combo: "sam2: SAM 2 (needs a checkpoint); classic: no model, works offline.",
                self.model_combo: "SAM 2.1 model size (larger: slower, better).",
                self.checkpoint_edit: "SAM 2 checkpoint file (*.pt).",
                self.device_combo: "Where SAM 2 runs (auto: GPU when there is one).",
                self.store_edit: "Annotation store folder (*.zarr): opened, or created from this layer.",
                self.store_button: "Save every action to the store from now on (crash-safe).",
                self.status: "What the last action did.",
                self.notice: "A store opened read-only: another process holds it.",
                self.help: "The panel's keys (napari > Preferences > Shortcuts lists them too).",
            }
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
        events.renamed.connect(self._refresh_choices)  # as a tab of the tabbed panel, napari does not

    def reset_choices(self, *_: Any) -> None:
        """Re-read every list, keeping the chosen image and labels layers (renamed or not).

        napari calls this on a docked panel when a layer is added, removed or renamed.
        """
        combos = [getattr(self, name) for name in ("image_combo", "labels_combo") if hasattr(self, name)]
        reset_keeping(super().reset_choices, combos)

    def _refresh_choices(self, *_: Any) -> None:
        self.reset_choices()

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
        layer.mouse_drag_callbacks.insert(0, self._on_press)
        layer.mouse_pan = False  # a drag draws a box; the wheel zooms, Space + drag pans
        layer.events.mode.connect(lambda *_: _no_drag_pan(layer))
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
            self.category_combo.reset_choices()
            self._binding.changed.connect(self._show_notice, unique=True)
            self._show_notice()
            if self._binding.notice:
                self._say(self._binding.notice, error=True)
        return self._binding.session

    def _show_notice(self) -> None:
        """Keep the binding's persistent notice (a read-only store) in view."""
        notice = "" if self._binding is None else self._binding.notice
        if [c[1] for c in self._category_choices()] != list(self.category_combo.choices):
            self.category_combo.reset_choices()  # the protocol changed (a category was added)
        self.notice.value = notice
        self.notice.native.setStyleSheet("color: #ff6b6b; font-weight: bold;" if notice else "")
        self.notice.visible = bool(notice)

    def _forget_prompter(self) -> None:
        self._prompters.clear()
        self._forget_image()

    def _forget_image(self) -> None:
        self._image_key = None

    def _config(self) -> Any:
        from napari_instseg.core.prompting.lifecycle import PrompterConfig

        chosen = self.checkpoint_edit.value
        checkpoint = str(chosen) if chosen not in (None, Path(""), Path(".")) else None
        return PrompterConfig.from_settings(
            self.backend_combo.value, self.model_combo.value, checkpoint, self.device_combo.value
        )

    def prompter_config(self) -> Any:
        """The prompter settings chosen in this panel (backend, SAM 2 size, checkpoint, device)."""
        return self._config()

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
                progress=(
                    f"Encoding {image_layer.name} ({config.backend})"
                    if self._prompters.current(config) is not None
                    else f"Loading {config.backend} and encoding {image_layer.name}"
                ),
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
        points, labels, box, reported = self._prompts_in_labels_frame()
        if not len(points) and box is None and self._refining is None:
            if reported:
                return
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

    def _prompts_in_labels_frame(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, bool]:
        """Points (y, x) with labels and the last box (xyxy) in the target labels' own pixels
        (a slide window's layer sits at its slide offset). Prompts outside the labels are
        removed from the layers and reported once (the last value says whether)."""
        to_labels = self._binding.layer.world_to_data
        world = [self.points_layer.data_to_world(p) for p in self.points_layer.data]
        points_yx = np.asarray([to_labels(p)[-2:] for p in world], float).reshape(-1, 2)
        points, labels = prompt_from_points(points_yx, self.points_layer.features.get("positive"))
        height, width = self.session.shape_yx
        inside = (points[:, 0] >= 0) & (points[:, 0] < height) & (points[:, 1] >= 0) & (points[:, 1] < width)
        problems = []
        if not inside.all():
            bad = points[~inside]
            problems.append(
                f"{len(bad)} point(s) outside the image (height {height}, width {width}) removed: "
                + ", ".join(f"(y={y:.0f}, x={x:.0f})" for y, x in bad[:3])
            )
            self._drop_points(~inside)
            points, labels = points[inside], labels[inside]
        box = None
        if len(self.boxes_layer.data):
            corners = np.asarray([to_labels(self.boxes_layer.data_to_world(v))[-2:] for v in self.boxes_layer.data[-1]])
            box = box_from_shape(corners)
            clipped = np.clip(box, 0, [width, height, width, height])
            if clipped[2] - clipped[0] < 1 or clipped[3] - clipped[1] < 1:
                problems.append(
                    f"box {np.round(box).astype(int).tolist()} (x0, y0, x1, y1) lies outside the image; removed"
                )
                with self.boxes_layer.events.data.blocker():
                    self.boxes_layer.data = []
                box = None
            else:
                box = clipped
        if problems:
            self._say("; ".join(problems) + ".", error=True)
        return points, labels, box, bool(problems)

    def _drop_points(self, drop: np.ndarray) -> None:
        layer = self.points_layer
        layer.selected_data = set(np.flatnonzero(drop).tolist())
        layer.remove_selected()  # keeps the features (and their defaults) in step

    def _on_candidates(self, candidates: Any) -> None:
        self._show_candidate()
        scores = ", ".join(f"{s:.2f}" for s in candidates.scores)
        key = KEYS["commit"].key
        message = f"{len(candidates)} candidate(s) from {candidates.source}; scores {scores}. {key} commits."
        candidate = self.session.candidate if self.session is not None else None
        if candidate is not None and candidate.mean() > MOST_OF_IMAGE:
            self._say(
                f"The candidate covers {candidate.mean():.0%} of the image: probably not one object. "
                "Add a negative point (Shift+click) or draw a tighter box.",
                error=True,
            )
            return
        self._say(message)

    def _on_next_candidate(self, *_: Any) -> None:
        if self.session is None or self.session.candidates is None:
            self._say("No candidates yet: segment first.")
            return
        index = self.session.next_candidate()
        self._show_candidate()
        self._say(f"Candidate {index + 1} of {len(self.session.candidates)}.")

    def _ids_under_candidate(self) -> set[int]:
        """Instances the candidate overlaps when it goes in front (only those can vanish)."""
        from napari_instseg.core.edits import bbox_of

        mask = self.session.candidate
        if not self.in_front_check.value or mask is None:
            return set()
        box = bbox_of(mask)
        if box is None:
            return set()
        y0, x0, y1, x1 = box
        crop = self.session.labels_yx[y0:y1, x0:x1]
        return {int(i) for i in np.unique(crop[mask[y0:y1, x0:x1]])} - {0}

    def _report_commit(self, result: Any, under: set[int]) -> None:
        """Say what the commit did; name instances it covered completely (they keep their row
        with 0 px, flagged in the Instances table; undo brings them back)."""
        labels = self.session.labels_yx
        hidden = sorted(i for i in under if not (labels == i).any())
        skipped = f", {result.skipped_px} px under other instances kept" if result.skipped_px else ""
        message = f"Committed instance {result.instance_id} ({result.painted_px} px{skipped})."
        if hidden:
            message += (
                f" It covers instance(s) {', '.join(map(str, hidden))} completely: they have 0 px now"
                f" (flagged in the Instances table; {KEYS['undo'].key} undoes)."
            )
        self._say(message, error=bool(hidden))

    def _on_commit(self, *_: Any) -> Any:
        from napari_instseg.core.errors import InstsegError

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
                under = self._ids_under_candidate()
                result = self._binding.run(
                    "commit",
                    category=self.category_combo.value,
                    in_front=self.in_front_check.value,
                    amodal=self.amodal_check.value,
                    reviewed=True,
                )
                self._binding.layer.selected_label = result.instance_id
                self._report_commit(result, under)
        except InstsegError as exc:
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
        from napari_instseg.core.errors import InstsegError

        session = self._bind_session()
        selected = int(self._binding.layer.selected_label) if self._binding is not None else 0
        if session is None or session.candidate is None or selected not in session.table.index:
            self._say("Select an instance and segment its whole outline (a box around the whole object) first.")
            return
        try:
            self._binding.run("set_amodal", selected, session.candidate)
        except InstsegError as exc:
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
    def _on_press(self, layer: Any, event: Any) -> Any:
        """Mouse press on the prompt layer: remember Shift (a negative point); a drag draws a
        box prompt (shown as it is drawn) instead of a point."""
        self._shift_down = "Shift" in [getattr(k, "name", str(k)) for k in getattr(event, "modifiers", ())]
        start_world, start_px = np.asarray(event.position, float), np.asarray(event.pos, float)
        self._dragged_box = False
        yield
        while event.type == "mouse_move":
            if np.linalg.norm(np.asarray(event.pos, float) - start_px) > DRAG_PX:
                self._dragged_box = True
                event.handled = True
                self._show_box(start_world, np.asarray(event.position, float))
            yield
        if self._dragged_box:
            self._show_box(start_world, np.asarray(event.position, float))
            self._on_segment()

    def _show_box(self, corner_a: np.ndarray, corner_b: np.ndarray) -> None:
        (y0, x0), (y1, x1) = corner_a[-2:], corner_b[-2:]
        rectangle = np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]], float)
        with self.boxes_layer.events.data.blocker():
            self.boxes_layer.data = [np.array([self.boxes_layer.world_to_data(v)[-2:] for v in rectangle])]

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
        from napari_instseg.core.errors import InstsegError

        session = self._bind_session()
        if session is None:
            self._say("Choose a target labels layer first.")
            return
        selected = int(self._binding.layer.selected_label)
        try:
            outcome = self._binding.run(action, selected) or "rejected"
        except InstsegError as exc:
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
        if self._binding is not None:  # a slide window's labels sit at their slide offset
            self.viewer.layers[CANDIDATE_NAME].translate = self._binding.layer.translate
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


def _no_drag_pan(layer: Any) -> None:
    """In add mode a drag on the prompt layer draws a box, so it must not pan the view."""
    if str(layer.mode) == "add":
        layer.mouse_pan = False


def _pixels(layer: Any, region: Any) -> np.ndarray:
    """An image layer's pixels, or (for a slide window) those of the window at level 0."""
    level0 = layer.data[0] if layer.multiscale else layer.data
    if region is None:
        return np.asarray(level0)
    y0, x0, y1, x1 = (int(v) for v in region)
    return np.asarray(level0[y0:y1, x0:x1])
