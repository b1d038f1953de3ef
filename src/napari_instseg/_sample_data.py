"""napari sample data: a real IHC tissue tile and synthetic overlapping cells."""

from __future__ import annotations

from typing import Any

__all__ = ["ihc_tile", "overlapping_cells"]

LayerData = tuple[Any, dict[str, Any], str]


def ihc_tile() -> list[LayerData]:
    """scikit-image's bundled immunohistochemistry tile (512 x 512 RGB, real tissue)."""
    from skimage import data

    return [(data.immunohistochemistry(), {"name": "IHC tile", "rgb": True}, "image")]


def overlapping_cells() -> list[LayerData]:
    """Synthetic overlapping cells: the image, and visible labels whose features carry the
    ground-truth z-order, occluded fraction and occlusion tier."""
    from napari_instseg._adapters import labels_layer_kwargs
    from napari_instseg.core.synthetic import overlapping_cells as make

    sample = make()
    labels_kwargs = labels_layer_kwargs("overlapping cells labels", sample.table, sample.protocol)
    return [
        (sample.image_yx, {"name": "overlapping cells"}, "image"),
        (sample.labels_yx, labels_kwargs, "labels"),
    ]
