"""Batch pre-labelling of a whole slide on dask: tiles in parallel, one writer.

Tiles (with a halo) are segmented in parallel - on dask's local threaded scheduler by default,
or on a ``distributed.Client`` (a LocalCluster or a real cluster). Workers only compute
masks; the driver commits them into the store through window sessions, in tile order, with
the usual rules (new ids unique across the slide, never over a committed instance, state
``pre-label``). So the result does not depend on the scheduler. Finished tiles are recorded
in the store, and a rerun after an interruption skips them.

Crash safety: "tile committed" and "tile recorded done" are one step. The mark saying a
tile is done (and, in the automatic mode, the seam buffer of objects still waiting) is saved
as a store mark *with* the action that commits the tile's masks - in the same SQLite
transactions as its write-ahead record and its rows (``AnnotationStore.record(marks=...)``;
see :mod:`napari_instseg.core.store._store`). After a crash at any moment, the store either
holds the tile's masks and its done mark, or neither; a rerun redoes exactly the tiles
whose masks are not in the store, so nothing is lost or committed twice even when a redone
tile's masks differ from the first try's (a GPU, another device or cache). A tile that
commits nothing saves its mark alone. A tile whose masks come from several sources (one
action each) marks each source done with its action, and the tile done with the last, so
a redo skips the sources already in. Stores written before this keep their
``instseg/batch_done.json`` and ``instseg/batch_auto_pending.npz``: both are still read
(never written any more), the store's marks take over from the first tile done.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from napari_instseg.core.edits import CroppedMask
from napari_instseg.core.prompting.base import Prompt, Prompter, PromptError
from napari_instseg.core.prompting.cache import slide_tile_key
from napari_instseg.core.prompting.lifecycle import PrompterConfig, ThreadPrompters
from napari_instseg.core.slide import Slide, Window, open_slide, window_at

__all__ = [
    "BatchConfig",
    "BatchSummary",
    "auto_tiling",
    "check_store_belongs",
    "connected",
    "import_segmentation_modules",
    "prelabel_slide",
    "slide_identity",
    "tissue_tiles",
]

DONE_FILE = "batch_done.json"  # done tiles of stores written before the marks (read, never written)
PENDING_FILE = "batch_auto_pending.npz"  # likewise: the seam buffer of those stores
MARK_PREFIX = "prelabel-slide/"
DONE_MARK = MARK_PREFIX + "done/"  # + "row,col": the tile is committed (saved with its commit)
PART_MARK = MARK_PREFIX + "part/"  # + "row,col/source": one source of a several-source tile is committed
PENDING_MARK = MARK_PREFIX + "auto-pending"  # automatic mode: stitched objects waiting for neighbour tiles (npz)
TILING_MARK = MARK_PREFIX + "tiling"  # JSON {"tile_px", "halo_px", "mode", "backend"[, "model"]}: what done means
_PROMPTERS = ThreadPrompters()  # one model per worker thread, reused across its tiles; cleared after a run


@dataclass(frozen=True)
class BatchConfig:
    """How to pre-label: backend and model, tiling (None = automatic), category, cache."""

    backend: str = "classic"
    size: str = "tiny"
    checkpoint: str | None = None
    device: str | None = None
    tile_px: int | None = None
    halo_px: int | None = None
    object_px: int = 32
    category: int | str | None = None
    cache_path: str | None = None
    auto: str | None = None  # pre-label everything with this preset (sam2 or classic automatic mode)

    def prompter_config(self) -> PrompterConfig:
        """The prompter settings (``cache_path`` None: no embedding cache)."""
        return PrompterConfig(
            self.backend,
            self.size,
            self.checkpoint,
            self.device,
            self.cache_path,
            on_mismatch="recompute",
            use_cache=self.cache_path is not None,
        )


@dataclass(frozen=True)
class BatchSummary:
    """What a run did."""

    n_tiles: int
    n_skipped_done: int
    n_prompts: int
    n_committed: int
    n_covered: int
    tile_px: int
    halo_px: int
    auto: bool = False  # the automatic mode: ``n_prompts`` counts the automatic masks found

    def __str__(self) -> str:
        found = f"{self.n_prompts} automatic masks" if self.auto else f"{self.n_prompts} prompts"
        return (
            f"{self.n_committed} pre-labels committed from {found} on {self.n_tiles} tiles "
            f"({self.tile_px} px + {self.halo_px} px halo); {self.n_skipped_done} tiles already done; "
            f"{self.n_covered} masks fell on earlier instances"
        )


def auto_tiling(config: BatchConfig) -> tuple[int, int]:
    """Tile and halo in level-0 pixels: SAM 2 sees 1024 x 1024 tiles (its input size), the
    classic backend 512; the halo holds two object diameters so seam objects are whole."""
    from napari_instseg.core.prompting.registry import auto_tile_px

    tile = config.tile_px or auto_tile_px(config.backend)
    halo = config.halo_px if config.halo_px is not None else 2 * config.object_px
    return tile, halo


def tissue_tiles(slide: Slide, tile_px: int, min_fraction: float = 0.01) -> set[tuple[int, int]]:
    """(row, column) of the tiles with tissue, from the lowest-resolution level.

    Tissue is what is darker or more coloured than the bright glass (Otsu on the level's
    darkness); only the smallest level is read.
    """
    from skimage import filters

    level = len(slide.levels) - 1
    height, width = slide.level_shape_yx(level)
    image = slide.read_region((0, 0, height, width), level).astype(np.float32)
    darkness = 255.0 - (image.mean(axis=-1) if image.ndim == 3 else image)
    if image.ndim == 3:
        darkness += image.max(axis=-1) - image.min(axis=-1)  # saturation: stained tissue
    tissue = darkness > filters.threshold_otsu(darkness) if np.ptp(darkness) > 0 else np.zeros_like(darkness, bool)
    scale = slide.downsample(level)
    step = max(round(tile_px / scale), 1)
    tiles = set()
    for ty in range(0, height, step):
        for tx in range(0, width, step):
            if tissue[ty : ty + step, tx : tx + step].mean() >= min_fraction:
                tiles.add((int(ty // step), int(tx // step)))
    return tiles


def _tile_of(prompt: Prompt, tile_px: int) -> tuple[int, int]:
    if len(prompt.points_yx):
        y, x = (
            prompt.points_yx[prompt.point_labels == 1][0] if (prompt.point_labels == 1).any() else prompt.points_yx[0]
        )
    elif prompt.box_xyxy is not None:
        x0, y0, x1, y1 = prompt.box_xyxy
        y, x = (y0 + y1) / 2, (x0 + x1) / 2
    else:  # Prompt.make refuses a prompt with neither points nor a box
        raise PromptError("A prompt needs points or a box to be placed in a tile.")
    return int(y // tile_px), int(x // tile_px)


def _shifted(prompt: Prompt, dy: int, dx: int) -> Prompt:
    box = None if prompt.box_xyxy is None else prompt.box_xyxy - np.array([dx, dy, dx, dy])
    return Prompt(prompt.points_yx - np.array([dy, dx]), prompt.point_labels, box, None)


def _prompter(config: BatchConfig) -> Prompter:
    """This worker thread's prompter (prompters hold the current image: never shared between
    running tiles)."""
    return _PROMPTERS.get(config.prompter_config())


def segment_tile(
    source: str, window: Window, prompts: Sequence[Prompt] | None, config: BatchConfig, detect: bool
) -> list[Any]:
    """Worker task: the best mask (window coordinates) for each prompt in one window, as
    (CroppedMask, score, source); in the automatic mode the tile's kept objects instead.

    With ``detect`` the prompts are the classical detector's nuclei whose centre lies in the
    tile itself (not its halo), so neighbouring tiles do not prompt the same nucleus twice.
    """
    from napari_instseg.core.detect import detect_nuclei

    slide = open_slide(source)
    image = slide.read_region(window.region_yx)
    y0, x0 = window.origin_yx
    if config.auto:
        return _auto_tile(source, window, image, config, slide.shape_yx)
    if detect:
        ty0, tx0, ty1, tx1 = window.tile_yx
        centres = detect_nuclei(image).centroids_yx
        inside = (
            (centres[:, 0] + y0 >= ty0)
            & (centres[:, 0] + y0 < ty1)
            & (centres[:, 1] + x0 >= tx0)
            & (centres[:, 1] + x0 < tx1)
        )
        prompts = [Prompt.make(points_yx=[c]) for c in centres[inside]]
    if not prompts:
        return []
    prompter = _prompter(config)
    prompter.set_image(image, slide_tile_key(source, window.region_yx))
    out = []
    for prompt in prompts:
        try:
            candidates = prompter.predict(prompt)
        except PromptError:
            continue
        out.append((CroppedMask.from_full(candidates.masks_yx[0]), float(candidates.scores[0]), candidates.source))
    return out


def _auto_tile(
    source: str, window: Window, image: np.ndarray, config: BatchConfig, shape_yx: tuple[int, int]
) -> list[Any]:
    """Worker task of the automatic mode: the objects the tile keeps for stitching (image
    coordinates, :func:`~napari_instseg.core.stitch.kept_objects`): whole ones anchored in
    the tile, and every fragment cut by a window edge inside the slide."""
    from napari_instseg.core.prompting.auto import PRESETS, ClassicAutoSegmenter, Sam2AutoSegmenter
    from napari_instseg.core.stitch import kept_objects

    segmenter: Any = (
        Sam2AutoSegmenter(_prompter(config), PRESETS[config.auto or "cells"])
        if config.backend == "sam2"
        else ClassicAutoSegmenter()
    )
    objects = segmenter(image, slide_tile_key(source, window.region_yx))
    return kept_objects(_stitch_tile(window, config.tile_px or 1), objects, shape_yx)


def _stitch_tile(window: Window, tile_px: int) -> Any:
    """The stitching tile of a slide window (its grid index, as the jobs' tile keys)."""
    from napari_instseg.core.stitch import Tile

    return Tile((window.tile_yx[0] // tile_px, window.tile_yx[1] // tile_px), window.tile_yx, window.region_yx)


class _AutoWriter:
    """The single writer of the automatic mode: kept objects wait in a
    :class:`~napari_instseg.core.stitch.SeamBuffer` until every tile reaching them is done,
    then the merged objects are committed (so an object larger than the halo, cut by a seam,
    becomes one instance); waiting objects and the tile's done mark are saved with that
    commit, atomically (resumable, see the module docstring)."""

    def __init__(self, store: Any, config: BatchConfig, expected: set[tuple[int, int]], done: set[tuple[int, int]]):
        from napari_instseg.core.prompting.auto import AUTO_SOURCES
        from napari_instseg.core.stitch import SeamBuffer

        self.store, self.config = store, config
        self.source = AUTO_SOURCES[config.backend]
        pending = [k for k in _load_pending(store) if k.tile.index_yx in done]  # a tile redone is not doubled
        self.buffer = SeamBuffer(config.tile_px or 1, config.halo_px or 0, expected, pending)

    def add(self, kept: list[Any], done: set[tuple[int, int]], key: tuple[int, int]) -> tuple[int, int]:
        """Add finished tile ``key`` (already in ``done``); commit what is complete, with the
        tile's done mark and the objects still waiting (one atomic save)."""
        ready = self.buffer.add(kept, done)
        marks = {_done_mark(key): None, PENDING_MARK: _packed(self.buffer.pending)}
        committed = covered = 0
        if ready:
            committed, covered = _commit_objects(self.store, ready, self.source, self.config, marks)
        if not committed:  # no action was saved: the marks alone
            self.store.set_marks(marks)
        return committed, covered


def _commit_objects(
    store: Any, objects: list[Any], source: str, config: BatchConfig, marks: dict[str, bytes | None]
) -> tuple[int, int]:
    """Commit stitched objects (image coordinates) as one saved action carrying ``marks``:
    (committed, covered)."""
    from napari_instseg.core.prompting.auto import commit_auto

    boxes = np.array([o.mask.bbox_yx for o in objects])
    region = (*(int(v) for v in boxes[:, :2].min(axis=0)), *(int(v) for v in boxes[:, 2:].max(axis=0)))
    session = store.window_session(region, annotator="batch", marks=marks)
    summary = commit_auto(session, objects, source, category=config.category, origin_yx=(region[0], region[1]))
    return summary.n_committed, summary.n_covered + summary.n_mostly_covered  # both: fell on earlier instances


def _load_pending(store: Any) -> list[Any]:
    """The saved seam buffer: the store's mark, else (a store written before the marks) the
    old ``batch_auto_pending.npz``."""
    from napari_instseg.core.stitch import unpack_kept

    saved = store.read_marks(PENDING_MARK).get(PENDING_MARK)
    path = store.path / "instseg" / PENDING_FILE
    if saved is None and not path.is_file():
        return []
    with np.load(io.BytesIO(saved) if saved is not None else path) as arrays:
        return unpack_kept({name: arrays[name] for name in arrays.files})


def _packed(pending: list[Any]) -> bytes:
    """The seam buffer as npz bytes (:func:`~napari_instseg.core.stitch.pack_kept`)."""
    from napari_instseg.core.stitch import pack_kept

    buffer = io.BytesIO()
    np.savez_compressed(buffer, **pack_kept(pending))  # type: ignore[arg-type]
    return buffer.getvalue()


def prelabel_slide(
    slide_path: str | os.PathLike[str],
    store_path: str | os.PathLike[str],
    prompts: Sequence[Prompt] | None = None,
    *,
    detect: bool = False,
    auto: str | None = None,
    config: BatchConfig | None = None,
    scheduler: Any = "threads",
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> BatchSummary:
    """Pre-label a slide into an annotation store (created when missing), resumably.

    Parameters
    ----------
    slide_path, store_path : path-like
        The slide (any :func:`open_slide` format) and its annotation store.
    prompts : sequence of Prompt, optional
        Point / box prompts in level-0 slide pixels; each goes to the tile holding it.
    detect : bool
        Prompt with the classical nuclei detector on every tile with tissue instead.
    auto : {'cells', 'objects'}, optional
        Pre-label everything on every tile with tissue (the backend's automatic mode with
        this preset), stitched as one image is (:func:`~napari_instseg.core.stitch.stitch`):
        halo overlaps never duplicate an object, and one larger than the halo, cut by a seam,
        is merged into one instance.
    config : BatchConfig
    scheduler : "threads", a ``distributed.Client``, or a scheduler address
        Where the tiles run (dask's local threaded scheduler by default).
    workers : int, optional
        Threads for the threaded scheduler.
    progress : callable, optional
        ``progress(done_tiles, total_tiles)`` after each tile is saved. An exception it
        raises stops the run there (every finished tile is in the store; a second run resumes
        after them).
    """
    from napari_instseg.core.store import AnnotationStore, StoreError, is_store

    config = config or BatchConfig()
    if auto:
        config = replace(config, auto=auto)
    detect = detect or bool(config.auto)
    if prompts is None and not detect:
        raise ValueError("Give prompts, or detect=True.")
    slide = open_slide(slide_path)
    tile_px, halo_px = auto_tiling(config)
    config = replace(config, tile_px=tile_px, halo_px=halo_px)
    identity = slide_identity(slide, slide_path)
    store = (
        AnnotationStore.open(store_path)
        if is_store(store_path)
        else _create_store(store_path, slide.shape_yx, slide_path, identity)
    )
    try:
        check_store_belongs(store, identity, slide_path)
        if store.read_only:
            raise StoreError(f"{store_path}: {store.lock_message}; nothing done.")
        _check_tiling(store, store_path, _run_record(config, detect, tile_px, halo_px))
        jobs = _jobs(slide, prompts, detect, tile_px, halo_px)
        done = _done_tiles(store)
        todo = [(key, window, tile_prompts) for key, window, tile_prompts in jobs if key not in done]
        committed = covered = 0
        batch = max(2 * (workers or os.cpu_count() or 2), 4)
        finished = 0
        writer = _AutoWriter(store, config, {key for key, _, _ in jobs}, done) if config.auto else None
        for chunk, results in _batch_results(todo, batch, str(slide_path), config, detect, scheduler, workers):
            for (key, window, _), masks in zip(chunk, results, strict=False):
                done.add(key)
                if writer is not None:
                    c, skipped = writer.add(masks, done, key)
                else:
                    c, skipped = _commit_tile(store, key, window, masks, config)
                committed += c
                covered += skipped
                finished += 1
                if progress is not None:  # per tile, each saved: an exception here stops a resumable run
                    progress(finished, len(todo))
        n_prompts = sum(len(p) for _, _, p in jobs if p is not None) if prompts is not None else committed + covered
        return BatchSummary(
            len(jobs), len(jobs) - len(todo), n_prompts, committed, covered, tile_px, halo_px, bool(config.auto)
        )
    finally:
        store.close()
        _PROMPTERS.clear()


def _create_store(
    store_path: str | os.PathLike[str], shape_yx: tuple[int, int], slide_path: Any, identity: dict[str, Any]
) -> Any:
    """A new store for the slide; an OS error names the store asked for, not the hidden
    folder it is built in.

    Raises
    ------
    StoreError
        When the store cannot be created there (a read-only folder, a file in the way...).
    """
    from napari_instseg.core.store import AnnotationStore, StoreError

    image = {"file_name": Path(slide_path).name, "slide": str(slide_path), "identity": identity}
    try:
        return AnnotationStore.create(store_path, shape_yx, image=image)
    except OSError as exc:
        folder = Path(store_path).absolute().parent
        raise StoreError(
            f"{store_path}: cannot create the annotation store there ({exc.strerror or exc}; folder {folder}); "
            "choose a folder you can write to. Nothing done."
        ) from exc


def slide_identity(slide: Slide, slide_path: str | os.PathLike[str]) -> dict[str, Any]:
    """What identifies a slide for its store: file name, level-0 shape and a fingerprint
    (CRC-32 of a few fixed 256-px regions of its smallest level, so moving or renaming the
    file keeps it, another slide of the same shape does not)."""
    import zlib

    level = len(slide.levels) - 1
    height, width = slide.level_shape_yx(level)
    crc = 0
    for fy, fx in ((0, 0), (0.5, 0.5), (0.25, 0.75), (0.75, 0.25)):
        y0, x0 = int(fy * max(height - 256, 0)), int(fx * max(width - 256, 0))
        region = np.ascontiguousarray(slide.read_region((y0, x0, y0 + 256, x0 + 256), level))
        crc = zlib.crc32(region.tobytes(), crc)
    return {
        "file_name": Path(slide_path).name,
        "shape_yx": [int(v) for v in slide.shape_yx],
        "fingerprint": f"{level}:{height}x{width}:{crc & 0xFFFFFFFF:08x}",
    }


def check_store_belongs(store: Any, identity: dict[str, Any], slide_path: str | os.PathLike[str]) -> None:
    """Refuse a store made for another slide (another shape, or another fingerprint).

    Raises
    ------
    StoreError
        Naming the store, the slide and what differs.
    """
    from napari_instseg.core.store import StoreError

    if tuple(store.shape_yx) != tuple(identity["shape_yx"]):
        raise StoreError(
            f"{store.path} holds labels of shape (y, x) {tuple(store.shape_yx)}, but slide {slide_path} is "
            f"{tuple(identity['shape_yx'])}: it is another slide's store; nothing done."
        )
    recorded = store.image.get("identity")
    if isinstance(recorded, dict) and recorded.get("fingerprint") not in (None, identity["fingerprint"]):
        raise StoreError(
            f"{store.path} belongs to slide {recorded.get('file_name')!r} (fingerprint {recorded.get('fingerprint')}), "
            f"not to {slide_path} (fingerprint {identity['fingerprint']}); nothing done."
        )


def _jobs(
    slide: Slide, prompts: Sequence[Prompt] | None, detect: bool, tile_px: int, halo_px: int
) -> list[tuple[tuple[int, int], Window, list[Prompt] | None]]:
    """(tile key, window, prompts in window coordinates) in tile order."""
    shape = slide.shape_yx
    if detect:
        keys: Iterable[tuple[int, int]] = sorted(tissue_tiles(slide, tile_px))
        return [(k, window_at(shape, (k[0] * tile_px, k[1] * tile_px), tile_px, halo_px), None) for k in keys]
    grouped: dict[tuple[int, int], list[Prompt]] = {}
    for prompt in prompts or []:
        grouped.setdefault(_tile_of(prompt, tile_px), []).append(prompt)
    jobs: list[tuple[tuple[int, int], Window, list[Prompt] | None]] = []
    for key in sorted(grouped):
        window = window_at(shape, (key[0] * tile_px, key[1] * tile_px), tile_px, halo_px)
        y0, x0 = window.origin_yx
        jobs.append((key, window, [_shifted(p, y0, x0) for p in grouped[key]]))
    return jobs


def _commit_tile(
    store: Any,
    key: tuple[int, int],
    window: Window,
    masks: list[tuple[CroppedMask, float, str]],
    config: BatchConfig,
) -> tuple[int, int]:
    """Commit one tile's masks as one saved action per source, the last one carrying the
    tile's done mark (earlier ones their source's mark, skipped when the tile is redone);
    (committed, covered)."""
    by_source: dict[str, list[Any]] = {}
    for mask, score, source in masks:
        by_source.setdefault(source, []).append((mask, score))
    already = store.read_marks(_part_mark(key, ""))  # sources committed before a crash
    todo = [(source, pairs) for source, pairs in by_source.items() if _part_mark(key, source) not in already]
    if not todo:
        store.set_marks({_done_mark(key): None})
        return 0, 0
    committed = covered = 0
    for i, (source, pairs) in enumerate(todo):
        marks: dict[str, bytes | None] = {(_done_mark(key) if i == len(todo) - 1 else _part_mark(key, source)): None}
        if source.endswith("-auto"):  # automatic masks: best first, their scores kept
            pairs = sorted(pairs, key=lambda pair: -pair[1])
        session = store.window_session(window.region_yx, annotator="batch", marks=marks)
        full_masks = (mask.full(window.shape_yx) for mask, _ in pairs)
        results, skipped = session.commit_many(
            full_masks, scores=[score for _, score in pairs], source=source, category=config.category
        )
        if not results:  # no action was saved: the mark alone
            store.set_marks(marks)
        committed += len(results)
        covered += skipped
    return committed, covered


def _done_mark(key: tuple[int, int]) -> str:
    return f"{DONE_MARK}{key[0]},{key[1]}"


def _part_mark(key: tuple[int, int], source: str) -> str:
    return f"{PART_MARK}{key[0]},{key[1]}/{source}"


def _batch_results(
    todo: list[Any], batch: int, source: str, config: BatchConfig, detect: bool, scheduler: Any, workers: int | None
) -> Iterator[tuple[list[Any], list[Any]]]:
    """Batches of tiles with their results, in order; the next batch is computed while the
    caller commits the current one (the single writer never idles the workers)."""
    from concurrent.futures import ThreadPoolExecutor

    chunks = [todo[i : i + batch] for i in range(0, len(todo), batch)]
    if not chunks:
        return
    with connected(scheduler) as target, ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(_run, chunks[0], source, config, detect, target, workers)
        for k, chunk in enumerate(chunks):
            results = pending.result()
            if k + 1 < len(chunks):
                pending = pool.submit(_run, chunks[k + 1], source, config, detect, target, workers)
            yield chunk, results


@contextlib.contextmanager
def connected(scheduler: Any) -> Iterator[Any]:
    """A client for a scheduler address (closed afterwards); other schedulers as they are."""
    if isinstance(scheduler, str) and scheduler != "threads":
        from distributed import Client

        with Client(scheduler) as client:
            yield client
    else:
        yield scheduler


def _run(
    chunk: list[Any], source: str, config: BatchConfig, detect: bool, scheduler: Any, workers: int | None
) -> list[Any]:
    """Segment a batch of tiles on the chosen scheduler; results in the batch's order."""
    from dask.base import compute
    from dask.delayed import delayed

    import_segmentation_modules()
    tasks = [delayed(segment_tile)(source, window, tile_prompts, config, detect) for _, window, tile_prompts in chunk]
    if scheduler in (None, "threads"):
        return list(compute(*tasks, scheduler="threads", num_workers=workers))
    return list(compute(*tasks, scheduler=scheduler))


def import_segmentation_modules() -> None:
    """Import scikit-image's lazily loaded submodules once, before threads race to do it
    (two threads importing one of them at once can see it half-initialised)."""
    import importlib

    for name in (
        "skimage.color",
        "skimage.feature",
        "skimage.filters",
        "skimage.measure",
        "skimage.morphology",
        "skimage.segmentation",
        "skimage.transform",
        "scipy.ndimage",
        "scipy.optimize",
    ):
        importlib.import_module(name)


def _run_record(config: BatchConfig, detect: bool, tile_px: int, halo_px: int) -> dict[str, Any]:
    """What a run's done marks mean: its tile grid, its mode (``auto:<preset>``, ``detect`` or
    ``prompts``) and backend (with the SAM 2 model size)."""
    mode = f"auto:{config.auto}" if config.auto else "detect" if detect else "prompts"
    record: dict[str, Any] = {"tile_px": tile_px, "halo_px": halo_px, "mode": mode, "backend": config.backend}
    if config.backend == "sam2":
        record["model"] = config.size
    return record


def _as_options(record: dict[str, Any]) -> str:
    """A run record as the ``prelabel-slide`` options that make it."""
    mode = str(record["mode"])
    words = [
        f"--auto {mode[5:]}" if mode.startswith("auto:") else "--detect" if mode == "detect" else "--points/--boxes"
    ]
    words.append(f"--backend {record['backend']}")
    if record.get("model"):
        words.append(f"--model {record['model']}")
    return " ".join(words)


def _check_tiling(store: Any, store_path: Any, run: dict[str, Any]) -> None:
    """Record the run's tile grid, mode and backend in the store, or refuse a run on another
    grid or with another mode / backend: the done marks name tiles by (row, col) of that grid,
    so resuming on another one would skip the wrong tiles (and the automatic mode's waiting
    objects belong to that grid's seams); another mode or backend would skip every tile the
    first run did and silently do nothing there. Stores written before the mode and backend
    were recorded (``tile_px`` and ``halo_px`` only) resume with any.

    Raises
    ------
    StoreError
        When the store's earlier run used another tile size or halo, mode or backend.
    """
    import json

    from napari_instseg.core.store import StoreError

    saved = store.read_marks(TILING_MARK).get(TILING_MARK)
    if saved is None:
        store.set_marks({TILING_MARK: json.dumps(run).encode()})
        return
    earlier = json.loads(saved.decode())
    tile_px, halo_px = run["tile_px"], run["halo_px"]
    if (earlier["tile_px"], earlier["halo_px"]) != (tile_px, halo_px):
        raise StoreError(
            f"{store_path}: its pre-labelling ran on {earlier['tile_px']} px tiles with a {earlier['halo_px']} px "
            f"halo, this run asks for {tile_px} px tiles with a {halo_px} px halo; resume with "
            f"--tile {earlier['tile_px']} --halo {earlier['halo_px']}, or use another --store. Nothing done."
        )
    if "mode" in earlier and any(earlier.get(k) != run.get(k) for k in ("mode", "backend", "model")):
        raise StoreError(
            f"{store_path}: its pre-labelling ran with {_as_options(earlier)}, this run asks for "
            f"{_as_options(run)}; the tiles it did would be skipped and nothing done there. Resume with "
            f"{_as_options(earlier)}, or pre-label into another --store. Nothing done."
        )


def _done_tiles(store: Any) -> set[tuple[int, int]]:
    """Tiles recorded done: the store's marks, and the old ``batch_done.json`` of a store
    written before them."""
    done: set[tuple[int, int]] = set()
    for mark in store.read_marks(DONE_MARK):
        row, col = mark[len(DONE_MARK) :].split(",")
        done.add((int(row), int(col)))
    path = store.path / "instseg" / DONE_FILE
    if path.is_file():
        done |= {(int(k[0]), int(k[1])) for k in json.loads(path.read_text())["tiles"]}
    return done
