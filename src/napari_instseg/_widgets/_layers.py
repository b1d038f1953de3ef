"""Layer choices shared by the dock widgets."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["PROJECT_IMAGE_KEY", "image_layers", "labels_layers", "preselect", "reset_keeping"]

PROJECT_IMAGE_KEY = "instseg_project_image"
"""Image-layer metadata key marking the Project panel's image layer: the other panels follow it
from one project image to the next."""


def labels_layers(viewer: Any, exclude: tuple[str, ...] = ()) -> list[tuple[str, Any]]:
    """(name, layer) of the viewer's editable (single-scale) Labels layers, ``exclude`` left out."""
    from napari.layers import Labels

    return [
        (layer.name, layer)
        for layer in viewer.layers
        if isinstance(layer, Labels) and not layer.multiscale and layer.name not in exclude
    ]


def image_layers(viewer: Any) -> list[tuple[str, Any]]:
    """(name, layer) of the viewer's Image layers (single- or multiscale)."""
    from napari.layers import Image

    return [(layer.name, layer) for layer in viewer.layers if isinstance(layer, Image)]


def preselect(combo: Any) -> None:
    """Choose a layer in an empty layer combo when there is one to choose: the Project panel's
    image, else the only one, or the most recently added (napari lists layers bottom to top)."""
    if combo.value is not None:
        return
    layers = [value for value in combo.choices if value is not None]
    project = [layer for layer in layers if getattr(layer, "metadata", {}).get(PROJECT_IMAGE_KEY)]
    if project or layers:
        combo.value = (project or layers)[-1]


def reset_keeping(reset: Callable[[], None], combos: Iterable[Any]) -> None:
    """Call ``reset`` (re-read the choices) and keep the layer each layer combo held.

    magicgui keys a combo's choices by their names: after a layer is renamed (the Project panel
    names its image layer after the image shown) a plain reset drops the combo to no layer.
    Here a layer still in the viewer stays chosen, renamed or not; a combo whose layer was
    removed takes the layer :func:`preselect` offers (the Project panel's new image).
    """
    kept = [(combo, combo.value) for combo in combos]
    reset()
    for combo, layer in kept:
        if layer is not None and combo.value is not layer and any(c is layer for c in combo.choices):
            combo.value = layer
        preselect(combo)
