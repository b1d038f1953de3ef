"""What every prompting backend takes and returns, napari-free.

Coordinates follow napari: points are (y, x) pixel positions; boxes are given as
``box_xyxy`` = [x0, y0, x1, y1] (any corner order is normalised). Backends convert to their
own conventions through :mod:`napari_instseg.core.coords`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike, NDArray

from napari_instseg.core.errors import InstsegError

__all__ = [
    "Candidates",
    "ImageKey",
    "Prompt",
    "PromptError",
    "Prompter",
    "as_rgb_uint8",
]


class PromptError(InstsegError, ValueError):
    """A prompt is empty, malformed or outside the image."""


@dataclass(frozen=True)
class Prompt:
    """Points and / or a box (and optionally a previous mask) that ask for one object.

    Parameters
    ----------
    points_yx : array-like, shape (n, 2)
        Click positions (row, column) in pixels.
    point_labels : array-like of int, shape (n,)
        1 = positive (on the object), 0 = negative (not the object). Defaults to all 1.
    box_xyxy : array-like, shape (4,), optional
        [x0, y0, x1, y1] in pixels, any corner order.
    mask_yx : numpy.ndarray of bool, shape (height, width), optional
        A previous mask of this object, to refine it.
    """

    points_yx: NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 2)))
    point_labels: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    box_xyxy: NDArray[np.float64] | None = None
    mask_yx: NDArray[np.bool_] | None = None

    @classmethod
    def make(
        cls,
        points_yx: ArrayLike | None = None,
        point_labels: ArrayLike | None = None,
        box_xyxy: ArrayLike | None = None,
        mask_yx: ArrayLike | None = None,
    ) -> Prompt:
        """Build and validate a prompt from loose inputs (lists, tuples, arrays)."""
        points = np.zeros((0, 2)) if points_yx is None else np.asarray(points_yx, dtype=np.float64).reshape(-1, 2)
        if point_labels is None:
            labels = np.ones(len(points), dtype=np.int64)
        else:
            labels = np.asarray(point_labels, dtype=np.int64).reshape(-1)
        if labels.size != len(points):
            raise PromptError(f"Got {len(points)} points but {labels.size} point labels.")
        if not np.isin(labels, (0, 1)).all():
            raise PromptError(f"Point labels must be 1 (positive) or 0 (negative), got {sorted(set(labels.tolist()))}.")
        box = None
        if box_xyxy is not None:
            raw = np.asarray(box_xyxy, dtype=np.float64).reshape(-1)
            if raw.size != 4:
                raise PromptError(f"A box is [x0, y0, x1, y1], got {raw.size} numbers.")
            box = np.array([min(raw[0], raw[2]), min(raw[1], raw[3]), max(raw[0], raw[2]), max(raw[1], raw[3])])
        mask = None if mask_yx is None else np.asarray(mask_yx, dtype=bool)
        if box is None and not (labels == 1).any() and mask is None:
            raise PromptError("A prompt needs at least one positive point, a box or a previous mask.")
        return cls(points, labels, box, mask)

    def check_inside(self, shape_yx: tuple[int, int]) -> None:
        """Raise PromptError naming the first point or box corner outside an image of ``shape_yx``."""
        height, width = shape_yx
        for y, x in self.points_yx:
            if not (0 <= y < height and 0 <= x < width):
                raise PromptError(f"Point (y={y:g}, x={x:g}) is outside the image (height {height}, width {width}).")
        if self.box_xyxy is not None:
            x0, y0, x1, y1 = self.box_xyxy
            if x1 < 0 or y1 < 0 or x0 >= width or y0 >= height or x1 <= x0 or y1 <= y0:
                raise PromptError(
                    f"Box [x0={x0:g}, y0={y0:g}, x1={x1:g}, y1={y1:g}] is empty or outside the image "
                    f"(height {height}, width {width})."
                )
        if self.mask_yx is not None and self.mask_yx.shape != (height, width):
            raise PromptError(f"Previous mask has shape {self.mask_yx.shape}, the image is {(height, width)}.")


@dataclass(frozen=True)
class Candidates:
    """Candidate masks for one prompt, best first.

    Attributes
    ----------
    masks_yx : numpy.ndarray of bool, shape (k, height, width)
        Candidate masks, sorted by descending score.
    scores : numpy.ndarray of float32, shape (k,)
        The backend's own quality estimate of each mask (SAM 2: predicted IoU).
    source : str
        The backend that proposed them (``"sam2"`` or ``"classic"``), for the instance table.
    """

    masks_yx: NDArray[np.bool_]
    scores: NDArray[np.float32]
    source: str

    def __len__(self) -> int:
        return int(self.masks_yx.shape[0])

    @classmethod
    def sorted(cls, masks_yx: NDArray[np.bool_], scores: ArrayLike, source: str) -> Candidates:
        """Build candidates with the masks ordered by descending score."""
        scores = np.asarray(scores, dtype=np.float32).reshape(-1)
        order = np.argsort(-scores, kind="stable")
        return cls(np.asarray(masks_yx, dtype=bool)[order], scores[order], source)


@dataclass(frozen=True)
class ImageKey:
    """What identifies an image (or a region of one) for the embedding cache.

    Never a hash of the pixels: the identity is a file path with its size and modification
    time, a store path with level, or a name the caller gives.

    Attributes
    ----------
    identity : str
        Stable name of the image source.
    region_yx : tuple of int
        (y0, x0, y1, x1) of the embedded region in that source (the whole image by default).
    """

    identity: str
    region_yx: tuple[int, int, int, int]

    @classmethod
    def whole(cls, identity: str, shape_yx: tuple[int, int]) -> ImageKey:
        """Key of a whole image of ``shape_yx``."""
        return cls(identity, (0, 0, int(shape_yx[0]), int(shape_yx[1])))


@runtime_checkable
class Prompter(Protocol):
    """A prompting backend: set an image once, then predict masks from prompts cheaply."""

    name: str

    def set_image(self, image: NDArray[np.generic], key: ImageKey | None = None) -> None:
        """Prepare ``image`` (y, x[, channel]) for prompting (SAM 2: compute or load its embedding)."""

    def predict(self, prompt: Prompt, *, multimask: bool = True) -> Candidates:
        """Return candidate masks for ``prompt`` on the current image."""


def as_rgb_uint8(image: NDArray[np.generic]) -> NDArray[np.uint8]:
    """Return an (y, x, 3) uint8 RGB view of a grey, RGB or RGBA image of any numeric dtype.

    Non-uint8 intensities are scaled from their 0.1 / 99.9 percentiles to 0..255.
    """
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[-1] == 4:
        array = array[..., :3]
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise PromptError(f"Expected a grey (y, x) or RGB(A) (y, x, 3|4) image, got shape {np.shape(image)}.")
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    data = array.astype(np.float32)
    low, high = np.percentile(data, (0.1, 99.9))
    scaled = (data - low) / max(float(high - low), 1e-6)
    result: NDArray[np.uint8] = (np.clip(scaled, 0.0, 1.0) * 255).astype(np.uint8)
    return result
