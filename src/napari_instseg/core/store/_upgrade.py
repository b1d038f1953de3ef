"""Upgrade of version-1 stores."""

from __future__ import annotations

from pathlib import Path


def upgrade_v1(path: Path) -> None:
    raise NotImplementedError
