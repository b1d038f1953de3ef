"""Time and depth: SAM 2 propagation over (t, y, x) or (z, y, x) stacks, instances as tracks.

Importing this package imports neither torch nor sam2.
"""

from __future__ import annotations

__all__ = ["frames", "prompts", "propagate", "tracking", "tracks"]  # the modules are the API
