"""How instance-table columns map to COCO annotation fields, both ways, in one place."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from napari_instseg.core.instances import COLUMNS

__all__ = ["ATTRIBUTE_COLUMNS", "TOP_LEVEL_COLUMNS", "json_scalar", "row_to_fields"]

TOP_LEVEL_COLUMNS = ("occlusion", "occluded_fraction", "z_order")
"""Columns written as top-level annotation keys (KINS / COCOA style)."""

ATTRIBUTE_COLUMNS = tuple(
    c for c in COLUMNS if c not in TOP_LEVEL_COLUMNS and c not in ("category_id", "iscrowd")
)
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


def row_to_fields(row: Mapping[str, Any], extra_columns: tuple[str, ...]) -> dict[str, Any]:
    """Return our annotation fields for one instance-table row (category and crowd excluded)."""
    fields: dict[str, Any] = {name: json_scalar(row[name]) for name in TOP_LEVEL_COLUMNS}
    attributes = {"occluded": row["occlusion"] != "none"}
    attributes.update({name: json_scalar(row[name]) for name in ATTRIBUTE_COLUMNS})
    attributes.update({name: json_scalar(row[name]) for name in extra_columns})
    fields["attributes"] = attributes
    return fields
