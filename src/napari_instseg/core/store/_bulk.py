"""The bulk path: many instances written at once (building a slide's store, imports, the
scale benchmark), one transaction per tile, without a journal record per instance.

Bulk writes are not undoable. Crash consistency: the region is marked ``bulk_pending`` in
the database first, then its label chunks are written, then rows, boxes and chunk checksums
go in with the mark cleared, in one transaction. Opening a store with a pending mark gives
every id found in that region without a row a default row, and records the chunks'
checksums - so labelled pixels never lack a row.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from napari_instseg.core.labels import as_label_image
from napari_instseg.core.store._base import StoreError
from napari_instseg.core.store._build import insert_rows, record_chunks
from napari_instseg.core.store._geometry import label_boxes

if TYPE_CHECKING:
    from napari_instseg.core.store._store import AnnotationStore

__all__ = ["bulk_write", "recover_bulk"]


def bulk_write(
    store: AnnotationStore, origin_yx: tuple[int, int], labels_tile: ArrayLike, table: pd.DataFrame | None = None
) -> int:
    """Write a tile of new instances at ``origin_yx`` (never over committed pixels); rows come
    from ``table`` (defaults where it lacks an id). Returns how many rows were added.

    Raises
    ------
    StoreError
        When the store is read-only, the tile leaves the labels, or an id is not new.
    """
    from napari_instseg.core.instances import table_for_ids

    store._require_writable()
    labels = as_label_image(labels_tile, name="bulk tile")
    y0, x0 = (int(v) for v in origin_yx)
    region = (y0, x0, y0 + labels.shape[0], x0 + labels.shape[1])
    if y0 < 0 or x0 < 0 or region[2] > store.shape_yx[0] or region[3] > store.shape_yx[1]:
        raise StoreError(f"{store.path}: bulk tile {region} (y0, x0, y1, x1) leaves the labels {store.shape_yx}.")
    boxes = label_boxes(labels, (y0, x0))
    if not boxes:
        return 0
    if min(boxes) < store._next_id():
        raise StoreError(f"{store.path}: bulk ids must be new (>= {store._next_id()}); the tile holds id {min(boxes)}.")
    rows = table_for_ids(sorted(boxes), table, defaults={"category_id": store.protocol.categories[0].id})
    with store._guard, store._writing():
        with store._db.transaction():
            store._db.set_meta(bulk_pending=list(region))
        current = np.asarray(store._labels[y0 : region[2], x0 : region[3]])
        store._labels[y0 : region[2], x0 : region[3]] = np.where(current == 0, labels, current)
        with store._db.transaction():
            added = insert_rows(store._db, rows, boxes)
            record_chunks(store._db, store._labels, store.path, region)
            store._db.add_meta_count("n_rows", added)
            store._db.set_meta(next_id=max(store._next_id(), max(boxes) + 1), bulk_pending=None)
        store._meta = store._db.meta()
    return added


def recover_bulk(store: AnnotationStore) -> None:
    """Finish a bulk write a crash interrupted (see the module docstring)."""
    region: Any = store._meta.get("bulk_pending")
    if not region:
        return
    y0, x0, y1, x1 = (int(v) for v in region)
    labels = np.asarray(store._labels[y0:y1, x0:x1], dtype=np.uint32)
    boxes = label_boxes(labels, (y0, x0))
    known = store._db.boxes(boxes)
    lost = sorted(i for i in boxes if i not in known)
    from napari_instseg.core.instances import table_for_ids

    rows = table_for_ids(lost, None, defaults={"category_id": store.protocol.categories[0].id})
    with store._db.transaction():
        added = insert_rows(store._db, rows, {i: boxes[i] for i in lost})
        store._db.grow_boxes({i: b for i, b in boxes.items() if i in known})
        record_chunks(store._db, store._labels, store.path, (y0, x0, y1, x1))
        store._db.add_meta_count("n_rows", added)
        next_id = max([store._next_id(), *(i + 1 for i in boxes)])
        store._db.set_meta(next_id=next_id, bulk_pending=None)
    store._meta = store._db.meta()
