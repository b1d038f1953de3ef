"""Small user settings remembered between napari sessions (the annotator's name).

Kept in ``settings.json`` in the user config folder (``NAPARI_INSTSEG_CONFIG`` overrides the
folder, e.g. in tests); written atomically.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["load_settings", "remembered_annotator", "save_setting", "settings_path"]


def settings_path() -> Path:
    """Where the settings live."""
    folder = os.environ.get("NAPARI_INSTSEG_CONFIG")
    if not folder:
        import platformdirs

        folder = platformdirs.user_config_dir("napari-instseg")
    return Path(folder) / "settings.json"


def load_settings() -> dict[str, Any]:
    """The saved settings ({} when none or unreadable)."""
    try:
        data = json.loads(settings_path().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save_setting(key: str, value: Any) -> None:
    """Remember ``key = value``."""
    from napari_instseg.core._io import atomic_write_text

    path = settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({**load_settings(), key: value}, indent=1))


def remembered_annotator() -> str:
    """The annotator name given last time, else the login name."""
    return str(load_settings().get("annotator") or os.environ.get("USER", ""))
