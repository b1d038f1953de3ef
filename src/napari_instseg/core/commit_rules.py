"""The commit and review rules of a session, in one place.

A commit makes a new instance with a new id; it never overwrites a committed instance unless
put in front (which raises its ``z_order`` above all others); an amodal commit keeps the full
outline behind everything and recomposites. Masks from a model start as ``pre-label`` and their
proposal is kept; reviewing measures the final mask against it. These functions build the
:class:`~napari_instseg.core.edits.Edit` of an action without applying it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from napari_instseg.core.compositing import composite_region
from napari_instseg.core.edits import CroppedMask, Edit, Region, bbox_of, region_union
from napari_instseg.core.instances import new_row, now_iso, row_of
from napari_instseg.core.prompting.registry import MODEL_SOURCES
from napari_instseg.core.records import CommitError, CommitResult, PrelabelRecord, iou

if TYPE_CHECKING:
    from napari_instseg.core.session_state import SessionState

__all__ = [
    "MODEL_SOURCES",
    "combine_edits",
    "commit_edit",
    "depth_edit",
    "removal_edit",
    "review_changes",
]


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
    ``score`` is the model's own quality estimate of the mask (default: the candidate's).
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
        region = session.amodal[instance_id].bbox_yx if instance_id in session.amodal else None
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


def review_changes(session: SessionState, instance_id: int, *, only_corrected: bool = False) -> dict[str, Any]:
    """``review`` / ``prelabel_iou`` of an instance measured against its proposal: ``accepted``
    when unchanged, else ``corrected`` (with ``only_corrected``, an unchanged one keeps its
    state). Nothing for an instance without a proposal or a rejected one."""
    record = session.prelabels.get(instance_id)
    if record is None or session.table.at[instance_id, "review"] == "rejected":
        return {}
    overlap = iou(session.mask_of(instance_id), record.full(session.shape_yx))
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
