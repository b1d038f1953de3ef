"""napari reader: COCO instances JSON -> Labels layers with features (+ the image if found)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

__all__ = ["get_reader"]

_PEEK_BYTES = 1 << 16

LayerData = tuple[Any, dict[str, Any], str]


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """Return :func:`read_coco` when ``path`` looks like a COCO instances JSON, else None.

    Only the first 64 KiB are peeked at; a path this reader does not handle gets None, never
    an exception.
    """
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    if not str(path).lower().endswith(".json") or not os.path.isfile(path):
        return None
    try:
        with open(path, "rb") as handle:
            head = handle.read(_PEEK_BYTES)
    except OSError:
        return None
    if b'"annotations"' not in head and b'"images"' not in head:
        return None
    return read_coco


def read_coco(path: str | list[str]) -> list[LayerData]:
    """Read a COCO file: per image, the image (when found beside the JSON) and its labels."""
    from napari_instseg._adapters import labels_layer_kwargs, rgb_or_grey
    from napari_instseg.core.coco import import_coco
    from napari_instseg.core.io import read_image

    path = path[0] if isinstance(path, list) else path
    folder = Path(path).parent
    imported = import_coco(path)
    layers: list[LayerData] = []
    for item in imported.images:
        file_name = str(item.image.get("file_name", ""))
        stem = Path(file_name).stem or f"image {item.image['id']}"
        image_path = folder / file_name
        if file_name and image_path.is_file():
            image = read_image(image_path)
            layers.append((image, {"name": stem, **rgb_or_grey(image)}, "image"))
        kwargs = labels_layer_kwargs(f"{stem} labels", item.table, imported.protocol, item.image)
        layers.append((item.labels_yx, kwargs, "labels"))
    return layers
