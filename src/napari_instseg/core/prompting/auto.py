"""Pre-label everything: automatic masks (SAM 2 or classic), tiled with a halo, stitched, committed.

Two segmenters share one tiled runner and one commit path:

- :class:`Sam2AutoSegmenter` runs sam2's own ``SAM2AutomaticMaskGenerator`` (a grid of point
  prompts, predicted-IoU and stability filters, box NMS, minimum area) on the image embedding
  the :class:`~napari_instseg.core.prompting.sam2.Sam2Prompter` already holds or caches: the
  generator's per-crop ``set_image`` is answered from that embedding, so an image encoded for
  point prompts is never encoded a second time.
- :class:`ClassicAutoSegmenter` runs the classic automatic mode
  (:mod:`~napari_instseg.core.prompting.auto_classic`), no model weights needed.

:func:`iter_auto_tiles` processes an image tile by tile (a halo around each tile; dask's
threaded scheduler when ``workers`` > 1) and yields after each tile, so callers can show
progress and cancel; :func:`auto_objects` stitches the tiles
(:func:`~napari_instseg.core.stitch.stitch`); :func:`commit_auto` commits the objects into an
:class:`~napari_instseg.core.session.AnnotationSession` as ``pre-label`` instances with source
``sam2-auto`` / ``classic-auto``, best score first, never over committed instances, in one
undo step.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from napari_instseg.core.commit_rules import auto_commit_plan
from napari_instseg.core.edits import CroppedMask
from napari_instseg.core.errors import InstsegError
from napari_instseg.core.prompting.auto_classic import ClassicAutoSettings, classic_auto_labels
from napari_instseg.core.prompting.base import ImageKey, as_rgb_uint8
from napari_instseg.core.stitch import AutoObject, Tile, objects_from_labels, stitch, tile_grid

__all__ = [
    "AUTO_SOURCES",
    "ESTIMATE_COLUMNS",
    "MAX_TILES",
    "PRESETS",
    "SLIVER_AREA_PX",
    "AutoSegmenter",
    "AutoSettings",
    "AutoSummary",
    "AutoTilingError",
    "ClassicAutoSegmenter",
    "Sam2AutoSegmenter",
    "TileResult",
    "auto_objects",
    "check_tiling",
    "commit_auto",
    "crop_of_rle",
    "estimates_of",
    "iter_auto_tiles",
    "make_auto_segmenter",
    "prelabel_scores",
]

AUTO_SOURCES = {"sam2": "sam2-auto", "classic": "classic-auto"}
"""Instance-table ``source`` of the pre-labels each automatic backend commits."""

MAX_TILES = 10_000
"""Most tiles one image is cut into (more means a tile size far too small for the image)."""

ESTIMATE_COLUMNS = ("predicted_iou", "stability_score")
"""Row values kept with each SAM 2 automatic pre-label (outside the table's schema: the store
keeps them, COCO export writes them into the annotation's ``attributes``)."""


@dataclass(frozen=True)
class AutoSettings:
    """Settings of SAM 2's automatic mask generator (``SAM2AutomaticMaskGenerator``'s names).

    Attributes
    ----------
    points_per_side : int
        The prompt grid is ``points_per_side`` squared points over each image or tile.
    points_per_batch : int
        Points decoded at once.
    pred_iou_thresh : float
        Masks whose predicted IoU is lower are dropped.
    stability_score_thresh : float
        Masks whose stability (IoU of the mask at two logit cut-offs) is lower are dropped.
    box_nms_thresh : float
        Box IoU above which the lower-scored of two masks is a duplicate.
    min_area_px : int
        Smaller masks are dropped.
    max_area_fraction : float
        Masks covering more of the tile than this are dropped (background, tissue).
    crop_n_layers : int
        Extra zoomed-in crop layers (each re-encodes its crops: slower, finds small objects).
    """

    points_per_side: int = 32
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.8
    stability_score_thresh: float = 0.95
    box_nms_thresh: float = 0.7
    min_area_px: int = 100
    max_area_fraction: float = 0.5
    crop_n_layers: int = 0

    def generator_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``SAM2AutomaticMaskGenerator`` (ours removed)."""
        kwargs = asdict(self)
        for ours in ("min_area_px", "max_area_fraction"):
            kwargs.pop(ours)
        return kwargs


PRESETS: dict[str, AutoSettings] = {
    "objects": AutoSettings(),
    "cells": AutoSettings(
        points_per_side=48,
        pred_iou_thresh=0.7,
        stability_score_thresh=0.9,
        box_nms_thresh=0.5,
        min_area_px=16,
        max_area_fraction=0.05,
    ),
}
"""Named defaults: ``objects`` are SAM 2's own (everyday scenes); ``cells`` has a denser grid,
looser filters, stricter NMS and small areas for crowded, small, similar objects."""

SLIVER_AREA_PX = PRESETS["cells"].min_area_px
"""Default area floor (pixels) of the free part of an automatic mask that overlaps committed
instances (the ``cells`` preset's minimum area); see :func:`commit_auto`."""


class AutoSegmenter(Protocol):
    """Finds every object of one image or tile (coordinates of that image)."""

    source: str

    def __call__(self, image: NDArray[np.generic], key: ImageKey | None = None) -> list[AutoObject]:
        """All objects of ``image`` (y, x[, c])."""


class ClassicAutoSegmenter:
    """The classic automatic mode as an :class:`AutoSegmenter` (source ``classic-auto``)."""

    source = AUTO_SOURCES["classic"]

    def __init__(self, settings: ClassicAutoSettings | None = None) -> None:
        self.settings = settings or ClassicAutoSettings()

    def __call__(self, image: NDArray[np.generic], key: ImageKey | None = None) -> list[AutoObject]:
        result = classic_auto_labels(image, self.settings)
        return objects_from_labels(result.labels_yx, result.scores)


class _CachedEmbedding:
    """Stands in for the generator's own ``SAM2ImagePredictor``: the whole-image crop is
    answered from the embedding the prompter's predictor already holds (no encoder pass);
    zoomed-in crop layers are encoded."""

    def __init__(self, predictor: Any, shape_yx: tuple[int, int]) -> None:
        self._predictor = predictor
        self._shape_yx = shape_yx
        self.encoder_passes = 0

    def set_image(self, image: NDArray[np.generic]) -> None:
        if tuple(image.shape[:2]) != self._shape_yx:  # a zoomed-in crop layer: its own embedding
            self._predictor.set_image(image)
            self.encoder_passes += 1

    def reset_predictor(self) -> None:
        """Keep the held embedding (the generator resets after every crop)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(self._predictor, name)


class Sam2AutoSegmenter:
    """SAM 2's automatic mask generator on a :class:`Sam2Prompter`'s (cached) embedding.

    Parameters
    ----------
    prompter : Sam2Prompter
        Holds the model, the current embedding and the optional embedding cache.
    settings : AutoSettings, optional
        Generator settings (default ``PRESETS['objects']``).
    """

    source = AUTO_SOURCES["sam2"]

    def __init__(self, prompter: Any, settings: AutoSettings | None = None) -> None:
        self.prompter = prompter
        self.settings = settings or PRESETS["objects"]
        self._generator: Any = None
        self.last_encoded = False

    def generator(self) -> Any:
        """sam2's ``SAM2AutomaticMaskGenerator`` on the prompter's model (built once)."""
        if self._generator is None:
            from napari_instseg.core.prompting.sam2 import avoid_llvm_clash, model_construction

            avoid_llvm_clash()
            from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

            model = self.prompter.predictor.model
            with model_construction():  # it builds a SAM2ImagePredictor: torch.jit.script, one thread at a time
                self._generator = SAM2AutomaticMaskGenerator(
                    model, output_mode="uncompressed_rle", **self.settings.generator_kwargs()
                )
        return self._generator

    def __call__(self, image: NDArray[np.generic], key: ImageKey | None = None) -> list[AutoObject]:
        import torch

        shape_yx = (int(image.shape[0]), int(image.shape[1]))
        held = self.prompter.current_key
        self.last_encoded = not (key is not None and held == key and self.prompter._shape_yx == shape_yx)
        if self.last_encoded:
            self.prompter.set_image(image, key)
            self.last_encoded = not self.prompter.last_from_cache
        generator = self.generator()
        proxy = _CachedEmbedding(self.prompter.predictor, shape_yx)
        generator.predictor = proxy
        with torch.inference_mode():
            records = generator.generate(as_rgb_uint8(image))
        if proxy.encoder_passes:  # crop layers replaced the held embedding
            self.prompter.current_key = None
            self.prompter._shape_yx = None
        return _objects_of(records, self.settings, shape_yx)


def _objects_of(
    records: Sequence[dict[str, Any]], settings: AutoSettings, shape_yx: tuple[int, int]
) -> list[AutoObject]:
    """The generator's records (uncompressed RLE) as objects, filtered by area, in descending
    predicted IoU."""
    max_area = settings.max_area_fraction * shape_yx[0] * shape_yx[1]
    out = []
    for record in records:
        crop = crop_of_rle(record["segmentation"])
        if not (settings.min_area_px <= crop.area_px <= max_area):
            continue
        iou, stability = float(record["predicted_iou"]), float(record["stability_score"])
        out.append(AutoObject(crop, float(np.clip(iou, 0.0, 1.0)), iou, stability))
    order = sorted(range(len(out)), key=lambda i: -out[i].score)
    return [out[i] for i in order]


def crop_of_rle(rle: dict[str, Any]) -> CroppedMask:
    """A mask in sam2's uncompressed RLE (``{'size': [h, w], 'counts': [...]}``, column-major
    runs starting with background) as a :class:`CroppedMask`, decoded inside its box only (the
    cost is the mask's area, not the image's, unlike ``rle_to_mask`` then cropping)."""
    height = int(rle["size"][0])
    counts = np.asarray(rle["counts"], dtype=np.int64)
    ends = np.cumsum(counts)
    starts, stops = (ends - counts)[1::2], ends[1::2]
    lengths = stops - starts
    if not lengths.sum():
        return CroppedMask((0, 0, 0, 0), np.zeros((0, 0), bool))
    offsets = np.repeat(starts - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
    cols, rows = np.divmod(offsets + np.arange(int(lengths.sum())), height)
    y0, x0 = int(rows.min()), int(cols.min())
    mask = np.zeros((int(rows.max()) + 1 - y0, int(cols.max()) + 1 - x0), dtype=bool)
    mask[rows - y0, cols - x0] = True
    return CroppedMask((y0, x0, y0 + mask.shape[0], x0 + mask.shape[1]), mask)


def make_auto_segmenter(
    backend: str, *, settings: AutoSettings | None = None, prompter: Any = None, **prompter_kwargs: Any
) -> AutoSegmenter:
    """An automatic segmenter by backend name (``sam2`` or ``classic``).

    For ``sam2`` an existing ``prompter`` is reused (its embedding and cache), else one is built
    with :func:`~napari_instseg.core.prompting.make_prompter` and ``prompter_kwargs``.
    """
    if backend == "classic":
        return ClassicAutoSegmenter()
    if backend == "sam2":
        from napari_instseg.core.prompting import make_prompter

        return Sam2AutoSegmenter(prompter or make_prompter("sam2", **prompter_kwargs), settings)
    from napari_instseg.core.prompting.base import PromptError

    raise PromptError(f"Unknown automatic backend {backend!r}; choose 'sam2' or 'classic'.")


class AutoTilingError(InstsegError, ValueError):
    """Tile size or halo unusable for an image (the message names the image and the values)."""


def check_tiling(shape_yx: tuple[int, int], tile_px: int, halo_px: int, *, name: str = "the image") -> None:
    """Refuse a tile size below 1, a negative halo, or a grid of more than :data:`MAX_TILES`.

    Raises
    ------
    AutoTilingError
        Naming the image (``name``), its shape and the values.
    """
    import math

    if tile_px < 1 or halo_px < 0:
        raise AutoTilingError(f"{name}: tiles need a size >= 1 px and a halo >= 0 px, got {tile_px} and {halo_px}.")

    def count(size: int) -> int:
        return math.ceil(shape_yx[0] / size) * math.ceil(shape_yx[1] / size)

    n_tiles = count(tile_px)
    if n_tiles > MAX_TILES:
        fits = max(math.ceil(math.sqrt(shape_yx[0] * shape_yx[1] / MAX_TILES)), tile_px + 1)
        while count(fits) > MAX_TILES:
            fits += 1
        raise AutoTilingError(
            f"{name}: tiles of {tile_px} px cut the image (shape (y, x) {tuple(shape_yx)}) into {n_tiles} tiles, "
            f"more than {MAX_TILES}; use tiles of at least {fits} px (default: 1024 sam2, 512 classic)."
        )


@dataclass(frozen=True)
class TileResult:
    """One finished tile: its place in the run and the objects found in its window."""

    done: int
    total: int
    tile: Tile
    objects: list[AutoObject]


def iter_auto_tiles(
    image: NDArray[np.generic],
    segmenter: AutoSegmenter | Callable[[], AutoSegmenter],
    *,
    tile_px: int = 1024,
    halo_px: int = 64,
    identity: str | None = None,
    workers: int = 1,
) -> Iterator[TileResult]:
    """Segment ``image`` tile by tile (each tile with its halo), yielding after each tile.

    Parameters
    ----------
    image : array-like, shape (height, width[, channels])
        The image (numpy, or anything sliceable such as a zarr / dask array).
    segmenter : AutoSegmenter, or a factory of them
        With ``workers`` > 1 give a factory: each worker thread builds its own (a SAM 2
        predictor holds one image at a time).
    tile_px, halo_px : int
        Tile size and halo in pixels (the halo should exceed the largest object).
    identity : str, optional
        Image identity for the embedding-cache keys of the tiles' windows.
    workers : int
        Tiles segmented at once on dask's threaded scheduler (results still in tile order).
    """
    shape_yx = (int(image.shape[0]), int(image.shape[1]))
    check_tiling(shape_yx, tile_px, halo_px, name=identity or "the image")
    tiles = tile_grid(shape_yx, tile_px, halo_px)
    factory: Any = segmenter if _is_factory(segmenter) else None
    local = threading.local()

    def run(tile: Tile) -> list[AutoObject]:
        seg: Any = segmenter
        if factory is not None:
            if not hasattr(local, "segmenter"):
                local.segmenter = factory()
            seg = local.segmenter
        key = None if identity is None else ImageKey(identity, tile.window_yx)
        return list(seg(np.asarray(image[tile.slices]), key))

    if workers <= 1:
        for done, tile in enumerate(tiles, start=1):
            yield TileResult(done, len(tiles), tile, run(tile))
        return
    import dask  # type: ignore[import-untyped,unused-ignore]

    _preload_modules()
    batch = 2 * workers
    done = 0
    for start in range(0, len(tiles), batch):
        chunk = tiles[start : start + batch]
        tasks = [dask.delayed(run)(t) for t in chunk]  # type: ignore[attr-defined]
        results = dask.compute(*tasks, scheduler="threads", num_workers=workers)  # type: ignore[attr-defined,no-untyped-call]
        for tile, objects in zip(chunk, results, strict=True):
            done += 1
            yield TileResult(done, len(tiles), tile, list(objects))


def _is_factory(segmenter: Any) -> bool:
    return isinstance(segmenter, type) or not hasattr(segmenter, "source")


def _preload_modules() -> None:
    """Import lazily loaded scikit-image modules before threads race to import them."""
    import importlib

    for name in ("skimage.color", "skimage.feature", "skimage.filters", "skimage.measure", "skimage.morphology"):
        importlib.import_module(name)
    importlib.import_module("skimage.segmentation")


def auto_objects(
    image: NDArray[np.generic],
    segmenter: AutoSegmenter | Callable[[], AutoSegmenter],
    *,
    tile_px: int = 1024,
    halo_px: int = 64,
    identity: str | None = None,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> list[AutoObject]:
    """Every object of ``image``: tiles with a halo, stitched (see :func:`iter_auto_tiles`)."""
    tiled = []
    for result in iter_auto_tiles(
        image, segmenter, tile_px=tile_px, halo_px=halo_px, identity=identity, workers=workers
    ):
        tiled.append((result.tile, result.objects))
        if progress is not None:
            progress(result.done, result.total)
    return stitch(tiled)


@dataclass(frozen=True)
class AutoSummary:
    """What an automatic pre-labelling run committed.

    ``n_covered`` masks fell entirely on earlier instances, ``n_mostly_covered`` mostly (their
    free part a sliver, see :func:`~napari_instseg.core.commit_rules.auto_commit_plan`); both
    were dropped.
    """

    n_found: int
    n_committed: int
    n_covered: int
    source: str
    instance_ids: tuple[int, ...] = ()
    n_mostly_covered: int = 0

    def __str__(self) -> str:
        text = f"{self.n_committed} of {self.n_found} automatic masks committed as pre-labels ({self.source})"
        if self.n_covered:
            text += f"; {self.n_covered} fell entirely on earlier instances"
        if self.n_mostly_covered:
            text += f"; {self.n_mostly_covered} fell mostly on earlier instances"
        return text


def commit_auto(
    session: Any,
    objects: Sequence[AutoObject],
    source: str,
    *,
    category: int | str | None = None,
    origin_yx: tuple[int, int] = (0, 0),
    min_area_px: int | None = None,
) -> AutoSummary:
    """Commit ``objects`` into ``session`` as pre-labels: best score first, one undo step.

    Committed instances are never overwritten (each object takes only free pixels), and an
    object that falls entirely or mostly on earlier instances is dropped: its free part is
    below ``min_area_px`` or below
    :data:`~napari_instseg.core.commit_rules.MIN_FREE_FRACTION` of it (the rule is
    :func:`~napari_instseg.core.commit_rules.auto_commit_plan`), so a second run over
    pre-labelled pixels adds no slivers. The score (SAM 2: predicted IoU) is kept with each
    pre-label's proposal, and SAM 2's predicted IoU and stability score as the row's
    ``predicted_iou`` / ``stability_score`` (:func:`estimates_of`).

    Parameters
    ----------
    session : AnnotationSession
    objects : sequence of AutoObject
        In image coordinates; ``origin_yx`` is where the session's labels start in them.
    source : str
        ``sam2-auto`` or ``classic-auto``.
    category : int or str, optional
        Category of every instance (default: the protocol's first).
    origin_yx : tuple of int
        Where the session's frame starts in image coordinates.
    min_area_px : int, optional
        The run's minimum object area (default: the smaller of :data:`SLIVER_AREA_PX` and half
        the area of the smallest of ``objects``, so the area floor never drops more of the
        smallest objects than the free-fraction rule does).
    """
    shape_yx = session.shape_yx
    order = sorted(range(len(objects)), key=lambda i: -objects[i].score)
    inside = [(objects[i], _clipped(objects[i].mask, origin_yx, shape_yx)) for i in order]
    clipped = [(obj, CroppedMask(*part)) for obj, part in inside if part is not None]
    if min_area_px is None:
        smallest = min((obj.mask.area_px for obj in objects), default=0)
        min_area_px = min(SLIVER_AREA_PX, smallest // 2)
    plan = auto_commit_plan(session.labels_yx, [crop for _, crop in clipped], min_area_px=min_area_px)
    kept = [clipped[k] for k in plan.keep]
    results, covered = session.commit_many(  # crops: the commit costs each object's area, not the frame's
        (crop for _, crop in kept),
        scores=[o.score for o, _ in kept],
        estimates=[estimates_of(o) for o, _ in kept],
        source=source,
        category=category,
    )
    ids = tuple(r.instance_id for r in results)
    n_covered = plan.n_covered + covered + len(objects) - len(clipped)
    return AutoSummary(len(objects), len(results), n_covered, source, ids, plan.n_mostly_covered)


def estimates_of(obj: AutoObject) -> dict[str, float]:
    """An object's model estimates as pre-label row values (:data:`ESTIMATE_COLUMNS`; the
    classic backend has none: NaN values are left out)."""
    values = {"predicted_iou": obj.predicted_iou, "stability_score": obj.stability}
    return {name: float(v) for name, v in values.items() if np.isfinite(v)}


def _clipped(
    mask: CroppedMask, origin_yx: tuple[int, int], shape_yx: tuple[int, int]
) -> tuple[tuple[int, int, int, int], NDArray[np.bool_]] | None:
    """The part of ``mask`` inside the frame at ``origin_yx`` of ``shape_yx`` (frame coords)."""
    y0, x0, y1, x1 = mask.bbox_yx
    oy, ox = origin_yx
    fy0, fx0 = max(y0 - oy, 0), max(x0 - ox, 0)
    fy1, fx1 = min(y1 - oy, shape_yx[0]), min(x1 - ox, shape_yx[1])
    if fy1 <= fy0 or fx1 <= fx0:
        return None
    crop = mask.mask[fy0 + oy - y0 : fy1 + oy - y0, fx0 + ox - x0 : fx1 + ox - x0]
    if not crop.any():
        return None
    return (fy0, fx0, fy1, fx1), crop


def prelabel_scores(session: Any) -> dict[int, float]:
    """Model score of every pre-label proposal of ``session`` that has one (by instance id),
    for :class:`~napari_instseg.core.coco.AnnotatedImage` ``scores`` (so ``qa`` ranks them)."""
    out = {}
    for instance_id, record in session.prelabels.items():
        if record is not None and np.isfinite(record.score):
            out[int(instance_id)] = float(record.score)
    return out
