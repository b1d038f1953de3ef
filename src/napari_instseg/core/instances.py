"""The instance table: one row per instance id, the schema in one place, and id allocation.

The table is a :class:`pandas.DataFrame` indexed by instance id (index name ``"id"``, the
value of the instance in the label image). Derived values (area, bbox) are not stored: they
are computed from the mask. In napari the table is the Labels layer's ``features``, which
carries the id in an ``index`` column (:func:`to_features` / :func:`from_features`).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_instseg.core.errors import TableError
from napari_instseg.core.protocol import OCCLUSION_TIERS

if TYPE_CHECKING:
    import pandas as pd
else:
    from napari_instseg.core._lazy import pd

__all__ = [
    "COLUMNS",
    "REVIEW_STATES",
    "SCORE_COLUMN",
    "SOURCES",
    "Column",
    "IdAllocator",
    "apply_rows",
    "empty_table",
    "from_features",
    "make_rows",
    "new_row",
    "now_iso",
    "row_of",
    "table_for_ids",
    "to_features",
    "validate_table",
]

SOURCES = ("manual", "sam2", "classic", "import", "sam2-auto", "classic-auto", "model-import")
"""Where an instance came from (``*-auto``: the automatic "pre-label everything" modes;
``model-import``: another tool's model result, a scored annotation of an imported file)."""

REVIEW_STATES = ("pre-label", "accepted", "corrected", "rejected")
"""Review state: a model's proposal starts as ``pre-label`` until a person reviews it."""


@dataclass(frozen=True)
class Column:
    """One column of the instance table: dtype, default and allowed values (None = any)."""

    dtype: str
    default: Any
    allowed: tuple[str, ...] | None = None


COLUMNS: dict[str, Column] = {
    "category_id": Column("int64", 1),
    "occlusion": Column("str", "none", OCCLUSION_TIERS),
    "occlusion_manual": Column("bool", False),
    "occluded_fraction": Column("float64", np.nan),
    "iscrowd": Column("bool", False),
    "z_order": Column("int64", 0),
    "source": Column("str", "manual", SOURCES),
    "review": Column("str", "accepted", REVIEW_STATES),
    "annotator": Column("str", ""),
    "time_s": Column("float64", 0.0),
    "prelabel_iou": Column("float64", np.nan),
    "created": Column("str", ""),
    "modified": Column("str", ""),
}
"""The schema of the instance table, in column order.

``occlusion_manual`` is True when a person set the tier by hand (it then overrides the tier
derived from ``occluded_fraction``). ``created`` / ``modified`` are ISO-8601 UTC timestamps.
"""

SCORE_COLUMN = "score"
"""An optional column outside the schema: a model's score for each instance (NaN = none).

A COCO annotation's top-level ``score`` is imported into it and exported from it (never into
``attributes``); a pre-label without a saved proposal takes it as its proposal's score.
"""

ID_NAME = "id"
FEATURES_ID = "index"


def now_iso() -> str:
    """Return the current UTC time as an ISO-8601 string with second precision."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def empty_table() -> pd.DataFrame:
    """Return an instance table with no rows and every schema column."""
    return make_rows([])


def new_row(**values: Any) -> dict[str, Any]:
    """One row as a plain dict: schema defaults overridden by ``values`` (checked when the
    row enters a table, see :func:`apply_rows`)."""
    unknown = sorted(set(values) - set(COLUMNS))
    if unknown:
        raise TableError(f"Unknown instance-table column(s) {unknown}; known: {list(COLUMNS)}.")
    return {name: values.get(name, col.default) for name, col in COLUMNS.items()}


def make_rows(ids: Iterable[int], **values: Any) -> pd.DataFrame:
    """Return table rows for ``ids`` with schema defaults, overridden by ``values``.

    Parameters
    ----------
    ids : iterable of int
        Instance ids (positive).
    **values
        Column values: a scalar for every row, or a sequence with one value per id.

    Raises
    ------
    TableError
        For an unknown column name or a value outside the column's allowed set.
    """
    unknown = sorted(set(values) - set(COLUMNS))
    if unknown:
        raise TableError(f"Unknown instance-table column(s) {unknown}; known: {list(COLUMNS)}.")
    index = pd.Index(np.asarray(list(ids), dtype=np.int64), name=ID_NAME)
    data = {name: values.get(name, col.default) for name, col in COLUMNS.items()}
    frame = pd.DataFrame({name: _broadcast(value, len(index)) for name, value in data.items()}, index=index)
    return validate_table(frame, source="new rows")


def _broadcast(value: Any, n: int) -> list[Any]:
    if isinstance(value, (list, tuple, np.ndarray, pd.Series)):
        if len(value) != n:
            raise TableError(f"Expected {n} values for a column, got {len(value)}.")
        return list(value)
    return [value] * n


def validate_table(table: pd.DataFrame, *, source: str = "instance table") -> pd.DataFrame:
    """Check an instance table and return a copy with schema dtypes and column order.

    Missing columns are filled with their defaults; extra columns are kept after the schema
    columns. The input is never modified.

    Raises
    ------
    TableError
        For duplicate or non-positive ids, values that cannot be converted, or values outside
        a column's allowed set; the message names ``source``, the column and the instance id.
    """
    if not isinstance(table, pd.DataFrame):
        raise TableError(f"{source}: expected a pandas DataFrame, got {type(table).__name__}.")
    ids = _validated_ids(table.index, source)
    index = pd.Index(ids, name=ID_NAME)
    columns: dict[str, Any] = {}  # built whole, then one frame (column-by-column setitem is slow)
    for name, col in COLUMNS.items():
        raw = table[name].to_numpy() if name in table.columns else [col.default] * len(ids)
        values = _convert_column(raw, name, col, ids, source)
        # one text dtype whether the table is empty or not
        columns[name] = pd.Series(values, index=index).astype("str") if col.dtype == "str" else values
    for name in table.columns:
        if name not in COLUMNS and name not in (ID_NAME, FEATURES_ID):
            columns[name] = table[name].to_numpy()
    result: pd.DataFrame = pd.DataFrame(columns, index=index)
    return result


def _validated_ids(index: pd.Index, source: str) -> np.ndarray:
    try:
        ids = np.asarray(index, dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise TableError(f"{source}: instance ids must be integers, got {list(index[:5])}...") from exc
    if ids.size and ids.min() < 1:
        raise TableError(f"{source}: instance ids must be >= 1 (0 is background), got {ids.min()}.")
    if ids.size and ids.max() > np.iinfo(np.uint32).max:
        raise TableError(f"{source}: instance id {ids.max()} does not fit uint32.")
    duplicated = pd.Index(ids).duplicated()
    if duplicated.any():
        raise TableError(f"{source}: duplicate instance id(s) {sorted(set(ids[duplicated].tolist()))[:10]}.")
    return ids


def _convert_column(raw: Any, name: str, col: Column, ids: np.ndarray, source: str) -> np.ndarray:
    values = np.asarray(raw, dtype=object)
    if col.dtype == "str":
        missing = pd.isna(values) if values.size else np.zeros(0, bool)
        values = np.where(missing, col.default, values).astype(str).astype(object)
    elif col.dtype == "bool":
        values = _to_bool(values, name, ids, source)
    else:
        try:
            values = values.astype(col.dtype if col.dtype == "float64" else "float64")
        except (TypeError, ValueError) as exc:
            raise TableError(f"{source}: column {name!r} must be numeric: {exc}") from exc
        if col.dtype == "int64":
            _require_integral(values, name, ids, source)
            values = values.astype(np.int64)
    if col.allowed is not None:
        bad = ~np.isin(values, col.allowed)
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise TableError(
                f"{source}: instance {ids[first]}: column {name!r} has {_plain(values[first])!r}; "
                f"expected one of {col.allowed}."
            )
    return values


def _to_bool(values: np.ndarray, name: str, ids: np.ndarray, source: str) -> np.ndarray:
    truthy = {True, "1", "true", "True", "TRUE", "yes"}
    falsy = {False, "0", "false", "False", "FALSE", "no", ""}
    out = np.zeros(values.shape, dtype=bool)
    for i, value in enumerate(values):
        key = value.item() if isinstance(value, np.generic) else value
        if key in truthy:
            out[i] = True
        elif key in falsy or (isinstance(key, float) and np.isnan(key)):
            out[i] = False
        else:
            raise TableError(f"{source}: instance {ids[i]}: column {name!r} has {_plain(value)!r}; expected a boolean.")
    return out


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value it holds, for readable messages."""
    return value.item() if isinstance(value, np.generic) else value


def _require_integral(values: np.ndarray, name: str, ids: np.ndarray, source: str) -> None:
    bad = ~np.isfinite(values) | (values != np.round(values))
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise TableError(
            f"{source}: instance {ids[first]}: column {name!r} has {_plain(values[first])!r}; expected an integer."
        )


def table_for_ids(
    ids: Iterable[int], table: pd.DataFrame | None, *, defaults: Mapping[str, Any] | None = None
) -> pd.DataFrame:
    """Return the rows of ``table`` for ``ids``, in that order, adding default rows where missing.

    Parameters
    ----------
    ids : iterable of int
        The instance ids present in a label image.
    table : DataFrame or None
        An instance table (may hold more or fewer ids than ``ids``).
    defaults : mapping, optional
        Column values for the rows that ``table`` lacks (for example the protocol's first
        category).
    """
    wanted = np.asarray(list(ids), dtype=np.int64)
    base = empty_table() if table is None else validate_table(table)
    missing = wanted[~np.isin(wanted, base.index.to_numpy())]
    if missing.size:
        added = make_rows(missing, **dict(defaults or {}))
        base = pd.concat([base, added]) if len(base) else added
    return validate_table(base.loc[wanted])


def apply_rows(
    table: pd.DataFrame,
    rows: Mapping[int, Mapping[str, Any] | None],
    *,
    source: str = "instance table",
    validated: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Return ``table`` (a validated table) with rows replaced, added or (value None) removed,
    sorted by id. Only the given rows are validated (``validated``: those rows already passed
    through :func:`validate_table`, not checked again); the input is not modified."""
    if not rows:
        return table
    kept = table.drop(index=[i for i in rows if i in table.index])
    new = {i: dict(r) for i, r in rows.items() if r is not None}
    if new:
        if validated is not None:
            added = validated
        else:
            added = pd.DataFrame.from_dict(new, orient="index")
            added.index.name = ID_NAME
            added = validate_table(added, source=source)
        kept = pd.concat([kept, added[list(added.columns)]]) if len(kept) else added
    ordered: pd.DataFrame = kept.sort_index()
    return ordered


def row_of(table: pd.DataFrame, instance_id: int) -> dict[str, Any] | None:
    """One row of an instance table as plain Python values (column -> value); None when
    ``instance_id`` has no row."""
    if instance_id not in table.index:
        return None
    return {str(k): _plain(v) for k, v in table.loc[instance_id].items()}


def to_features(table: pd.DataFrame) -> pd.DataFrame:
    """Return the table as napari ``features``: a RangeIndex and the id in an ``index`` column."""
    frame: pd.DataFrame = validate_table(table).reset_index().rename(columns={ID_NAME: FEATURES_ID})
    return frame


def from_features(features: pd.DataFrame, *, source: str = "layer features") -> pd.DataFrame:
    """Return an instance table from napari ``features`` (rows keyed by the ``index`` column).

    Rows with ``index`` 0 (napari's background row, when present) are dropped.

    Raises
    ------
    TableError
        When there is no ``index`` column, or a value is invalid.
    """
    if FEATURES_ID not in features.columns:
        raise TableError(f"{source}: no {FEATURES_ID!r} column holding the label id of each row.")
    frame = features[features[FEATURES_ID] != 0].set_index(FEATURES_ID)
    frame.index.name = ID_NAME
    return validate_table(frame, source=source)


class IdAllocator:
    """Hands out instance ids that are never reused inside one annotation set.

    The allocator remembers the next free id; ids of deleted instances are not given out
    again, so the history, the journal and the QA can always tell instances apart.

    Parameters
    ----------
    next_id : int
        The first id to hand out (>= 1).
    """

    def __init__(self, next_id: int = 1) -> None:
        if int(next_id) < 1:
            raise TableError(f"next_id must be >= 1, got {next_id}.")
        self._next = int(next_id)

    @property
    def next_id(self) -> int:
        """The id the next :meth:`allocate` returns."""
        return self._next

    def allocate(self, count: int = 1) -> list[int]:
        """Return ``count`` new, consecutive, never-used ids."""
        if count < 0:
            raise TableError(f"count must be >= 0, got {count}.")
        first = self._next
        if first + count - 1 > np.iinfo(np.uint32).max:
            raise TableError("Instance ids are exhausted: the next id would not fit uint32.")
        self._next += count
        return list(range(first, first + count))

    def observe(self, ids: Iterable[int]) -> None:
        """Mark ``ids`` (for example, those loaded from a file) as used."""
        ids = np.asarray(list(ids), dtype=np.int64)
        if ids.size:
            self._next = max(self._next, int(ids.max()) + 1)

    def assign(self, given: Iterable[int | None]) -> list[int]:
        """Ids for items that may carry their own (an import): given ids are kept and marked
        used first, then each item without one (None) gets a new id, in order.

        Duplicates among the given ids are the caller's to resolve (they are kept as given).
        """
        wanted = [None if g is None else int(g) for g in given]
        self.observe([g for g in wanted if g is not None])
        return [g if g is not None else self.allocate()[0] for g in wanted]

    def __repr__(self) -> str:
        return f"IdAllocator(next_id={self._next})"
