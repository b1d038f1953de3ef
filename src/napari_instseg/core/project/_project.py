"""A project folder: protocol, settings, manifest, and one annotation store per annotation set.

Layout::

    PROJECT/
      project.json        format, version and settings (calibration threshold, cost rate)
      protocol.json       taxonomy, occlusion rule, tier thresholds, QA rates
      manifest.sqlite     images, status, assignee, phase, annotation sets (WAL)
      stores/0000001.zarr             the main annotation set of image 1
      stores/0000002.alice.zarr       alice's calibration set of image 2

Images are referenced (relative to the project folder where possible), never copied. Stores
are made when an image is first opened or pre-labelled, through the public
:class:`~napari_instseg.core.store.AnnotationStore` API; each store's own lock keeps two
people from writing the same set.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from napari_instseg.core._io import atomic_write_text, give_default_mode
from napari_instseg.core.project._manifest import (
    ImageRef,
    ItemFilter,
    Manifest,
    ProjectError,
    WorkItem,
    check_annotator,
    check_file_names,
)
from napari_instseg.core.project._sources import stored_path
from napari_instseg.core.protocol import AnnotationProtocol

__all__ = ["PROJECT_FORMAT", "Project", "ProjectSettings", "count_unreviewed", "is_project", "unreviewed_note"]

PROJECT_FORMAT = "napari-instseg-project"
PROJECT_VERSION = 1


@dataclass(frozen=True)
class ProjectSettings:
    """Project settings beside the protocol.

    Attributes
    ----------
    calibration_min_ap : float
        A class whose Mask AP between two calibration annotators is below this is flagged
        before production starts.
    cost_per_hour : float or None
        What an annotator hour costs (any currency); gives the cost per instance.
    annotation_id_stride : int
        COCO annotation id = image id * stride + instance id (stable across exports).
    """

    calibration_min_ap: float = 0.5
    cost_per_hour: float | None = None
    annotation_id_stride: int = 1_000_000

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str) -> ProjectSettings:
        """Settings from ``project.json`` (unknown keys are an error naming them)."""
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ProjectError(f"{source}: unknown setting(s) {sorted(unknown)}.")
        settings = cls(**data)
        if not 0.0 <= float(settings.calibration_min_ap) <= 1.0:
            raise ProjectError(f"{source}: calibration_min_ap must lie in [0, 1], got {settings.calibration_min_ap}.")
        cost = settings.cost_per_hour
        if cost is not None and (not isinstance(cost, int | float) or not math.isfinite(cost) or cost < 0):
            raise ProjectError(f"{source}: cost_per_hour must be a finite number >= 0, got {cost!r}.")
        return settings


def count_unreviewed(table: Any) -> int:
    """Pre-labels of an instance table that no person has reviewed yet.

    The one rule of projects for "pre-labels are reviewed, never taken silently": a row whose
    ``review`` is ``'pre-label'`` (the first of
    :data:`~napari_instseg.core.instances.REVIEW_STATES`) was proposed by a model and never
    accepted, corrected or rejected. :meth:`Project.review` refuses an image holding any;
    ``project submit`` and ``project export`` say how many they take.

    Parameters
    ----------
    table : DataFrame
        An instance table (its ``review`` column).
    """
    from napari_instseg.core.instances import REVIEW_STATES  # here: `project status` starts without numpy

    return int((table["review"] == REVIEW_STATES[0]).sum()) if len(table) else 0


def unreviewed_note(counts: Sequence[tuple[WorkItem, int]], action: str) -> str | None:
    """One line saying how many unreviewed pre-labels ``action`` took and where, or None.

    Parameters
    ----------
    counts : sequence of (WorkItem, int)
        Each annotation set and its number of unreviewed pre-labels (:func:`count_unreviewed`).
    action : str
        What took them, e.g. ``"submitted"`` or ``"exported to dataset.json"``.
    """
    pending = [(item, n) for item, n in counts if n > 0]
    if not pending:
        return None
    total = sum(n for _, n in pending)
    where = ", ".join(f"image id {it.image_id} ({it.file_name}, {it.status}): {n}" for it, n in pending[:10])
    more = f" and {len(pending) - 10} more image(s)" if len(pending) > 10 else ""
    return (
        f"warning: {total} pre-label(s) no person has reviewed were {action} (attributes.review 'pre-label') -- "
        f"{where}{more}. Accept, correct or reject them in the Project panel; an image is marked reviewed only "
        "when none is left."
    )


def is_project(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a napari-instseg project folder."""
    meta = Path(path) / "project.json"
    try:
        return bool(json.loads(meta.read_text()).get("format") == PROJECT_FORMAT)
    except (OSError, ValueError, AttributeError):
        return False


class Project:
    """An open project; see the module docstring. Use :meth:`create` or :meth:`open`."""

    def __init__(self, path: Path, protocol: AnnotationProtocol, settings: ProjectSettings) -> None:
        self.path = path
        self.protocol = protocol
        self.settings = settings
        self.manifest = Manifest(path / "manifest.sqlite")

    # -- creating and opening ---------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        images: Sequence[ImageRef] = (),
        protocol: AnnotationProtocol | None = None,
        settings: ProjectSettings | None = None,
    ) -> Project:
        """Make a project folder at ``path`` (built beside it, then renamed into place).

        Raises
        ------
        ProjectError
            When ``path`` exists and is not an empty folder (nothing is overwritten), or two
            images share a file name (:func:`~napari_instseg.core.project._manifest.check_file_names`).
        """
        target = Path(path).absolute()
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise ProjectError(f"{target} already exists and is not an empty folder; nothing was overwritten.")
        check_file_names((str(ref.path), str(ref.path), ref.file_name) for ref in images)  # before any folder
        target.parent.mkdir(parents=True, exist_ok=True)
        build = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            give_default_mode(build)  # mkdtemp makes it 0700: the others of the team could not enter it
            (build / "stores").mkdir()
            (protocol or AnnotationProtocol.default()).save(build / "protocol.json")
            _write_meta(build, settings or ProjectSettings())
            Manifest.create(build / "manifest.sqlite").close()
            if target.exists():
                target.rmdir()  # empty: checked above
            os.replace(build, target)
        except BaseException:
            shutil.rmtree(build, ignore_errors=True)
            raise
        project = cls.open(target)
        if images:
            project.add(images)
        return project

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Project:
        """Open the project folder at ``path``."""
        from napari_instseg.core.protocol import load_protocol

        target = Path(path).absolute()
        if not is_project(target):
            raise ProjectError(_not_a_project(target))
        meta = json.loads((target / "project.json").read_text())
        settings = ProjectSettings.from_dict(dict(meta.get("settings", {})), f"{target / 'project.json'}")
        return cls(target, load_protocol(target / "protocol.json"), settings)

    def close(self) -> None:
        """Close the manifest."""
        self.manifest.close()

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update_settings(self, **changes: Any) -> ProjectSettings:
        """Change settings (validated, written atomically)."""
        settings = ProjectSettings.from_dict({**asdict(self.settings), **changes}, str(self.path / "project.json"))
        _write_meta(self.path, settings)
        self.settings = settings
        return settings

    # -- images -------------------------------------------------------------------------------
    def add(self, refs: Sequence[ImageRef]) -> tuple[list[int], list[str]]:
        """Reference more images (one transaction); returns new ids and skipped duplicates."""
        return self.manifest.add_images((stored_path(ref.path, self.path), ref) for ref in refs)

    def image_path(self, item: WorkItem) -> Path:
        """Where the item's image file or slide is."""
        return (self.path / item.path).resolve() if not os.path.isabs(item.path) else Path(item.path)

    def store_path(self, item: WorkItem) -> Path:
        """Where the item's annotation store is (it may not exist yet)."""
        return self.path / item.store

    def image_record(self, item: WorkItem) -> dict[str, Any]:
        """The COCO image record stored with the item's annotations."""
        record: dict[str, Any] = {"id": item.image_id, "file_name": item.file_name}
        if item.kind == "slide":
            record["slide"] = str(self.image_path(item))
        return record

    def open_store(self, item: WorkItem, *, read_only: bool = False) -> Any:
        """The item's :class:`~napari_instseg.core.store.AnnotationStore` (made when missing).

        A store another live process writes opens read-only; ``store.lock_message`` says who.
        """
        from napari_instseg.core.store import AnnotationStore, is_store

        path = self.store_path(item)
        if is_store(path):
            return AnnotationStore.open(path, read_only=read_only)
        if read_only:
            raise ProjectError(f"{path}: image id {item.image_id} has no annotations yet.")
        return AnnotationStore.create(path, item.shape_yx, self.protocol, image=self.image_record(item))

    def has_store(self, item: WorkItem) -> bool:
        """True once the item's store exists."""
        from napari_instseg.core.store import is_store

        return is_store(self.store_path(item))

    # -- work ---------------------------------------------------------------------------------
    def next_item(self, annotator: str, after: WorkItem | None = None, *, forward: bool = True) -> WorkItem | None:
        """The next (previous) unfinished item ``annotator`` may work on, or None."""
        return self.manifest.neighbour(check_annotator(annotator), after.key if after else None, forward=forward)

    def next_to_review(self, after: WorkItem | None = None, *, forward: bool = True) -> WorkItem | None:
        """The next (previous) submitted image to review, or None."""
        return self.manifest.review_neighbour(after.key if after else None, forward=forward)

    def items(self, where: ItemFilter | None = None, *, offset: int = 0, limit: int = 256) -> list[WorkItem]:
        """A page of work items (see :meth:`Manifest.items`)."""
        return self.manifest.items(where, offset=offset, limit=limit)

    def submit(self, item: WorkItem, annotator: str, *, n_instances: int | None = None) -> WorkItem:
        """Mark ``item`` submitted by ``annotator`` (its store must exist)."""
        current = self.manifest.item(*item.key)
        if current.assignee not in ("", annotator):
            raise ProjectError(
                f"Image id {item.image_id} ({item.file_name}) is assigned to {current.assignee!r}, not {annotator!r}."
            )
        if not self.has_store(current):
            raise ProjectError(f"Image id {item.image_id} ({item.file_name}) has no annotations to submit.")
        changes: dict[str, Any] = {"status": "submitted"}
        if not current.owner:
            changes["assignee"] = annotator
        if n_instances is not None:
            changes["n_instances"] = int(n_instances)
        self.manifest.set_item(current.key, **changes)
        return self.manifest.item(*item.key)

    def unreviewed_prelabels(self, item: WorkItem) -> int:
        """Number of the item's pre-labels no person has reviewed (:func:`count_unreviewed`);
        0 without a store."""
        return self.count_in_table(item, count_unreviewed)

    def count_in_table(self, item: WorkItem, count: Callable[[Any], int]) -> int:
        """``count`` of the item's instance table, read from its store opened read-only (0
        without a store)."""
        if not self.has_store(item):
            return 0
        store = self.open_store(item, read_only=True)
        try:
            return int(count(store.table))
        finally:
            store.close()

    def review(self, item: WorkItem) -> WorkItem:
        """Mark a submitted item reviewed.

        Raises
        ------
        ProjectError
            When the item is not submitted, or still holds pre-labels no person has reviewed
            (naming the image, its store and how many); nothing is changed.
        """
        current = self.manifest.item(*item.key)
        if current.status != "submitted":
            raise ProjectError(
                f"Image id {item.image_id} is {current.status!r}; only submitted images can be reviewed."
            )
        pending = self.unreviewed_prelabels(current)
        if pending:
            raise ProjectError(
                f"Image id {item.image_id} ({item.file_name}): {pending} pre-label(s) in {self.store_path(current)} "
                "were never reviewed; accept, correct or reject each (Project panel, review mode) before marking "
                "the image reviewed. Nothing was changed."
            )
        self.manifest.set_item(current.key, status="reviewed")
        return replace(current, status="reviewed")


def _not_a_project(folder: Path) -> str:
    """Why ``folder`` is no project: no project.json, a damaged one, or another format."""
    meta = folder / "project.json"
    if not meta.is_file():
        return f"{folder} is not a napari-instseg project (no {PROJECT_FORMAT} project.json)."
    try:
        data = json.loads(meta.read_text())
    except (OSError, ValueError) as exc:
        return (
            f"{meta} is damaged: not readable JSON ({exc}). The project's images and stores are untouched; "
            "restore project.json from a backup (it holds the format, version and settings)."
        )
    found = data.get("format") if isinstance(data, dict) else None
    return f"{meta} is not a napari-instseg project file (format {found!r}, expected {PROJECT_FORMAT!r})."


def _write_meta(folder: Path, settings: ProjectSettings) -> None:
    meta = {"format": PROJECT_FORMAT, "version": PROJECT_VERSION, "settings": asdict(settings)}
    atomic_write_text(folder / "project.json", json.dumps(meta, indent=2) + "\n")
