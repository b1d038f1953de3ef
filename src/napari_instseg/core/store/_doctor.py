"""The store doctor: integrity checks and repair."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from napari_instseg.core.store._store import AnnotationStore

__all__ = ["StoreReport", "check_store", "quick_problems", "repair_store"]


@dataclass
class StoreReport:
    """What a check found (``problems``) or a repair did (``repaired``, ``lost``)."""

    path: str
    problems: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    backup: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def quick_problems(store: AnnotationStore) -> list[str]:
    """Cheap checks run on every open: meta, counts, recorded chunk files present."""
    from napari_instseg.core.store._base import chunk_file

    problems = []
    meta = store._meta
    for key in ("next_id", "n_rows", "n_prelabel", "n_amodal"):
        if not isinstance(meta.get(key), int):
            problems.append(f"the store state has no valid {key!r} ({meta.get(key)!r})")
    conn = store._db.conn
    n_rows = int(conn.execute("SELECT COUNT(*) FROM instances").fetchone()[0])
    if isinstance(meta.get("n_rows"), int) and n_rows != meta["n_rows"]:
        problems.append(f"the instance table has {n_rows} rows where {meta['n_rows']} were saved")
    for kind in ("prelabel", "amodal"):
        n = int(conn.execute("SELECT COUNT(*) FROM side WHERE kind = ?", (kind,)).fetchone()[0])
        expected: Any = meta.get(f"n_{kind}")
        if isinstance(expected, int) and n != expected:
            problems.append(f"{n} {kind} side records where {expected} were saved")
    for cy, cx in conn.execute("SELECT cy, cx FROM chunks WHERE crc IS NOT NULL").fetchall():
        if not chunk_file(store._labels, store.path, cy, cx).is_file():
            problems.append(f"label chunk ({cy}, {cx}) is missing")
    return problems


def check_store(path: Any) -> StoreReport:  # filled in below
    raise NotImplementedError


def repair_store(path: Any) -> StoreReport:  # filled in below
    raise NotImplementedError
