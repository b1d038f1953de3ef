"""Paint diffing: find what napari's paint / erase / fill tools changed since the last record.

The session edits its label image in place, and napari's tools do too (a Labels layer shows
the same array). :class:`PaintRecorder` keeps the labels as last recorded (a shadow copy) and
turns the difference into the before / after crops of one edit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from napari_instseg.core.commit_rules import review_changes
from napari_instseg.core.edits import Edit, Region, bbox_of
from napari_instseg.core.instances import make_rows, now_iso, row_of

if TYPE_CHECKING:
    from napari_instseg.core.session_state import SessionState

__all__ = ["PaintDiff", "PaintRecorder", "paint_edit"]


@dataclass(frozen=True)
class PaintDiff:
    """What changed since the last record.

    Attributes
    ----------
    region_yx : Region or None
        Bounding box of the changed pixels; None when no pixel changed.
    labels_before, labels_after : numpy.ndarray of uint32 or None
        The region as last recorded and as it is now.
    touched : tuple of int
        Ids whose pixels changed (either side), plus the ids the caller named; sorted, no 0.
    """

    region_yx: Region | None
    labels_before: NDArray[np.uint32] | None
    labels_after: NDArray[np.uint32] | None
    touched: tuple[int, ...]


class PaintRecorder:
    """Keeps the labels as last recorded: the 'before' of painting done outside the session.

    Parameters
    ----------
    labels_yx : numpy.ndarray of uint32, shape (height, width)
        The label image as recorded now (copied).
    """

    def __init__(self, labels_yx: NDArray[np.uint32]) -> None:
        self._shadow = labels_yx.copy()

    def recorded(self, region_yx: Region, labels: NDArray[np.uint32]) -> None:
        """Note that ``labels`` is now the recorded content of ``region_yx``."""
        y0, x0, y1, x1 = region_yx
        self._shadow[y0:y1, x0:x1] = labels

    def diff(self, labels_yx: NDArray[np.uint32], instance_ids: Iterable[int] = ()) -> PaintDiff | None:
        """The change of ``labels_yx`` since the last record; None when nothing changed and
        no id was named."""
        changed = labels_yx != self._shadow
        region = bbox_of(changed)
        touched = {int(i) for i in instance_ids if int(i) != 0}
        before = after = None
        if region is not None:
            y0, x0, y1, x1 = region
            inside = changed[y0:y1, x0:x1]
            before, after = self._shadow[y0:y1, x0:x1].copy(), labels_yx[y0:y1, x0:x1].copy()
            touched |= set(np.unique(before[inside]).tolist()) | set(np.unique(after[inside]).tolist())
        touched.discard(0)
        if region is None and not touched:
            return None
        return PaintDiff(region, before, after, tuple(sorted(touched)))


def paint_edit(session: SessionState, diff: PaintDiff | None) -> Edit | None:
    """The ``paint`` edit that records ``diff`` (None for None): model instances whose mask now
    differs from their proposal become ``corrected`` with ``prelabel_iou``; ids painted
    without a row get a ``manual`` row."""
    if diff is None:
        return None
    session.ids.observe(diff.touched)
    rows_before = {i: row_of(session.table, i) for i in diff.touched}
    rows_after: dict[int, dict[str, Any] | None] = {}
    for instance_id in diff.touched:
        if rows_before[instance_id] is None:
            now = now_iso()
            new = make_rows(
                [instance_id],
                category_id=session.protocol.categories[0].id,
                annotator=session.annotator,
                created=now,
                modified=now,
            )
            rows_after[instance_id] = row_of(new, instance_id)
        else:
            changes = review_changes(session, instance_id, only_corrected=True)
            rows_after[instance_id] = session.changed_row(instance_id, **changes)
    return Edit(
        "paint",
        diff.touched,
        diff.region_yx,
        diff.labels_before,
        diff.labels_after,
        rows_before,
        rows_after,
        next_id=session.ids.next_id,
    )
