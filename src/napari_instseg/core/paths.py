"""Checks of output paths, done before any work: never clobber an input, never find out after
minutes of compute that the output cannot be written.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from napari_instseg.core.errors import OutputPathError

__all__ = ["check_output_dir", "check_output_file", "imported_from", "same_file"]

PathLike = str | os.PathLike[str]


def same_file(a: PathLike, b: PathLike) -> bool:
    """True when ``a`` and ``b`` name the same file (hard links and symlinks included)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


_IMPORT_RECORDS = ("coco_source.json", "geojson_source.json")  # what ``import`` writes in its folder


def imported_from(folder: PathLike) -> list[Path]:
    """The files an ``import`` folder was made from (its ``coco_source.json`` /
    ``geojson_source.json`` record them under ``source``); empty for any other folder."""
    found = []
    for name in _IMPORT_RECORDS:
        try:
            record = json.loads((Path(folder) / name).read_text())
        except (OSError, ValueError):
            continue
        source = record.get("source") if isinstance(record, dict) else None
        if isinstance(source, str) and source:
            found.append(Path(source))
    return found


def _clobbered_input(target: Path, inputs: Iterable[PathLike | None]) -> Path | None:
    for source in inputs:
        if source is None:
            continue
        source_path = Path(source)
        if same_file(target, source_path):
            return source_path
        if source_path.is_dir():
            if target.resolve().is_relative_to(source_path.resolve()):
                return source_path  # writing inside an input folder (a store, a zarr slide, a project)
            for original in imported_from(source_path):
                if original.exists() and same_file(target, original):
                    return original  # the file an import folder was made from
    return None


def _refuse_clobber(what: str, target: Path, clobbered: Path) -> None:
    if clobbered.is_dir() and not same_file(target, clobbered):
        raise OutputPathError(
            f"{what} {target} lies inside the input folder {clobbered}; refusing to write there "
            "(choose a path outside it)."
        )
    raise OutputPathError(f"{what} {target} is the input {clobbered}; refusing to overwrite an input.")


def _probe_writable(folder: Path, what: str) -> None:
    """Create and remove a temporary file in ``folder``: the only reliable writability test."""
    try:
        fd, name = tempfile.mkstemp(prefix=".napari-instseg-probe-", dir=folder)
    except OSError as exc:
        raise OutputPathError(f"{what}: cannot write in folder {folder}: {exc.strerror or exc}.") from exc
    os.close(fd)
    os.unlink(name)


def _existing_ancestor(path: Path) -> Path:
    current = path.absolute()
    while not current.exists() and current != current.parent:
        current = current.parent
    return current


def check_output_file(
    path: PathLike,
    *,
    inputs: Iterable[PathLike | None] = (),
    suffixes: Sequence[str] | None = None,
    overwrite: bool = False,
    what: str = "output",
) -> Path:
    """Check that ``path`` can be written as an output file, before any work is done.

    Parameters
    ----------
    path : path-like
        The output file. An existing file there is refused unless ``overwrite`` (then the
        command replaces it atomically).
    inputs : iterable of path-like
        The command's input files and folders: the output may be none of them, nor lie inside
        an input folder (a store, a project), nor be the file an ``import`` folder among them
        was made from -- even with ``overwrite``.
    suffixes : sequence of str, optional
        Accepted lower-case suffixes, e.g. ``(".json",)``.
    overwrite : bool
        Allow replacing an existing file that is no input (the command's ``--overwrite``).
    what : str
        How the output is called in messages (``"-o"``).

    Returns
    -------
    Path

    Raises
    ------
    OutputPathError
        Naming the path and the reason; nothing has been written.
    """
    target = Path(path)
    if suffixes is not None and not str(target).lower().endswith(tuple(suffixes)):
        raise OutputPathError(f"{what} {target}: the file name must end with one of {list(suffixes)}.")
    if target.is_dir():
        raise OutputPathError(f"{what} {target} is an existing folder; give a file name.")
    clobbered = _clobbered_input(target, inputs)
    if clobbered is not None:
        _refuse_clobber(what, target, clobbered)
    if target.exists() and not overwrite:
        raise OutputPathError(
            f"{what} {target} already exists; choose another name or pass --overwrite (nothing was written)."
        )
    parent = target.absolute().parent
    if not parent.exists():
        raise OutputPathError(f"{what} {target}: folder {parent} does not exist.")
    if not parent.is_dir():
        raise OutputPathError(f"{what} {target}: {parent} is a file, not a folder.")
    _probe_writable(parent, f"{what} {target}")
    return target


def check_output_dir(
    path: PathLike,
    *,
    inputs: Iterable[PathLike | None] = (),
    targets: Iterable[str] = (),
    overwrite: bool = False,
    containers: Iterable[PathLike] = (),
    what: str = "output folder",
) -> Path:
    """Check that the folder ``path`` can receive the files ``targets``, before any work.

    The folder may not exist yet (it is created later, by the command); its nearest existing
    ancestor must then be a writable folder. Nothing is created here.

    Parameters
    ----------
    path : path-like
        The output folder.
    inputs : iterable of path-like
        Input files: no target may be one of them, even with ``overwrite``.
    targets : iterable of str
        Names of the files the command will write in the folder.
    overwrite : bool
        Allow replacing existing target files that are not inputs.
    containers : iterable of path-like
        Input folders the output folder may not be, nor lie inside (a project folder).
    what : str
        How the folder is called in messages.

    Raises
    ------
    OutputPathError
        Naming the folder (and the files) and the reason.
    """
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise OutputPathError(f"{what} {folder} is an existing file, not a folder.")
    input_list = [Path(p) for p in inputs if p is not None]
    for container in containers:
        if folder.resolve().is_relative_to(Path(container).resolve()):
            raise OutputPathError(
                f"{what} {folder} lies inside the input folder {container}; choose a folder outside it."
            )
    if folder.is_dir():
        names = list(targets)
        for name in names:
            clobbered = _clobbered_input(folder / name, [p for p in input_list if not p.is_dir()])
            if clobbered is not None:
                raise OutputPathError(
                    f"{what} {folder}: writing {name} would overwrite the input {clobbered}; choose another folder."
                )
        existing = [name for name in names if (folder / name).exists()]
        if existing and not overwrite:
            shown = ", ".join(existing[:5]) + (f" and {len(existing) - 5} more" if len(existing) > 5 else "")
            raise OutputPathError(f"{what} {folder} already holds {shown}; choose an empty folder or pass --overwrite.")
        _probe_writable(folder, f"{what} {folder}")
        return folder
    ancestor = _existing_ancestor(folder)
    if not ancestor.is_dir():
        raise OutputPathError(f"{what} {folder}: {ancestor} is a file, not a folder.")
    _probe_writable(ancestor, f"{what} {folder}")
    return folder
