"""Projects: a folder of referenced images with a manifest, phases, annotators and one export.

See ``docs/projects.md``. The pieces:

- :class:`Project` (``_project.py``): the folder, its protocol, settings and stores;
- :class:`Manifest` (``_manifest.py``): the SQLite manifest of images and annotation sets;
- ``_sources.py``: image references from files, globs, COCO files and slides;
- ``_batch.py``: pre-labelling the whole project on dask;
- ``_phases.py``: calibration rounds and their agreement report;
- ``_export.py``: one COCO export, project QA and the throughput report.
"""

from napari_instseg.core.project._batch import (
    ProjectPrelabelConfig,
    ProjectPrelabelSummary,
    prelabel_not_started,
    prelabel_project,
    prelabel_refusal,
    prelabel_selected,
)
from napari_instseg.core.project._manifest import (
    FINISHED,
    PHASES,
    STATUSES,
    UNFINISHED,
    ImageRef,
    ItemFilter,
    Manifest,
    ProjectError,
    WorkItem,
)
from napari_instseg.core.project._project import PROJECT_FORMAT, Project, ProjectSettings, is_project
from napari_instseg.core.project._sources import refs_from_coco, refs_from_patterns

__all__ = [
    "FINISHED",
    "PHASES",
    "PROJECT_FORMAT",
    "STATUSES",
    "UNFINISHED",
    "ImageRef",
    "ItemFilter",
    "Manifest",
    "Project",
    "ProjectError",
    "ProjectPrelabelConfig",
    "ProjectPrelabelSummary",
    "ProjectSettings",
    "WorkItem",
    "is_project",
    "prelabel_not_started",
    "prelabel_project",
    "prelabel_refusal",
    "prelabel_selected",
    "refs_from_coco",
    "refs_from_patterns",
]
