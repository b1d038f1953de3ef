"""Reading and writing label images and instance tables as files (TIFF, NPY, CSV).

All writers are atomic: a temporary file beside the target, then a rename.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from napari_instseg.core._io import atomic_path, atomic_write_text
from napari_instseg.core.errors import LabelImageError, TableError
from napari_instseg.core.instances import COLUMNS, FEATURES_ID, ID_NAME, validate_table
from napari_instseg.core.labels import as_label_image
from napari_instseg.core.protocol import Protocol

if TYPE_CHECKING:
    import pandas as pd
else:
    from napari_instseg.core._lazy import pd

__all__ = [
    "LABEL_SUFFIXES",
    "read_image",
    "read_labels",
    "read_table_csv",
    "write_labels_tiff",
    "write_table_csv",
]

LABEL_SUFFIXES = (".tif", ".tiff", ".npy")


def read_labels(path: str | os.PathLike[str]) -> NDArray[np.uint32]:
    """Read a 2-D label image from a ``.tif`` / ``.tiff`` / ``.npy`` file and validate it.

    Raises
    ------
    LabelImageError
        For another suffix, or an image that is not 2-D non-negative integer (the message
        names the file, dtype, shape, min and max).
    """
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix not in LABEL_SUFFIXES:
        raise LabelImageError(f"{target}: label images must be one of {LABEL_SUFFIXES}, got {suffix!r}.")
    if suffix == ".npy":
        data = np.load(target, allow_pickle=False)
    else:
        import tifffile

        data = tifffile.imread(target)
    data = np.squeeze(data) if data.ndim > 2 else data
    return as_label_image(data, name=str(target))


def read_image(path: str | os.PathLike[str]) -> NDArray[np.generic]:
    """Read an image (TIFF, PNG, JPEG, NPY ...) as a numpy array, (y, x[, channel])."""
    target = Path(path)
    if target.suffix.lower() == ".npy":
        return np.asarray(np.load(target, allow_pickle=False))
    if target.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        return np.asarray(tifffile.imread(target))
    from skimage import io

    return np.asarray(io.imread(target))


def write_labels_tiff(path: str | os.PathLike[str], labels_yx: NDArray[np.integer]) -> None:
    """Write a label image as a zlib-compressed uint32 TIFF, atomically."""
    import tifffile

    labels = as_label_image(labels_yx, name=str(path))
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, labels, compression="zlib")


def read_table_csv(path: str | os.PathLike[str], protocol: Protocol | None = None) -> pd.DataFrame:
    """Read an instance table from CSV.

    The id column is ``id`` (or napari's ``index``). A ``category`` column of names is mapped
    to ``category_id`` through ``protocol``. Missing schema columns get their defaults.

    Raises
    ------
    TableError
        When there is no id column or a value is invalid (naming the file and instance).
    """
    target = Path(path)
    text_columns = {name: str for name, col in COLUMNS.items() if col.dtype == "str"}
    frame = pd.read_csv(target, dtype=text_columns)  # "7" stays the annotator "7", not 7.0
    id_column = ID_NAME if ID_NAME in frame.columns else FEATURES_ID
    if id_column not in frame.columns:
        raise TableError(
            f"{target}: no 'id' column holding the instance id of each row; columns: {list(frame.columns)}."
        )
    frame = frame.set_index(id_column)
    if "category" in frame.columns and "category_id" not in frame.columns:
        if protocol is None:
            raise TableError(f"{target}: a 'category' column of names needs a protocol to map names to ids.")
        frame["category_id"] = [protocol.category_by_name(str(n)).id for n in frame.pop("category")]
    return validate_table(frame, source=str(target))


def write_table_csv(path: str | os.PathLike[str], table: pd.DataFrame) -> None:
    """Write an instance table as CSV with an ``id`` column, atomically."""
    frame = validate_table(table)
    atomic_write_text(path, frame.to_csv(index=True, index_label=ID_NAME))
