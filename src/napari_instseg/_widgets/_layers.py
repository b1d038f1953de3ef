"""Layer choices shared by the dock widgets."""

from __future__ import annotations

from typing import Any

__all__ = ["image_layers", "labels_layers", "preselect"]


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
    """Choose a layer in an empty layer combo when there is one to choose: the only one, or
    the most recently added (napari lists layers bottom to top)."""
    if combo.value is not None:
        return
    layers = [value for value in combo.choices if value is not None]
    if layers:
        combo.value = layers[-1]
