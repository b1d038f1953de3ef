"""napari writer: a Labels layer with its features -> COCO instances JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["write_labels_coco"]


def write_labels_coco(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Write one Labels layer (data + features + protocol in metadata) to ``path`` as COCO.

    The file name in COCO comes from the layer's COCO image record when it was read from
    COCO or a store, else from the layer name; amodal outlines come from the layer's store.
    Returns the list of written paths, as napari expects.
    """
    import numpy as np

    from napari_instseg._adapters import IMAGE_KEY, STORE_KEY, protocol_from_metadata, table_from_layer_meta
    from napari_instseg.core.coco import AnnotatedImage, export_coco, save_coco

    meta = _with_pending_paint(data, meta)
    metadata = meta.get("metadata") or {}
    table = table_from_layer_meta(meta)
    protocol = protocol_from_metadata(metadata, None if table is None else table)
    record = dict(metadata.get(IMAGE_KEY) or {})
    file_name = record.pop("file_name", None) or f"{meta.get('name', Path(path).stem)}.tif"
    extra = {k: v for k, v in record.items() if k not in ("id", "height", "width")}
    amodal = {}
    if metadata.get(STORE_KEY):  # amodal outlines live in the layer's store
        from napari_instseg.core.store import AnnotationStore

        amodal = AnnotationStore.open(metadata[STORE_KEY], read_only=True).read_side("amodal")
    item = AnnotatedImage(np.asarray(data), table, file_name, record.get("id"), extra, amodal=amodal)
    save_coco(export_coco([item], protocol).coco, path)
    return [path]


def _with_pending_paint(data: Any, meta: dict[str, Any]) -> dict[str, Any]:
    """``meta`` with the features of the bound layer showing ``data`` after its pending paint
    is recorded (a stroke made less than a second ago is in the pixels, not yet in the table
    nor the store); as given when no layer is bound (no annotation panel was used)."""
    import sys

    if "napari_instseg._widgets._binding" not in sys.modules:
        return meta
    from napari_instseg._widgets._closing import flush_bound_data

    features = flush_bound_data(data)
    return meta if features is None else {**meta, "features": features}
