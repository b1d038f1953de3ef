"""Prompt state of a session: the candidate masks of the last prompt and which one is current."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from napari_instseg.core.prompting.base import Candidates
from napari_instseg.core.records import CommitError

__all__ = ["CandidateState"]


class CandidateState:
    """The candidates of the last prompt (best first) and the index of the current one."""

    def __init__(self) -> None:
        self.candidates: Candidates | None = None
        self.index = 0

    def set(self, candidates: Candidates | None) -> None:
        """Show new candidates (None clears them); the best becomes current."""
        self.candidates = candidates
        self.index = 0

    def clear(self) -> None:
        """Drop the candidates."""
        self.set(None)

    @property
    def current(self) -> NDArray[np.bool_] | None:
        """The current candidate mask, or None."""
        if self.candidates is None or len(self.candidates) == 0:
            return None
        mask: NDArray[np.bool_] = self.candidates.masks_yx[self.index]
        return mask

    @property
    def current_score(self) -> float:
        """The current candidate's score; NaN when there is none."""
        if self.candidates is None or len(self.candidates) == 0:
            return float("nan")
        return float(self.candidates.scores[self.index])

    @property
    def source(self) -> str | None:
        """The backend that made the candidates, or None."""
        return None if self.candidates is None else self.candidates.source

    def next(self) -> int:
        """Cycle to the next candidate (by descending score); return its index.

        Raises
        ------
        CommitError
            When there are no candidates.
        """
        if self.candidates is None or len(self.candidates) == 0:
            raise CommitError("There are no candidates: prompt first.")
        self.index = (self.index + 1) % len(self.candidates)
        return self.index
