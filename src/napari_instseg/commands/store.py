"""``napari-instseg store check STORE.zarr`` and ``napari-instseg store repair STORE.zarr``:
the store doctor on the command line (exit 2 when problems remain)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the ``store`` command with its ``check`` and ``repair`` actions."""
    parser = subparsers.add_parser("store", help="check or repair an annotation store (STORE.zarr)")
    actions = parser.add_subparsers(dest="store_action", required=True, metavar="ACTION", help="check or repair")
    check = actions.add_parser("check", help="check every chunk, row, side and journal record (exit 2 on problems)")
    check.add_argument("store", help="the annotation store (STORE.zarr)")
    check.set_defaults(func=_cmd_check)
    repair = actions.add_parser(
        "repair", help="recover what can be recovered (a backup of everything changed is kept in the store)"
    )
    repair.add_argument("store", help="the annotation store (STORE.zarr)")
    repair.add_argument(
        "--unlock", action="store_true", help="remove the lock file of a writer known to be gone (other host)"
    )
    repair.set_defaults(func=_cmd_repair)


def _require_exists(path: str) -> None:
    from napari_instseg.core.errors import InstsegError

    if not os.path.exists(path):
        raise InstsegError(f"{path} does not exist; give the path of an annotation store (STORE.zarr).")


def _cmd_check(args: argparse.Namespace) -> int:
    from napari_instseg.core.store import check_store

    _require_exists(args.store)
    report = check_store(args.store)
    if report.ok:
        print(f"{args.store}: no problems found")
        return 0
    print(f"{args.store}: {len(report.problems)} problem(s):", file=sys.stderr)
    for problem in report.problems:
        print(f"  - {problem}", file=sys.stderr)
    print(f"Run `napari-instseg store repair {args.store}` to recover what can be recovered.", file=sys.stderr)
    return 2


def _cmd_repair(args: argparse.Namespace) -> int:
    from napari_instseg.core.store import check_store, repair_store

    _require_exists(args.store)
    report = repair_store(args.store, unlock=args.unlock)
    for line in report.repaired:
        print(f"repaired: {line}")
    for line in report.lost:
        print(f"lost: {line}")
    if report.backup:
        print(f"backup of everything changed: {report.backup}")
    remaining = check_store(args.store).problems + report.problems
    if remaining:
        print(f"{args.store}: {len(remaining)} problem(s) remain:", file=sys.stderr)
        for problem in remaining:
            print(f"  - {problem}", file=sys.stderr)
        return 2
    print(f"{args.store}: healthy")
    return 0
