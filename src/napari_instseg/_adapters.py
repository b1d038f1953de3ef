"""The one place where napari layer data turns into core types and back.

Pure functions over plain data (arrays, DataFrames, dicts): they never import napari, so the
napari contributions (reader, writer, widgets) stay thin and these stay testable headless.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from napari_instseg.core.instances import from_features, to_features
from napari_instseg.core.protocol import AnnotationProtocol, Category

__all__ = [
    "PROTOCOL_KEY",
    "STORE_KEY",
    "box_from_shape",
    "labels_layer_kwargs",
    "prompt_from_points",
    "protocol_from_metadata",
    "table_from_layer_meta",
    "touched_ids_from_paint",
]

PROTOCOL_KEY = "instseg_protocol"
"""Key of a layer's ``metadata`` that holds the protocol dict."""

IMAGE_KEY = "instseg_image"
"""Key of a layer's ``metadata`` that holds the COCO image record."""

STORE_KEY = "instseg_store"
"""Key of a layer's ``metadata`` that holds the path of its annotation store."""


def labels_layer_kwargs(
    name: str, table: pd.DataFrame, protocol: AnnotationProtocol, image: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Keyword arguments for a napari Labels layer holding an instance table as ``features``."""
    metadata: dict[str, Any] = {PROTOCOL_KEY: protocol.to_dict()}
    if image is not None:
        metadata[IMAGE_KEY] = dict(image)
    return {"name": name, "features": to_features(table), "metadata": metadata}


def protocol_from_metadata(
    metadata: Mapping[str, Any] | None, features: pd.DataFrame | None = None
) -> AnnotationProtocol:
    """Return the layer's protocol, or one with a category per id found in ``features``."""
    if metadata and isinstance(metadata.get(PROTOCOL_KEY), Mapping):
        return AnnotationProtocol.from_dict(metadata[PROTOCOL_KEY], source="layer metadata")
    if features is not None and "category_id" in features.columns and len(features):
        ids = sorted({int(i) for i in features["category_id"].dropna()})
        if ids:
            return AnnotationProtocol(categories=tuple(Category(i, f"category {i}") for i in ids))
    return AnnotationProtocol.default()


def table_from_layer_meta(meta: Mapping[str, Any]) -> pd.DataFrame | None:
    """Instance table from a layer's ``features`` (as napari passes it to writers), or None."""
    features = meta.get("features")
    if features is None:
        return None
    frame = pd.DataFrame(features)
    if frame.empty or "index" not in frame.columns:
        return None
    return from_features(frame)


def touched_ids_from_paint(atoms: Any) -> set[int]:
    """Instance ids a napari Labels ``paint`` event changed (old values and the new value).

    napari sends a list of history atoms: ``(indices, old_values, new_value)`` tuples, or
    masked atoms with ``old_values`` and ``new_value`` attributes.
    """
    touched: set[int] = set()
    for atom in atoms or []:
        if hasattr(atom, "old_values"):
            old, new = atom.old_values, atom.new_value
        else:
            _, old, new = atom
        touched.update(int(v) for v in np.unique(np.asarray(old)))
        touched.add(int(new))
    touched.discard(0)
    return touched


def prompt_from_points(data_yx: Any, positive: Any) -> tuple[np.ndarray, np.ndarray]:
    """Points layer data (n, 2) in (y, x) and its ``positive`` feature -> points and labels."""
    points = np.asarray(data_yx, dtype=np.float64).reshape(-1, 2)
    flags = np.ones(len(points), dtype=bool) if positive is None else np.asarray(positive, dtype=bool)
    return points, flags.astype(np.int64)


def box_from_shape(vertices_yx: Any) -> np.ndarray:
    """A Shapes rectangle (4 vertices in (y, x), any drawing direction) -> ``box_xyxy``."""
    from napari_instseg.core.coords import box_corners_to_xyxy

    return box_corners_to_xyxy(np.asarray(vertices_yx)[:, -2:])


def rgb_or_grey(image: np.ndarray) -> dict[str, Any]:
    """Layer kwargs telling napari whether an image is RGB(A)."""
    return {"rgb": bool(image.ndim == 3 and image.shape[-1] in (3, 4))}
