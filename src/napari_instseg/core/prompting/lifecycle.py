"""Prompter lifecycle, one place for every caller: settings, building (model load, device,
checkpoint resolution, the shared embedding cache) and ownership.

The Prompt widget, the CLI, the demo and batch jobs all describe what they want with a
:class:`PrompterConfig` and build it with :func:`build_prompter`. A :class:`PrompterHolder`
keeps one prompter for its owner (a widget) and drops it on :meth:`~PrompterHolder.clear`;
:class:`ThreadPrompters` keeps one per worker thread for the length of a batch run.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, replace
from pathlib import Path

from napari_instseg.core.prompting.base import Prompter
from napari_instseg.core.prompting.registry import DEVICES, MODEL_SIZES, require_backend

__all__ = ["PrompterConfig", "PrompterHolder", "ThreadPrompters", "auto_checkpoint", "build_prompter"]


@dataclass(frozen=True)
class PrompterConfig:
    """What prompter to build.

    Attributes
    ----------
    backend : str
        One of :data:`~napari_instseg.core.prompting.registry.BACKENDS`.
    size : str
        SAM 2.1 size, one of :data:`~napari_instseg.core.prompting.registry.MODEL_SIZES`.
    checkpoint : str or None
        SAM 2 checkpoint; None finds it (environment variable, then the user cache).
    device : str or None
        torch device; None picks the best available.
    cache_path : str or None
        Embedding cache (zarr folder); None uses
        :func:`~napari_instseg.core.prompting.cache.default_cache_path` for SAM 2.
    on_mismatch : {'error', 'recompute'}
        What to do with a cache entry made by another model or preprocessing.
    use_cache : bool
        False: no embedding cache at all.
    """

    backend: str = "classic"
    size: str = "tiny"
    checkpoint: str | None = None
    device: str | None = None
    cache_path: str | None = None
    on_mismatch: str = "recompute"
    use_cache: bool = True

    @classmethod
    def from_settings(
        cls,
        backend: str,
        size: str = "tiny",
        checkpoint: object = None,
        device: str | None = None,
    ) -> PrompterConfig:
        """A config from loose user settings: device ``auto`` or empty means None; an empty
        checkpoint path (a file field left blank) means None.

        Raises
        ------
        PromptError
            For an unknown backend, size or device.
        """
        require_backend(backend)
        if size not in MODEL_SIZES:
            from napari_instseg.core.prompting.base import PromptError

            raise PromptError(f"Unknown SAM 2 size {size!r}; choose one of {MODEL_SIZES}.")
        if device not in (None, "", "auto") and device.split(":")[0] not in DEVICES:
            from napari_instseg.core.prompting.base import PromptError

            raise PromptError(f"Unknown device {device!r}; choose one of {('auto', *DEVICES)}.")
        text = "" if checkpoint is None else str(checkpoint)
        path = None if text in ("", ".") else str(Path(text))
        return cls(backend, size, path, None if device in (None, "", "auto") else device)

    def resolved_cache_path(self) -> str | None:
        """The embedding cache this config uses (None: none; the classic backend has none)."""
        if not self.use_cache or self.backend != "sam2":
            return None
        if self.cache_path is not None:
            return self.cache_path
        from napari_instseg.core.prompting.cache import default_cache_path

        return str(default_cache_path())

    def with_cache(self, cache_path: str | os.PathLike[str] | None) -> PrompterConfig:
        """The same config with another cache folder (None: no cache)."""
        return replace(
            self, cache_path=None if cache_path is None else str(cache_path), use_cache=cache_path is not None
        )


def build_prompter(config: PrompterConfig, *, load_model: bool = True) -> Prompter:
    """Build the prompter ``config`` describes.

    With ``load_model`` a SAM 2 model is loaded now (slow: call it off the UI thread), so the
    first prompt is quick; the classic backend has nothing to load.

    Raises
    ------
    PromptError
        For an unknown backend.
    CheckpointError
        When no usable SAM 2 checkpoint is found.
    """
    from napari_instseg.core.prompting import make_prompter

    require_backend(config.backend)
    prompter = make_prompter(
        config.backend,
        size=config.size,
        checkpoint=config.checkpoint,
        device=config.device,
        cache_path=config.resolved_cache_path(),
        on_mismatch=config.on_mismatch,
    )
    load = getattr(prompter, "load", None)  # SAM 2 loads its model; classic has nothing to load
    if load_model and callable(load):
        load()
    return prompter


def auto_checkpoint(size: str, chosen: str | os.PathLike[str] | None = None, *, instead: str = "classic-auto") -> str:
    """The SAM 2.1 checkpoint a ``sam2-auto`` run uses: ``chosen`` (a file the person picked),
    else the standard lookup (environment variable, then the user cache).

    Call it before starting a run, so a missing checkpoint is a message, not a failed run.

    Parameters
    ----------
    size : str
        SAM 2.1 size, one of :data:`~napari_instseg.core.prompting.registry.MODEL_SIZES`.
    chosen : str or path-like, optional
        The checkpoint file chosen (None or empty: look it up).
    instead : str
        What the message offers instead (the caller's name of the classic mode).

    Returns
    -------
    str
        The checkpoint file.

    Raises
    ------
    CheckpointError
        Without the ``sam2`` extra, or when no checkpoint is found (what to do, or choose
        ``instead``).
    """
    from napari_instseg.core.prompting.checkpoints import CheckpointError, find_checkpoint
    from napari_instseg.core.prompting.sam2 import sam2_available

    if not sam2_available():
        raise CheckpointError(f"sam2-auto needs the sam2 extra (torch and sam2); choose {instead}.")
    explicit = None if chosen is None or str(chosen) in ("", ".") else chosen
    try:
        return str(find_checkpoint(size, explicit))
    except CheckpointError as exc:
        raise CheckpointError(f"sam2-auto needs a SAM 2.1 checkpoint. {exc} Or choose {instead}.") from exc


class PrompterHolder:
    """Owns one prompter at a time (a widget's); a new config replaces it, :meth:`clear`
    drops it (call it when the owner closes)."""

    def __init__(self) -> None:
        self._prompter: Prompter | None = None
        self._config: PrompterConfig | None = None

    def current(self, config: PrompterConfig) -> Prompter | None:
        """The held prompter if it was built for ``config``, else None."""
        return self._prompter if self._config == config else None

    def get(self, config: PrompterConfig) -> Prompter:
        """The held prompter for ``config``, built (model loaded) when needed: call it off the
        UI thread, then :meth:`keep` the result on it."""
        held = self.current(config)
        return held if held is not None else build_prompter(config)

    def keep(self, config: PrompterConfig, prompter: Prompter) -> None:
        """Hold ``prompter`` (built for ``config``), dropping any other."""
        self._prompter, self._config = prompter, config

    def clear(self) -> None:
        """Drop the held prompter (and its model)."""
        self._prompter, self._config = None, None


class ThreadPrompters:
    """One prompter per (thread, config), for worker threads that each hold their own image;
    reused across a thread's tiles for the length of a run, then :meth:`clear`-ed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._prompters: dict[tuple[int, PrompterConfig], Prompter] = {}

    def get(self, config: PrompterConfig) -> Prompter:
        """This thread's prompter for ``config`` (built on first use)."""
        key = (threading.get_ident(), config)
        with self._lock:
            prompter = self._prompters.get(key)
        if prompter is None:
            prompter = build_prompter(config, load_model=False)
            with self._lock:
                self._prompters[key] = prompter
        return prompter

    def clear(self) -> None:
        """Drop every prompter (and model) held."""
        with self._lock:
            self._prompters.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._prompters)
