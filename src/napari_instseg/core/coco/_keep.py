"""Export of imported instances: what was not edited goes out as it came in.

An imported instance keeps its COCO annotation record (:attr:`ImportedImage.annotations`).
At export the import is replayed on those records (:func:`import_image` is deterministic), and
the label image and table of the replay are compared with the current ones:

- an instance whose visible pixels are unchanged is written as its original record: its own
  full mask (overlapping parts included), annotation id, ``area``, ``bbox``, ``iscrowd``,
  ``attributes`` and every other key exactly as they came in; table values that changed
  since the import (a new category, tier, review state...) are written over it;
- an instance whose pixels changed keeps its annotation id, keys and attributes, and gets its
  edited visible mask (``segmentation``, ``area``, ``bbox``);
- an instance deleted from the table and the labels is left out; a new instance gets an
  annotation id after the largest original one.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from napari_instseg.core.coco._fields import TOP_LEVEL_COLUMNS, json_scalar
from napari_instseg.core.coco._import import ImportedImage, import_image
from napari_instseg.core.instances import SCORE_COLUMN
from napari_instseg.core.protocol import AnnotationProtocol

if TYPE_CHECKING:
    import pandas as pd
else:
    from napari_instseg.core._lazy import pd

__all__ = ["Kept", "edited_since_import", "keep_or_replace"]


@dataclass(frozen=True)
class Kept:
    """The annotations of one image, and how many were kept or edited."""

    annotations: list[dict[str, Any]]
    instance_ids: list[int]
    n_kept: int
    n_edited: int


def _originals_in_order(originals: Mapping[int, Mapping[str, Any]]) -> list[int]:
    return sorted(originals, key=lambda i: int(originals[i]["id"]))


def edited_since_import(
    labels_yx: NDArray[np.uint32],
    originals: Mapping[int, Mapping[str, Any]],
    image: Mapping[str, Any],
    protocol: AnnotationProtocol,
) -> tuple[set[int], ImportedImage]:
    """Instance ids whose visible pixels differ from the import's, and the replayed import.

    Parameters
    ----------
    labels_yx : numpy.ndarray of uint32, shape (height, width)
        The current label image.
    originals : mapping of int to dict
        Original COCO annotation records by instance id.
    image : mapping
        The COCO image record (``height``, ``width``).
    protocol : AnnotationProtocol
        The protocol (tier thresholds of the derived tiers).
    """
    order = _originals_in_order(originals)
    before = import_image(image, [originals[i] for i in order], protocol, source="import replay")
    if sorted(before.annotations) != sorted(originals) or before.labels_yx.shape != labels_yx.shape:
        return set(originals), before  # numbered differently: treat every instance as edited
    diff = labels_yx != before.labels_yx
    changed = set(np.unique(labels_yx[diff]).tolist()) | set(np.unique(before.labels_yx[diff]).tolist())
    changed.discard(0)
    return {int(i) for i in changed}, before


def keep_or_replace(
    generated: Sequence[Mapping[str, Any]],
    originals: Mapping[int, Mapping[str, Any]],
    table: pd.DataFrame | None,
    before: ImportedImage,
    edited: set[int],
    first_new_ann_id: int,
) -> Kept:
    """Merge the annotations generated from the label image with the original records.

    Parameters
    ----------
    generated : sequence of dict
        Annotations written from the current label image (each with ``instance_id``).
    originals : mapping of int to dict
        Original COCO annotation records by instance id.
    table : DataFrame or None
        The current instance table.
    before : ImportedImage
        The replayed import (its table holds the values as imported).
    edited : set of int
        Instance ids whose pixels changed.
    first_new_ann_id : int
        Annotation id of the first instance that was not imported.
    """
    from_labels = {int(a["instance_id"]): a for a in generated}
    in_table = set() if table is None else {int(i) for i in table.index}
    out: list[dict[str, Any]] = []
    ids: list[int] = []
    n_kept = n_edited = 0
    for instance_id in _originals_in_order(originals):
        if instance_id not in in_table and instance_id not in from_labels:
            continue  # deleted
        if instance_id in edited and instance_id not in from_labels:
            continue  # erased
        annotation = copy.deepcopy(dict(originals[instance_id]))
        if instance_id in edited:
            mask = from_labels[instance_id]
            annotation.update(segmentation=mask["segmentation"], area=mask["area"], bbox=mask["bbox"])
            n_edited += 1
        else:
            n_kept += 1
        if table is not None and instance_id in in_table:
            _overlay(annotation, table.loc[instance_id], before.table.loc[instance_id])
        out.append(annotation)
        ids.append(instance_id)
    next_id = first_new_ann_id
    for record in generated:
        instance_id = int(record["instance_id"])
        if instance_id in originals:
            continue
        out.append({**record, "id": next_id})
        ids.append(instance_id)
        next_id += 1
    return Kept(out, ids, n_kept, n_edited)


def _same(a: Any, b: Any) -> bool:
    a, b = json_scalar(a), json_scalar(b)
    if isinstance(a, float) and isinstance(b, float):
        return bool(np.isclose(a, b, rtol=0, atol=1e-12))
    return bool(a == b)


def _overlay(annotation: dict[str, Any], row: pd.Series, imported: pd.Series) -> None:
    """Write over ``annotation`` the table values that changed since the import."""
    for column, value in row.items():
        name = str(column)
        if name in imported.index and _same(value, imported[name]):
            continue
        scalar = json_scalar(value)
        if name == "category_id":
            annotation["category_id"] = int(scalar)
        elif name == "iscrowd":
            annotation["iscrowd"] = int(bool(scalar))
        elif name in TOP_LEVEL_COLUMNS:
            annotation[name] = scalar
        elif name == SCORE_COLUMN:  # the model's score is a top-level key (none: left out)
            if scalar is None:
                annotation.pop(SCORE_COLUMN, None)
            else:
                annotation[SCORE_COLUMN] = float(scalar)
        else:
            attributes = annotation.get("attributes")
            attributes = dict(attributes) if isinstance(attributes, Mapping) else {}
            attributes[name] = scalar
            annotation["attributes"] = attributes
