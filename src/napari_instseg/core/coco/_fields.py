"""How instance-table columns map to COCO annotation fields, both ways, in one place."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_instseg.core.instances import COLUMNS, SCORE_COLUMN

if TYPE_CHECKING:
    import pandas as pd
else:
    from napari_instseg.core._lazy import pd

__all__ = [
    "ATTRIBUTE_COLUMNS",
    "REJECTED_KEY",
    "TOP_LEVEL_COLUMNS",
    "annotation_fields",
    "default_fields",
    "json_scalar",
]

REJECTED_KEY = "instseg_rejected"
"""Top-level key of a COCO file listing its rejected instances (rows without pixels: review
``rejected``), one record per row: ``image_id``, ``instance_id``, ``category_id``, ``iscrowd``,
our top-level fields, ``attributes`` and ``score`` where the row has one; no ``segmentation``.
pycocotools and COCOeval ignore the key, so they never count as ground truth or candidates;
``qa`` counts them in the pre-label statistics and import restores the rows."""

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
        floats: list[Any] = values.tolist()
        if not np.isnan(values).any():
            return floats
        return [None if math.isnan(v) else v for v in floats]
    if values.dtype.kind in "biu":
        numbers: list[Any] = values.tolist()
        return numbers
    items: list[Any] = values.tolist()
    if all(type(v) is str for v in items):  # the common case: a column of strings
        return items
    return [json_scalar(v) for v in items]


def default_fields() -> dict[str, Any]:
    """Our annotation fields of a row with every column at its default (as
    :func:`annotation_fields` gives for a default row), built without pandas."""
    fields: dict[str, Any] = {name: json_scalar(COLUMNS[name].default) for name in TOP_LEVEL_COLUMNS}
    attributes: dict[str, Any] = {"occluded": COLUMNS["occlusion"].default != "none"}
    attributes.update({name: json_scalar(COLUMNS[name].default) for name in ATTRIBUTE_COLUMNS})
    fields["attributes"] = attributes
    return fields


def annotation_fields(table: pd.DataFrame) -> list[dict[str, Any]]:
    """Our annotation fields for every row of a validated instance table, in row order.

    ``category_id`` and ``iscrowd`` are excluded (the caller writes them as standard keys).
    Columns outside the schema go into ``attributes`` under their own name, except
    :data:`SCORE_COLUMN` (the exporter writes it as the top-level ``score``).
    """
    extra = [c for c in table.columns if c not in COLUMNS and c != SCORE_COLUMN]
    top_names = list(TOP_LEVEL_COLUMNS)
    attr_names = ["occluded", *ATTRIBUTE_COLUMNS, *extra]
    occluded = (table["occlusion"].to_numpy() != "none").tolist()
    top = zip(*(_json_column(table[name]) for name in top_names), strict=True)
    attrs = zip(occluded, *(_json_column(table[name]) for name in attr_names[1:]), strict=True)
    out = []
    for top_values, attr_values in zip(top, attrs, strict=True):
        fields: dict[str, Any] = dict(zip(top_names, top_values, strict=True))
        fields["attributes"] = dict(zip(attr_names, attr_values, strict=True))
        out.append(fields)
    return out
