"""Headless pre-labelling of one image: prompts in, reviewed-later instances out.

Every prompt goes through :class:`~napari_instseg.core.session.AnnotationSession`, so the
commit rules are the same as in napari: new ids, never over a committed instance, and each
instance in review state ``pre-label`` with its proposal kept.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from napari_instseg.core.prompting.base import ImageKey, Prompt, Prompter, PromptError
from napari_instseg.core.session import AnnotationSession, CommitError

__all__ = ["PrelabelSummary", "prelabel_image"]


@dataclass(frozen=True)
class PrelabelSummary:
    """What a pre-labelling run did."""

    n_prompts: int
    n_committed: int
    n_covered: int
    n_invalid: int
    backend: str

    def __str__(self) -> str:
        text = f"{self.n_committed} of {self.n_prompts} prompts committed as pre-labels ({self.backend})"
        if self.n_covered:
            text += f"; {self.n_covered} fell entirely on earlier instances"
        if self.n_invalid:
            text += f"; {self.n_invalid} prompt(s) outside the image were skipped"
        return text


def prelabel_image(
    image: NDArray[np.generic],
    prompts: Sequence[Prompt],
    prompter: Prompter,
    session: AnnotationSession | None = None,
    *,
    key: ImageKey | None = None,
    category: int | str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[AnnotationSession, PrelabelSummary]:
    """Prompt ``prompter`` once per prompt and commit each best candidate as a pre-label.

    Parameters
    ----------
    image : numpy.ndarray, shape (height, width[, channels])
        The image to pre-label.
    prompts : sequence of Prompt
        One prompt per object.
    prompter : Prompter
        The backend (its ``set_image`` runs once).
    session : AnnotationSession, optional
        Session to commit into (a new one on an empty label image by default).
    key : ImageKey, optional
        Embedding-cache key of the image.
    category : int or str, optional
        Category of every instance (default: the protocol's first).
    progress : callable, optional
        ``progress(done, total)`` after each prompt.
    """
    session = session or AnnotationSession(np.zeros(image.shape[:2], np.uint32), prompter=prompter)
    session.prompter = prompter
    session.set_image(image, key)
    committed = covered = invalid = 0
    for done, prompt in enumerate(prompts, start=1):
        try:
            session.prompt(
                prompt.points_yx if len(prompt.points_yx) else None,
                prompt.point_labels if len(prompt.points_yx) else None,
                prompt.box_xyxy,
                prompt.mask_yx,
            )
            session.commit(category=category)
            committed += 1
        except CommitError:
            covered += 1
            session.clear()
        except PromptError:
            invalid += 1
            session.clear()
        if progress is not None:
            progress(done, len(prompts))
    summary = PrelabelSummary(len(prompts), committed, covered, invalid, prompter.name)
    return session, summary
