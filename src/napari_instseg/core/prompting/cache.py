"""On-disk cache of SAM 2 image embeddings (zarr), so revisiting an image or tile is instant.

One zarr group per cache; one sub-group per (image identity, region). Each entry holds the
three feature maps SAM 2 needs to predict (``image_embed`` (1, 256, 64, 64) and the two
high-resolution maps) in float16 by default, and in its attributes everything that must match
for the entry to be used: model, checkpoint, sam2 version, preprocessing, dtype and original
image size. An entry written by another model or preprocessing is refused with a message
naming the field, never silently used. An entry is marked complete only after all its arrays
are written, so an interrupted write is a miss, not a corrupt hit.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from napari_instseg.core.errors import InstsegError
from napari_instseg.core.prompting.base import ImageKey

__all__ = [
    "FEATURE_NAMES",
    "EmbeddingCache",
    "EmbeddingCacheMismatch",
    "EmbeddingMeta",
    "Features",
    "default_cache_path",
    "file_image_key",
    "named_image_key",
    "slide_tile_key",
]

FEATURE_NAMES = ("image_embed", "high_res_feats_0", "high_res_feats_1")


class EmbeddingCacheMismatch(InstsegError, ValueError):
    """A cached embedding exists for this image but was computed differently."""


@dataclass(frozen=True)
class EmbeddingMeta:
    """Everything an embedding depends on besides the pixels' identity."""

    model: str
    checkpoint: str
    sam2_version: str
    preprocessing: str
    dtype: str
    orig_hw: tuple[int, int]

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict (tuples as lists)."""
        data = asdict(self)
        data["orig_hw"] = list(self.orig_hw)
        return data


@dataclass(frozen=True)
class Features:
    """SAM 2 image features as numpy arrays (batch of one), keyed like :data:`FEATURE_NAMES`."""

    arrays: Mapping[str, NDArray[np.floating]]

    @property
    def nbytes(self) -> int:
        """Total size of the arrays in bytes."""
        return sum(a.nbytes for a in self.arrays.values())


def default_cache_path() -> Path:
    """The per-user embedding cache (``embeddings.zarr`` beside the checkpoints folder), the
    one cache the Prompt widget, the CLI, the demo and batch jobs share."""
    from napari_instseg.core.prompting.checkpoints import cache_dir

    return cache_dir().parent / "embeddings.zarr"


def _file_identity(kind: str, path: str | os.PathLike[str]) -> str:
    """``kind:resolved path`` plus size and modification time for a file (a folder, such as
    a zarr store, is named by its path alone)."""
    resolved = Path(path).expanduser().resolve()
    if resolved.is_file():
        stat = resolved.stat()
        return f"{kind}:{resolved}:{stat.st_size}:{stat.st_mtime_ns}"
    return f"{kind}:{resolved}"


def file_image_key(path: str | os.PathLike[str], shape_yx: tuple[int, int]) -> ImageKey:
    """Cache key of a whole image read from ``path`` (its size and mtime are part of it)."""
    return ImageKey.whole(_file_identity("file", path), shape_yx)


def named_image_key(name: str, shape: tuple[int, ...], dtype: str) -> ImageKey:
    """Cache key of an in-memory image known only by a name (a napari layer without a file)."""
    return ImageKey.whole(f"layer:{name}:{tuple(int(v) for v in shape)}:{dtype}", (int(shape[0]), int(shape[1])))


def slide_tile_key(source: str | os.PathLike[str], region_yx: Sequence[int]) -> ImageKey:
    """Cache key of one region (a tile plus halo, level-0 pixels) of a slide.

    The Prompt widget (a slide window) and ``prelabel-slide`` (a batch tile) call this with
    the same slide and region, so they share cache entries.
    """
    y0, x0, y1, x1 = (int(v) for v in region_yx)
    return ImageKey(_file_identity("slide", source), (y0, x0, y1, x1))


def _entry_name(key: ImageKey) -> str:
    text = json.dumps({"identity": key.identity, "region_yx": list(key.region_yx)}, sort_keys=True)
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:20]


class EmbeddingCache:
    """A zarr group of embeddings on disk.

    Parameters
    ----------
    path : path-like
        The cache's zarr folder (created when missing).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        import zarr

        self.path = Path(path)
        try:
            self._root = zarr.open_group(str(self.path), mode="a")
        except zarr.errors.ContainsGroupError:  # another worker created it between look and write
            self._root = zarr.open_group(str(self.path), mode="r+")

    def load(self, key: ImageKey, expected: EmbeddingMeta) -> Features | None:
        """Return the cached features for ``key``, or None when there are none (a miss).

        Raises
        ------
        EmbeddingCacheMismatch
            When an entry exists for ``key`` but one of its fields differs from ``expected``.
        """
        name = _entry_name(key)
        if name not in self._root:
            return None
        group: Any = self._root[name]  # a zarr Group (zarr's stubs type members as a union)
        attrs = dict(group.attrs)
        if not attrs.get("complete"):
            return None  # an interrupted write: recompute
        meta = attrs.get("meta")
        stored: dict[str, Any] = dict(meta) if isinstance(meta, Mapping) else {}
        for field, value in expected.to_json().items():
            if stored.get(field) != value:
                raise EmbeddingCacheMismatch(
                    f"Embedding cache {self.path} has an entry for {key.identity!r} region "
                    f"{list(key.region_yx)} computed with {field}={stored.get(field)!r}, but this "
                    f"session uses {field}={value!r}. Recompute it (the widget's 'recompute' or "
                    f"on_mismatch='recompute') or use another cache folder."
                )
        return Features({n: group[n][...] for n in FEATURE_NAMES})

    def save(self, key: ImageKey, meta: EmbeddingMeta, features: Features) -> None:
        """Store ``features`` for ``key``, replacing any previous entry; mark it complete last."""
        name = _entry_name(key)
        group = self._root.require_group(name)
        group.attrs["complete"] = False
        for feature_name in FEATURE_NAMES:
            data = np.asarray(features.arrays[feature_name], dtype=meta.dtype)
            array = group.create_array(
                feature_name, shape=data.shape, dtype=data.dtype, chunks=data.shape, overwrite=True
            )
            array[...] = data
        group.attrs.update({"identity": key.identity, "region_yx": list(key.region_yx), "meta": meta.to_json()})
        group.attrs["complete"] = True

    def __contains__(self, key: ImageKey) -> bool:
        name = _entry_name(key)
        return name in self._root and bool(self._root[name].attrs.get("complete"))
