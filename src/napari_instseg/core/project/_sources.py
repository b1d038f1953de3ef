"""Image references for a project: files, glob patterns, a COCO file's images, slides.

Only headers are read (shape), never pixels; nothing is copied.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from napari_instseg.core.project._manifest import ImageRef, ProjectError

__all__ = ["IMAGE_SUFFIXES", "SLIDE_SUFFIXES", "refs_from_coco", "refs_from_patterns", "stored_path"]

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".npy", ".bmp")
SLIDE_SUFFIXES = (".svs", ".ome.tif", ".ome.tiff", ".zarr", ".ome.zarr", ".ndpi", ".scn")


def _is_slide(path: Path) -> bool:
    return path.name.lower().endswith(SLIDE_SUFFIXES)


def refs_from_patterns(
    patterns: Sequence[str], *, slides: bool = False, image_root: str | os.PathLike[str] | None = None
) -> list[ImageRef]:
    """Image references for files and glob patterns (``**`` recurses), sorted per pattern.

    Parameters
    ----------
    patterns : sequence of str
        File paths or glob patterns.
    slides : bool
        Treat every match as a slide (a multiscale pyramid) rather than a plain image. Files
        named ``*.svs``, ``*.ome.tif``, ``*.zarr`` ... are slides anyway.
    image_root : path-like, optional
        Name each image (its COCO ``file_name``) by its path relative to this folder, with
        ``/`` (``slide_a/tile_0.png``); by default the bare file name.

    Raises
    ------
    ProjectError
        For a pattern that matches nothing, a file that is no readable image, or one outside
        ``image_root``.
    """
    refs = []
    for pattern in patterns:
        matches = sorted(glob.glob(os.path.expanduser(pattern), recursive=True))
        matches = [m for m in matches if Path(m).is_file() or _is_slide(Path(m))]
        if not matches:
            raise ProjectError(f"{pattern!r} matches no image file; nothing was added.")
        for match in matches:
            path = Path(match).resolve()
            name = _file_name(path, image_root)
            if slides or _is_slide(path):
                refs.append(replace(_slide_ref(path), file_name=name))
            elif path.suffix.lower() in IMAGE_SUFFIXES:
                refs.append(ImageRef(path, name, image_shape_yx(path)))
    if not refs:
        raise ProjectError(f"{list(patterns)} match no image of the kinds {IMAGE_SUFFIXES + SLIDE_SUFFIXES}.")
    return refs


def _file_name(path: Path, image_root: str | os.PathLike[str] | None) -> str:
    """The COCO ``file_name`` of ``path``: relative to ``image_root`` (``/``-separated), else bare."""
    if image_root is None:
        return path.name
    root = Path(image_root).resolve()
    if not path.is_relative_to(root):
        raise ProjectError(f"{path} is not inside --image-root {root}; nothing was added.")
    return path.relative_to(root).as_posix()


def _slide_ref(path: Path) -> ImageRef:
    from napari_instseg.core.slide import open_slide

    try:
        shape = open_slide(path).shape_yx
    except (OSError, ValueError, KeyError) as exc:
        raise ProjectError(f"{path}: cannot open as a slide ({exc}).") from exc
    return ImageRef(path, path.name, (int(shape[0]), int(shape[1])), "slide")


def image_shape_yx(path: Path) -> tuple[int, int]:
    """(height, width) of an image file from its header only.

    Raises
    ------
    ProjectError
        When the file cannot be read as an image.
    """
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            import numpy as np  # here: `project status` and friends start without numpy

            shape = np.load(path, mmap_mode="r", allow_pickle=False).shape
        elif suffix in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                shape = tif.series[0].shape
        else:
            from PIL import Image

            with Image.open(path) as im:
                shape = (im.size[1], im.size[0])
    except (OSError, ValueError) as exc:
        raise ProjectError(f"{path}: not a readable image ({exc}).") from exc
    if len(shape) < 2 or (len(shape) == 3 and shape[-1] not in (1, 3, 4)) or len(shape) > 3:
        raise ProjectError(f"{path}: expected a 2-D grey or RGB(A) image (y, x[, c]), got shape {tuple(shape)}.")
    return int(shape[0]), int(shape[1])


def refs_from_coco(
    coco_path: str | os.PathLike[str], image_root: str | os.PathLike[str] | None = None
) -> list[ImageRef]:
    """References to the images a COCO file lists (``file_name`` relative to ``image_root``,
    by default the COCO file's folder); sizes come from the COCO records.

    Raises
    ------
    ProjectError
        For a file that is no COCO instances file, an image record without size, or an image
        file that does not exist.
    """
    path = Path(coco_path)
    try:
        data = json.loads(path.read_text())
        records = data["images"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ProjectError(f"{path}: not a COCO file with an 'images' list ({exc}).") from exc
    root = Path(image_root) if image_root is not None else path.parent
    refs = []
    for k, record in enumerate(records):
        try:
            name, height, width = str(record["file_name"]), int(record["height"]), int(record["width"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ProjectError(f"{path}: images[{k}] lacks file_name / height / width ({exc}).") from exc
        image = (root / name).resolve()
        if not image.exists():
            raise ProjectError(f"{path}: images[{k}] file {image} does not exist; pass --image-root.")
        refs.append(ImageRef(image, name, (height, width), "slide" if _is_slide(image) else "image"))
    return refs


def stored_path(path: Path, project_dir: Path) -> str:
    """How the manifest records ``path``: relative to the project folder when possible."""
    try:
        return os.path.relpath(path, project_dir.resolve())
    except ValueError:  # another drive (Windows)
        return str(path)
