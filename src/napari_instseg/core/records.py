"""Small records shared by the session and the store (kept apart so neither imports the other).

:class:`CommitError` is what a session action raises when it cannot be carried out.

:class:`PrelabelRecord` is the mask a model proposed for an instance; the store persists it
and the session measures review against it. :class:`CommitResult` is what a commit wrote.
:class:`OverlapCounts` are the pixel counts a review's IoU is made of (so the parts of an
object inside and outside a slide window add up to the whole object's IoU).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from napari_instseg.core.edits import CroppedMask
from napari_instseg.core.errors import InstsegError

__all__ = ["CommitError", "CommitResult", "OverlapCounts", "PrelabelRecord", "iou"]


class CommitError(InstsegError, ValueError):
    """A commit or review action cannot be carried out (the message says why)."""


@dataclass(frozen=True)
class PrelabelRecord:
    """The mask a model proposed for an instance, kept for review and QA.

    Attributes
    ----------
    proposal : CroppedMask
        The proposed visible mask, in the label image's pixels (y, x).
    source : str
        The backend that proposed it (``sam2`` or ``classic``).
    score : float
        The backend's score for the mask; NaN when unknown.
    """

    proposal: CroppedMask
    source: str
    score: float

    def full(self, shape_yx: tuple[int, int]) -> NDArray[np.bool_]:
        """The proposed mask in a full frame of ``shape_yx``."""
        return self.proposal.full(shape_yx)


@dataclass(frozen=True)
class CommitResult:
    """What a commit wrote.

    Attributes
    ----------
    instance_id : int
        The new instance's id.
    painted_px : int
        Pixels of the mask written into the label image.
    skipped_px : int
        Pixels of the mask left to nearer instances.
    z_order : int
        The new instance's depth (larger is nearer the viewer).
    """

    instance_id: int
    painted_px: int
    skipped_px: int
    z_order: int


def iou(a: NDArray[np.bool_], b: NDArray[np.bool_]) -> float:
    """Intersection over union of two boolean masks of one shape (1.0 when both are empty)."""
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


@dataclass(frozen=True)
class OverlapCounts:
    """Pixel counts of an instance's mask against its proposal, over some part of the image.

    Counts of disjoint parts add up (``+``), so the IoU of an object split by a slide
    window's edge is the IoU of the summed counts of its two parts.

    Attributes
    ----------
    mask_px : int
        Pixels of the instance's mask.
    proposal_px : int
        Pixels of the proposal.
    both_px : int
        Pixels in both.
    """

    mask_px: int = 0
    proposal_px: int = 0
    both_px: int = 0

    @classmethod
    def of(cls, mask: NDArray[np.bool_], proposal: NDArray[np.bool_]) -> OverlapCounts:
        """The counts of two boolean masks of one shape."""
        return cls(int(np.count_nonzero(mask)), int(np.count_nonzero(proposal)), int(np.count_nonzero(mask & proposal)))

    def __add__(self, other: OverlapCounts) -> OverlapCounts:
        return OverlapCounts(
            self.mask_px + other.mask_px, self.proposal_px + other.proposal_px, self.both_px + other.both_px
        )

    @property
    def iou(self) -> float:
        """Intersection over union (1.0 when both are empty)."""
        union = self.mask_px + self.proposal_px - self.both_px
        return 1.0 if union == 0 else self.both_px / union
