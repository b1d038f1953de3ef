"""Dock widget "Instance Segmentation": every panel of the plugin in one tabbed dock.

Four docks side by side leave the canvas a sliver of the window; one dock with tabs (Prompt,
Instances, Review pre-labels, QA, Slide) keeps the canvas at most of the window's width.
The panels are the same classes napari also offers one by one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qtpy.QtWidgets import QTabWidget

if TYPE_CHECKING:
    import napari

__all__ = ["PREFERRED_WIDTH", "InstanceSegmentationPanel"]

PREFERRED_WIDTH = 360
"""The width the tabbed panel asks for (it works down to its minimum, under 300 px)."""


class InstanceSegmentationPanel(QTabWidget):
    """All the plugin's panels as tabs of one dock.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
        The viewer (napari injects it).
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        from napari_instseg._widgets.instances import InstancesWidget
        from napari_instseg._widgets.prompt import PromptWidget
        from napari_instseg._widgets.review import ReviewWidget
        from napari_instseg._widgets.slide import SlideWidget

        self.viewer = napari_viewer
        self.prompt = PromptWidget(napari_viewer)
        self.instances = InstancesWidget(napari_viewer)
        self.review = ReviewWidget(napari_viewer)
        self.slide = SlideWidget(napari_viewer)
        pages: list[tuple[Any, str, str]] = [
            (self.prompt.root_native_widget, "Prompt", "Click or drag on the image, then commit the candidate."),
            (self.instances, "Instances", "The instance table: select, retag, reorder, undo."),
        ]
        from napari_instseg._widgets import review_mode

        self.review_mode = review_mode.PrelabelReviewWidget(napari_viewer)
        pages.append((self.review_mode.root_native_widget, "Review", "Keyboard pass over the pre-labels."))
        pages += [
            (self.review.root_native_widget, "QA", "Mask AP against a reference, and the QA review queue."),
            (self.slide.root_native_widget, "Slide", "Working windows over a whole slide."),
        ]
        for page, title, tip in pages:
            index = self.addTab(page, title)
            self.setTabToolTip(index, tip)
        self.setToolTip("Instance segmentation: prompt, instances, review, QA, slides.")

    def sizeHint(self) -> Any:
        """At most :data:`PREFERRED_WIDTH` wide: the canvas keeps most of the window."""
        hint = super().sizeHint()
        hint.setWidth(min(hint.width(), PREFERRED_WIDTH))
        return hint
