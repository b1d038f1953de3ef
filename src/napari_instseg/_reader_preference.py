"""napari's reader preference for annotation stores: a store opens with napari-instseg, no dialog.

Why this writes napari's settings (napari 0.9.2, ``napari/components/viewer_model.py``
``_open_or_raise_error`` and ``napari/plugins/utils.py`` ``get_preferred_reader``):

1. napari finds the readers of a *folder* by manifest alone: every reader with
   ``accepts_directories`` is "compatible" with every folder (npe2 never asks the plugin), so
   napari's builtin reader and ours both claim ``cells.zarr``.
2. With two compatible readers napari raises ``MultipleReaderError`` and File > Open /
   drag-and-drop show the "Choose reader" dialog, unless ``settings.plugins.extension2reader``
   holds an fnmatch pattern matching ``realpath(folder) + os.sep``.
3. No plugin code runs before that decision (npe2 reads ``napari.yaml`` without importing us).

So the only thing that keeps the dialog away on the *first* open is an entry in napari's
settings, and only the process that creates a store knows its path. We write exactly the
entry napari's own dialog writes when a person ticks "Remember this choice" for that folder:
the store's absolute path (napari-instseg for this folder only), or, for a project, one
pattern for its ``stores/`` folder (every folder there is a store). No other ``*.zarr`` is
affected: a plain zarr still goes to napari's reader (or the dialog) exactly as before.

``NAPARI_INSTSEG_READER_PREFERENCE=0`` turns the command line's writes off (napari-instseg in
napari still records the stores it opens).
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Iterable
from pathlib import Path

__all__ = [
    "ENV_SWITCH",
    "PLUGIN_NAME",
    "cli_may_write",
    "prefer_our_reader",
    "prefer_our_reader_for",
    "project_stores_pattern",
    "register_after_command",
    "store_pattern",
    "stores_made_by_command",
]

logger = logging.getLogger(__name__)

PLUGIN_NAME = "napari-instseg"
ENV_SWITCH = "NAPARI_INSTSEG_READER_PREFERENCE"
"""Environment variable: ``0`` / ``off`` / ``no`` keeps the command line off napari's settings."""


def store_pattern(store_path: str | os.PathLike[str]) -> str:
    """The ``extension2reader`` pattern of one store folder: its real path, fnmatch-escaped,
    with a trailing separator (napari matches folders as ``realpath(folder) + os.sep``)."""
    return glob.escape(os.path.realpath(os.fspath(store_path))) + os.sep


def project_stores_pattern(project_dir: str | os.PathLike[str]) -> str:
    """The pattern matching every store of a project (``<project>/stores/*.zarr/``)."""
    stores = glob.escape(os.path.realpath(os.path.join(os.fspath(project_dir), "stores")))
    return f"{stores}{os.sep}*.zarr{os.sep}"


def prefer_our_reader(store_path: str | os.PathLike[str]) -> None:
    """Make napari open the store at ``store_path`` with napari-instseg's reader, without asking."""
    prefer_our_reader_for([store_pattern(store_path)])


def prefer_our_reader_for(patterns: Iterable[str]) -> list[str]:
    """Map each fnmatch pattern to napari-instseg in napari's reader settings.

    Parameters
    ----------
    patterns : iterable of str
        Patterns as :func:`store_pattern` / :func:`project_stores_pattern` make them.

    Returns
    -------
    list of str
        The patterns that were added (those already mapped to us are left as they are).
    """
    from napari.settings import get_settings

    settings = get_settings()
    readers = dict(settings.plugins.extension2reader)
    added = [p for p in dict.fromkeys(patterns) if readers.get(p) != PLUGIN_NAME]
    if added:
        settings.plugins.extension2reader = {**readers, **dict.fromkeys(added, PLUGIN_NAME)}
    return added


def cli_may_write() -> bool:
    """False when ``$NAPARI_INSTSEG_READER_PREFERENCE`` says the command line must not write."""
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "off", "no", "false")


def stores_made_by_command(store: str | None, project_dir: str | None) -> list[str]:
    """The patterns a CLI command's outputs need: its ``--store`` (when it is a store now) and
    its project's ``stores/`` folder (when the project has one)."""
    from napari_instseg.core.store import is_store

    patterns = []
    if store and is_store(store):
        patterns.append(store_pattern(store))
    if project_dir and (Path(project_dir) / "stores").is_dir():
        patterns.append(project_stores_pattern(project_dir))
    return patterns


def register_after_command(store: str | None, project_dir: str | None) -> None:
    """After a CLI command: make napari open the stores it made or used without a dialog.

    Best effort and never fatal: without napari installed, or when its settings file cannot be
    written, the command's result stands and napari will ask once (logged at INFO).
    """
    if not cli_may_write():
        return
    patterns = stores_made_by_command(store, project_dir)
    if not patterns:
        return
    try:
        added = prefer_our_reader_for(patterns)
    except ImportError:
        logger.info("napari is not installed: stores open in napari after one 'which reader?' question")
        return
    except (OSError, ValueError) as exc:
        logger.info("napari's reader preference was not written (%s): napari will ask once", exc)
        return
    for pattern in added:
        logger.info("napari opens %s with napari-instseg (napari settings: plugins.extension2reader)", pattern)
