"""Label images: validation and per-instance statistics in one pass.

A label image is a 2-D array of non-negative integers that fit uint32; 0 is background and
every other value is one instance id. Axis order is (y, x) = (row, column), as in napari.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from napari_instseg.core.errors import LabelImageError

__all__ = ["as_label_image", "available_memory", "check_image_memory"]

_UINT32_MAX = int(np.iinfo(np.uint32).max)


def as_label_image(labels: object, *, name: str = "label image") -> NDArray[np.uint32]:
    """Validate a label image and return it as a uint32 (y, x) array.

    Parameters
    ----------
    labels : array-like
        2-D integer image; 0 = background, other values = instance ids. Boolean images are
        accepted (True = instance 1). Unsigned and signed integer dtypes are accepted when
        every value lies in [0, 2**32 - 1].
    name : str
        How the image is called in error messages (a file name, a layer name).

    Returns
    -------
    numpy.ndarray of uint32, shape (y, x)
        The same array when it already is uint32 (no copy), else a converted copy.

    Raises
    ------
    LabelImageError
        When the image is not 2-D, not of an integer dtype, or has values outside
        [0, 2**32 - 1]; the message names dtype, shape, min and max.
    """
    array = np.asarray(labels)
    if array.dtype == bool:
        array = array.astype(np.uint32)
    if array.ndim != 2:
        raise LabelImageError(f"{_describe(array, name)}: a label image must be 2-D (y, x).")
    if not np.issubdtype(array.dtype, np.integer):
        raise LabelImageError(
            f"{_describe(array, name)}: a label image needs an integer dtype; round or cast it first "
            "(float labels are ambiguous)."
        )
    if array.dtype == np.uint32:
        return array
    if array.size and (int(array.min()) < 0 or int(array.max()) > _UINT32_MAX):
        raise LabelImageError(
            f"{_describe(array, name)}: values must lie in [0, {_UINT32_MAX}] (0 = background, "
            "instance ids fit uint32)."
        )
    return array.astype(np.uint32)


def _describe(array: np.ndarray, name: str) -> str:
    if array.size and (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        value_range = f"min {array.min().item()!r}, max {array.max().item()!r}"
    else:
        value_range = "empty" if not array.size else "not numeric"
    return f"{name} (dtype {array.dtype}, shape {array.shape}, {value_range})"


def available_memory() -> int:
    """Bytes of memory available to a new allocation (``MemAvailable``; else physical pages)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, OSError, ValueError):
        try:
            import psutil

            return int(psutil.virtual_memory().available)
        except ImportError:  # pragma: no cover - no way to know: do not refuse
            return 2**62


def check_image_memory(shape: Sequence[int], bytes_per_px: float, *, what: str) -> None:
    """Refuse, before allocating, an image that does not fit in the memory available now.

    Parameters
    ----------
    shape : sequence of int
        The declared shape (e.g. ``(height, width)``), from untrusted metadata.
    bytes_per_px : float
        Bytes the operation needs per pixel (every array it allocates, together).
    what : str
        What is allocated, with the file or record it comes from, for the message.

    Raises
    ------
    LabelImageError
        Naming the shape, the memory needed and the memory available.
    """
    dims = [int(n) for n in shape]
    if any(n < 0 for n in dims):
        raise LabelImageError(f"{what}: negative size in shape {tuple(dims)}.")
    need = math.prod(dims) * bytes_per_px
    available = available_memory()
    if need > available:
        raise LabelImageError(
            f"{what}: shape {tuple(dims)} needs {need / 2**30:.3g} GiB of memory, "
            f"only {available / 2**30:.3g} GiB are available."
        )
