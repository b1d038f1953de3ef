"""The queries of :class:`~napari_instseg.core.store.AnnotationStore` that select rows in SQL
(by column values, by region through the R-tree, in reading order) without loading the table."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from napari_instseg.core.store._base import StoreError
from napari_instseg.core.store._db import READING_BAND_PX

if TYPE_CHECKING:
    from napari_instseg.core.store._store import AnnotationStore

__all__ = ["QUERY_COLUMNS", "count_instances", "find_instances", "next_prelabel"]

Region = tuple[int, int, int, int]
QUERY_COLUMNS = ("category_id", "occlusion", "review", "source", "annotator", "iscrowd")
"""Columns :meth:`AnnotationStore.count_instances` and :meth:`find_instances` select on."""


def count_instances(store: AnnotationStore, by: str, region_yx: Region | None = None) -> dict[Any, int]:
    """See :meth:`AnnotationStore.count_instances`."""
    column = _query_column(by)
    join, params = _region_join(region_yx)
    cursor = store._db.conn.execute(
        f"SELECT i.{column}, COUNT(*) FROM instances i {join} GROUP BY i.{column} ORDER BY i.{column}", params
    )
    return {(bool(v) if column == "iscrowd" else v): int(n) for v, n in cursor}


def find_instances(
    store: AnnotationStore, region_yx: Region | None, limit: int | None, offset: int, equal: dict[str, Any]
) -> pd.DataFrame:
    """See :meth:`AnnotationStore.find_instances`."""
    join, params = _region_join(region_yx)
    clauses = []
    for name, value in equal.items():
        clauses.append(f"i.{_query_column(name)} = ?")
        params.append(int(value) if name in ("category_id", "iscrowd") else value)
    where = (" AND " if "WHERE" in join else " WHERE ").join([join, *clauses]) if clauses else join
    page = f" LIMIT {int(limit)} OFFSET {int(offset)}" if limit is not None else ""
    return store._db.rows_frame(f"{where} ORDER BY i.id{page}", params)


def next_prelabel(store: AnnotationStore, after_id: int | None = None) -> tuple[int, Region] | None:
    """See :meth:`AnnotationStore.next_prelabel`."""
    band = READING_BAND_PX
    sql = (
        f"SELECT id, y0, x0, y1, x1 FROM instances WHERE review = 'pre-label' AND y0 IS NOT NULL {{}} "
        f"ORDER BY y0 / {band}, x0, y0, id LIMIT 1"
    )
    params: tuple[Any, ...] = ()
    where = ""
    if after_id is not None:
        box = store.bbox_of(after_id)
        if box is not None:
            where = f"AND (y0 / {band}, x0, y0, id) > (?, ?, ?, ?)"
            params = (box[0] // band, box[1], box[0], int(after_id))
    row = store._db.conn.execute(sql.format(where), params).fetchone()
    return None if row is None else (int(row[0]), (int(row[1]), int(row[2]), int(row[3]), int(row[4])))


def _query_column(name: str) -> str:
    if name not in QUERY_COLUMNS:
        raise StoreError(f"Cannot select instances by {name!r}; choose one of {QUERY_COLUMNS}.")
    return name


def _region_join(region_yx: Region | None) -> tuple[str, list[Any]]:
    if region_yx is None:
        return "", []
    y0, x0, y1, x1 = region_yx
    return (
        "JOIN instances_box b ON i.id = b.id WHERE b.y0 < ? AND b.y1 > ? AND b.x0 < ? AND b.x1 > ?",
        [y1, y0, x1, x0],
    )
