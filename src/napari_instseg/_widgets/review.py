"""Dock widget "QA & review": run the QA report on open layers, then step through its review
queue (zoom to each instance, pass / fail with a reason; every verdict saved at once)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from magicgui.types import FileDialogMode
from magicgui.widgets import ComboBox, Container, FileEdit, Label, LineEdit, ProgressBar, PushButton, Widget

from napari_instseg._adapters import IMAGE_KEY, protocol_from_metadata
from napari_instseg._widgets._keys import KEYS, offer
from napari_instseg._widgets._layers import labels_layers, preselect
from napari_instseg._widgets._layout import DockedScrolls, compact, tooltips
from napari_instseg._widgets._workers import ProgressRun

if TYPE_CHECKING:
    import napari

__all__ = ["ReviewWidget", "fresh_report_dir", "layer_to_coco"]


def fresh_report_dir(outdir: Path) -> Path:
    """``outdir``, or ``outdir-2``, ``outdir-3``... when it already holds a review queue, so a
    second QA run never overwrites the verdicts given in the first."""
    if not (outdir / "review_queue.json").exists():
        return outdir
    n = 2
    while (outdir.parent / f"{outdir.name}-{n}").exists():
        n += 1
    return outdir.parent / f"{outdir.name}-{n}"


REPORT_FILES = ("report.json", "report.html", "summary.md", "review_queue.json", "review_queue.csv")
"""What a QA run writes into its folder."""


def _remove_new_report_files(outdir: Path, before: set[str], existed: bool) -> str:
    """After a cancelled QA run: remove the report files it wrote (each was written whole)
    and its folder when it made it; the files that were there before are left alone."""
    for name in REPORT_FILES:
        if name not in before:
            (outdir / name).unlink(missing_ok=True)
    if not existed and outdir.is_dir() and not any(outdir.iterdir()):
        outdir.rmdir()
        return f" ({outdir} removed)"
    return f" ({outdir} as before)"


def layer_to_coco(layer: Any, image_id: int = 1) -> dict[str, Any]:
    """A Labels layer (data + features + protocol) as a one-image COCO dict."""
    from napari_instseg._adapters import table_from_layer_meta
    from napari_instseg._widgets._closing import flush_layer
    from napari_instseg.core.coco import AnnotatedImage, export_coco

    flush_layer(layer)  # a stroke of the last second counts
    table = table_from_layer_meta({"features": layer.features})
    record = dict(layer.metadata.get(IMAGE_KEY) or {})
    file_name = record.get("file_name") or f"{layer.name}.tif"
    protocol = protocol_from_metadata(layer.metadata, layer.features)
    return export_coco([AnnotatedImage(np.asarray(layer.data), table, file_name, image_id)], protocol).coco


class ReviewWidget(DockedScrolls, Container[Widget]):
    """QA of a candidate Labels layer against a reference one, and the review of its sample.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
        The viewer (napari injects it).
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True, scrollable=True)
        self.viewer = napari_viewer
        self.queue: Any = None
        self.queue_path: Path | None = None
        self.item_index = 0
        self.report: Any = None
        self._keys_offered = False
        self._key_handlers = {
            "accept": self._on_pass,
            "reject": self._on_fail,
            "next_item": self._on_next,
            "previous_item": self._on_previous,
        }
        self.reference_combo = ComboBox(label="reference labels", choices=self._labels_layers, nullable=True)
        self.candidate_combo = ComboBox(label="candidate labels", choices=self._labels_layers, nullable=True)
        self.outdir_edit = FileEdit(
            label="report folder", mode=FileDialogMode.EXISTING_DIRECTORY, value=Path.cwd() / "qa-report"
        )
        self.run_button = PushButton(text="Run QA on these layers")
        self.progress = ProgressBar(label="QA", value=0, min=0, max=1)
        self.cancel_button = PushButton(text="Cancel QA")
        self.qa_run = ProgressRun(self.progress, self.cancel_button, "QA")
        self.queue_edit = FileEdit(
            label="review queue", mode=FileDialogMode.EXISTING_FILE, filter="*.json", nullable=True
        )
        self.load_button = PushButton(text="Load queue")
        self.item_label = Label(value="")
        self.reason_edit = LineEdit(label="reason")
        self.pass_button = PushButton(text="Pass")
        self.fail_button = PushButton(text="Fail")
        self.previous_button = PushButton(text="Previous")
        self.next_button = PushButton(text="Next")
        self.status = Label(value="")
        self.extend(
            [
                self.reference_combo,
                self.candidate_combo,
                self.outdir_edit,
                self.run_button,
                self.progress,
                self.cancel_button,
                self.queue_edit,
                self.load_button,
                self.item_label,
                self.reason_edit,
                self.pass_button,
                self.fail_button,
                self.previous_button,
                self.next_button,
                self.status,
            ]
        )
        self.run_button.changed.connect(self._on_run_qa)
        self.load_button.changed.connect(self._on_load_queue)
        self.pass_button.changed.connect(lambda *_: self._on_verdict("pass"))
        self.fail_button.changed.connect(lambda *_: self._on_verdict("fail"))
        self.previous_button.changed.connect(lambda *_: self.go(self.item_index - 1))
        self.next_button.changed.connect(lambda *_: self.go(self.item_index + 1))
        self.viewer.layers.events.inserted.connect(self._refresh_choices)
        self.viewer.layers.events.removed.connect(self._refresh_choices)
        self._refresh_choices()
        tooltips(
            {
                self.reference_combo: "The reference (final, reviewed) labels.",
                self.candidate_combo: "The labels to evaluate against the reference.",
                self.outdir_edit: "Folder for the report; a new folder when it already holds a review queue.",
                self.run_button: "Mask AP per tier, a stratified review sample and an HTML report (in the background).",
                self.progress: "QA's progress: IoUs, Mask AP per tier, pre-labels, review sample, plots, files.",
                self.cancel_button: "Stop QA between two steps; nothing of the unfinished report is kept.",
                self.queue_edit: "A review_queue.json written by QA.",
                self.load_button: "Load the queue and go to its first item without a verdict.",
                self.item_label: "The queue item in view.",
                self.reason_edit: "Why the item fails (required for Fail).",
                self.pass_button: f"The item passes; saved at once ({KEYS['accept'].key}).",
                self.fail_button: f"The item fails (give a reason); saved at once ({KEYS['reject'].key}).",
                self.previous_button: f"Previous queue item ({KEYS['previous_item'].key}).",
                self.next_button: f"Next queue item ({KEYS['next_item'].key}).",
                self.status: "What the last action did.",
            }
        )
        compact(self.inner)

    def _labels_layers(self, *_: Any) -> list[tuple[str, Any]]:
        return labels_layers(self.viewer)

    def _refresh_choices(self, *_: Any) -> None:
        self.reference_combo.reset_choices()
        self.candidate_combo.reset_choices()
        preselect(self.reference_combo)
        if self.candidate_combo.value is None:  # a second labels layer, not the reference
            others = [v for v in self.candidate_combo.choices if v is not None and v is not self.reference_combo.value]
            if others:
                self.candidate_combo.value = others[-1]

    # -- QA ----------------------------------------------------------------------------------------
    def _on_run_qa(self, *_: Any) -> None:
        from napari_instseg.core.qa.report import run_qa

        if self.qa_run.running:
            self.status.value = "QA is running; Cancel it first."
            return
        reference, candidate = self.reference_combo.value, self.candidate_combo.value
        if reference is None or candidate is None:
            self.status.value = "Choose a reference and a candidate labels layer."
            return
        gt, dt = layer_to_coco(reference), layer_to_coco(candidate)
        chosen = Path(cast("Path", self.outdir_edit.value))  # a directory: one path, never None
        outdir = fresh_report_dir(chosen)
        kept = f" (the earlier report and its verdicts stay in {chosen})" if outdir != chosen else ""
        self.status.value = f"Running QA into {outdir}{kept}..."
        existed = outdir.exists()
        before = {name for name in REPORT_FILES if (outdir / name).exists()}

        def done(report: Any) -> None:
            self.report = report
            overall = report.data["overall"]
            self.status.value = (
                (f"AP {overall['AP']:.3f}, AP50 {overall['AP50']:.3f}; report: {report.html_path}")
                if overall["AP"] is not None
                else f"report: {report.html_path}"
            ) + kept
            self.queue_edit.value = Path(report.queue_paths[0])
            self._on_load_queue()

        def failed(exc: Exception) -> None:
            self.status.value = f"QA failed: {type(exc).__name__}: {exc}"

        def cancelled(exc: Exception) -> None:
            removed = _remove_new_report_files(outdir, before, existed)
            self.status.value = f"QA cancelled ({exc}); nothing kept{removed}."

        self.qa_run.start(run_qa, gt, dt, outdir, on_returned=done, on_error=failed, on_cancelled=cancelled)

    # -- review --------------------------------------------------------------------------------------
    def _on_load_queue(self, *_: Any) -> None:
        from napari_instseg.core.qa.sampling import read_queue

        path = cast("Path | None", self.queue_edit.value)  # mode "r": one path or None
        if path is None or path in (Path(""), Path(".")) or not Path(path).is_file():
            self.status.value = "Choose a review_queue.json."
            return
        self.queue_path = Path(path)
        self.queue = read_queue(self.queue_path)
        pending = np.flatnonzero(self.queue["outcome"].to_numpy() == "")
        if not self._keys_offered:  # Shift+Y pass, Shift+R fail, Shift+Right / Left step
            offer(self.viewer, self._key_handlers)
            self._keys_offered = True
        self.go(int(pending[0]) if pending.size else 0)

    def _on_pass(self) -> None:
        self._on_verdict("pass")

    def _on_fail(self) -> None:
        self._on_verdict("fail")

    def _on_next(self) -> None:
        self.go(self.item_index + 1)

    def _on_previous(self) -> None:
        self.go(self.item_index - 1)

    def go(self, index: int) -> None:
        """Show item ``index``: zoom to its box and select its instance in the labels layer."""
        if self.queue is None or not len(self.queue):
            return
        self.item_index = int(np.clip(index, 0, len(self.queue) - 1))
        item = self.queue.iloc[self.item_index]
        x, y, w, h = (float(v) for v in item["bbox_xywh"])
        layer = self._labels_for(item["file_name"])
        from napari_instseg._widgets.instances import viewer_camera

        camera = viewer_camera(self.viewer)
        camera.center = (y + h / 2, x + w / 2)
        camera.zoom = max(0.5, min(8.0, 300.0 / max(w, h, 1.0)))
        if layer is not None:
            layer.selected_label = int(item["instance_id"])
            layer.show_selected_label = True
        reviewed = int((self.queue["outcome"] != "").sum())
        self.item_label.value = (
            f"item {self.item_index + 1} of {len(self.queue)} ({reviewed} reviewed): ann "
            f"{item['ann_id']}, {item['category']}, {item['occlusion']}, {item['stratum']}"
            + (f" -> {item['outcome']}" if item["outcome"] else "")
        )
        self.reason_edit.value = str(item["reason"] or "")

    def _labels_for(self, file_name: str) -> Any:
        """The layer holding the queue's instances: the queue samples the reference, so the
        reference layer first; another layer only when it alone carries ``file_name``."""
        reference = self.reference_combo.value
        if reference is not None:
            return reference
        for _, layer in self._labels_layers():
            if (layer.metadata.get(IMAGE_KEY) or {}).get("file_name") == file_name:
                return layer
        return None

    def _on_verdict(self, outcome: str) -> None:
        from napari_instseg.core.qa.sampling import write_queue

        if self.queue is None or self.queue_path is None:
            self.status.value = "Load a review queue first."
            return
        if outcome == "fail" and not self.reason_edit.value.strip():
            self.status.value = "Say why it fails (reason)."
            return
        self.queue.loc[self.item_index, "outcome"] = outcome
        self.queue.loc[self.item_index, "reason"] = self.reason_edit.value.strip()
        write_queue(self.queue, self.queue_path.parent, stem=self.queue_path.stem)  # saved at once
        self.status.value = f"ann {self.queue.loc[self.item_index, 'ann_id']}: {outcome}."
        self.go(self.item_index + 1)
