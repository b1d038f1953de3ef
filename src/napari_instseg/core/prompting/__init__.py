"""Prompting backends: SAM 2 (``sam2``) and a classical fallback (``classic``).

``make_prompter`` builds one by name; importing this package imports neither torch nor sam2.
"""

from __future__ import annotations

import os

from napari_instseg.core.prompting.base import Candidates, ImageKey, Prompt, Prompter, PromptError
from napari_instseg.core.prompting.registry import BACKENDS, MODEL_SIZES, require_backend

__all__ = [
    "BACKENDS",
    "MODEL_SIZES",
    "Candidates",
    "ImageKey",
    "Prompt",
    "PromptError",
    "Prompter",
    "default_backend",
    "make_prompter",
]


def default_backend() -> str:
    """``sam2`` when the ``sam2`` extra is installed and a checkpoint for the tiny model is
    configured, else ``classic``."""
    from napari_instseg.core.prompting.checkpoints import CheckpointError, find_checkpoint
    from napari_instseg.core.prompting.sam2 import sam2_available

    if not sam2_available():
        return "classic"
    try:
        find_checkpoint("tiny")
    except CheckpointError:
        return "classic"
    return "sam2"


def make_prompter(
    backend: str,
    *,
    size: str = "tiny",
    checkpoint: str | os.PathLike[str] | None = None,
    device: str | None = None,
    cache_path: str | os.PathLike[str] | None = None,
    on_mismatch: str = "error",
) -> Prompter:
    """Build a prompter by backend name (``sam2`` or ``classic``).

    Prefer :func:`napari_instseg.core.prompting.lifecycle.build_prompter`, which also loads
    the model and uses the shared embedding cache.
    """
    require_backend(backend)
    if backend == "classic":
        from napari_instseg.core.prompting.classic import ClassicPrompter

        return ClassicPrompter()
    if backend == "sam2":
        from napari_instseg.core.prompting.cache import EmbeddingCache
        from napari_instseg.core.prompting.sam2 import Sam2Prompter

        cache = EmbeddingCache(cache_path) if cache_path else None
        return Sam2Prompter(size, checkpoint, device, cache=cache, on_mismatch=on_mismatch)
    raise PromptError(f"Unknown backend {backend!r}; choose one of {BACKENDS}.")
