"""Dock widget "Instances": the instance table of a Labels layer, with review and occlusion tools.

A row per instance (id, category, occlusion tier, visible fraction, crowd, z-order, source,
review, annotator), filterable by tier, review state and category. Clicking a row selects the
instance and centres the view on it. The selected instance can be retagged (category, tier,
crowd), moved in depth, deleted, or given an amodal outline drawn by painting. Undo / redo
cover every action. Everything goes through the layer's shared annotation session, so
napari's own features table shows the same values.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.types import FileDialogMode
from magicgui.widgets import ComboBox, Container, FileEdit, Label, LineEdit, PushButton
from qtpy.QtWidgets import QAbstractItemView, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget

from napari_instseg._widgets._binding import layer_session
from napari_instseg._widgets._keys import KEYS, help_text, offer
from napari_instseg._widgets._layers import labels_layers, preselect
from napari_instseg._widgets._layout import collapsible, compact, scrolled, tooltips
from napari_instseg.core.protocol import OCCLUSION_TIERS

if TYPE_CHECKING:
    import napari

__all__ = ["INSTANCE_SHORTCUTS", "TABLE_COLUMNS", "InstancesWidget"]

TABLE_COLUMNS = ("id", "px", "category", "occlusion", "visible", "crowd", "z", "source", "review", "annotator")
OUTLINE_LAYER = "amodal outline"
ALL = "all"

INSTANCE_ACTIONS = (
    "bring_forward",
    "send_backward",
    "tier_none",
    "tier_partial",
    "tier_heavy",
    "toggle_crowd",
    "undo",
    "redo",
)
"""The plugin actions (see :mod:`._keys`) this panel answers, whatever layer is active."""

INSTANCE_SHORTCUTS = {KEYS[name].key: (name, KEYS[name].description) for name in INSTANCE_ACTIONS}
"""Key -> (widget action, description), registered through napari's action manager."""

PAGE_ROWS = 200
"""Rows the table shows at once: a slide with 10^6 instances stays responsive (page through)."""

HIDDEN_COLOR = "#d62728"
"""Row colour of an instance with no visible pixel left (covered by one put in front)."""


def _areas(labels_yx: np.ndarray) -> dict[int, int]:
    """Pixels per instance id (bincount when ids are small: one pass, no sort)."""
    top = int(labels_yx.max()) if labels_yx.size else 0
    if top < 4 * labels_yx.size + 1_000_000:
        counts = np.bincount(labels_yx.ravel(), minlength=top + 1)
        ids = np.flatnonzero(counts)
        return dict(zip(ids.tolist(), counts[ids].tolist(), strict=True))
    ids, counts = np.unique(labels_yx, return_counts=True)
    return dict(zip(ids.tolist(), counts.tolist(), strict=True))


def viewer_camera(viewer: Any) -> Any:
    """The viewer's camera (``viewer.scene.camera`` from napari 0.9, ``viewer.camera`` before)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None and hasattr(scene, "camera") else viewer.camera


class InstancesWidget(QWidget):
    """The instance manager of a Labels layer.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
        The viewer (napari injects it).
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self._binding: Any = None
        self._outline_id: int | None = None
        self._page = 0
        self.labels_combo = ComboBox(label="labels", choices=self._labels_layers, nullable=True)
        self.tier_filter = ComboBox(label="tier", choices=[ALL, *OCCLUSION_TIERS], value=ALL)
        self.review_filter = ComboBox(
            label="review", choices=[ALL, "pre-label", "accepted", "corrected", "rejected"], value=ALL
        )
        self.category_filter = ComboBox(label="category", choices=self._category_filter_choices)
        self.category_combo = ComboBox(label="set category", choices=self._category_choices)
        self.tier_combo = ComboBox(label="set tier", choices=list(OCCLUSION_TIERS))
        buttons = {
            "apply": "Apply category + tier",
            "toggle_crowd": "Crowd",
            "bring_forward": "Forward",
            "send_backward": "Backward",
            "delete": "Delete",
            "undo": "Undo",
            "redo": "Redo",
            "edit_outline": "Paint amodal outline",
            "apply_outline": "Apply outline",
        }
        buttons["prev_page"] = "< Previous"
        buttons["next_page"] = "Next >"
        buttons["load_protocol"] = "Load protocol"
        buttons["add_category"] = "Add category"
        self.buttons = {name: PushButton(text=text) for name, text in buttons.items()}
        from napari_instseg._widgets._settings import remembered_annotator

        self.annotator_edit = LineEdit(label="annotator", value=remembered_annotator())
        self.protocol_edit = FileEdit(
            label="protocol", mode=FileDialogMode.EXISTING_FILE, filter="*.json", nullable=True
        )
        self.new_category_edit = LineEdit(label="new category")
        self.new_color_edit = LineEdit(label="colour", value="#1f77b4")
        self.status = Label(value="")
        self.page_label = Label(value="")
        self.notice = Label(value="")
        self.help = Label(value=help_text(list(INSTANCE_ACTIONS)))
        rows = [
            Container(
                widgets=[self.buttons[n] for n in ("toggle_crowd", "bring_forward", "send_backward")],
                layout="horizontal",
                labels=False,
            ),
            Container(widgets=[self.buttons[n] for n in ("delete", "undo", "redo")], layout="horizontal", labels=False),
        ]
        pager_parts: list[Any] = [self.buttons["prev_page"], self.page_label, self.buttons["next_page"]]
        pager = Container(
            widgets=pager_parts,
            layout="horizontal",
            labels=False,
        )
        self.controls = Container(widgets=[self.notice, self.labels_combo, *rows, self.status, pager])
        self.notice.visible = False
        self.sections = [
            collapsible("Filter rows", [self.tier_filter, self.review_filter, self.category_filter]),
            collapsible("Set category and tier", [self.category_combo, self.tier_combo, self.buttons["apply"]]),
            collapsible("Amodal outline", [self.buttons["edit_outline"], self.buttons["apply_outline"]]),
            collapsible(
                "Categories and annotator",
                [
                    self.annotator_edit,
                    self.protocol_edit,
                    self.buttons["load_protocol"],
                    self.new_category_edit,
                    self.new_color_edit,
                    self.buttons["add_category"],
                ],
            ),
            collapsible("Keys", [self.help]),
        ]
        self.table = QTableWidget(0, len(TABLE_COLUMNS))
        self.table.setHorizontalHeaderLabels(list(TABLE_COLUMNS))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        header = self.table.verticalHeader()
        if header is not None:
            header.setVisible(False)
            header.setDefaultSectionSize(22)
        self.table.setMinimumHeight(12 * 22)  # at least ten rows, always
        content = QWidget()
        layout = QVBoxLayout(content)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.controls.native)
        for section in self.sections:
            layout.addWidget(section)
        layout.addWidget(self.table, 1)
        self._set_tooltips()
        compact(content)
        outer = QVBoxLayout(self)  # docked above or below other panels, it scrolls instead of growing
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scrolled(content))

    def _set_tooltips(self) -> None:
        k = {name: KEYS[name].key for name in KEYS}
        b = self.buttons
        tooltips(
            {
                self.labels_combo: "The labels layer whose instances are listed.",
                self.tier_filter: "Show only instances of this occlusion tier.",
                self.review_filter: "Show only instances in this review state.",
                self.category_filter: "Show only instances of this category.",
                self.category_combo: "Category to set on the selected instance.",
                self.tier_combo: "Occlusion tier to set on the selected instance (marked as set by hand).",
                b["apply"]: "Set the category and tier above on the selected instance.",
                b["toggle_crowd"]: f"Crowd (a group of objects) on / off ({k['toggle_crowd']}).",
                b["bring_forward"]: f"Bring the selected instance one step nearer ({k['bring_forward']}).",
                b["send_backward"]: f"Send the selected instance one step back ({k['send_backward']}).",
                b["delete"]: "Delete the selected instance (undoable).",
                b["undo"]: f"Undo the last action ({k['undo']}).",
                b["redo"]: f"Redo ({k['redo']}).",
                b["edit_outline"]: "Paint the full (amodal) outline of the selected instance in a scratch layer.",
                b["apply_outline"]: "Use the painted outline: the occluded fraction and tier follow.",
                self.annotator_edit: "Your name, written on what you commit and review; remembered next time.",
                self.protocol_edit: "A protocol file (JSON): categories, occlusion rule, tiers, QA rates.",
                b["load_protocol"]: "Use the protocol file for this layer (and its store).",
                self.new_category_edit: "Name of a category to add.",
                self.new_color_edit: "Its display colour, #rrggbb.",
                b["add_category"]: "Add the category (next free id) to this layer's protocol.",
                self.status: "What the last action did.",
                self.page_label: "Which rows of the filtered table are shown, and counts by tier and review state.",
                b["prev_page"]: f"Show the previous {PAGE_ROWS} rows.",
                b["next_page"]: f"Show the next {PAGE_ROWS} rows.",
                self.notice: "A store opened read-only: another process holds it.",
                self.help: "The panel's keys.",
                self.table: "One row per instance; click a row to select and centre it. Red: no pixel left.",
            }
        )
        self._connect()
        offer(self.viewer, {name: getattr(self, f"_on_{name}") for name in INSTANCE_ACTIONS})
        self._refresh_choices()

    # -- wiring ----------------------------------------------------------------------------------
    def _connect(self) -> None:
        self.viewer.layers.events.inserted.connect(self._refresh_choices)
        self.viewer.layers.events.removed.connect(self._refresh_choices)
        self.labels_combo.changed.connect(lambda *_: self._bind())
        for combo in (self.tier_filter, self.review_filter, self.category_filter):
            combo.changed.connect(lambda *_: self._on_filter())
        self.table.itemSelectionChanged.connect(self._on_row_selected)
        self.annotator_edit.changed.connect(self._on_annotator)
        for name, button in self.buttons.items():
            button.changed.connect(lambda *_, name=name: getattr(self, f"_on_{name}")())

    def _labels_layers(self, *_: Any) -> list[tuple[str, Any]]:
        return labels_layers(self.viewer, exclude=("candidate", OUTLINE_LAYER))

    def _category_choices(self, *_: Any) -> list[tuple[str, int]]:
        if self.session is None:
            return []
        return [(f"{c.name} ({c.id})", c.id) for c in self.session.protocol.categories]

    def _category_filter_choices(self, *_: Any) -> list[tuple[str, Any]]:
        return [(ALL, ALL), *self._category_choices()]

    def _refresh_choices(self, *_: Any) -> None:
        self.labels_combo.reset_choices()
        preselect(self.labels_combo)
        if self.labels_combo.value is not None and self._binding is None:
            self._bind()

    def _bind(self) -> None:
        layer = self.labels_combo.value
        if self._binding is not None:
            self._binding.changed.disconnect(self.refresh)
        self._binding = None if layer is None else layer_session(layer)
        if self._binding is not None:
            self._binding.changed.connect(self.refresh)
            if self.annotator_edit.value.strip():
                self._binding.session.annotator = self.annotator_edit.value.strip()
        self.category_combo.reset_choices()
        self.category_filter.reset_choices()
        self.refresh()

    @property
    def session(self) -> Any:
        """The layer's annotation session (None without a layer)."""
        return None if self._binding is None else self._binding.session

    # -- the table ---------------------------------------------------------------------------------
    def visible_rows(self) -> Any:
        """The instance table after the filters, as shown."""
        table = self.session.table
        if self.tier_filter.value != ALL:
            table = table[table["occlusion"] == self.tier_filter.value]
        if self.review_filter.value != ALL:
            table = table[table["review"] == self.review_filter.value]
        if self.category_filter.value not in (ALL, None):
            table = table[table["category_id"] == self.category_filter.value]
        return table

    def _on_filter(self) -> None:
        self._page = 0
        self.refresh()

    def _on_prev_page(self) -> None:
        self._page = max(0, self._page - 1)
        self.refresh()

    def _on_next_page(self) -> None:
        self._page += 1  # refresh clamps to the last page
        self.refresh()

    @property
    def page(self) -> int:
        """The shown page of the filtered table (0-based, :data:`PAGE_ROWS` rows each)."""
        return self._page

    def refresh(self) -> None:
        """Rebuild the shown page of rows from the session's table (keeping the selection)."""
        selected = self.selected_id()
        self.table.blockSignals(True)
        self.table.setRowCount(0)
        notice = "" if self._binding is None else self._binding.notice
        self.notice.value = notice
        self.notice.native.setStyleSheet("color: #ff6b6b; font-weight: bold;" if notice else "")
        self.notice.visible = bool(notice)
        self._name_next_undo()
        if self.session is None:
            self.page_label.value = ""
        else:
            rows = self.visible_rows()
            n_pages = max(1, -(-len(rows) // PAGE_ROWS))
            self._page = min(max(self._page, 0), n_pages - 1)
            start = self._page * PAGE_ROWS
            page = rows.iloc[start : start + PAGE_ROWS]
            self._fill(page, selected)
            self.buttons["prev_page"].enabled = self._page > 0
            self.buttons["next_page"].enabled = self._page < n_pages - 1
            self.page_label.value = self._page_text(start, len(page), len(rows))
        self.table.blockSignals(False)

    def _name_next_undo(self) -> None:
        """The Undo button's tooltip names what it would undo."""
        what = "" if self._binding is None else self._binding.next_undo()
        key = KEYS["undo"].key
        self.buttons["undo"].native.setToolTip(f"Undo {what} ({key})." if what else f"Nothing to undo ({key}).")

    def _page_text(self, start: int, shown: int, total: int) -> str:
        span = f"rows {start + 1:,}\u2013{start + shown:,} of {total:,}" if shown else f"no rows of {total:,}"
        counts = [", ".join(f"{k} {v:,}" for k, v in self._counts(by).items()) for by in ("occlusion", "review")]
        return f"{span}\n" + " | ".join(c for c in counts if c)

    def _counts(self, by: str) -> dict[Any, int]:
        """Instances per value of ``by`` over the whole layer: from the store when one is
        attached (an indexed query), else from the in-memory table."""
        store = None if self._binding is None else self._binding.store
        if store is not None:
            import sqlite3

            from napari_instseg.core.errors import InstsegError

            try:
                return dict(store.count_instances(by))
            except (InstsegError, sqlite3.Error):  # a closed store: count the table instead
                pass
        counts = self.session.table[by].value_counts(sort=False)
        return {k: int(v) for k, v in sorted(counts.items(), key=lambda kv: str(kv[0]))}

    def _fill(self, page: Any, selected: int | None) -> None:
        """Put one page of rows in the table (a few hundred at most)."""
        from qtpy.QtGui import QColor

        names = {c.id: c.name for c in self.session.protocol.categories}
        areas = _areas(self.session.labels_yx)
        self.table.setRowCount(len(page))
        for r, (instance_id, row) in enumerate(page.iterrows()):
            fraction = row["occluded_fraction"]
            area = int(areas.get(int(instance_id), 0))
            hidden = area == 0 and row["review"] != "rejected"
            values = (
                instance_id,
                f"{area}{' hidden!' if hidden else ''}",
                names.get(int(row["category_id"]), row["category_id"]),
                f"{row['occlusion']}{' (manual)' if row['occlusion_manual'] else ''}",
                "" if np.isnan(fraction) else f"{1 - fraction:.0%}",
                "yes" if row["iscrowd"] else "",
                int(row["z_order"]),
                row["source"],
                row["review"],
                row["annotator"],
            )
            for c, value in enumerate(values):
                item = QTableWidgetItem(str(value))
                if hidden:
                    item.setForeground(QColor(HIDDEN_COLOR))
                    item.setToolTip("No visible pixel left: covered by an instance put in front. Undo, or delete it.")
                self.table.setItem(r, c, item)
            if instance_id == selected:
                self.table.selectRow(r)

    def row_ids(self) -> list[int]:
        """Instance ids of the shown rows, in order."""
        return [int(self._cell(r)) for r in range(self.table.rowCount())]

    def _cell(self, row: int) -> str:
        item = self.table.item(row, 0)
        return "" if item is None else item.text()

    def selected_id(self) -> int | None:
        """The instance of the selected row, or of the layer's selected label."""
        model = self.table.selectionModel()
        rows = model.selectedRows() if model is not None else []
        if rows:
            return int(self._cell(rows[0].row()))
        if self._binding is not None and int(self._binding.layer.selected_label) in self.session.table.index:
            return int(self._binding.layer.selected_label)
        return None

    def select(self, instance_id: int) -> None:
        """Select an instance's row (as a click does), turning to its page when it is on another."""
        if instance_id not in self.row_ids() and self.session is not None:
            position = np.flatnonzero(self.visible_rows().index.to_numpy() == instance_id)
            if position.size:
                self._page = int(position[0]) // PAGE_ROWS
                self.refresh()
        for r, row_id in enumerate(self.row_ids()):
            if row_id == instance_id:
                self.table.selectRow(r)
                return

    def _on_row_selected(self) -> None:
        instance_id = self.selected_id()
        if instance_id is None or self._binding is None:
            return
        layer = self._binding.layer
        layer.selected_label = instance_id
        ys, xs = np.nonzero(self.session.labels_yx == instance_id)
        if ys.size:
            centre = layer.data_to_world((float(ys.mean()), float(xs.mean())))
            viewer_camera(self.viewer).center = tuple(centre)

    # -- actions -------------------------------------------------------------------------------------
    def _act(self, action: str, *args: Any, **kwargs: Any) -> None:
        from napari_instseg.core.errors import InstsegError

        instance_id = self.selected_id()
        if instance_id is None:
            self.status.value = "Select an instance (a row, or pick it in the labels layer)."
            return
        try:
            self._binding.run(action, instance_id, *args, **kwargs)
        except InstsegError as exc:
            self._say(str(exc), error=True)
            return
        self._say(f"Instance {instance_id}: {action.replace('_', ' ')}.")

    def _say(self, message: str, *, error: bool = False) -> None:
        from napari.utils.notifications import show_info, show_warning

        self.status.value = message
        (show_warning if error else show_info)(message)

    def _on_apply(self) -> None:
        self._act("retag", category=self.category_combo.value, occlusion=self.tier_combo.value)

    def _on_tier_none(self) -> None:
        self._act("retag", occlusion="none")

    def _on_tier_partial(self) -> None:
        self._act("retag", occlusion="partial")

    def _on_tier_heavy(self) -> None:
        self._act("retag", occlusion="heavy")

    def _on_toggle_crowd(self) -> None:
        instance_id = self.selected_id()
        crowd = bool(self.session.table.at[instance_id, "iscrowd"]) if instance_id is not None else False
        self._act("retag", iscrowd=not crowd)

    def _on_bring_forward(self) -> None:
        self._act("bring_forward")

    def _on_send_backward(self) -> None:
        self._act("send_backward")

    def _on_delete(self) -> None:
        self._act("delete")

    def _on_undo(self) -> None:
        self._step("undo", "Undid")

    def _on_redo(self) -> None:
        self._step("redo", "Redid")

    def _step(self, action: str, done: str) -> None:
        from napari_instseg.core.errors import InstsegError

        if self._binding is None:
            self._say("Choose a labels layer first.", error=True)
            return
        try:
            edit, warning = self._binding.step(action)
        except InstsegError as exc:
            self._say(str(exc), error=True)
            return
        if warning:  # work of an earlier session: named first, undone on the next undo
            self._say(warning)
            return
        self._say(
            f"{done} {edit.op} of instance(s) {', '.join(map(str, edit.ids))}." if edit else f"Nothing to {action}."
        )

    def _on_annotator(self, name: str) -> None:
        from napari_instseg._widgets._settings import save_setting

        save_setting("annotator", name.strip())
        if self.session is not None:
            self.session.annotator = name.strip()

    def _on_load_protocol(self) -> None:
        from napari_instseg.core.errors import InstsegError
        from napari_instseg.core.protocol import load_protocol

        path = self.protocol_edit.value
        if self._binding is None or path in (None, Path(""), Path(".")):
            self._say("Choose a labels layer and a protocol file.", error=True)
            return
        try:
            self._say(self._binding.set_protocol(load_protocol(str(path))))
        except (InstsegError, OSError) as exc:
            self._say(f"Cannot use {path}: {exc}", error=True)
            return
        self._refresh_categories()

    def _on_add_category(self) -> None:
        import dataclasses

        from napari_instseg.core.errors import InstsegError
        from napari_instseg.core.protocol import Category

        name = self.new_category_edit.value.strip()
        if self._binding is None or not name:
            self._say("Choose a labels layer and give the category a name.", error=True)
            return
        protocol = self.session.protocol
        category = Category(max(protocol.category_ids) + 1, name, "", self.new_color_edit.value.strip() or None)
        try:
            new = dataclasses.replace(protocol, categories=(*protocol.categories, category))
            message = self._binding.set_protocol(new)
        except (InstsegError, ValueError) as exc:
            self._say(f"Category {name!r} not added: {exc}", error=True)
            return
        self._say(f"Category {name!r} (id {category.id}) added. {message}")
        self.new_category_edit.value = ""
        self._refresh_categories()

    def _refresh_categories(self) -> None:
        self.category_combo.reset_choices()
        self.category_filter.reset_choices()
        self.refresh()

    def _on_edit_outline(self) -> None:
        """Open a scratch layer holding the selected instance's outline (or its visible mask) to paint."""
        instance_id = self.selected_id()
        if instance_id is None:
            self.status.value = "Select an instance first."
            return
        session = self.session
        outline = session.amodal.get(instance_id)
        mask = outline.full(session.shape_yx) if outline is not None else session.labels_yx == instance_id
        data = mask.astype(np.uint8)
        if OUTLINE_LAYER in self.viewer.layers:
            self.viewer.layers[OUTLINE_LAYER].data = data
        else:
            self.viewer.add_labels(data, name=OUTLINE_LAYER, opacity=0.5)
        layer = self.viewer.layers[OUTLINE_LAYER]
        layer.selected_label = 1
        layer.mode = "paint"
        self.viewer.layers.selection.active = layer
        self._outline_id = instance_id
        self.status.value = f"Paint the full outline of instance {instance_id}, then 'Apply outline'."

    def _on_apply_outline(self) -> None:
        from napari_instseg.core.errors import InstsegError

        if self._outline_id is None or OUTLINE_LAYER not in self.viewer.layers:
            self.status.value = "Start with 'Paint amodal outline'."
            return
        mask = np.asarray(self.viewer.layers[OUTLINE_LAYER].data) > 0
        try:
            self._binding.run("set_amodal", self._outline_id, mask)
        except InstsegError as exc:
            self.status.value = str(exc)
            return
        self.viewer.layers.remove(OUTLINE_LAYER)
        fraction = self.session.table.loc[self._outline_id, "occluded_fraction"]
        self.status.value = f"Instance {self._outline_id}: outline applied, {fraction:.0%} occluded."
        self._outline_id = None
