"""Reading and writing label images and instance tables as files (TIFF, NPY, CSV).

All writers are atomic: a temporary file beside the target, then a rename.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from napari_instseg.core._io import atomic_path, atomic_write_text
from napari_instseg.core.errors import InputFileError, LabelImageError, TableError
from napari_instseg.core.instances import COLUMNS, FEATURES_ID, ID_NAME, validate_table
from napari_instseg.core.labels import as_label_image, check_image_memory
from napari_instseg.core.protocol import AnnotationProtocol

if TYPE_CHECKING:
    import pandas as pd
else:
    from napari_instseg.core._lazy import pd

__all__ = [
    "LABEL_SUFFIXES",
    "check_grey_or_rgb",
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
        For another suffix, an empty, truncated or corrupt file, a declared size that does not
        fit in memory, or an image that is not 2-D non-negative integer (the message names the
        file, dtype, shape, min and max).
    """
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix not in LABEL_SUFFIXES:
        raise LabelImageError(f"{target}: label images must be one of {LABEL_SUFFIXES}, got {suffix!r}.")
    data = _read_array(target, LabelImageError, "a label image")
    if data.size == 0:
        raise LabelImageError(f"{target}: the label image is empty (shape {data.shape}).")
    data = np.squeeze(data) if data.ndim > 2 else data
    return as_label_image(data, name=str(target))


def _read_array(target: Path, error: type[InputFileError] | type[LabelImageError], what: str) -> NDArray[Any]:
    """Read a ``.npy`` or TIFF file whole, refusing what would not fit in memory first."""
    if target.is_file() and target.stat().st_size == 0:
        raise error(f"{target}: the file is empty; expected {what}.")
    if target.suffix.lower() == ".npy":
        return _read_npy(target, error, what)
    import tifffile

    quiet = logging.getLogger("tifffile")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # its messages on a corrupt file would repeat our error
    try:
        with tifffile.TiffFile(target) as tif:
            series = tif.series[0]
            check_image_memory(series.shape, 2 * np.dtype(series.dtype).itemsize, what=f"{target}")
            return np.asarray(series.asarray())
    except LabelImageError as exc:  # the declared size does not fit in memory
        raise error(str(exc)) from exc
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except OSError as exc:
        raise error(f"{target}: cannot read {what}: {_first_line(exc)}") from exc
    except Exception as exc:  # tifffile raises many types for a corrupt or truncated file
        raise error(
            f"{target}: not a readable TIFF ({type(exc).__name__}: {_first_line(exc)}); expected {what}."
        ) from exc
    finally:
        quiet.setLevel(level)


def _read_npy(target: Path, error: type[InputFileError] | type[LabelImageError], what: str) -> NDArray[Any]:
    try:
        mapped = np.load(target, mmap_mode="r", allow_pickle=False)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except (ValueError, OSError, EOFError) as exc:  # pickled objects, truncated, not a .npy
        raise error(
            f"{target}: not a readable .npy array without pickle ({_first_line(exc)}); expected {what}."
        ) from exc
    if not isinstance(mapped, np.ndarray):
        raise error(f"{target}: holds several arrays; expected {what}.")
    check_image_memory(mapped.shape, 2 * mapped.dtype.itemsize, what=str(target))
    return np.array(mapped)


def read_image(path: str | os.PathLike[str]) -> NDArray[np.generic]:
    """Read an image (TIFF, PNG, JPEG, NPY ...) as a numpy array, (y, x[, channel]).

    Raises
    ------
    InputFileError
        For an empty, corrupt or truncated file, a file that is not an image, or an image with
        no pixels (the message names the file).
    """
    target = Path(path)
    if target.suffix.lower() in (".npy", ".tif", ".tiff"):
        image = _read_array(target, InputFileError, "an image")
    else:
        image = _read_other_image(target)
    if image.size == 0 or image.ndim < 2:
        raise InputFileError(f"{target}: the image has no pixels (shape {image.shape}).")
    if not (np.issubdtype(image.dtype, np.number) or image.dtype == bool):
        raise InputFileError(f"{target}: pixels of dtype {image.dtype} are not numbers.")
    return image


def _read_other_image(target: Path) -> NDArray[Any]:
    if target.is_file() and target.stat().st_size == 0:
        raise InputFileError(f"{target}: the file is empty; expected an image.")
    from skimage import io

    try:
        return np.asarray(io.imread(target))
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except MemoryError as exc:
        raise InputFileError(f"{target}: the image does not fit in memory.") from exc
    except Exception as exc:  # imageio / PIL raise many types for what is not an image
        raise InputFileError(f"{target}: not a readable image ({type(exc).__name__}: {_first_line(exc)}).") from exc


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's message (third-party readers add advice lines)."""
    lines = str(exc).strip().splitlines()
    return lines[0].rstrip(" .") if lines else type(exc).__name__


def write_labels_tiff(path: str | os.PathLike[str], labels_yx: NDArray[np.integer]) -> None:
    """Write a label image as a zlib-compressed uint32 TIFF, atomically."""
    import tifffile

    labels = as_label_image(labels_yx, name=str(path))
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, labels, compression="zlib")


def read_table_csv(path: str | os.PathLike[str], protocol: AnnotationProtocol | None = None) -> pd.DataFrame:
    """Read an instance table from CSV.

    The id column is ``id`` (or napari's ``index``). A ``category`` column of names is mapped
    to ``category_id`` through ``protocol``. Missing schema columns get their defaults.

    Raises
    ------
    TableError
        When there is no id column or a value is invalid (naming the file and instance).
    """
    from napari_instseg.core.csvfile import read_csv_file

    target = Path(path)
    text_columns = {name: str for name, col in COLUMNS.items() if col.dtype == "str"}
    expected = "a CSV table with an 'id' column"
    # "7" stays the annotator "7", not 7.0
    frame = read_csv_file(target, error=TableError, noun="table", expected=expected, dtype=text_columns)
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


def check_grey_or_rgb(image: NDArray[np.generic], path: str | os.PathLike[str]) -> None:
    """Refuse an image that is not grey (y, x) or RGB(A) (y, x, 3|4), naming its file.

    Raises
    ------
    InputFileError
        For a stack (z, y, x), a two-channel or other multi-channel image.
    """
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[-1] in (3, 4))):
        raise InputFileError(
            f"{path}: expected a grey (y, x) or RGB(A) (y, x, 3|4) image, got shape {image.shape}; "
            "for a stack or a multi-channel image, save one plane or an RGB composite and pre-label that."
        )
