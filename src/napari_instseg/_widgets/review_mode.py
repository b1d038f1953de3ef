"""Dock widget "Review pre-labels": a keyboard pass over the pre-labels of a labels layer.

Start, and the view zooms to the first pre-label not yet reviewed. One key accepts it, one
rejects it (either moves on to the next at once), one starts an edit (napari's paint tool on
the instance) and one finishes it (the edit is recorded and the instance is accepted as
``corrected`` with its IoU to the proposal). "37 / 348 reviewed" shows the progress; the
pass remembers where it was (in the layer's metadata, so also after closing the panel) and
works on a slide's working window (the layer sits at its slide offset).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import ComboBox, Container, Label, PushButton

from napari_instseg._widgets._binding import layer_session
from napari_instseg._widgets._keys import KEYS, help_text, offer, withdraw
from napari_instseg._widgets._layers import labels_layers, preselect
from napari_instseg._widgets._layout import DockedScrolls, collapsible, compact, tooltips

if TYPE_CHECKING:
    import napari

__all__ = ["HIGHLIGHT_LAYER", "POSITION_KEY", "REVIEW_ACTIONS", "PrelabelReviewWidget"]

REVIEW_ACTIONS = ("accept", "reject", "edit", "finish", "next_item", "previous_item")
"""The plugin actions (see :mod:`._keys`) the review mode answers while it runs."""

POSITION_KEY = "instseg_review_position"
"""Labels-layer metadata: the instance id the review pass was at."""

HIGHLIGHT_LAYER = "review: current pre-label"
"""The Shapes layer outlining the pre-label in view (removed when the pass stops)."""

HIGHLIGHT_PX = 2.0
"""Width of that outline on screen, in canvas pixels."""

from napari_instseg.core.prompting.registry import MODEL_SOURCES  # noqa: E402


class PrelabelReviewWidget(DockedScrolls, Container):  # type: ignore[type-arg]
    """Review the pre-labels of a labels layer, one key per decision.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
        The viewer (napari injects it).
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True, scrollable=True)
        self.viewer = napari_viewer
        self.current: int | None = None
        self.editing = False
        self._binding: Any = None
        self._handlers = {name: getattr(self, f"_on_{name}") for name in REVIEW_ACTIONS}
        self.running = False
        self.labels_combo = ComboBox(label="labels", choices=self._labels_layers, nullable=True)
        self.start_button = PushButton(text="Start review")
        self.stop_button = PushButton(text="Stop")
        self.progress = Label(value="")
        self.item_label = Label(value="")
        self.buttons = {name: PushButton(text=name.split("_")[0].capitalize()) for name in REVIEW_ACTIONS}
        self.status = Label(value="")
        self.help = Label(value=help_text(list(REVIEW_ACTIONS)))
        self.extend(
            [
                self.labels_combo,
                Container(widgets=[self.start_button, self.stop_button], layout="horizontal", labels=False),
                self.progress,
                self.item_label,
                Container(widgets=[self.buttons["accept"], self.buttons["reject"]], layout="horizontal", labels=False),
                Container(widgets=[self.buttons["edit"], self.buttons["finish"]], layout="horizontal", labels=False),
                Container(
                    widgets=[self.buttons["previous_item"], self.buttons["next_item"]],
                    layout="horizontal",
                    labels=False,
                ),
                self.status,
            ]
        )
        self.inner.layout().addWidget(collapsible("Keys", [self.help]))
        self.inner.layout().addStretch(1)
        self.start_button.changed.connect(lambda *_: self.start())
        self.stop_button.changed.connect(lambda *_: self.stop())
        for name, button in self.buttons.items():
            button.changed.connect(lambda *_, name=name: self._handlers[name]())
        self.viewer.layers.events.inserted.connect(self._refresh_choices)
        self.viewer.layers.events.removed.connect(self._refresh_choices)
        self._refresh_choices()
        tooltips(
            {
                self.labels_combo: "The labels layer whose pre-labels are reviewed.",
                self.start_button: "Start, or resume where the pass was, at the next pre-label to review.",
                self.stop_button: "Stop the pass (the keys go back to the Prompt panel).",
                self.progress: "Reviewed pre-labels of this layer.",
                self.item_label: "The pre-label in view.",
                self.status: "What the last decision did.",
                self.help: "The review keys.",
                **{button: f"{KEYS[name].description} ({KEYS[name].key})." for name, button in self.buttons.items()},
            }
        )
        compact(self.inner)

    def _labels_layers(self, *_: Any) -> list[tuple[str, Any]]:
        return labels_layers(self.viewer, exclude=("candidate", "amodal outline"))

    def _refresh_choices(self, *_: Any) -> None:
        self.labels_combo.reset_choices()
        preselect(self.labels_combo)

    # -- the pass -------------------------------------------------------------------------------
    @property
    def session(self) -> Any:
        """The session of the layer under review (None before :meth:`start`)."""
        return None if self._binding is None else self._binding.session

    def items(self) -> list[int]:
        """Instance ids in the pass: model pre-labels with pixels in this layer, best model
        score first (as ``qa`` ranks them and the automatic mode commits them), then by id;
        those without a score last, by id.

        Reviewed ones stay in the list (the count reads "37 / 348", its total stable while
        reviewing): a model instance is in the pass while it is a pre-label, has a proposal,
        or was reviewed against one (``prelabel_iou`` set).
        """
        from napari_instseg.core.commit_rules import model_scores

        session = self.session
        table = session.table
        model = table[table["source"].isin(MODEL_SOURCES)]
        reviewed = model["prelabel_iou"].notna().to_numpy()
        pending = (model["review"] == "pre-label").to_numpy()
        candidates = [
            int(i)
            for i, done, waiting in zip(model.index, reviewed, pending, strict=True)
            if done or waiting or int(i) in session.prelabels
        ]
        present = set(np.unique(session.labels_yx).tolist())
        scores = model_scores(table, session.prelabels)
        kept = [i for i in candidates if i in present or table.at[i, "review"] == "rejected"]
        return sorted(kept, key=lambda i: (0, -scores[i], i) if i in scores else (1, 0.0, i))

    def reviewed(self, items: list[int]) -> int:
        """How many of ``items`` are reviewed (accepted, corrected or rejected)."""
        review = self.session.table["review"]
        return sum(1 for i in items if review.get(i) != "pre-label")

    def start(self) -> None:
        """Start (or resume) the pass on the chosen layer at the first pre-label not reviewed."""
        layer = self.labels_combo.value
        if layer is None:
            self._say("Choose a labels layer with pre-labels.", error=True)
            return
        self._binding = layer_session(layer)
        if not self.running:
            offer(self.viewer, self._handlers)
            self.running = True
        self.go(self._next_pending(int(layer.metadata.get(POSITION_KEY, 0)), inclusive=True))

    def stop(self) -> None:
        """Stop the pass (accept / reject keys go back to the Prompt panel)."""
        if self.editing:
            self._on_finish()
        if self.running:
            withdraw(self.viewer, self._handlers)
            self.running = False
        if HIGHLIGHT_LAYER in self.viewer.layers:
            self.viewer.layers.remove(HIGHLIGHT_LAYER)
        self._say("Review stopped; Start resumes where it was.")

    def _next_pending(self, after: int, *, inclusive: bool = False) -> int | None:
        """The first pre-label still pending after ``after`` in the pass's order (or at it,
        ``inclusive``), else the first pending one; None when none is left."""
        items = self.items()
        review = self.session.table["review"]
        start = items.index(after) + (0 if inclusive else 1) if after in items else 0
        pending = [i for i in items if review.get(i) == "pre-label"]
        later = [i for i in items[start:] if review.get(i) == "pre-label"]
        chosen = later or pending
        return chosen[0] if chosen else None

    def go(self, instance_id: int | None) -> None:
        """Show ``instance_id``: select it, zoom to it, say where the pass is."""
        items = self.items()
        done = self.reviewed(items)
        self.progress.value = f"{done} / {len(items)} reviewed"
        self.current = instance_id
        layer = self._binding.layer
        if instance_id is None:
            self.item_label.value = "Every pre-label is reviewed." if items else "This layer has no pre-labels."
            self._highlight(None)
            return
        layer.metadata = {**layer.metadata, POSITION_KEY: int(instance_id)}
        layer.selected_label = instance_id
        self._zoom_to(instance_id)
        self._highlight(instance_id)
        row = self.session.table.loc[instance_id]
        self.item_label.value = f"Instance {instance_id} ({row['source']}): {row['review']}"

    def _zoom_to(self, instance_id: int) -> None:
        """Centre the view on the instance (a quarter of the canvas high), kept inside the
        image where the image is larger than the view (no black band at an image edge)."""
        from napari_instseg._widgets.instances import viewer_camera

        ys, xs = np.nonzero(self.session.labels_yx == instance_id)
        if not ys.size:
            return
        layer = self._binding.layer
        y0, x0 = layer.data_to_world((float(ys.min()), float(xs.min())))[-2:]
        y1, x1 = layer.data_to_world((float(ys.max() + 1), float(xs.max() + 1)))[-2:]
        camera = viewer_camera(self.viewer)
        canvas_hw = self._canvas_hw()
        size = max(y1 - y0, x1 - x0, 1.0)
        zoom = float(np.clip(min(canvas_hw) / (4.0 * size), 0.05, 16.0))
        camera.zoom = zoom
        camera.center = self._clamped_center(((y0 + y1) / 2, (x0 + x1) / 2), zoom, canvas_hw)

    def _canvas_hw(self) -> tuple[float, float]:
        """(height, width) of the canvas in screen pixels (800 x 800 before it is shown)."""
        size = getattr(getattr(self.viewer, "canvas", None), "size", None) or (800, 800)
        height, width = float(size[0]), float(size[1])
        return (height, width) if height > 1 and width > 1 else (800.0, 800.0)

    def _clamped_center(
        self, center_yx: tuple[float, float], zoom: float, canvas_hw: tuple[float, float]
    ) -> tuple[float, float]:
        """``center_yx`` moved so that the view (``canvas_hw / zoom`` world units) stays inside
        the images' and labels' extent; an axis where the extent is smaller than the view is
        centred."""
        from napari.layers import Image, Labels

        boxes = [
            np.asarray(layer.extent.world, dtype=float)[:, -2:]
            for layer in self.viewer.layers
            if isinstance(layer, Image | Labels)
        ]
        if not boxes:
            return center_yx
        extent = np.stack([np.min([b[0] for b in boxes], axis=0), np.max([b[1] for b in boxes], axis=0)])
        out = []
        for axis in range(2):
            low, high = extent[0, axis], extent[1, axis]
            half = canvas_hw[axis] / (2.0 * zoom)
            if high - low >= 2 * half:
                out.append(float(np.clip(center_yx[axis], low + half, high - half)))
            else:
                out.append(float((low + high) / 2))
        return (out[0], out[1])

    def _highlight(self, instance_id: int | None) -> None:
        """Outline ``instance_id`` (its contour, in a Shapes layer above the labels); None
        clears the outline. The active layer stays as it was."""
        from skimage.measure import find_contours

        polygons: list[np.ndarray] = []
        if instance_id is not None:
            mask = self.session.labels_yx == instance_id
            rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
            if rows.size:
                y0, x0 = int(rows[0]), int(cols[0])
                crop = np.pad(mask[y0 : rows[-1] + 1, x0 : cols[-1] + 1], 1)
                polygons = [
                    c + np.array([y0 - 1, x0 - 1]) for c in find_contours(crop.astype(np.uint8), 0.5) if len(c) > 2
                ]
        self._outline_layer(polygons)

    def _outline_layer(self, polygons: list[np.ndarray]) -> None:
        from napari_instseg._widgets.instances import viewer_camera

        layers = self.viewer.layers
        if HIGHLIGHT_LAYER not in layers:
            if not polygons:
                return
            active = layers.selection.active
            self.viewer.add_shapes(name=HIGHLIGHT_LAYER, edge_color="yellow", face_color="transparent")
            layers.selection.active = active
        shapes = layers[HIGHLIGHT_LAYER]
        labels = self._binding.layer
        shapes.translate, shapes.scale = labels.translate, labels.scale
        shapes.data = []
        if polygons:
            width = HIGHLIGHT_PX / max(float(viewer_camera(self.viewer).zoom), 1e-3)
            shapes.add_polygons(polygons, edge_width=width, edge_color="yellow", face_color="transparent")

    # -- decisions ------------------------------------------------------------------------------
    def _decide(self, action: str) -> None:
        from napari_instseg.core.errors import InstsegError

        if not self.running or self.current is None:
            self._say("Start the review first (or every pre-label is reviewed).", error=True)
            return
        instance_id = self.current
        try:
            outcome = self._binding.run(action, instance_id) or "rejected"
        except InstsegError as exc:
            self._say(str(exc), error=True)
            return
        self._say(f"Instance {instance_id}: {outcome}.")
        self.go(self._next_pending(instance_id))

    def _on_accept(self) -> None:
        self._decide("accept")

    def _on_reject(self) -> None:
        self._decide("reject")

    def _on_edit(self) -> None:
        """Paint the current pre-label with napari's brush (preserving other instances)."""
        if not self.running or self.current is None:
            self._say("Start the review first.", error=True)
            return
        layer = self._binding.layer
        layer.selected_label = self.current
        layer.preserve_labels = True
        self.viewer.layers.selection.active = layer
        layer.mode = "paint"
        self.editing = True
        self._say(f"Paint instance {self.current} (erase with the eraser, E); {KEYS['finish'].key} finishes.")

    def _on_finish(self) -> None:
        """Record the edit, accept the instance (``corrected`` if it changed) and go on."""
        if not self.editing:
            self._say(f"Nothing to finish: {KEYS['edit'].key} starts an edit.", error=True)
            return
        self.editing = False
        layer = self._binding.layer
        layer.mode = "pan_zoom"
        self._binding.flush()
        self._decide("accept")

    def _on_next_item(self) -> None:
        self._step(+1)

    def _on_previous_item(self) -> None:
        self._step(-1)

    def _step(self, direction: int) -> None:
        items = self.items()
        if not self.running or not items:
            self._say("Start the review first.", error=True)
            return
        index = items.index(self.current) if self.current in items else -1
        self.go(items[(index + direction) % len(items)])

    def _say(self, message: str, *, error: bool = False) -> None:
        from napari.utils.notifications import show_info, show_warning

        self.status.value = message
        (show_warning if error else show_info)(message)
