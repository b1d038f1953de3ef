"""Byte encodings of the store's records: journal payloads (one action), side records
(proposals, amodal masks) and instance-table rows, each with a CRC-32 checksum.

Journal payloads are compressed ``.npz`` bytes (the same encoding version-1 stores kept in
``instseg/journal/<seq>.npz``, so an upgrade copies them as they are).
"""

from __future__ import annotations

import io
import json
import math
import zlib
from typing import Any

import numpy as np
from numpy.typing import NDArray

from napari_instseg.core.coco._fields import json_scalar
from napari_instseg.core.edits import CroppedMask, Edit
from napari_instseg.core.instances import COLUMNS

__all__ = [
    "ROW_COLUMNS",
    "crc32",
    "decode_edit",
    "decode_mask",
    "decode_record_meta",
    "encode_edit",
    "encode_marker",
    "encode_mask",
    "row_crc",
    "row_from_sql",
    "row_to_sql",
    "side_value",
]

ROW_COLUMNS: tuple[str, ...] = tuple(COLUMNS)
"""The schema columns, in the order of the SQL ``instances`` table."""

_FLOAT_COLUMNS = {name for name, col in COLUMNS.items() if col.dtype == "float64"}
_BOOL_COLUMNS = {name for name, col in COLUMNS.items() if col.dtype == "bool"}


def crc32(data: bytes) -> int:
    """CRC-32 of ``data`` (a non-negative int)."""
    return zlib.crc32(data) & 0xFFFFFFFF


# -- instance-table rows ------------------------------------------------------------------------
def row_to_sql(row: dict[str, Any]) -> tuple[list[Any], str | None]:
    """Schema values in :data:`ROW_COLUMNS` order as SQLite values (NaN -> NULL, bool -> 0/1)
    and the extra columns as JSON (None when there are none)."""
    values: list[Any] = []
    for name in ROW_COLUMNS:
        value = row.get(name, COLUMNS[name].default)
        value = value.item() if isinstance(value, np.generic) else value
        if name in _FLOAT_COLUMNS:
            value = None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)
        elif name in _BOOL_COLUMNS:
            value = int(bool(value))
        elif COLUMNS[name].dtype == "int64":
            value = int(value)
        else:
            value = str(value)
        values.append(value)
    extra = {k: json_scalar(v) for k, v in row.items() if k not in COLUMNS}
    return values, (json.dumps(extra, sort_keys=True) if extra else None)


def row_from_sql(values: tuple[Any, ...], extra: str | None) -> dict[str, Any]:
    """A row dict from SQLite values (inverse of :func:`row_to_sql`)."""
    row: dict[str, Any] = {}
    for name, value in zip(ROW_COLUMNS, values, strict=True):
        if name in _FLOAT_COLUMNS:
            row[name] = float("nan") if value is None else float(value)
        elif name in _BOOL_COLUMNS:
            row[name] = bool(value)
        else:
            row[name] = value
    if extra:
        row.update(json.loads(extra))
    return row


def row_crc(instance_id: int, values: list[Any] | tuple[Any, ...], extra: str | None) -> int:
    """Checksum of one stored row (id, schema values, extra JSON)."""
    return crc32(json.dumps([int(instance_id), list(values), extra]).encode())


# -- side records (proposals, amodal masks) -----------------------------------------------------
def encode_mask(mask: NDArray[np.bool_]) -> bytes:
    """A boolean crop as compressed bytes (packed bits; the shape is stored beside it)."""
    return zlib.compress(np.packbits(np.asarray(mask, bool), axis=None).tobytes(), 1)


def decode_mask(blob: bytes, shape_yx: tuple[int, int]) -> NDArray[np.bool_]:
    """Inverse of :func:`encode_mask`."""
    n = shape_yx[0] * shape_yx[1]
    bits = np.unpackbits(np.frombuffer(zlib.decompress(blob), np.uint8), count=n)
    return bits.astype(bool).reshape(shape_yx)


def side_value(kind: str, bbox: tuple[int, int, int, int], mask: NDArray[np.bool_], source: Any, score: Any) -> Any:
    """The in-memory side value: a ``PrelabelRecord`` for ``prelabel``, else a CroppedMask."""
    cropped = CroppedMask(bbox, mask)
    if kind == "prelabel":
        from napari_instseg.core.records import PrelabelRecord

        return PrelabelRecord(cropped, str(source), float("nan") if score is None else float(score))
    return cropped


# -- journal payloads ---------------------------------------------------------------------------
def _npz(arrays: dict[str, NDArray[Any]], meta: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, meta=np.array(json.dumps(meta)), **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def encode_marker(kind: str, target: int) -> bytes:
    """A version-1 undo / redo record (only read by the upgrade)."""
    return _npz({}, {"kind": kind, "target": target})


def _rows_json(rows: dict[int, dict[str, Any] | None]) -> dict[str, Any]:
    return {str(i): None if r is None else {k: json_scalar(v) for k, v in r.items()} for i, r in rows.items()}


def _rows_from_json(rows: dict[str, Any]) -> dict[int, dict[str, Any] | None]:
    out: dict[int, dict[str, Any] | None] = {}
    for key, row in rows.items():
        if row is not None:
            row = {k: (np.nan if v is None and k in _FLOAT_COLUMNS else v) for k, v in row.items()}
        out[int(key)] = row
    return out


def encode_edit(edit: Edit, kind: str = "do") -> bytes:
    """One action as compressed ``.npz`` bytes (labels before / after, rows, side data)."""
    from napari_instseg.core.records import PrelabelRecord

    arrays: dict[str, NDArray[Any]] = {}
    if edit.region_yx is not None and edit.labels_before is not None and edit.labels_after is not None:
        arrays["labels_before"] = edit.labels_before
        arrays["labels_after"] = edit.labels_after
    side: dict[str, Any] = {}
    for name in ("prelabels_before", "prelabels_after", "amodal_before", "amodal_after"):
        entries: dict[str, Any] = {}
        for instance_id, value in getattr(edit, name).items():
            if value is None:
                entries[str(instance_id)] = None
                continue
            mask = value.proposal if isinstance(value, PrelabelRecord) else value
            key = f"{name}_{instance_id}"
            arrays[key] = mask.mask
            entry: dict[str, Any] = {"bbox": [int(v) for v in mask.bbox_yx], "key": key}
            if isinstance(value, PrelabelRecord):
                entry.update(source=value.source, score=json_scalar(value.score))
            entries[str(instance_id)] = entry
        side[name] = entries
    meta = {
        "kind": kind,
        "op": edit.op,
        "ids": [int(i) for i in edit.ids],
        "region": None if edit.region_yx is None else [int(v) for v in edit.region_yx],
        "rows_before": _rows_json(edit.rows_before),
        "rows_after": _rows_json(edit.rows_after),
        "side": side,
        "next_id": int(edit.next_id),
    }
    return _npz(arrays, meta)


def decode_record_meta(payload: bytes) -> dict[str, Any]:
    """The JSON header of a payload (``kind``, ``op``, ``target`` ...)."""
    with np.load(io.BytesIO(payload), allow_pickle=False) as data:
        meta: dict[str, Any] = json.loads(str(data["meta"]))
    return meta


def decode_edit(payload: bytes) -> Edit:
    """Inverse of :func:`encode_edit`.

    Raises
    ------
    ValueError, KeyError, OSError, zipfile.BadZipFile
        For damaged bytes (callers turn these into a StoreError naming the record).
    """
    with np.load(io.BytesIO(payload), allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        side: dict[str, dict[int, Any]] = {}
        for name, entries in meta["side"].items():
            side[name] = {}
            for key, entry in entries.items():
                if entry is None:
                    side[name][int(key)] = None
                    continue
                mask = data[entry["key"]].astype(bool)
                bbox = tuple(int(v) for v in entry["bbox"])
                if "source" in entry:
                    side[name][int(key)] = side_value("prelabel", bbox, mask, entry["source"], entry.get("score"))  # type: ignore[arg-type]
                else:
                    side[name][int(key)] = CroppedMask(bbox, mask)  # type: ignore[arg-type]
        region = meta["region"]
        labels = (data["labels_before"], data["labels_after"]) if region is not None else (None, None)
    return Edit(
        meta["op"],
        tuple(meta["ids"]),
        None if region is None else tuple(region),
        labels[0],
        labels[1],
        _rows_from_json(meta["rows_before"]),
        _rows_from_json(meta["rows_after"]),
        side["prelabels_before"],
        side["prelabels_after"],
        side["amodal_before"],
        side["amodal_after"],
        int(meta["next_id"]),
    )
