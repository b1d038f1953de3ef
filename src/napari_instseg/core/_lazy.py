"""Modules imported on first use, so that commands that never need them start fast.

``pd`` below behaves as the ``pandas`` module, but importing it costs nothing until an
attribute is used (``pd.DataFrame``...). Modules write::

    if TYPE_CHECKING:
        import pandas as pd
    else:
        from napari_instseg.core._lazy import pd

so type checkers see pandas itself.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

__all__ = ["LazyModule", "pd"]


class LazyModule:
    """A stand-in for a module that imports it on the first attribute access."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attribute: str) -> Any:
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attribute)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}>"


pd = LazyModule("pandas")
