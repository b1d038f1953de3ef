"""SAM 2.1 model sizes, where their checkpoints live, and how to fetch them.

A checkpoint is found, in this order: an explicit path; the environment variable
``NAPARI_INSTSEG_SAM2_CHECKPOINT``; the per-user cache folder
(``NAPARI_INSTSEG_CACHE`` or the platform's user cache dir ``/napari-instseg/sam2``), under the
official file name (``sam2.1_hiera_tiny.pt`` ...).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from napari_instseg.core._io import atomic_path
from napari_instseg.core.errors import InstsegError

__all__ = [
    "CHECKPOINT_ENV",
    "MODELS",
    "CheckpointError",
    "ModelSpec",
    "cache_dir",
    "fetch_weights",
    "find_checkpoint",
    "model_spec",
]

logger = logging.getLogger(__name__)

CHECKPOINT_ENV = "NAPARI_INSTSEG_SAM2_CHECKPOINT"
CACHE_ENV = "NAPARI_INSTSEG_CACHE"
_BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/"


class CheckpointError(InstsegError, ValueError):
    """A SAM 2 checkpoint is missing, unreadable, or does not fit the model."""


@dataclass(frozen=True)
class ModelSpec:
    """One SAM 2.1 size: its hydra config (shipped in the sam2 package) and checkpoint name."""

    size: str
    config: str
    file_name: str

    @property
    def url(self) -> str:
        """The official download address of the checkpoint."""
        return _BASE_URL + self.file_name


MODELS: dict[str, ModelSpec] = {
    spec.size: spec
    for spec in (
        ModelSpec("tiny", "configs/sam2.1/sam2.1_hiera_t.yaml", "sam2.1_hiera_tiny.pt"),
        ModelSpec("small", "configs/sam2.1/sam2.1_hiera_s.yaml", "sam2.1_hiera_small.pt"),
        ModelSpec("base_plus", "configs/sam2.1/sam2.1_hiera_b+.yaml", "sam2.1_hiera_base_plus.pt"),
        ModelSpec("large", "configs/sam2.1/sam2.1_hiera_l.yaml", "sam2.1_hiera_large.pt"),
    )
}


def model_spec(size: str) -> ModelSpec:
    """Return the spec of ``size`` (tiny, small, base_plus, large)."""
    try:
        return MODELS[size]
    except KeyError:
        raise CheckpointError(f"Unknown SAM 2 model size {size!r}; choose one of {list(MODELS)}.") from None


def cache_dir() -> Path:
    """The per-user folder for checkpoints (``$NAPARI_INSTSEG_CACHE/sam2`` if set)."""
    root = os.environ.get(CACHE_ENV)
    if root:
        return Path(root) / "sam2"
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("napari-instseg")) / "sam2"


def find_checkpoint(size: str, explicit: str | os.PathLike[str] | None = None) -> Path:
    """Return the checkpoint file for ``size``, looking where the module docstring says.

    Raises
    ------
    CheckpointError
        When no file is found, saying every place that was looked at and how to fill one.
    """
    spec = model_spec(size)
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise CheckpointError(f"SAM 2 checkpoint {path} does not exist.")
        return path
    from_env = os.environ.get(CHECKPOINT_ENV)
    if from_env:
        path = Path(from_env).expanduser()
        if not path.is_file():
            raise CheckpointError(f"{CHECKPOINT_ENV}={from_env} does not point to a file.")
        return path
    cached = cache_dir() / spec.file_name
    if cached.is_file():
        return cached
    raise CheckpointError(
        f"No SAM 2.1 {size} checkpoint found. Looked for: an explicit --checkpoint, "
        f"${CHECKPOINT_ENV}, and {cached}. Run `napari-instseg fetch-weights {size}` where "
        f"there is internet, or download {spec.url} and put it at {cached}."
    )


def fetch_weights(
    size: str, dest_dir: str | os.PathLike[str] | None = None, *, progress: Callable[[int, int], None] | None = None
) -> Path:
    """Download the official checkpoint of ``size`` into the cache folder (atomically).

    Raises
    ------
    CheckpointError
        When the download fails (no internet), saying where to put the file by hand.
    """
    import urllib.error  # only here: importing urllib costs start-up time of every command
    import urllib.request

    spec = model_spec(size)
    folder = Path(dest_dir) if dest_dir else cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / spec.file_name
    try:
        with urllib.request.urlopen(spec.url, timeout=30) as response, atomic_path(target) as tmp:
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            with open(tmp, "wb") as handle:
                while chunk := response.read(1 << 20):
                    handle.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, total)
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise CheckpointError(
            f"Could not download {spec.url} ({exc}). Without internet, copy the file from a "
            f"machine that has it to {target} (or point ${CHECKPOINT_ENV} at it)."
        ) from exc
    logger.info("saved %s", target)
    return target
