"""Session compositing: the visible labels of a region after depth or outline changes, and
the derived occluded fraction / tier of the instances an edit touches.

The ownership of a contested pixel follows the project's one rule,
:func:`napari_instseg.core.occlusion.paint_order` (larger ``z_order``, then smaller full area,
then smaller id in front).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from napari_instseg.core.edits import CroppedMask, Edit, Region
from napari_instseg.core.instances import row_of
from napari_instseg.core.occlusion import occluded_fraction, paint_order
from napari_instseg.core.protocol import TierThresholds

__all__ = ["composite_region", "crop_to", "labels_after_edit", "with_occlusion"]


def composite_region(
    labels_yx: NDArray[np.uint32],
    table: pd.DataFrame,
    amodal: Mapping[int, CroppedMask],
    region: Region | None,
    rows: Mapping[int, dict[str, Any] | None],
    amodal_changes: Mapping[int, CroppedMask],
) -> tuple[Region | None, NDArray[np.uint32] | None]:
    """Visible labels inside ``region`` after a change of z-orders or amodal masks.

    Parameters
    ----------
    labels_yx : numpy.ndarray of uint32, shape (height, width)
        The current visible labels (not modified).
    table : DataFrame
        The current instance table (``z_order`` of instances ``rows`` does not change).
    amodal : mapping of int to CroppedMask
        The current amodal outlines.
    region : Region or None
        (y0, x0, y1, x1) to recomposite; None gives (None, None).
    rows : mapping
        Changed rows (their ``z_order`` counts).
    amodal_changes : mapping of int to CroppedMask
        New outlines.

    Returns
    -------
    (Region or None, numpy.ndarray of uint32 or None)
        The region and its new labels. Every instance's extent is its outline when it has one,
        else its current visible pixels; :func:`~napari_instseg.core.occlusion.paint_order`
        decides who owns each pixel.
    """
    if region is None:
        return None, None
    y0, x0, y1, x1 = region
    current = labels_yx[y0:y1, x0:x1]
    masks = dict(amodal)
    masks.update(amodal_changes)
    extents: dict[int, NDArray[np.bool_]] = {}
    areas: dict[int, int] = {}
    plain = [i for i in np.unique(current).tolist() if i and i not in masks]
    if plain:
        ids, counts = np.unique(labels_yx, return_counts=True)
        full_area = dict(zip(ids.tolist(), counts.tolist(), strict=True))
        for instance_id in plain:
            extents[instance_id] = current == instance_id
            areas[instance_id] = full_area[instance_id]
    for instance_id, cropped in masks.items():
        part = crop_to(cropped, region)
        if part is not None and part.any():
            extents[instance_id] = part
            areas[instance_id] = cropped.area_px
    order = list(extents)
    z = [int((rows.get(i) or row_of(table, i) or {"z_order": 0})["z_order"]) for i in order]
    after = np.zeros_like(current)
    for k in paint_order(z, [areas[i] for i in order], order):  # back to front
        after[extents[order[k]]] = order[k]
    return region, after


def crop_to(mask: CroppedMask, region: Region) -> NDArray[np.bool_] | None:
    """The part of ``mask`` inside ``region``, as a region-sized array; None if disjoint."""
    ry0, rx0, ry1, rx1 = region
    my0, mx0, my1, mx1 = mask.bbox_yx
    y0, x0, y1, x1 = max(ry0, my0), max(rx0, mx0), min(ry1, my1), min(rx1, mx1)
    if y0 >= y1 or x0 >= x1:
        return None
    out = np.zeros((ry1 - ry0, rx1 - rx0), dtype=bool)
    out[y0 - ry0 : y1 - ry0, x0 - rx0 : x1 - rx0] = mask.mask[y0 - my0 : y1 - my0, x0 - mx0 : x1 - mx0]
    return out


def labels_after_edit(labels_yx: NDArray[np.uint32], edit: Edit, region: Region) -> NDArray[np.uint32]:
    """The labels inside ``region`` as they will be once ``edit`` is applied (a crop)."""
    y0, x0, y1, x1 = region
    out: NDArray[np.uint32] = labels_yx[y0:y1, x0:x1].copy()
    if edit.region_yx is not None and edit.labels_after is not None:
        ey0, ex0, ey1, ex1 = edit.region_yx
        iy0, ix0, iy1, ix1 = max(y0, ey0), max(x0, ex0), min(y1, ey1), min(x1, ex1)
        if iy0 < iy1 and ix0 < ix1:
            out[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] = edit.labels_after[
                iy0 - ey0 : iy1 - ey0, ix0 - ex0 : ix1 - ex0
            ]
    return out


def with_occlusion(
    edit: Edit,
    labels_yx: NDArray[np.uint32],
    table: pd.DataFrame,
    amodal: Mapping[int, CroppedMask],
    tiers: TierThresholds,
) -> Edit:
    """``edit`` plus the derived occluded fraction (and, unless set by hand, the tier) of
    every instance with an outline whose visible area the edit may change."""
    outlines = dict(amodal)
    outlines.update({i: m for i, m in edit.amodal_after.items() if m is not None})
    if not outlines:  # nothing has a fraction to derive (the common case: no amodal rule)
        return edit
    affected = set(edit.ids)
    if edit.region_yx is not None:
        for labels in (edit.labels_before, edit.labels_after):
            if labels is not None:
                affected |= set(np.unique(labels).tolist())
    affected = {i for i in affected if i in outlines}
    if not affected:
        return edit
    rows_after = dict(edit.rows_after)
    rows_before = dict(edit.rows_before)
    for instance_id in affected:
        row = dict(rows_after.get(instance_id) or row_of(table, instance_id) or {})
        if not row:
            continue
        rows_before.setdefault(instance_id, row_of(table, instance_id))
        outline = outlines[instance_id]
        visible = labels_after_edit(labels_yx, edit, outline.bbox_yx) == instance_id
        fraction = float(occluded_fraction(np.count_nonzero(visible & outline.mask), outline.area_px))
        row["occluded_fraction"] = fraction
        if not row.get("occlusion_manual"):
            row["occlusion"] = tiers.tier_of(fraction) or "none"
        rows_after[instance_id] = row
    return dataclasses.replace(edit, rows_before=rows_before, rows_after=rows_after)
