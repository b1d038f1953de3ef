"""Instances as tracks: one id per object across frames, per-frame masks, tiers and undo.

A :class:`TrackStack` holds a (t, y, x) uint32 label stack (0 = background), the instance
table (one row per track: ``track_id`` is the instance id) and one record per (frame, track)
with what propagation found there: present or absent, predicted and visible area, occluded
fraction and occlusion tier, SAM 2's object score.

Per frame the commit rule is the session's (:meth:`AnnotationSession.commit
<napari_instseg.core.session.AnnotationSession.commit>`): a mask is written only over
background, never over a committed instance unless it is put in front (then whole). The
propagated objects of one frame are composited among themselves by
:func:`napari_instseg.core.occlusion.composite_by_depth` (the project's one compositing rule),
and a track's own earlier pixels on that frame are replaced. SAM 2 predicts each object's
whole extent independently, so that prediction serves as the outline from which the
occluded fraction ``1 - visible / predicted`` and the tier (protocol thresholds) follow: an
object passing behind another becomes partial / heavy on those frames. A frame where SAM 2
finds no object (an empty mask) is recorded as absent.

Everything one propagation writes is one undo step (:meth:`TrackStack.action`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from napari_instseg.core.errors import InstsegError
from napari_instseg.core.instances import (
    IdAllocator,
    apply_rows,
    empty_table,
    new_row,
    now_iso,
    table_for_ids,
    validate_table,
)
from napari_instseg.core.occlusion import composite_by_depth, occluded_fractions
from napari_instseg.core.protocol import AnnotationProtocol

__all__ = ["FRAME_COLUMNS", "FrameRecord", "TrackError", "TrackStack", "as_label_stack"]

FRAME_COLUMNS = (
    "frame",
    "track_id",
    "present",
    "predicted_px",
    "visible_px",
    "occluded_fraction",
    "occlusion",
    "score",
)
"""Columns of :meth:`TrackStack.frame_table` (one row per frame a track was propagated to)."""


class TrackError(InstsegError, ValueError):
    """A track operation cannot be carried out (unknown track, frame or shape)."""


@dataclass(frozen=True)
class FrameRecord:
    """What propagation found for one track on one frame.

    ``present`` is False where SAM 2 found no object (absent: no pixels, no tier);
    ``occluded_fraction`` is ``1 - visible_px / predicted_px`` (NaN when absent).
    """

    present: bool
    predicted_px: int
    visible_px: int
    occluded_fraction: float
    occlusion: str
    score: float


@dataclass(frozen=True)
class _Patch:
    """One frame write: the changed box (y0, x0, y1, x1) before and after."""

    frame: int
    region_yx: tuple[int, int, int, int]
    before: NDArray[np.uint32]
    after: NDArray[np.uint32]


@dataclass
class _Action:
    """What one action changed, for undo / redo: label patches (only the changed box of each
    frame write, so history costs what changed, not the stack), records and the table."""

    op: str
    patches: list[_Patch] = field(default_factory=list)
    records_before: dict[int, dict[int, FrameRecord]] = field(default_factory=dict)
    table_before: pd.DataFrame | None = None
    records_after: dict[int, dict[int, FrameRecord]] = field(default_factory=dict)
    table_after: pd.DataFrame | None = None


def _changed_box(before: NDArray[np.uint32], after: NDArray[np.uint32]) -> tuple[int, int, int, int] | None:
    changed = before != after
    rows = np.flatnonzero(changed.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(changed.any(axis=0))
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def as_label_stack(labels: Any, *, name: str = "label stack") -> NDArray[np.uint32]:
    """Validate a (t, y, x) label stack and return it as uint32 (no copy when it already is).

    Raises
    ------
    TrackError
        When it is not 3-D, not integer, or holds values outside [0, 2**32 - 1].
    """
    array = np.asarray(labels)
    if array.ndim != 3:
        raise TrackError(f"{name}: expected a (t, y, x) label stack, got shape {array.shape}.")
    if array.dtype == np.uint32:
        return array
    if array.dtype.kind not in "uib":
        raise TrackError(f"{name}: labels must be integers, got dtype {array.dtype}.")
    if array.size and (array.min() < 0 or int(array.max()) > np.iinfo(np.uint32).max):
        raise TrackError(f"{name}: values must lie in [0, 2**32 - 1], got {array.min()}..{array.max()}.")
    return array.astype(np.uint32)


class TrackStack:
    """Labels of a (t, y, x) or (z, y, x) stack whose instances are tracks.

    Parameters
    ----------
    labels_tyx : array-like, shape (t, y, x)
        Existing labels (edited in place when uint32, else a converted copy).
    table : DataFrame, optional
        Instance table of the existing labels (rows are added for ids it lacks).
    protocol : AnnotationProtocol, optional
        Taxonomy and tier thresholds; defaults to :meth:`AnnotationProtocol.default`.
    annotator : str
        Written into the rows of new tracks.
    """

    def __init__(
        self,
        labels_tyx: ArrayLike,
        table: pd.DataFrame | None = None,
        protocol: AnnotationProtocol | None = None,
        *,
        annotator: str = "",
    ) -> None:
        self.labels_tyx = as_label_stack(labels_tyx)
        self.protocol = protocol or AnnotationProtocol.default()
        present = np.unique(self.labels_tyx)
        ids = np.union1d(
            (empty_table() if table is None else validate_table(table)).index.to_numpy(), present[present > 0]
        )
        self.table = table_for_ids(ids, table, defaults={"category_id": self.protocol.categories[0].id})
        self.ids = IdAllocator()
        self.ids.observe(ids)
        self.annotator = annotator
        self.records: dict[int, dict[int, FrameRecord]] = {}  # frame -> track id -> record
        self.undo_stack: list[_Action] = []
        self.redo_stack: list[_Action] = []
        self._action: _Action | None = None

    @property
    def shape_tyx(self) -> tuple[int, int, int]:
        """(frames, height, width)."""
        t, y, x = self.labels_tyx.shape
        return int(t), int(y), int(x)

    # -- tracks -----------------------------------------------------------------------------
    def new_track(self, *, category: int | str | None = None, source: str = "sam2", in_front: bool = False) -> int:
        """Add a track (a table row, no pixels yet) and return its id.

        ``in_front`` puts it nearer than every instance (its masks are then written whole).
        """
        track_id = self.ids.allocate()[0]
        nearest = int(self.table["z_order"].max()) if len(self.table) else 0
        z = nearest + 1 if in_front else 0
        now = now_iso()
        row = new_row(
            category_id=self._category_id(category),
            z_order=z,
            source=source,
            review="pre-label" if source in ("sam2", "classic") else "accepted",
            annotator=self.annotator,
            created=now,
            modified=now,
        )
        with self.action("new track"):
            self._set_table(apply_rows(self.table, {track_id: row}, source=f"track {track_id}"))
        return track_id

    def track_ids(self) -> list[int]:
        """Ids of every instance (track) in the table."""
        return [int(i) for i in self.table.index]

    def mask_of(self, frame: int, track_id: int) -> NDArray[np.bool_]:
        """The visible mask of a track on one frame."""
        return np.asarray(self.labels_tyx[self._check_frame(frame)] == int(track_id), dtype=bool)

    def frames_of(self, track_id: int) -> list[int]:
        """Frames where the track has visible pixels."""
        hit = (self.labels_tyx == int(track_id)).any(axis=(1, 2))
        return [int(t) for t in np.flatnonzero(hit)]

    # -- per-frame commit -------------------------------------------------------------------
    def apply_frame(
        self,
        frame: int,
        obj_ids: Iterable[int],
        masks_yx: NDArray[np.bool_],
        scores: ArrayLike | None = None,
    ) -> dict[int, FrameRecord]:
        """Write the propagated masks of ``obj_ids`` on ``frame`` (see the module docstring).

        Parameters
        ----------
        frame : int
            Frame index.
        obj_ids : iterable of int
            Track ids, one per mask (each must have a table row).
        masks_yx : numpy.ndarray of bool, shape (n, height, width)
            Each track's full predicted mask (empty = absent on this frame).
        scores : array-like of float, shape (n,), optional
            SAM 2's object scores, recorded.

        Returns
        -------
        dict of int to FrameRecord
        """
        t = self._check_frame(frame)
        ids = np.asarray(list(obj_ids), dtype=np.int64)
        masks = np.asarray(masks_yx, dtype=bool)
        if masks.shape != (ids.size, *self.shape_tyx[1:]):
            raise TrackError(f"Expected {ids.size} masks of shape {self.shape_tyx[1:]}, got {masks.shape}.")
        missing = [int(i) for i in ids if i not in self.table.index]
        if missing:
            raise TrackError(f"Track(s) {missing} have no table row: create them with new_track().")
        self._remember(t)
        z = self.table.loc[ids, "z_order"].to_numpy(np.int64)
        front = self.table.loc[ids, "z_order"].to_numpy(np.int64) > self._z_of_others(ids)
        current = self.labels_tyx[t]
        own = np.isin(current, ids)
        composite = composite_by_depth(masks, ids, z) if ids.size else np.zeros_like(current)
        after = current.copy()
        after[own] = 0
        writable = (composite > 0) & ((after == 0) | np.isin(composite, ids[front]))
        after[writable] = composite[writable]
        box = _changed_box(current, after)
        if box is not None and self._action is not None:
            y0, x0, y1, x1 = box
            patch = _Patch(t, box, current[y0:y1, x0:x1].copy(), after[y0:y1, x0:x1].copy())
            self._action.patches.append(patch)
        current[...] = after
        return self._record(t, ids, masks, after, scores)

    def _record(
        self, t: int, ids: NDArray[np.int64], masks: NDArray[np.bool_], after: NDArray[np.uint32], scores: Any
    ) -> dict[int, FrameRecord]:
        fractions = occluded_fractions(after, masks, ids) if ids.size else np.zeros(0)
        tiers = self.protocol.tiers.tiers_of(fractions)
        scores = np.full(ids.size, np.nan) if scores is None else np.asarray(scores, dtype=float).reshape(-1)
        out = {}
        for k, track_id in enumerate(ids.tolist()):
            predicted = int(np.count_nonzero(masks[k]))
            out[track_id] = FrameRecord(
                present=predicted > 0,
                predicted_px=predicted,
                visible_px=int(np.count_nonzero(after == track_id)),
                occluded_fraction=float(fractions[k]),
                occlusion=str(tiers[k]) if predicted else "",
                score=float(scores[k]),
            )
        self.records.setdefault(t, {}).update(out)
        return out

    def _z_of_others(self, ids: NDArray[np.int64]) -> int:
        others = self.table.drop(index=[i for i in ids.tolist() if i in self.table.index])
        return int(others["z_order"].max()) if len(others) else 0

    def refresh_rows(self, track_ids: Iterable[int] | None = None) -> None:
        """Set each track's row to its worst per-frame occlusion (manual tiers are kept)."""
        wanted = set(self.track_ids() if track_ids is None else (int(i) for i in track_ids))
        worst: dict[int, float] = {}
        for per_frame in self.records.values():
            for track_id, rec in per_frame.items():
                if track_id in wanted and rec.present and not np.isnan(rec.occluded_fraction):
                    worst[track_id] = max(worst.get(track_id, 0.0), rec.occluded_fraction)
        rows: dict[int, dict[str, Any] | None] = {}
        for track_id, fraction in worst.items():
            row = {str(k): (v.item() if isinstance(v, np.generic) else v) for k, v in self.table.loc[track_id].items()}
            row["occluded_fraction"] = fraction
            if not row["occlusion_manual"]:
                row["occlusion"] = self.protocol.tiers.tier_of(fraction) or "none"
            rows[track_id] = row
        if rows:
            with self.action("refresh rows"):
                self._set_table(apply_rows(self.table, rows, source="track rows"))

    # -- records ----------------------------------------------------------------------------
    def record(self, frame: int, track_id: int) -> FrameRecord | None:
        """The propagation record of a track on a frame (None if never propagated there)."""
        return self.records.get(int(frame), {}).get(int(track_id))

    def frame_table(self) -> pd.DataFrame:
        """Every (frame, track) record as a DataFrame with :data:`FRAME_COLUMNS`."""
        rows: list[dict[str, Any]] = [
            {"frame": t, "track_id": i, **asdict(rec)}
            for t, per in sorted(self.records.items())
            for i, rec in sorted(per.items())
        ]
        return cast(pd.DataFrame, pd.DataFrame(rows, columns=pd.Index(FRAME_COLUMNS)))

    def occlusion_on(self, frame: int, track_id: int) -> str:
        """The tier of a track on one frame: the frame's record, else the track's row."""
        rec = self.record(frame, track_id)
        if rec is not None and rec.present:
            return rec.occlusion
        return str(self.table.at[int(track_id), "occlusion"])

    # -- undo -------------------------------------------------------------------------------
    @contextmanager
    def action(self, op: str) -> Iterator[None]:
        """Group everything done inside into ONE undo step (nested groups join the outer)."""
        if self._action is not None:
            yield
            return
        self._action = _Action(op, table_before=self.table)
        try:
            yield
        finally:
            action, self._action = self._action, None
            for t in action.records_before:
                action.records_after[t] = dict(self.records.get(t, {}))
            action.table_after = self.table
            if action.records_before or action.patches or action.table_before is not action.table_after:
                self.undo_stack.append(action)
                self.redo_stack.clear()

    def undo(self) -> str | None:
        """Undo the last action (a whole propagation); returns its name, None if none."""
        return self._step(self.undo_stack, self.redo_stack, after=False)

    def redo(self) -> str | None:
        """Redo the last undone action; returns its name, None if none."""
        return self._step(self.redo_stack, self.undo_stack, after=True)

    def _step(self, source: list[_Action], target: list[_Action], *, after: bool) -> str | None:
        if not source:
            return None
        action = source.pop()
        for patch in action.patches if after else reversed(action.patches):
            y0, x0, y1, x1 = patch.region_yx
            self.labels_tyx[patch.frame, y0:y1, x0:x1] = patch.after if after else patch.before
        records = action.records_after if after else action.records_before
        for t, per in records.items():
            self.records[t] = dict(per)
        table = action.table_after if after else action.table_before
        if table is not None:
            self.table = table
        target.append(action)
        return action.op

    def _remember(self, t: int) -> None:
        if self._action is None:
            raise TrackError("Frames are written inside an action: use `with stack.action(...)`.")
        if t not in self._action.records_before:
            self._action.records_before[t] = dict(self.records.get(t, {}))

    def _set_table(self, table: pd.DataFrame) -> None:
        self.table = table

    # -- helpers ----------------------------------------------------------------------------
    def _check_frame(self, frame: int) -> int:
        n = self.shape_tyx[0]
        if not 0 <= int(frame) < n:
            raise TrackError(f"Frame {frame} is outside the stack (frames 0 to {n - 1}).")
        return int(frame)

    def _category_id(self, category: int | str | None) -> int:
        if category is None:
            return self.protocol.categories[0].id
        if isinstance(category, str):
            return self.protocol.category_by_name(category).id
        return self.protocol.category(int(category)).id


def records_from_mapping(data: Mapping[int, Mapping[int, Mapping[str, Any]]]) -> dict[int, dict[int, FrameRecord]]:
    """Records from plain dicts ({frame: {track: fields}}), e.g. read back from a file."""
    return {int(t): {int(i): FrameRecord(**dict(f)) for i, f in per.items()} for t, per in data.items()}
