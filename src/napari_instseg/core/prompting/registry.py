"""The names of prompting backends, SAM 2 model sizes and torch devices: one registry that the
CLI, the widgets, the demo and batch jobs import (never a literal list of their own)."""

from __future__ import annotations

from napari_instseg.core.prompting.base import PromptError
from napari_instseg.core.prompting.checkpoints import MODELS

__all__ = [
    "AUTO_SOURCES",
    "AUTO_TILE_PX",
    "BACKENDS",
    "DEFAULT_SIZE",
    "DEVICES",
    "IMPORTED_MODEL_SOURCE",
    "MODEL_SIZES",
    "MODEL_SOURCES",
    "auto_tile_px",
    "require_backend",
]

BACKENDS: tuple[str, ...] = ("sam2", "classic")
"""Prompting backends: SAM 2 (needs the ``sam2`` extra and a checkpoint) and the classical
fallback (no weights)."""

MODEL_SIZES: tuple[str, ...] = tuple(MODELS)
"""SAM 2.1 sizes, smallest first."""

DEFAULT_SIZE = "tiny"
"""The SAM 2.1 size used when none is chosen."""

AUTO_SOURCES: tuple[str, ...] = tuple(f"{b}-auto" for b in BACKENDS)
"""Sources of automatic (everything) pre-labels: ``sam2-auto``, ``classic-auto``."""

AUTO_TILE_PX: dict[str, int] = {"sam2": 1024, "classic": 512}
"""Default tile size (pixels) of the automatic mode per backend, for the CLI, the batch runs
and the widget: SAM 2 sees 1024 x 1024 tiles (its input size); the classic mode 512."""

IMPORTED_MODEL_SOURCE = "model-import"
"""Source of another tool's model results read from a file (a third-party annotation with a
``score``): pre-labels to review, like this plugin's own."""

MODEL_SOURCES: tuple[str, ...] = (*BACKENDS, *AUTO_SOURCES, IMPORTED_MODEL_SOURCE)
"""Instance sources that are a model's proposals: they start as pre-labels and need review."""

DEVICES: tuple[str, ...] = ("cpu", "cuda", "mps")
"""torch devices a user may choose (``auto`` or None picks the best available)."""


def require_backend(backend: str) -> str:
    """Return ``backend`` when it is known.

    Raises
    ------
    PromptError
        For an unknown backend name (the message lists the known ones).
    """
    if backend not in BACKENDS:
        raise PromptError(f"Unknown backend {backend!r}; choose one of {BACKENDS}.")
    return backend


def auto_tile_px(backend: str) -> int:
    """The default tile size (pixels) of the automatic mode with ``backend`` (:data:`AUTO_TILE_PX`).

    Raises
    ------
    PromptError
        For an unknown backend name.
    """
    return AUTO_TILE_PX[require_backend(backend)]
