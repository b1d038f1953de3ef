"""Whole-slide images as lazy multiscale pyramids, their tile grid and working windows.

:func:`open_slide` opens OME-Zarr (0.4 and 0.5 multiscales), a plain zarr array or group of
levels, tiled TIFF / BigTIFF / OME-TIFF / SVS / NDPI pyramids (through ``tifffile``'s zarr
store) and in-memory arrays. No level is ever read whole: levels are zarr arrays (or numpy for
in-memory input) sliced on demand, and napari gets them as a multiscale list.

TIFF tiles are decoded by ``tifffile`` with ``imagecodecs`` (JPEG, JPEG 2000 including
Aperio's 33003 / 33005, LZW, deflate, zstd, WebP...), so a region holds exactly the pixels
``tifffile`` itself decodes. A file ``tifffile`` cannot parse, or whose tiles cannot be decoded,
gives :class:`SlideError` naming the file, never a raw ``TiffFileError``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from napari_instseg.core.errors import InstsegError

__all__ = ["TIFF_SUFFIXES", "Slide", "SlideError", "Window", "open_slide", "tile_grid", "window_at"]

logger = logging.getLogger(__name__)

_DAMAGED = ("invalid page offset", "truncat", "corrupt")
"""Words of tifffile log messages that mean the file is damaged (the open is refused)."""


TIFF_SUFFIXES = (".tif", ".tiff", ".svs", ".ndpi", ".btf", ".tf8", ".scn")
"""File name endings :func:`open_slide` reads as TIFF pyramids."""


class SlideError(InstsegError, ValueError):
    """A slide cannot be opened (the message names the file and what was expected)."""


@dataclass(frozen=True)
class Slide:
    """A multiscale image.

    Attributes
    ----------
    levels : list of array-like
        Level 0 (full resolution) first; each sliceable without reading it whole.
    axes : str
        Axis order of every level: ``"yx"``, ``"yxc"`` or ``"cyx"``.
    mpp : float or None
        Micrometres per pixel at level 0, when the file says.
    source : str
        Where it came from (a path, or ``"<array>"``).
    """

    levels: list[Any]
    axes: str
    mpp: float | None
    source: str

    @property
    def shape_yx(self) -> tuple[int, int]:
        """(height, width) of level 0."""
        return self.level_shape_yx(0)

    def level_shape_yx(self, level: int) -> tuple[int, int]:
        """(height, width) of a level."""
        shape = self.levels[level].shape
        y, x = self.axes.index("y"), self.axes.index("x")
        return int(shape[y]), int(shape[x])

    def downsample(self, level: int) -> float:
        """Level-0 pixels per pixel of ``level`` (along x)."""
        return self.shape_yx[1] / self.level_shape_yx(level)[1]

    def read_region(self, region_yx: tuple[int, int, int, int], level: int = 0) -> NDArray[Any]:
        """Pixels of ``(y0, x0, y1, x1)`` (in that level's pixels) as (y, x[, c]), reading only them."""
        y0, x0, y1, x1 = region_yx
        height, width = self.level_shape_yx(level)
        y0, x0, y1, x1 = max(y0, 0), max(x0, 0), min(y1, height), min(x1, width)
        index = [slice(None)] * len(self.axes)
        index[self.axes.index("y")] = slice(y0, y1)
        index[self.axes.index("x")] = slice(x0, x1)
        try:
            data = np.asarray(self.levels[level][tuple(index)])
        except Exception as exc:  # a truncated chunk or a corrupt tile: codecs raise many types
            raise SlideError(
                f"{self.source}: cannot read level {level} region (y0, x0, y1, x1) = {(y0, x0, y1, x1)}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        return np.moveaxis(data, 0, -1) if self.axes == "cyx" else data

    def napari_levels(self) -> list[Any]:
        """The levels as napari shows them, (y, x[, c]), still lazy (dask)."""
        import dask.array as da

        out = []
        for level in self.levels:
            array = level if isinstance(level, np.ndarray) else da.from_zarr(level)
            out.append(da.moveaxis(array, 0, -1) if self.axes == "cyx" else array)
        return out

    @property
    def rgb(self) -> bool:
        """True for 3- or 4-channel images."""
        return "c" in self.axes and self.levels[0].shape[self.axes.index("c")] in (3, 4)


def open_slide(source: str | os.PathLike[str] | NDArray[Any] | list[Any]) -> Slide:
    """Open a slide: OME-Zarr, plain zarr, OME-TIFF / SVS pyramid, or in-memory array(s).

    Raises
    ------
    SlideError
        For a missing file or an unknown layout, naming the path.
    """
    if isinstance(source, np.ndarray):
        return Slide([source], _axes_of(source.shape), None, "<array>")
    if isinstance(source, list):
        return Slide(list(source), _axes_of(source[0].shape), None, "<array>")
    path = Path(source)
    if not path.exists():
        raise SlideError(f"{path} does not exist.")
    suffixes = "".join(path.suffixes).lower()
    try:
        if path.is_dir():
            return _open_zarr(path)
        if suffixes.endswith(TIFF_SUFFIXES):
            return _open_tiff(path)
    except SlideError:
        raise
    except Exception as exc:  # corrupt / truncated file, a missing pyramid level, odd metadata
        raise SlideError(f"{path}: cannot open the slide ({type(exc).__name__}: {exc}).") from exc
    raise SlideError(f"{path}: not a zarr folder or a TIFF / SVS file.")


def _axes_of(shape: tuple[int, ...]) -> str:
    if len(shape) == 2:
        return "yx"
    if len(shape) == 3 and shape[-1] in (3, 4):
        return "yxc"
    if len(shape) == 3:
        return "cyx"
    raise SlideError(f"Expected a (y, x), (y, x, c) or (c, y, x) image, got shape {shape}.")


def _open_zarr(path: Path) -> Slide:
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except Exception as exc:  # zarr raises several types for a folder that is no zarr
        raise SlideError(f"{path}: not a zarr store ({type(exc).__name__}: {exc}).") from exc
    if isinstance(node, zarr.Array):
        return Slide([node], _axes_of(node.shape), None, str(path))
    attrs: dict[str, Any] = dict(node.attrs)
    multiscales: Any = attrs.get("multiscales") or (attrs.get("ome") or {}).get("multiscales")
    if multiscales:
        spec = multiscales[0]
        levels: list[Any] = [node[d["path"]] for d in spec["datasets"]]
        axes_meta = [a["name"] if isinstance(a, dict) else a for a in spec.get("axes", [])]
        axes = "".join(a for a in axes_meta if a in "cyx") or _axes_of(levels[0].shape)
        if len(axes) != levels[0].ndim:  # t / z axes of size 1 are not supported here
            raise SlideError(f"{path}: axes {axes_meta} are not (y, x[, c]); only 2-D slides are supported.")
        return Slide(levels, axes, _ome_mpp(spec, axes_meta), str(path))
    keys = sorted((k for k in node.array_keys() if k.isdigit()), key=int)
    if not keys:
        raise SlideError(f"{path}: a zarr group without 'multiscales' metadata or levels named 0, 1, ...")
    level_arrays: list[Any] = [node[k] for k in keys]
    return Slide(level_arrays, _axes_of(level_arrays[0].shape), None, str(path))


def _ome_mpp(spec: dict[str, Any], axes: list[str]) -> float | None:
    axes_meta = spec.get("axes", [])
    x = axes.index("x") if "x" in axes else None
    for transform in spec["datasets"][0].get("coordinateTransformations", []):
        if transform.get("type") == "scale" and x is not None:
            unit = axes_meta[x].get("unit") if isinstance(axes_meta[x], dict) else None
            if unit in (None, "micrometer"):
                return float(transform["scale"][x])
    return None


class _Captured(logging.Filter):
    """Holds back the records of a logger (re-emitted by us, or named in our error)."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        self.messages.append(record.getMessage())
        return False


@contextlib.contextmanager
def _tifffile_messages() -> Iterator[_Captured]:
    """Capture tifffile's log records while we open a file (no raw library lines on stderr);
    the level of no logger is changed."""
    captured = _Captured()
    tiff_logger = logging.getLogger("tifffile")
    tiff_logger.addFilter(captured)
    try:
        yield captured
    finally:
        tiff_logger.removeFilter(captured)


def _data_beyond_end(tif: Any, file_size: int) -> str:
    """A message when a page's image data lies past the end of the file ('' when none does):
    a truncated file, found from the offsets alone (no pixel is decoded)."""
    for index, page in enumerate(tif.pages):
        offsets = np.asarray(getattr(page, "dataoffsets", ()), dtype=np.int64)
        counts = np.asarray(getattr(page, "databytecounts", ()), dtype=np.int64)
        if offsets.size and counts.size == offsets.size and int((offsets + counts).max()) > file_size:
            return f"page {index}: image data ends at byte {int((offsets + counts).max())}, the file has {file_size}"
    return ""


def _open_tiff(path: Path) -> Slide:
    with _tifffile_messages() as captured:
        slide = _open_tiff_quietly(path, captured)
    for message in captured.messages:
        logger.info("%s: tifffile: %s", path, message)
    return slide


def _open_tiff_quietly(path: Path, captured: _Captured) -> Slide:
    import tifffile
    import zarr

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            axes = series.axes
            mpp = _tiff_mpp(tif)
            compression = series.pages[0].compression if series.pages else None
            beyond_end = _data_beyond_end(tif, path.stat().st_size)
        store = tifffile.imread(path, aszarr=True, series=0)
        node = zarr.open(store, mode="r")
    except (tifffile.TiffFileError, OSError, ValueError, KeyError, IndexError, struct.error) as exc:
        raise SlideError(
            f"{path}: cannot open the slide: not a readable TIFF / SVS file ({type(exc).__name__}: {exc})."
        ) from exc
    damaged = [m for m in captured.messages if any(word in m.lower() for word in _DAMAGED)]
    damaged += [beyond_end] if beyond_end else []
    if damaged:
        raise SlideError(f"{path}: cannot open the slide: the file is truncated or damaged (tifffile: {damaged[0]}).")
    levels: list[Any] = (
        [node] if isinstance(node, zarr.Array) else [node[k] for k in sorted(node.array_keys(), key=int)]
    )
    mapping = {"Y": "y", "X": "x", "S": "c", "C": "c"}
    order = "".join(mapping.get(a, "?") for a in axes)
    if "?" in order or len(order) != levels[0].ndim:
        raise SlideError(f"{path}: TIFF axes {axes!r} are not (y, x[, samples]).")
    slide = Slide(levels, order, mpp, str(path))
    _check_decodable(slide, compression)
    return slide


def _check_decodable(slide: Slide, compression: Any) -> None:
    """Decode one pixel of every level (one tile each), so a missing codec or a corrupt tile
    is reported when the slide is opened, naming the file and the compression."""
    for level, array in enumerate(slide.levels):
        try:
            np.asarray(array[(slice(0, 1),) * array.ndim])
        except Exception as exc:  # codecs raise many types (ValueError, RuntimeError, DelayedImportError...)
            name = getattr(compression, "name", compression)
            hint = " Install it: pip install imagecodecs." if "imagecodecs" in str(exc) else ""
            raise SlideError(
                f"{slide.source}: cannot read level {level} region (y0, x0, y1, x1) = (0, 0, 1, 1): "
                f"level {level} cannot be decoded (compression {name}): "
                f"{type(exc).__name__}: {exc}.{hint}"
            ) from exc


def _tiff_mpp(tif: Any) -> float | None:
    if tif.is_ome and tif.ome_metadata:
        import re

        match = re.search(r'PhysicalSizeX="([0-9.eE+-]+)"', tif.ome_metadata)
        if match:
            return float(match.group(1))
    if tif.is_svs:
        description = tif.pages[0].description
        for part in description.split("|"):
            if part.strip().startswith("MPP"):
                return float(part.split("=")[1])
    return None


@dataclass(frozen=True)
class Window:
    """A working window: a tile plus a halo, in level-0 pixels.

    Attributes
    ----------
    tile_yx : (y0, x0, y1, x1)
        The tile the user works on.
    region_yx : (y0, x0, y1, x1)
        The tile grown by the halo and clipped to the slide: what is read and edited.
    """

    tile_yx: tuple[int, int, int, int]
    region_yx: tuple[int, int, int, int]

    @property
    def origin_yx(self) -> tuple[int, int]:
        """Top-left of the region in slide coordinates (the napari layer's translate)."""
        return self.region_yx[0], self.region_yx[1]

    @property
    def shape_yx(self) -> tuple[int, int]:
        """(height, width) of the region."""
        y0, x0, y1, x1 = self.region_yx
        return y1 - y0, x1 - x0


def tile_grid(shape_yx: tuple[int, int], tile_px: int, halo_px: int = 0) -> Iterator[Window]:
    """Windows covering a slide row by row: tiles of ``tile_px`` with ``halo_px`` around."""
    height, width = shape_yx
    if tile_px <= 0 or halo_px < 0:
        raise ValueError(f"tile_px must be > 0 and halo_px >= 0, got {tile_px}, {halo_px}.")
    for y0 in range(0, height, tile_px):
        for x0 in range(0, width, tile_px):
            tile = (y0, x0, min(y0 + tile_px, height), min(x0 + tile_px, width))
            region = (
                max(y0 - halo_px, 0),
                max(x0 - halo_px, 0),
                min(tile[2] + halo_px, height),
                min(tile[3] + halo_px, width),
            )
            yield Window(tile, region)


def window_at(shape_yx: tuple[int, int], centre_yx: tuple[float, float], tile_px: int, halo_px: int) -> Window:
    """The grid window whose tile holds ``centre_yx`` (level-0 pixels)."""
    height, width = shape_yx
    cy = int(np.clip(centre_yx[0], 0, height - 1))
    cx = int(np.clip(centre_yx[1], 0, width - 1))
    y0, x0 = (cy // tile_px) * tile_px, (cx // tile_px) * tile_px
    tile = (y0, x0, min(y0 + tile_px, height), min(x0 + tile_px, width))
    region = (max(y0 - halo_px, 0), max(x0 - halo_px, 0), min(tile[2] + halo_px, height), min(tile[3] + halo_px, width))
    return Window(tile, region)
