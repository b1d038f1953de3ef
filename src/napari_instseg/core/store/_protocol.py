"""Changing a store's protocol (categories, colours, rules) after the store was made.

The protocol lives in the group attributes (``zarr.json``, which zarr replaces atomically:
temporary file, then rename), where every reader of the store finds it. A change is saved in
three steps, like an action (see :mod:`napari_instseg.core.store._store`):

1. **Write-ahead record** (transaction 1): meta ``protocol_pending`` = the new protocol and
   its CRC-32.
2. ``zarr.json`` is replaced with the new protocol.
3. **Apply** (transaction 2): meta ``protocol`` = the same record; the pending one is gone.

A crash after 1 leaves the pending record: opening the store completes steps 2 and 3
(idempotent). A save that raises is undone (``zarr.json`` rewritten with the old protocol,
the pending record dropped) before the error reaches the caller. Opening checks that the
protocol in ``zarr.json`` has the CRC the record saved (a damaged or hand-edited
``zarr.json`` is reported); ``store repair`` writes the recorded protocol back.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from napari_instseg.core.protocol import AnnotationProtocol
from napari_instseg.core.store._base import StoreError
from napari_instseg.core.store._codec import crc32

if TYPE_CHECKING:
    from napari_instseg.core.store._store import AnnotationStore

__all__ = ["PENDING_KEY", "RECORD_KEY", "protocol_problems", "recover_protocol", "repair_protocol", "set_protocol"]

PENDING_KEY = "protocol_pending"
RECORD_KEY = "protocol"


def _crc(protocol: dict[str, Any]) -> int:
    return crc32(json.dumps(protocol, sort_keys=True, separators=(",", ":")).encode())


def _record(protocol: AnnotationProtocol) -> dict[str, Any]:
    as_dict = json.loads(json.dumps(protocol.to_dict()))  # what zarr.json will hold
    return {"protocol": as_dict, "crc": _crc(as_dict)}


def _intact(record: Any) -> bool:
    return (
        isinstance(record, dict)
        and isinstance(record.get("protocol"), dict)
        and record.get("crc") == _crc(record["protocol"])
    )


def set_protocol(store: AnnotationStore, protocol: AnnotationProtocol) -> None:
    """Save ``protocol`` as the store's protocol (the three steps of the module docstring).

    Raises
    ------
    StoreError
        When the store is read-only, or the save failed (then the store is as before, or
        read-only when even that could not be ensured).
    """
    with store._guard, store._writing():
        store._require_writable()
        record, before = _record(protocol), store.protocol.to_dict()
        try:
            store._io("protocol journal")
            with store._db.transaction():
                store._db.set_meta(**{PENDING_KEY: record})
        except Exception as exc:
            raise StoreError(f"{store.path}: saving the protocol failed ({exc}); nothing was saved.") from exc
        try:
            _apply(store, record)
        except BaseException as exc:
            _roll_back(store, before, exc)


def _apply(store: AnnotationStore, record: dict[str, Any]) -> None:
    """Steps 2 and 3; idempotent."""
    store._io("protocol attributes")
    store._root.attrs.update({"protocol": record["protocol"]})
    store._io("protocol apply")
    with store._db.transaction() as conn:
        store._db.set_meta(**{RECORD_KEY: record})
        conn.execute("DELETE FROM meta WHERE key = ?", (PENDING_KEY,))
    store._meta = store._db.meta()
    store.protocol = AnnotationProtocol.from_dict(record["protocol"], source=f"{store.path}: protocol")


def _roll_back(store: AnnotationStore, before: dict[str, Any], exc: BaseException) -> None:
    """Undo a failed protocol save; always raises."""
    try:
        store._root.attrs.update({"protocol": before})
        with store._db.transaction() as conn:
            conn.execute("DELETE FROM meta WHERE key = ?", (PENDING_KEY,))
        store._meta = store._db.meta()
    except BaseException as second:
        store.read_only = True
        store.lock_message = (
            f"saving the protocol failed ({exc}) and could not be undone ({second}); reopen the store "
            "(the change is then completed from its record)"
        )
        raise StoreError(f"{store.path}: {store.lock_message}. The store is read-only now.") from exc
    raise StoreError(f"{store.path}: saving the protocol failed ({exc}); nothing was saved (the store is as before).")


def recover_protocol(store: AnnotationStore) -> None:
    """Complete a protocol change interrupted by a crash (a damaged record is dropped: the
    change was never reported done, and ``zarr.json`` is whole either way)."""
    record = store._meta.get(PENDING_KEY)
    if record is None:
        return
    if _intact(record):
        _apply(store, record)
        return
    with store._db.transaction() as conn:
        conn.execute("DELETE FROM meta WHERE key = ?", (PENDING_KEY,))
    store._meta = store._db.meta()


def protocol_problems(meta: dict[str, Any], attrs_protocol: Any) -> list[str]:
    """What is wrong with the saved protocol: a damaged record, or a ``zarr.json`` protocol
    other than the one recorded (stores whose protocol was never changed have no record)."""
    record = meta.get(RECORD_KEY)
    if record is None:
        return []
    if not _intact(record):
        return ["the saved protocol record is damaged (checksum)"]
    if not isinstance(attrs_protocol, dict) or _crc(attrs_protocol) != record["crc"]:
        return ["the protocol in zarr.json differs from the one saved (damaged or edited by hand; checksum)"]
    return []


def repair_protocol(root: Any, meta: dict[str, Any]) -> str | None:
    """Write the recorded protocol back into ``zarr.json`` when it differs; what was done."""
    record = meta.get(RECORD_KEY)
    if record is None or not _intact(record) or _crc(dict(root.attrs).get("protocol") or {}) == record["crc"]:
        return None
    root.attrs.update({"protocol": record["protocol"]})
    return "wrote the saved protocol back into zarr.json"
