"""Crash-safe annotation store on zarr (label chunks) and SQLite (everything else).

The design - layout, crash consistency across zarr and SQLite, integrity checks - is in
:mod:`napari_instseg.core.store._store`. Public names:

- :class:`AnnotationStore` (``create`` / ``open`` / ``session`` / ``window_session`` /
  ``close`` / ``read_labels`` / ``table`` / ``read_side`` / ``record`` and the queries
  ``instances_in`` / ``count_instances`` / ``find_instances`` / ``next_prelabel``, and the
  marks saved atomically with an action: ``record(marks=...)`` / ``set_marks`` / ``read_marks``)
- :class:`StoreError`, :func:`is_store`, :data:`STORE_FORMAT`, :data:`STORE_VERSION`
- :func:`check_store` / :func:`repair_store` (the store doctor)
"""

from __future__ import annotations

from napari_instseg.core.store._base import CHUNK_PX, STORE_FORMAT, STORE_VERSION, StoreError, is_store
from napari_instseg.core.store._doctor import StoreReport, check_store, repair_store
from napari_instseg.core.store._store import AnnotationStore

__all__ = [
    "CHUNK_PX",
    "STORE_FORMAT",
    "STORE_VERSION",
    "AnnotationStore",
    "StoreError",
    "StoreReport",
    "check_store",
    "is_store",
    "repair_store",
]
