"""napari readers: COCO instances JSON, and annotation stores (``*.zarr``) -> Labels layers
with features (+ the image when it is found beside the file)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["get_reader"]

_PEEK_BYTES = 1 << 16

LayerData = tuple[Any, dict[str, Any], str]


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """Return :func:`read_store` for an annotation store, :func:`read_coco` when ``path``
    looks like a COCO instances JSON, else None.

    Only the first 64 KiB are peeked at; a path this reader does not handle gets None, never
    an exception.
    """
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    if os.path.isdir(path):
        from napari_instseg.core.store import is_store

        if is_store(path):
            return read_store
        return read_slide if _has_multiscales(path) else None
    if str(path).lower().endswith((".ome.tif", ".ome.tiff", ".svs")) and os.path.isfile(path):
        return read_slide
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


def _has_multiscales(path: str) -> bool:
    """True for an OME-Zarr folder (peeks at its metadata, never at pixels)."""
    for name in ("zarr.json", ".zattrs"):
        meta = Path(path) / name
        if meta.is_file():
            try:
                text = meta.read_text()
            except OSError:
                return False
            return '"multiscales"' in text
    return False


def read_slide(path: str | list[str]) -> list[LayerData]:
    """A slide pyramid as a lazy multiscale image layer (no level is read whole)."""
    from napari_instseg.core.slide import open_slide

    path = path[0] if isinstance(path, list) else path
    slide = open_slide(path)
    metadata = {"instseg_slide": {"source": slide.source, "mpp": slide.mpp, "shape_yx": list(slide.shape_yx)}}
    kwargs = {"name": Path(path).name.split(".")[0], "multiscale": True, "rgb": slide.rgb, "metadata": metadata}
    return [(slide.napari_levels(), kwargs, "image")]


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


def read_store(path: str | list[str]) -> list[LayerData]:
    """Read an annotation store: its labels with the instance table as features (and the image
    when it lies beside the store). Opening the layer's session saves to the store again."""
    from napari_instseg._adapters import STORE_KEY, labels_layer_kwargs, rgb_or_grey
    from napari_instseg.core.io import read_image
    from napari_instseg.core.store import AnnotationStore

    path = path[0] if isinstance(path, list) else path
    store = AnnotationStore.open(path, read_only=True)
    layers: list[LayerData] = []
    file_name = str(store.image.get("file_name", ""))
    image_path = Path(path).parent / file_name
    if file_name and image_path.is_file():
        image = read_image(image_path)
        layers.append((image, {"name": Path(file_name).stem, **rgb_or_grey(image)}, "image"))
    kwargs = labels_layer_kwargs(f"{Path(path).stem} labels", store.table, store.protocol, store.image)
    kwargs["metadata"][STORE_KEY] = str(Path(path).resolve())
    layers.append((store.read_labels(), kwargs, "labels"))
    return layers
