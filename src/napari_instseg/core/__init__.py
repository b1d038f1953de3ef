"""The napari-free, Qt-free core of napari-instseg.

Everything here runs in scripts, on dask workers and in tests without a display. It takes
numpy arrays, pandas DataFrames, paths and small frozen dataclasses, and returns the same.
Nothing in this package may import napari, magicgui, qtpy or superqt (a test enforces it),
and nothing imports torch or sam2 before SAM 2 is asked for (``napari-instseg[sam2]``).

The names in ``__all__`` are the public API; they are imported on first use (so
``import napari_instseg.core`` stays cheap). Subpackages: :mod:`~napari_instseg.core.coco`,
:mod:`~napari_instseg.core.prompting`, :mod:`~napari_instseg.core.qa`.
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC: dict[str, str] = {
    # annotation
    "AnnotationSession": "session",
    "CommitError": "records",
    "CommitResult": "records",
    "PrelabelRecord": "records",
    "AnnotationStore": "store",
    "is_store": "store",
    "Edit": "edits",
    "CroppedMask": "edits",
    "apply_edit": "edits",
    "IdAllocator": "instances",
    "empty_table": "instances",
    "validate_table": "instances",
    # rules
    "AnnotationProtocol": "protocol",
    "Category": "protocol",
    "TierThresholds": "protocol",
    "SamplingRates": "protocol",
    "load_protocol": "protocol",
    "paint_order": "occlusion",
    "composite_by_depth": "occlusion",
    "occluded_fraction": "occlusion",
    "occluded_fractions": "occlusion",
    # files
    "read_image": "io",
    "read_labels": "io",
    "write_labels_tiff": "io",
    "read_table_csv": "io",
    "write_table_csv": "io",
    "labels_to_geojson": "geojson",
    "geojson_to_labels": "geojson",
    "save_geojson": "geojson",
    # slides and batch
    "open_slide": "slide",
    "tile_grid": "slide",
    "BatchConfig": "batch",
    "prelabel_slide": "batch",
    "prelabel_image": "prelabel",
    # errors
    "InstsegError": "errors",
    "CocoFormatError": "errors",
    "LabelImageError": "errors",
    "ProtocolError": "errors",
    "TableError": "errors",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first use."""
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
