"""How instance-table columns map to COCO annotation fields, both ways, in one place."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from napari_instseg.core.instances import COLUMNS

__all__ = ["ATTRIBUTE_COLUMNS", "TOP_LEVEL_COLUMNS", "annotation_fields", "json_scalar"]

TOP_LEVEL_COLUMNS = ("occlusion", "occluded_fraction", "z_order")
"""Columns written as top-level annotation keys (KINS / COCOA style)."""

ATTRIBUTE_COLUMNS = tuple(c for c in COLUMNS if c not in TOP_LEVEL_COLUMNS and c not in ("category_id", "iscrowd"))
"""Columns written inside ``attributes`` (CVAT style), besides the derived ``occluded``."""


def json_scalar(value: Any) -> Any:
    """Return ``value`` as a JSON-safe Python scalar (NaN and None become None)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _json_column(series: pd.Series) -> list[Any]:
    """A column as a list of JSON-safe Python values, converted in bulk where possible."""
    values = series.to_numpy()
    if values.dtype.kind == "f":
        return [None if math.isnan(v) else v for v in values.tolist()]
    if values.dtype.kind in "biu":
        result: list[Any] = values.tolist()
        return result
    return [json_scalar(v) for v in values.tolist()]


def annotation_fields(table: pd.DataFrame) -> list[dict[str, Any]]:
    """Our annotation fields for every row of a validated instance table, in row order.

    ``category_id`` and ``iscrowd`` are excluded (the caller writes them as standard keys).
    Columns outside the schema go into ``attributes`` under their own name.
    """
    extra = [c for c in table.columns if c not in COLUMNS]
    top = {name: _json_column(table[name]) for name in TOP_LEVEL_COLUMNS}
    attrs = {name: _json_column(table[name]) for name in (*ATTRIBUTE_COLUMNS, *extra)}
    occluded = (table["occlusion"].to_numpy() != "none").tolist()
    out = []
    for i in range(len(table)):
        fields: dict[str, Any] = {name: column[i] for name, column in top.items()}
        attributes = {"occluded": occluded[i]}
        attributes.update({name: column[i] for name, column in attrs.items()})
        fields["attributes"] = attributes
        out.append(fields)
    return out
