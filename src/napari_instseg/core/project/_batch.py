"""Pre-label every image of a project that needs it, on dask, resumably, one writer per store.

Workers (dask's local threads by default, or a ``distributed`` scheduler) read an image,
place point prompts with the classical nuclei detector (:mod:`napari_instseg.core.detect`)
and ask the backend (SAM 2 or classic) for one mask per prompt; or, in the automatic mode
(``auto``), pre-label everything as ``prelabel --auto`` does (tiles with a halo, stitched;
sources ``sam2-auto`` / ``classic-auto``, scores and SAM 2's estimates kept). Only the driver writes: it
commits each image's masks into that image's store as one saved action (same commit rules as
in napari: new ids, never over a committed instance, review state ``pre-label``), then marks
the image ``pre-labelled`` in the manifest. A rerun skips images already done; an image whose
store holds instances but whose manifest row was not updated (an interrupted run) is marked
without being pre-labelled twice. Stores another process has open are left alone.
Calibration images are never pre-labelled (annotators there work independently).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_instseg.core.edits import CroppedMask
from napari_instseg.core.project._manifest import WorkItem
from napari_instseg.core.project._project import Project

__all__ = [
    "ImageFailure",
    "ProjectPrelabelConfig",
    "ProjectPrelabelSummary",
    "prelabel_not_started",
    "prelabel_project",
    "prelabel_refusal",
    "prelabel_selected",
    "segment_image",
]

_PROMPTERS: dict[tuple[Any, ...], Any] = {}
_LOCK = threading.Lock()


@dataclass(frozen=True)
class ProjectPrelabelConfig:
    """Backend and model of a project pre-labelling run."""

    backend: str = "classic"
    size: str = "tiny"
    checkpoint: str | None = None
    device: str | None = None
    category: int | str | None = None
    auto: str | None = None  # pre-label everything with this preset ('cells' / 'objects'), as ``prelabel --auto``
    auto_tile: int | None = None  # tile size of the automatic mode (None: 1024 sam2, 512 classic)
    auto_halo: int = 64
    auto_points: int | None = None  # SAM 2 points per side (None: the preset's)

    @property
    def source_name(self) -> str:
        """What the run commits: the backend, or its automatic source."""
        from napari_instseg.core.prompting.auto import AUTO_SOURCES

        return AUTO_SOURCES[self.backend] if self.auto else self.backend


@dataclass(frozen=True)
class ImageFailure:
    """A project image that could not be pre-labelled (missing, unreadable, or no longer the
    size the project recorded); the run goes on with the others."""

    message: str


@dataclass(frozen=True)
class ProjectPrelabelSummary:
    """What a run did.

    ``n_already_done`` counts the production images past 'to do' before the run (pre-labelled
    earlier, or an interrupted run's stores); ``n_slides`` the slides left to ``prelabel-slide``
    / the Slide panel; ``failed`` names each image that could not be read, and why.
    """

    n_images: int
    n_prelabelled: int
    n_instances: int
    n_already_done: int
    n_locked: int
    backend: str
    n_slides: int = 0
    failed: tuple[str, ...] = ()

    def __str__(self) -> str:
        text = (
            f"{self.n_prelabelled} of {self.n_images} image(s) pre-labelled ({self.backend}), "
            f"{self.n_instances} instance(s); {self.n_already_done} already done"
        )
        if self.n_locked:
            text += f"; {self.n_locked} skipped (open in another session; run again later)"
        if self.n_slides:
            text += f"; {self.n_slides} slide(s) not pre-labelled here (use prelabel-slide or the Slide panel)"
        if self.failed:
            text += f"; {len(self.failed)} failed (fix them and run again): " + "; ".join(self.failed)
        return text


def _prompter(config: ProjectPrelabelConfig) -> Any:
    """One prompter per worker thread (a prompter holds its current image)."""
    from napari_instseg.core.prompting import make_prompter

    key = (threading.get_ident(), config.backend, config.size, config.checkpoint, config.device)
    with _LOCK:
        if key not in _PROMPTERS:
            prompter = make_prompter(
                config.backend, size=config.size, checkpoint=config.checkpoint, device=config.device
            )
            load = getattr(prompter, "load", None)
            if load is not None:  # build the model under the lock: torch.jit.script is not thread-safe
                load()
            _PROMPTERS[key] = prompter
        return _PROMPTERS[key]


def segment_image(
    image_path: str, config: ProjectPrelabelConfig, shape_yx: tuple[int, int] | None = None
) -> list[Any] | ImageFailure:
    """Worker task: (mask, source) for each nucleus the detector finds in one image file; in
    the automatic mode (``config.auto``) every object of the image, tiled and stitched
    (:class:`~napari_instseg.core.stitch.AutoObject`, image coordinates). An
    :class:`ImageFailure` when the file cannot be read, or is no longer ``shape_yx`` (the
    size the project recorded for it)."""
    from napari_instseg.core.detect import detect_nuclei
    from napari_instseg.core.errors import InstsegError
    from napari_instseg.core.io import check_grey_or_rgb, read_image
    from napari_instseg.core.prompting.base import ImageKey, Prompt, PromptError

    try:
        image = read_image(image_path)
        check_grey_or_rgb(image, image_path)  # a stack or 2-channel image: the file named, both modes
    except (OSError, InstsegError) as exc:
        text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return ImageFailure(text if str(image_path) in text else f"{image_path}: {text}")  # the path once
    if shape_yx is not None and tuple(image.shape[:2]) != tuple(shape_yx):
        return ImageFailure(
            f"{image_path} is now {image.shape[0]} x {image.shape[1]} px; the project recorded "
            f"{shape_yx[0]} x {shape_yx[1]} (the file changed since the project was made)"
        )
    if config.auto:
        return _auto_image(image, image_path, config)
    centres = detect_nuclei(image).centroids_yx
    if not len(centres):
        return []
    prompter = _prompter(config)
    prompter.set_image(image, ImageKey.whole(f"file:{image_path}", image.shape[:2]))
    out = []
    for centre in centres:
        try:
            candidates = prompter.predict(Prompt.make(points_yx=[centre]))
        except PromptError:
            continue
        out.append((CroppedMask.from_full(candidates.masks_yx[0]), candidates.source))
    return out


def _auto_image(image: np.ndarray, image_path: str, config: ProjectPrelabelConfig) -> list[Any]:
    """Every object of one image with the settings of ``prelabel --auto`` (tiles one after
    another: images already run in parallel)."""
    from dataclasses import replace

    from napari_instseg.core.prompting.auto import PRESETS, ClassicAutoSegmenter, Sam2AutoSegmenter, auto_objects

    segmenter: Any = ClassicAutoSegmenter()
    if config.backend == "sam2":
        settings = PRESETS[config.auto or "cells"]
        if config.auto_points:
            settings = replace(settings, points_per_side=config.auto_points)
        segmenter = Sam2AutoSegmenter(_prompter(config), settings)
    from napari_instseg.core.prompting.registry import auto_tile_px

    tile = config.auto_tile or auto_tile_px(config.backend)
    return auto_objects(image, segmenter, tile_px=tile, halo_px=config.auto_halo, identity=f"file:{image_path}")


def _todo(project: Project) -> list[WorkItem]:
    """The production items still to do, slides included (those are left to prelabel-slide)."""
    keys = [(i, "") for i in project.manifest.image_ids(phase="production", statuses=("todo",))]
    items = []
    for start in range(0, len(keys), 1024):  # a page at a time, by primary key
        items += project.manifest.items_between(keys[start : start + 1024])
    return items


def _n_past_todo(project: Project) -> int:
    """Production images already past 'to do' (pre-labelled, or further)."""
    from napari_instseg.core.project._manifest import STATUSES

    return len(project.manifest.image_ids(phase="production", statuses=[s for s in STATUSES if s != "todo"]))


def prelabel_project(
    project: Project,
    config: ProjectPrelabelConfig | None = None,
    *,
    scheduler: Any = "threads",
    workers: int | None = None,
    batch: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ProjectPrelabelSummary:
    """Pre-label the project's production images still 'to do'.

    Parameters
    ----------
    project : Project
    config : ProjectPrelabelConfig
    scheduler : "threads", a ``distributed.Client`` or a scheduler address
    workers : int, optional
        Threads of the local scheduler.
    batch : int, optional
        Images computed per round (default: twice the workers, at least 4).
    progress : callable, optional
        ``progress(done, total)`` after each image.
    """
    from napari_instseg.core.batch import import_segmentation_modules

    config = config or ProjectPrelabelConfig()
    import_segmentation_modules()
    earlier = _n_past_todo(project)
    everything = _todo(project)
    todo = [it for it in everything if it.kind == "image"]
    fresh, resumed, locked = [], 0, 0
    failed: list[str] = []
    for item in todo:  # an interrupted run may have saved the store but not the manifest row
        n = project.count_in_table(item, len)
        if n:
            project.manifest.set_item(item.key, status="pre-labelled", n_instances=n)
            resumed += 1
        else:
            fresh.append(item)
    batch = batch or max(2 * (workers or os.cpu_count() or 2), 4)
    done = n_prelabelled = n_instances = 0
    for chunk, results in _rounds(project, fresh, batch, config, scheduler, workers):
        for item, masks in zip(chunk, results, strict=True):
            committed = None if isinstance(masks, ImageFailure) else _commit(project, item, masks, config)
            if isinstance(masks, ImageFailure):
                failed.append(f"image {item.image_id}: {masks.message}")
            elif committed is None:
                locked += 1
            else:
                n_prelabelled += 1
                n_instances += committed
            done += 1
            if progress is not None:
                progress(done, len(fresh))
    return ProjectPrelabelSummary(
        len(todo),
        n_prelabelled,
        n_instances,
        resumed + earlier,
        locked,
        config.source_name,
        n_slides=len(everything) - len(todo),
        failed=tuple(failed),
    )


def _commit(project: Project, item: WorkItem, masks: Sequence[Any], config: Any) -> int | None:
    """Commit one image's masks (one action per source; automatic objects through
    :func:`~napari_instseg.core.prompting.auto.commit_auto`); None when its store is locked."""
    from napari_instseg.core.prompting.auto import commit_auto

    store = project.open_store(item)
    try:
        if store.read_only:
            return None
        session = store.session(annotator="batch")
        if config.auto:
            commit_auto(session, masks, config.source_name, category=config.category)
            masks = []
        by_source: dict[str, list[np.ndarray]] = {}
        for mask, source in masks:
            by_source.setdefault(source, []).append(mask.full(item.shape_yx))
        for source, full_masks in by_source.items():
            session.commit_many(full_masks, source=source, category=config.category)
        n = len(store.table)
    finally:
        store.close()
    project.manifest.set_item(item.key, status="pre-labelled", n_instances=n)
    return n


def _rounds(
    project: Project, items: list[WorkItem], batch: int, config: Any, scheduler: Any, workers: int | None
) -> Iterator[tuple[list[WorkItem], list[Any]]]:
    """Rounds of images with their masks; the next round computes while the driver commits."""
    from concurrent.futures import ThreadPoolExecutor

    from napari_instseg.core.batch import connected

    chunks = [items[i : i + batch] for i in range(0, len(items), batch)]
    if not chunks:
        return
    with connected(scheduler) as target, ThreadPoolExecutor(max_workers=1) as pool:
        paths = [[(str(project.image_path(it)), it.shape_yx) for it in chunk] for chunk in chunks]
        pending = pool.submit(_compute, paths[0], config, target, workers)
        for k, chunk in enumerate(chunks):
            results = pending.result()
            if k + 1 < len(chunks):
                pending = pool.submit(_compute, paths[k + 1], config, target, workers)
            yield chunk, results


def _compute(paths: list[tuple[str, tuple[int, int]]], config: Any, scheduler: Any, workers: int | None) -> list[Any]:
    from dask.base import compute
    from dask.delayed import delayed

    tasks = [delayed(segment_image)(p, config, shape_yx) for p, shape_yx in paths]
    if scheduler in (None, "threads"):
        return list(compute(*tasks, scheduler="threads", num_workers=workers))
    return list(compute(*tasks, scheduler=scheduler))


def image_exists(project: Project, item: WorkItem) -> bool:
    """True when the item's image file is where the manifest says."""
    return Path(project.image_path(item)).exists()


# -- runs a panel starts in a worker (each opens the project in its own thread) -----------------
def prelabel_refusal(project_path: Any) -> str:
    """Why the project cannot be written here ('' when it can): its manifest or its stores
    folder is not writable."""
    for path in (Path(project_path) / "manifest.sqlite", Path(project_path) / "stores"):
        if not os.access(path, os.W_OK):
            return f"Project {project_path} is read-only here ({path} cannot be written); nothing was pre-labelled."
    return ""


def prelabel_not_started(project_path: Any, config: Any, *, progress: Any) -> str:
    """Every production image still to do, through the core's resumable project run
    (one image per round, so progress and Cancel come after every image)."""
    workers = max(1, (os.cpu_count() or 2) - 1)  # a core left for the viewer
    with Project.open(project_path) as project:
        return str(prelabel_project(project, config, workers=workers, batch=workers, progress=progress))


def prelabel_selected(project_path: Any, keys: list[tuple[int, str]], config: Any, *, progress: Any) -> str:
    """Pre-label the selected work items that are production images not started, one after
    another, each saved into its store as it is done (same commit rules as the project run).

    ``progress(done, total, file_name)`` is called before each image and again before it is
    saved, so a cancelled run (the callback raises) never saves the image it was working on.
    Returns what was done, naming each image skipped and why.
    """
    done = n_instances = 0
    skipped: list[str] = []
    with Project.open(project_path) as project:
        items = project.manifest.items_between(keys)
        for k, item in enumerate(items):
            progress(k, len(items), item.file_name)
            why = _not_to_prelabel(item)
            result = why or _prelabel_one(project, item, config, lambda: progress(k, len(items), item.file_name))  # noqa: B023
            if isinstance(result, str):
                skipped.append(result)
            else:
                done, n_instances = done + 1, n_instances + result
        progress(len(items), len(items))
    text = f"{done} of {len(items)} selected image(s) pre-labelled ({config.source_name}), {n_instances} instance(s)"
    return text + (f"; skipped: {'; '.join(skipped)}" if skipped else "")


def _not_to_prelabel(item: Any) -> str:
    """Why an item is not pre-labelled ('' when it is)."""
    if item.owner or item.phase != "production":
        return f"image {item.image_id} is a calibration set (never pre-labelled)"
    if item.kind != "image":
        return f"image {item.image_id} is a slide (pre-label it with the Slide widget)"
    if item.status != "todo":
        return f"image {item.image_id} is {item.status!r} (only images not started are pre-labelled)"
    return ""


def _prelabel_one(project: Any, item: Any, config: Any, before_saving: Any) -> int | str:
    """Segment one image and commit its objects into its store; the instance count, or why not
    (a store another session holds). A store that already holds instances (an interrupted
    run) is marked pre-labelled without committing anything again."""
    from napari_instseg.core.prompting.auto import commit_auto

    store = project.open_store(item) if project.has_store(item) else None
    try:
        if store is not None and store.read_only:
            return f"image {item.image_id}: {store.lock_message}"
        if store is not None and len(store.table):
            n = len(store.table)
        else:
            objects = segment_image(str(project.image_path(item)), config, item.shape_yx)
            if isinstance(objects, ImageFailure):
                return f"image {item.image_id}: {objects.message}"
            before_saving()  # Cancel stops here: nothing of this image is saved
            store = store or project.open_store(item)
            if store.read_only:
                return f"image {item.image_id}: {store.lock_message}"
            commit_auto(store.session(annotator="batch"), objects, config.source_name, category=config.category)
            n = len(store.table)
    finally:
        if store is not None:
            store.close()
    project.manifest.set_item(item.key, status="pre-labelled", n_instances=n)
    return n
