"""Layer choices shared by the dock widgets."""

from __future__ import annotations

from typing import Any

__all__ = ["image_layers", "labels_layers"]


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
