"""The ``napari-instseg`` command.

Sub-commands import what they need when they run, so ``--help`` stays fast and imports
neither torch nor Qt.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from napari_instseg import __version__

__all__ = ["main"]

logger = logging.getLogger(__name__)


OVERWRITE_HELP = "replace the output file when it exists (never an input)"
"""Help of the ``--overwrite`` option of commands that write one output file."""

FIRST_COMMAND_MODULES = ("export", "prelabel", "qa", "import_")
"""Modules of :mod:`napari_instseg.commands` registered first, in this order (after ``demo``):
``--help`` lists their commands where it did when they were defined here. Others follow by name."""


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-instseg",
        description="Instance-segmentation annotation: COCO export / import, demo and more.",
    )
    parser.add_argument("--version", action="version", version=f"napari-instseg {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="run the headless demo on the bundled IHC tile")
    demo.add_argument("-o", "--outdir", default="demo-output", help="output folder (default: %(default)s)")
    demo.add_argument("--headless", action="store_true", help="do not open napari even when a display is available")
    demo.set_defaults(func=_cmd_demo)
    _register_command_modules(sub)
    return parser


def _register_command_modules(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the sub-commands defined in :mod:`napari_instseg.commands` (one module each)."""
    import importlib
    import pkgutil

    from napari_instseg import commands

    names = sorted(info.name for info in pkgutil.iter_modules(commands.__path__) if not info.name.startswith("_"))
    for name in [
        *(n for n in FIRST_COMMAND_MODULES if n in names),
        *(n for n in names if n not in FIRST_COMMAND_MODULES),
    ]:
        importlib.import_module(f"{commands.__name__}.{name}").register(sub)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit code."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    from napari_instseg.core.errors import InstsegError

    try:
        code = int(args.func(args) or 0)
    except KeyboardInterrupt:  # Ctrl-C: one line, no traceback
        print(f"napari-instseg {args.command}: {_interrupted(args)}", file=sys.stderr)
        return 130
    except InstsegError as exc:
        return _fail(args.command, str(exc))
    except OSError as exc:  # missing file, a folder given for a file, no permission, disk full...
        where = f": {exc.filename}" if exc.filename else ""
        return _fail(args.command, f"{exc.strerror or exc}{where}")
    _prefer_our_reader(args)
    return code


_PROJECT_COMMANDS_MAKING_STORES = ("init", "add", "prelabel", "calibrate")
"""``project`` actions after which napari is told to open the project's stores with our reader."""


def _prefer_our_reader(args: argparse.Namespace) -> None:
    """Let napari open the stores this command made or used with our reader, without the
    "which reader?" dialog (see :mod:`napari_instseg._reader_preference` for why)."""
    store = getattr(args, "store", None)
    making = args.command == "project" and getattr(args, "project_command", "") in _PROJECT_COMMANDS_MAKING_STORES
    project_dir = getattr(args, "dir", None) if making else None
    if store or project_dir:
        from napari_instseg._reader_preference import register_after_command

        register_after_command(store, project_dir)


def _interrupted(args: argparse.Namespace) -> str:
    """What Ctrl-C left: resumable commands say how to resume."""
    if args.command == "prelabel-slide":
        return (
            f"interrupted: every finished tile is saved in {args.store}; run the same command again to resume "
            "(tiles already done are skipped)."
        )
    if args.command == "project" and getattr(args, "project_command", "") == "prelabel":
        return (
            f"interrupted: every image finished is saved in project {args.dir}; run the same command again to "
            "resume (images already pre-labelled are skipped)."
        )
    return "interrupted."


def _fail(command: str, message: str) -> int:
    """Print ``message`` as the command's error (no traceback) and return exit status 2."""
    print(f"napari-instseg {command}: error: {message.strip()}", file=sys.stderr)
    return 2


def _cmd_demo(args: argparse.Namespace) -> int:
    from napari_instseg.core.paths import check_output_dir
    from napari_instseg.demo import run_demo

    check_output_dir(args.outdir, what="-o")
    result = run_demo(args.outdir, progress=progress_bar("pre-labelling", "nucleus"))
    print(result.summary)
    print(f"done in {result.seconds:.1f} s")
    if not args.headless and _has_display():
        from napari_instseg.demo import open_in_napari

        open_in_napari(result)
    return 0


def _has_display() -> bool:
    import os

    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) or sys.platform in ("darwin", "win32")


def add_stratify_option(parser: argparse.ArgumentParser) -> None:
    """``--stratify-by``: the strata of a QA review sample (``qa`` and ``project sample``)."""
    parser.add_argument(
        "--stratify-by",
        nargs="+",
        default=["occlusion"],
        choices=("occlusion", "category", "annotator"),
        help="strata of the review sample (occlusion always; default: occlusion)",
    )


def progress_bar(desc: str, unit: str) -> Callable[[int, int], None]:
    """A ``progress(done, total)`` callback drawing a tqdm bar on stderr."""
    from tqdm import tqdm

    bar: dict[str, Any] = {}

    def progress(done: int, total: int) -> None:
        if "bar" not in bar:
            bar["bar"] = tqdm(total=total, desc=desc, unit=unit, disable=None, leave=False)
        bar["bar"].update(done - bar["bar"].n)
        if done >= total:
            bar["bar"].close()

    return progress


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
