"""The commit and review rules of a session, in one place.

A commit makes a new instance with a new id; it never overwrites a committed instance unless
put in front (which raises its ``z_order`` above all others); an amodal commit keeps the full
outline behind everything and recomposites. Masks from a model start as ``pre-label`` and their
proposal is kept; reviewing measures the final mask against it. These functions build the
:class:`~napari_instseg.core.edits.Edit` of an action without applying it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from napari_instseg.core.compositing import composite_region, crop_to
from napari_instseg.core.edits import CroppedMask, Edit, Region, bbox_of, region_union
from napari_instseg.core.instances import SCORE_COLUMN, new_row, now_iso, row_of
from napari_instseg.core.prompting.registry import MODEL_SOURCES
from napari_instseg.core.records import CommitError, CommitResult, OverlapCounts, PrelabelRecord

if TYPE_CHECKING:
    import pandas as pd

    from napari_instseg.core.session_state import SessionState

__all__ = [
    "MIN_FREE_FRACTION",
    "MODEL_SOURCES",
    "AutoCommitPlan",
    "auto_commit_plan",
    "combine_edits",
    "commit_edit",
    "depth_edit",
    "depth_step_z_order",
    "model_scores",
    "prelabel_proposals",
    "removal_edit",
    "review_changes",
]


MIN_FREE_FRACTION = 0.5
"""An automatic mask that overlaps committed instances is committed only when at least this
fraction of it is free (see :func:`auto_commit_plan`)."""


@dataclass(frozen=True)
class AutoCommitPlan:
    """Which automatic masks a run commits (:func:`auto_commit_plan`).

    Attributes
    ----------
    keep : tuple of int
        Positions (in the order given) of the masks to commit.
    n_covered : int
        Masks that fell entirely on earlier instances.
    n_mostly_covered : int
        Masks that fell mostly on earlier instances (their free part a sliver).
    """

    keep: tuple[int, ...]
    n_covered: int
    n_mostly_covered: int


def auto_commit_plan(
    labels_yx: NDArray[np.uint32],
    masks: Sequence[CroppedMask],
    *,
    min_area_px: int,
    min_free_fraction: float = MIN_FREE_FRACTION,
) -> AutoCommitPlan:
    """The rule of automatic commits: which masks, committed in this order, each taking only
    free pixels, become instances.

    A mask takes the pixels no earlier instance (committed before, or kept earlier in this
    run) holds. One lying entirely on earlier instances is dropped (``n_covered``); one that
    overlaps them and whose free part is below ``min_area_px`` or below ``min_free_fraction``
    of the mask is dropped too (``n_mostly_covered``): it is a sliver of an object that is
    already labelled (a second run over pre-labelled pixels finds the same objects again), not
    a new object. A mask that overlaps nothing is always kept (the segmenter's own filters
    passed it).

    Parameters
    ----------
    labels_yx : numpy.ndarray of uint32, shape (height, width)
        The committed labels (0 = free); not modified.
    masks : sequence of CroppedMask
        In ``labels_yx`` coordinates (inside its frame), in commit order (best first).
    min_area_px : int
        The run's minimum object area in pixels.
    min_free_fraction : float
        The smallest free fraction of an overlapping mask that is still committed.

    Returns
    -------
    AutoCommitPlan
    """
    taken = labels_yx != 0  # grows with each kept mask: later masks see it
    keep: list[int] = []
    covered = mostly = 0
    for k, mask in enumerate(masks):
        y0, x0, y1, x1 = mask.bbox_yx
        free_yx = mask.mask & ~taken[y0:y1, x0:x1]
        area, free = mask.area_px, int(np.count_nonzero(free_yx))
        if free == 0:
            covered += 1
        elif free < area and (free < min_area_px or free < min_free_fraction * area):
            mostly += 1
        else:
            keep.append(k)
            taken[y0:y1, x0:x1] |= free_yx
    return AutoCommitPlan(tuple(keep), covered, mostly)


def commit_edit(
    session: SessionState,
    mask: NDArray[np.bool_] | CroppedMask,
    from_candidates: bool,
    *,
    category: int | str | None = None,
    in_front: bool = False,
    iscrowd: bool = False,
    occlusion: str | None = None,
    source: str | None = None,
    amodal: bool = False,
    reviewed: bool = False,
    score: float | None = None,
    estimates: Mapping[str, float] | None = None,
) -> tuple[Edit, CommitResult]:
    """The edit a commit of ``mask`` makes (not yet applied) and what it writes.

    A model's mask starts as ``pre-label`` with its proposal kept, unless ``reviewed``: a
    person committed the candidate they saw, so it is ``accepted`` at once and no pre-label.
    ``score`` is the model's own quality estimate of the mask (default: the candidate's),
    kept with the proposal and, where finite, as the row's ``score`` (outside the schema, see
    :data:`~napari_instseg.core.instances.SCORE_COLUMN`), so every COCO export writes it.
    ``estimates`` are further estimates of a pre-label (SAM 2's automatic mode: its
    ``predicted_iou`` and ``stability_score``), kept as row values outside the schema, so the
    store keeps them and COCO writes them into the annotation's ``attributes``; NaN is left out.

    ``mask`` is a full-frame mask or a :class:`CroppedMask` (full-frame coordinates): a crop
    is written inside its box only, so committing many small objects into a large image costs
    their areas, not the image's.

    Raises
    ------
    CommitError
        When (without ``amodal``) no pixel of the mask would be visible.
    """
    if isinstance(mask, CroppedMask) and amodal:
        mask = mask.full(session.shape_yx)
    state = session.prompt_state
    source = source or (state.source if from_candidates and state.source else "manual")
    instance_id = session.ids.next_id
    z_order = _front_z(session) + 1 if in_front else (_back_z(session) - 1 if amodal else 0)
    now = now_iso()
    row = new_row(
        category_id=session.category_id(category),
        iscrowd=iscrowd,
        occlusion=occlusion or "none",
        occlusion_manual=occlusion is not None,
        z_order=z_order,
        source=source,
        review="pre-label" if source in MODEL_SOURCES and not reviewed else "accepted",
        annotator=session.annotator,
        created=now,
        modified=now,
    )
    rows: dict[int, dict[str, Any] | None] = {instance_id: row}
    outline = {instance_id: CroppedMask.from_full(mask)} if amodal and not isinstance(mask, CroppedMask) else {}
    amodal_after: dict[int, CroppedMask | None] = dict(outline)
    if amodal and not isinstance(mask, CroppedMask):
        region, after = composite_region(session.labels_yx, session.table, session.amodal, bbox_of(mask), rows, outline)
    elif isinstance(mask, CroppedMask):
        region, after = _written_crop(session.labels_yx, mask, instance_id, in_front)
    else:
        region, after = _written(session.labels_yx, mask if in_front else mask & (session.labels_yx == 0), instance_id)
    painted = 0 if after is None else int(np.count_nonzero(after == instance_id))
    if painted == 0 and not amodal:  # a fully hidden object is legitimate only with its outline
        raise CommitError(
            "The mask lies entirely on committed instances; nothing was written. "
            "Commit it 'in front' to make it the nearer object."
        )
    row["time_s"] = session.active_time.book()
    if source in MODEL_SOURCES and not reviewed:
        row.update({name: float(v) for name, v in (estimates or {}).items() if np.isfinite(v)})
    prelabels: dict[int, Any] = {}
    if source in MODEL_SOURCES and not reviewed:
        if score is None:
            score = state.current_score if from_candidates else float("nan")
        prelabels[instance_id] = PrelabelRecord(_proposal(region, after, instance_id), source, score)
        if np.isfinite(score):  # also a row value: every export, the layer and the store carry it
            row[SCORE_COLUMN] = float(score)
    edit = Edit(
        "commit",
        (instance_id,),
        region,
        session.crop(region),
        after,
        {instance_id: None},
        rows,
        {instance_id: None} if prelabels else {},
        prelabels,
        {instance_id: None} if amodal else {},
        amodal_after,
        instance_id + 1,
    )
    n_px = mask.area_px if isinstance(mask, CroppedMask) else int(np.count_nonzero(mask))
    return edit, CommitResult(instance_id, painted, n_px - painted, z_order)


def _written(
    labels_yx: NDArray[np.uint32], writable: NDArray[np.bool_], instance_id: int
) -> tuple[Region | None, NDArray[np.uint32] | None]:
    region = bbox_of(writable)
    if region is None:
        return None, None
    y0, x0, y1, x1 = region
    after = labels_yx[y0:y1, x0:x1].copy()
    after[writable[y0:y1, x0:x1]] = instance_id
    return region, after


def _written_crop(
    labels_yx: NDArray[np.uint32], crop: CroppedMask, instance_id: int, in_front: bool
) -> tuple[Region | None, NDArray[np.uint32] | None]:
    """:func:`_written` for a cropped mask: only its box of the labels is read."""
    y0, x0, y1, x1 = crop.bbox_yx
    view = labels_yx[y0:y1, x0:x1]
    writable = crop.mask if in_front else crop.mask & (view == 0)
    sub = bbox_of(writable)
    if sub is None:
        return None, None
    sy0, sx0, sy1, sx1 = sub
    after = view[sy0:sy1, sx0:sx1].copy()
    after[writable[sy0:sy1, sx0:sx1]] = instance_id
    return (y0 + sy0, x0 + sx0, y0 + sy1, x0 + sx1), after


def _proposal(region: Region | None, after: NDArray[np.uint32] | None, instance_id: int) -> CroppedMask:
    """The visible part of a model's mask as committed, in full-frame coordinates."""
    if region is None or after is None:
        return CroppedMask((0, 0, 0, 0), np.zeros((0, 0), bool))
    y0, x0, _, _ = region
    crop = CroppedMask.from_full(after == instance_id)
    cy0, cx0, cy1, cx1 = crop.bbox_yx
    return CroppedMask((cy0 + y0, cx0 + x0, cy1 + y0, cx1 + x0), crop.mask)


def removal_edit(session: SessionState, op: str, instance_id: int, row_after: dict[str, Any] | None) -> Edit:
    """The edit that clears an instance's pixels: ``reject`` (its row kept, as given) or
    ``delete`` (row, proposal and outline removed; the id is not reused)."""
    region = bbox_of(session.labels_yx == instance_id)
    after = session.crop(region)
    if after is not None:
        after[after == instance_id] = 0
    deleting = op == "delete"
    return Edit(
        op,
        (instance_id,),
        region,
        session.crop(region),
        after,
        {instance_id: row_of(session.table, instance_id)},
        {instance_id: row_after},
        {instance_id: session.prelabels.get(instance_id)} if deleting else {},
        {instance_id: None} if deleting else {},
        {instance_id: session.amodal.get(instance_id)} if deleting else {},
        {instance_id: None} if deleting else {},
        session.ids.next_id,
    )


def depth_edit(
    session: SessionState,
    instance_id: int,
    rows: dict[int, dict[str, Any] | None],
    outlines: dict[int, CroppedMask],
) -> Edit:
    """The ``reorder`` (new ``z_order`` in ``rows``) or ``amodal`` (new outline in
    ``outlines``) edit of an instance: where outlines are involved the visible labels are
    recomposited (the nearer instance owns the overlap), else only the row changes."""
    if outlines:
        old = session.amodal.get(instance_id)
        new = outlines[instance_id]
        region = region_union(new.bbox_yx if new.area_px else None, old.bbox_yx if old else None)
    else:
        region = _extent(session, instance_id).bbox_yx if session.amodal else None
    region, after = composite_region(session.labels_yx, session.table, session.amodal, region, rows, outlines)
    return Edit(
        "amodal" if outlines else "reorder",
        (instance_id,),
        region,
        session.crop(region),
        after,
        {i: row_of(session.table, i) for i in rows},
        rows,
        amodal_before={instance_id: session.amodal.get(instance_id)} if outlines else {},
        amodal_after=dict(outlines),
        next_id=session.ids.next_id,
    )


def prelabel_proposals(
    labels_yx: NDArray[np.uint32], table: pd.DataFrame, known: Collection[int] = ()
) -> dict[int, PrelabelRecord]:
    """The proposals of pre-labels that come without one: each row in review state
    ``pre-label`` whose id is not in ``known`` gets its visible mask as it is now (the mask as
    it came in, from a file, a layer or a store) as its proposal, so reviewing it measures
    against that mask (accept unchanged: IoU 1; paint, then accept: ``corrected``).

    Parameters
    ----------
    labels_yx : numpy.ndarray of uint32, shape (height, width)
        The visible labels (0 = background); not modified.
    table : DataFrame
        The instance table (``review`` and ``source`` columns; an optional ``score`` column
        gives the proposals' scores, else NaN).
    known : collection of int
        Ids that already have a proposal (left out).

    Returns
    -------
    dict of int to PrelabelRecord
        One record per pre-label without a proposal; an empty crop where it has no pixels.
    """
    is_pending = table["review"].to_numpy() == "pre-label"
    ids = table.index.to_numpy()[is_pending].astype(np.int64)
    sources = table["source"].to_numpy()[is_pending].tolist()
    scores = table[SCORE_COLUMN].to_numpy()[is_pending].tolist() if SCORE_COLUMN in table.columns else [None] * ids.size
    keep = [k for k, i in enumerate(ids.tolist()) if i not in known]
    if not keep:
        return {}
    boxes = _boxes_of(labels_yx, ids[keep])
    records = {}
    for k in keep:
        instance_id = int(ids[k])
        box = boxes.get(instance_id)
        if box is None:
            proposal = CroppedMask((0, 0, 0, 0), np.zeros((0, 0), bool))
        else:
            y0, x0, y1, x1 = box
            proposal = CroppedMask(box, labels_yx[y0:y1, x0:x1] == instance_id)
        records[instance_id] = PrelabelRecord(proposal, str(sources[k]), _as_score(scores[k]))
    return records


def model_scores(table: pd.DataFrame, prelabels: Mapping[int, PrelabelRecord | None]) -> dict[int, float]:
    """Finite model scores by instance id: the table's optional ``score`` column (an imported
    file's scores), with the saved proposals' scores over it.

    Parameters
    ----------
    table : DataFrame
        The instance table; NaN or non-numeric ``score`` values count as none.
    prelabels : mapping of int to PrelabelRecord or None
        Pre-label proposals by instance id (NaN score: none).

    Returns
    -------
    dict of int to float
        Only the instances that have a finite score.
    """
    import pandas as pd

    out: dict[int, float] = {}
    if SCORE_COLUMN in table.columns:
        values = pd.to_numeric(table[SCORE_COLUMN], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        finite = np.isfinite(values)
        out.update(zip(table.index.to_numpy()[finite].tolist(), values[finite].tolist(), strict=True))
    for instance_id, record in prelabels.items():
        if record is not None and np.isfinite(record.score):
            out[int(instance_id)] = float(record.score)
    return out


def _as_score(value: Any) -> float:
    if value is None:
        return float("nan")
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _boxes_of(labels_yx: NDArray[np.uint32], ids: NDArray[np.int64]) -> dict[int, Region]:
    """Bounding boxes of ``ids`` in ``labels_yx`` (one pass over their pixels; absent ids are
    left out)."""
    ys, xs = np.nonzero(np.isin(labels_yx, ids))
    if not ys.size:
        return {}
    values = labels_yx[ys, xs]
    order = np.argsort(values, kind="stable")
    values, ys, xs = values[order], ys[order], xs[order]
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
    y0, y1 = np.minimum.reduceat(ys, starts), np.maximum.reduceat(ys, starts) + 1
    x0, x1 = np.minimum.reduceat(xs, starts), np.maximum.reduceat(xs, starts) + 1
    return {
        int(v): (int(a), int(b), int(c), int(d)) for v, a, b, c, d in zip(values[starts], y0, x0, y1, x1, strict=True)
    }


def depth_step_z_order(session: SessionState, instance_id: int, forward: bool) -> int:
    """The ``z_order`` one step in depth takes an instance to: strictly in front of the nearest
    instance it overlaps that is now drawn in front of it (``forward``), or strictly behind
    the nearest one drawn behind it; one more (one less) when no instance is in the way.

    An instance's extent is its amodal outline when it has one, else its visible pixels;
    "in front" follows :func:`~napari_instseg.core.occlusion.paint_order` (``z_order``, then
    smaller area, then smaller id), so one step always changes who owns the overlap.
    """
    z_values = session.table["z_order"].to_numpy()

    def z_of(i: int) -> int:
        return int(z_values[session.table.index.get_loc(i)])

    own_z = z_of(instance_id)
    extent = _extent(session, instance_id)
    if not extent.area_px:
        return own_z + (1 if forward else -1)
    rank = {j: (z_of(j), -area, -j) for j, area in _overlapping(session, instance_id, extent).items()}
    own = (own_z, -extent.area_px, -instance_id)
    if forward:
        ahead = [key for key in rank.values() if key > own]
        return min(ahead)[0] + 1 if ahead else own_z + 1
    behind = [key for key in rank.values() if key < own]
    return max(behind)[0] - 1 if behind else own_z - 1


def _extent(session: SessionState, instance_id: int) -> CroppedMask:
    """An instance's outline when it has one, else its visible pixels."""
    outline = session.amodal.get(instance_id)
    return outline if outline is not None else CroppedMask.from_full(session.labels_yx == instance_id)


def _overlapping(session: SessionState, instance_id: int, extent: CroppedMask) -> dict[int, int]:
    """The instances (with a row) whose extent overlaps ``extent``, with their full areas (as
    the compositing rule counts them)."""
    region = extent.bbox_yx
    own = extent.mask
    y0, x0, y1, x1 = region
    crop = session.labels_yx[y0:y1, x0:x1]
    found: dict[int, int] = {}
    for other in np.unique(crop[own]).tolist():
        if other and other != instance_id and other not in session.amodal:
            found[int(other)] = int(np.count_nonzero(session.labels_yx == other))
    for other, outline in session.amodal.items():
        if other != instance_id and other not in found:
            part = crop_to(outline, region)
            if part is not None and (part & own).any():
                found[int(other)] = outline.area_px
    return {i: area for i, area in found.items() if i in session.table.index}


def review_changes(session: SessionState, instance_id: int, *, only_corrected: bool = False) -> dict[str, Any]:
    """``review`` / ``prelabel_iou`` of an instance measured against its proposal: ``accepted``
    when unchanged, else ``corrected`` (with ``only_corrected``, an unchanged one keeps its
    state). Nothing for a rejected instance; for one without a proposal, nothing either, but
    a ``corrected`` one stays ``corrected`` (its proposal came from its labels when it was
    first reviewed, and was not saved: accepting it again must not count it as accepted as is).

    The whole object is measured: the session's pixels, plus, for an object crossing the edge
    of a slide window, the counts of its part outside the window
    (``session.prelabel_outside``, which the window's store supplies).
    """
    record = session.prelabels.get(instance_id)
    review = session.table.at[instance_id, "review"]
    if review == "rejected":
        return {}
    if record is None:
        return {"review": "corrected"} if review == "corrected" else {}
    inside = OverlapCounts.of(session.mask_of(instance_id), record.full(session.shape_yx))
    outside = session.prelabel_outside.get(instance_id)
    overlap = (inside if outside is None else inside + outside).iou
    state = "accepted" if overlap == 1.0 else "corrected"
    if only_corrected and state == "accepted":
        return {"prelabel_iou": overlap}
    return {"review": state, "prelabel_iou": overlap}


def _front_z(session: SessionState) -> int:
    return int(session.table["z_order"].max()) if len(session.table) else 0


def _back_z(session: SessionState) -> int:
    return int(session.table["z_order"].min()) if len(session.table) else 0


def combine_edits(edits: list[Edit], labels_before: NDArray[np.uint32], labels_after: NDArray[np.uint32]) -> Edit:
    """Several consecutive edits as one ``commit-many`` (the earliest 'before', the latest
    'after'); ``labels_before`` / ``labels_after`` are the full label images around them."""
    region = None
    for edit in edits:
        region = region_union(region, edit.region_yx)
    names = ("rows", "prelabels", "amodal")
    before: dict[str, dict[int, Any]] = {name: {} for name in names}
    after: dict[str, dict[int, Any]] = {name: {} for name in names}
    for edit in edits:
        for name in names:
            for key, value in getattr(edit, f"{name}_before").items():
                before[name].setdefault(key, value)
            after[name].update(getattr(edit, f"{name}_after"))
    crop_before = crop_after = None
    if region is not None:
        y0, x0, y1, x1 = region
        crop_before, crop_after = labels_before[y0:y1, x0:x1].copy(), labels_after[y0:y1, x0:x1].copy()
    ids = tuple(sorted({i for edit in edits for i in edit.ids}))
    return Edit(
        "commit-many",
        ids,
        region,
        crop_before,
        crop_after,
        before["rows"],
        after["rows"],
        before["prelabels"],
        after["prelabels"],
        before["amodal"],
        after["amodal"],
        edits[-1].next_id,
    )
