"""Building a store from scratch (in a hidden sibling folder, renamed into place by the
caller) and the bulk row writes that creation, upgrade and the bulk path share."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from napari_instseg.core.protocol import AnnotationProtocol
from napari_instseg.core.store._base import CHUNK_PX, STORE_FORMAT, STORE_VERSION, chunk_crc
from napari_instseg.core.store._codec import ROW_COLUMNS, row_crc, row_to_sql
from napari_instseg.core.store._db import DB_NAME, Database
from napari_instseg.core.store._geometry import label_boxes

__all__ = ["build_store", "clean_stale_builds", "insert_rows", "record_chunks"]

_BUILD = re.compile(r"^\.(?P<name>.+)\.creating-(?P<pid>\d+)-[0-9a-f]+$")


def clean_stale_builds(target: Path) -> None:
    """Remove half-built siblings of ``target`` left by processes that died while creating."""
    from napari_instseg.core.store._lock import process_alive

    if not target.parent.is_dir():
        return
    for entry in target.parent.iterdir():
        found = _BUILD.match(entry.name)
        if found and found["name"] == target.name and not process_alive(int(found["pid"])):
            shutil.rmtree(entry, ignore_errors=True)


def build_store(
    path: Path,
    shape_yx: tuple[int, int],
    labels: NDArray[np.uint32] | None,
    protocol: AnnotationProtocol,
    image: dict[str, Any] | None,
    table: pd.DataFrame | None,
) -> None:
    """Write a complete version-2 store at ``path`` (which must not exist)."""
    import zarr

    from napari_instseg.core.instances import table_for_ids

    root = zarr.open_group(str(path), mode="w-")
    root.attrs.update(
        {
            "format": STORE_FORMAT,
            "version": STORE_VERSION,
            "shape_yx": list(shape_yx),
            "protocol": protocol.to_dict(),
            "image": dict(image or {}),
        }
    )
    array = root.create_array("labels", shape=shape_yx, dtype=np.uint32, chunks=(CHUNK_PX, CHUNK_PX), fill_value=0)
    boxes: dict[int, tuple[int, int, int, int]] = {}
    if labels is not None and labels.any():
        array[...] = labels
        boxes = label_boxes(labels)
    (path / "instseg").mkdir()
    db = Database.create(path / "instseg" / DB_NAME)
    try:
        ids = np.union1d(np.asarray(sorted(boxes), np.int64), [] if table is None else table.index.to_numpy())
        ids = ids.astype(np.int64)
        rows = table_for_ids(ids, table, defaults={"category_id": protocol.categories[0].id})
        with db.transaction():
            n_rows = insert_rows(db, rows, boxes)
            record_chunks(db, array, path)
            db.set_meta(
                version=STORE_VERSION,
                next_id=int(ids.max()) + 1 if ids.size else 1,
                seq=0,
                n_rows=n_rows,
                n_prelabel=0,
                n_amodal=0,
                created_empty=labels is None or not bool(labels.any()),
            )
    finally:
        db.close()


def insert_rows(db: Database, table: pd.DataFrame, boxes: dict[int, tuple[int, int, int, int]]) -> int:
    """Insert the rows of a (validated) instance table - new ids - with their boxes; returns
    how many. Columns are converted in bulk (this is the path for millions of rows)."""
    from napari_instseg.core.instances import COLUMNS

    if not len(table):
        return 0
    columns = list(ROW_COLUMNS)
    converted: list[list[Any]] = []
    for name in columns:
        values = table[name].to_numpy()
        kind = COLUMNS[name].dtype
        if kind == "float64":
            converted.append([None if v != v else float(v) for v in values.tolist()])
        elif kind in ("bool", "int64"):
            converted.append([int(v) for v in values.tolist()])
        else:
            converted.append([str(v) for v in values.tolist()])
    extra_names = [c for c in table.columns if c not in COLUMNS]
    extras: list[str | None] = [None] * len(table)
    if extra_names:
        extras = [row_to_sql(dict(zip(extra_names, r, strict=True)))[1] for r in table[extra_names].itertuples(False)]
    records, box_records = [], []
    for instance_id, row_values, extra in zip(table.index.tolist(), zip(*converted, strict=True), extras, strict=True):
        box = boxes.get(int(instance_id))
        records.append(
            (instance_id, *row_values, extra, *(box or (None,) * 4), row_crc(instance_id, row_values, extra))
        )
        if box is not None:
            box_records.append((instance_id, box[0], box[2], box[1], box[3]))
    marks = ",".join("?" * (len(columns) + 7))
    db.conn.executemany(
        f"INSERT INTO instances (id, {', '.join(columns)}, extra, y0, x0, y1, x1, crc) VALUES ({marks})", records
    )
    db.conn.executemany("INSERT INTO instances_box VALUES (?, ?, ?, ?, ?)", box_records)
    return len(records)


def record_chunks(db: Database, array: Any, path: Path, region: tuple[int, int, int, int] | None = None) -> None:
    """Record the CRC of every label chunk file (of the chunks touching ``region``)."""
    from napari_instseg.core.store._geometry import chunk_ranges

    if region is None:
        crcs = {}
        root = path / "labels" / "c"
        for dirpath, _, files in os.walk(root):
            for name in files:
                with contextlib.suppress(ValueError):
                    cy, cx = (int(p) for p in Path(dirpath, name).relative_to(root).parts)
                    crcs[(cy, cx)] = chunk_crc(array, path, cy, cx)
    else:
        chunks = (int(array.chunks[0]), int(array.chunks[1]))
        crcs = {key: chunk_crc(array, path, *key) for key, _ in chunk_ranges(region, chunks)}
    db.put_chunks(crcs)
