"""The project manifest: one SQLite database (WAL) listing images, their state and who owns them.

Tables::

    meta(key, value)                    format, version
    images(id, path, file_name, kind, height, width, phase, status, assignee,
           annotation_set, n_instances, created_at, updated_at)
    assignments(image_id, annotator, phase, status, store, n_instances,
                assigned_at, updated_at)

``images`` holds every referenced image (``path`` relative to the project folder when it can
be) and the state of its main annotation set (the production store ``annotation_set``).
``assignments`` holds the per-annotator sets of calibration images: the same image given to
several people, each with a store of their own. A *work item* is one annotation set:
``(image_id, owner)`` with ``owner == ''`` for the main set.

Every change is one short transaction; readers never block writers (WAL), and a writer waits
up to ``BUSY_TIMEOUT_S`` for another one, so several people can share a project folder. A
project folder the user may not write (a shared, read-only copy) opens read-only: every
query works, and a change is refused with an error naming the folder.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from napari_instseg.core.errors import InstsegError

__all__ = [
    "FINISHED",
    "PHASES",
    "STATUSES",
    "UNFINISHED",
    "ImageRef",
    "ItemFilter",
    "Manifest",
    "ProjectError",
    "WorkItem",
    "check_file_names",
]

STATUSES = ("todo", "pre-labelled", "in progress", "submitted", "reviewed")
"""States of an annotation set, in the order work goes through them."""
UNFINISHED = ("todo", "pre-labelled", "in progress")
FINISHED = ("submitted", "reviewed")
PHASES = ("calibration", "production")
"""Calibration: several annotators label the same image; production: one set per image."""
KINDS = ("image", "slide")
BUSY_TIMEOUT_S = 30.0
MANIFEST_VERSION = 1

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE images (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    file_name TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('image', 'slide')),
    height INTEGER NOT NULL,
    width INTEGER NOT NULL,
    phase TEXT NOT NULL DEFAULT 'production' CHECK (phase IN ('calibration', 'production')),
    status TEXT NOT NULL DEFAULT 'todo'
        CHECK (status IN ('todo', 'pre-labelled', 'in progress', 'submitted', 'reviewed')),
    assignee TEXT NOT NULL DEFAULT '',
    annotation_set TEXT NOT NULL,
    n_instances INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX images_status ON images (status, id);
CREATE INDEX images_assignee ON images (assignee, status, id);
CREATE INDEX images_phase ON images (phase, status, assignee, id);
CREATE TABLE assignments (
    image_id INTEGER NOT NULL REFERENCES images (id),
    annotator TEXT NOT NULL,
    phase TEXT NOT NULL CHECK (phase IN ('calibration', 'production')),
    status TEXT NOT NULL DEFAULT 'todo'
        CHECK (status IN ('todo', 'pre-labelled', 'in progress', 'submitted', 'reviewed')),
    store TEXT NOT NULL,
    n_instances INTEGER NOT NULL DEFAULT 0,
    assigned_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (image_id, annotator)
);
CREATE INDEX assignments_annotator ON assignments (annotator, status, image_id);
CREATE VIEW work AS
    SELECT id AS image_id, '' AS owner, file_name, kind, height, width, path, phase, status,
           assignee, annotation_set AS store, n_instances, updated_at
    FROM images WHERE phase = 'production'
    UNION ALL
    SELECT a.image_id, a.annotator, i.file_name, i.kind, i.height, i.width, i.path, a.phase,
           a.status, a.annotator, a.store, a.n_instances, a.updated_at
    FROM assignments AS a JOIN images AS i ON i.id = a.image_id;
"""

_WORK_COLUMNS = (
    "image_id, owner, file_name, kind, height, width, path, phase, status, assignee, store, n_instances, updated_at"
)


class ProjectError(InstsegError, ValueError):
    """A project folder, manifest, image reference or request is invalid; the message says which."""


@dataclass(frozen=True)
class ImageRef:
    """An image to reference from a project (never copied).

    Attributes
    ----------
    path : Path
        The image file or slide (resolved, absolute).
    file_name : str
        COCO ``file_name`` of the image.
    shape_yx : tuple of int
        (height, width) in pixels (level 0 for slides).
    kind : {'image', 'slide'}
    """

    path: Path
    file_name: str
    shape_yx: tuple[int, int]
    kind: str = "image"


@dataclass(frozen=True)
class WorkItem:
    """One annotation set of one image: what an annotator opens, edits and submits.

    ``owner`` is ``''`` for the image's main (production) set and the annotator's name for a
    calibration set. ``store`` is relative to the project folder.
    """

    image_id: int
    owner: str
    file_name: str
    kind: str
    shape_yx: tuple[int, int]
    path: str
    phase: str
    status: str
    assignee: str
    store: str
    n_instances: int
    updated_at: float

    @property
    def key(self) -> tuple[int, str]:
        """``(image_id, owner)``: the item's identity."""
        return (self.image_id, self.owner)


@dataclass(frozen=True)
class ItemFilter:
    """Which work items a listing shows (None = any).

    ``annotator`` keeps the items that person may work on: their own plus unassigned
    production images.
    """

    status: str | None = None
    phase: str | None = None
    assignee: str | None = None
    annotator: str | None = None

    def where(self) -> tuple[str, list[Any]]:
        """SQL ``WHERE`` clause over the ``work`` view and its parameters."""
        clauses, params = [], []
        if self.status is not None:
            clauses.append("status = ?")
            params.append(check_choice(self.status, STATUSES, "status"))
        if self.phase is not None:
            clauses.append("phase = ?")
            params.append(check_choice(self.phase, PHASES, "phase"))
        if self.assignee is not None:
            clauses.append("assignee = ?")
            params.append(self.assignee)
        if self.annotator is not None:
            clauses.append("(assignee = ? OR (assignee = '' AND owner = ''))")
            params.append(self.annotator)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def check_choice(value: str, choices: Sequence[str], what: str) -> str:
    """``value`` when it is one of ``choices``, else a :class:`ProjectError` naming them."""
    if value not in choices:
        raise ProjectError(f"Unknown {what} {value!r}; expected one of {', '.join(map(repr, choices))}.")
    return value


def check_annotator(name: str) -> str:
    """An annotator name usable in a store's file name (letters, digits, '.', '_', '-')."""
    if not name or not all(c.isalnum() or c in "._-" for c in name) or name.startswith("."):
        raise ProjectError(
            f"Annotator name {name!r} is not usable: use letters, digits, '.', '_' or '-' (not first '.')."
        )
    return name


def check_file_names(new: Iterable[tuple[str, str, str]], listed: Iterable[tuple[str, str, str]] = ()) -> None:
    """Refuse two different images with one ``file_name``: COCO exports and ``project qa``
    (matching a gold file) know an image by it.

    Parameters
    ----------
    new : iterable of (key, shown, file_name)
        The images to add: ``key`` identifies the file (its stored path), ``shown`` is how a
        message names it.
    listed : iterable of (key, shown, file_name)
        The images the project already lists.

    Raises
    ------
    ProjectError
        Naming each clashing file name with both paths, and how to make names unique.
    """
    seen = {name: (key, shown) for key, shown, name in listed}
    clashes = []
    for key, shown, name in new:
        other_key, other_shown = seen.setdefault(name, (key, shown))
        if other_key != key:
            clashes.append(f"{name!r}: {shown} and {other_shown}")
    if clashes:
        raise ProjectError(
            f"{len(clashes)} image(s) would share a file name with another image ({'; '.join(clashes[:5])}). "
            "COCO exports and project qa know an image by its file name, so it must be unique: give --image-root "
            "DIR to name the images by their path relative to DIR (e.g. slide_a/tile_0.png, as a gold file made "
            "over the same folders names them). Nothing was added."
        )


def _item(row: Sequence[Any]) -> WorkItem:
    image_id, owner, file_name, kind, height, width, path, phase, status, assignee, store, n, updated = row
    return WorkItem(
        int(image_id), owner, file_name, kind, (int(height), int(width)), path, phase, status, assignee, store, int(n),
        float(updated),
    )  # fmt: skip


class Manifest:
    """The project's SQLite manifest (``manifest.sqlite``); see the module docstring.

    ``read_only`` is True where the user may not write the manifest or its folder: queries
    work, :meth:`transaction` raises :class:`ProjectError`.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ProjectError(f"{self.path}: no project manifest here (make one with 'napari-instseg project init').")
        self.read_only = not (os.access(self.path, os.W_OK) and os.access(self.path.parent, os.W_OK))
        try:
            self._db = _connect_read_only(self.path) if self.read_only else _connect(self.path)
            version = self._db.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise ProjectError(f"{self.path}: not a readable project manifest ({exc}).") from exc
        if version is None or int(version[0]) > MANIFEST_VERSION:
            raise ProjectError(f"{self.path}: manifest version {version and version[0]} is not supported.")

    @classmethod
    def create(cls, path: str | os.PathLike[str]) -> Manifest:
        """Create an empty manifest at ``path`` (which must not exist)."""
        target = Path(path)
        if target.exists():
            raise ProjectError(f"{target} already exists; nothing was overwritten.")
        db = _connect(target)
        with db:
            db.executescript(_SCHEMA)
            db.execute(
                "INSERT INTO meta VALUES ('format', 'napari-instseg-project'), ('version', ?)", (MANIFEST_VERSION,)
            )
        db.close()
        return cls(target)

    def close(self) -> None:
        """Close the database connection."""
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``): all of it is saved, or nothing."""
        if self.read_only:
            raise ProjectError(
                f"{self.path.parent}: the project folder is read-only for you; nothing was changed "
                "(ask its owner, or work on a copy)."
            )
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:  # another writer held it past the busy timeout
            raise ProjectError(f"{self.path}: the manifest is busy ({exc}); nothing was changed, try again.") from exc
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- images -----------------------------------------------------------------------------
    def add_images(self, refs: Iterable[tuple[str, ImageRef]]) -> tuple[list[int], list[str]]:
        """Insert ``(stored_path, ref)`` pairs in one transaction; paths already listed are skipped.

        Returns the new image ids and the skipped paths.
        """
        now = time.time()
        added, skipped = [], []
        pairs = list(refs)
        with self.transaction() as db:
            listed = db.execute("SELECT id, path, file_name FROM images").fetchall()
            known = {row[1] for row in listed}
            shown = [(path, f"image id {i} ({self._shown(path)})", name) for i, path, name in listed]
            check_file_names(((stored, str(ref.path), ref.file_name) for stored, ref in pairs), shown)
            next_id = int(db.execute("SELECT COALESCE(MAX(id), 0) FROM images").fetchone()[0]) + 1
            rows = []
            for stored, ref in pairs:
                if stored in known:
                    skipped.append(stored)
                    continue
                known.add(stored)
                rows.append(
                    (next_id, stored, ref.file_name, ref.kind, *ref.shape_yx, f"stores/{next_id:07d}.zarr", now, now)
                )
                added.append(next_id)
                next_id += 1
            db.executemany(
                "INSERT INTO images (id, path, file_name, kind, height, width, annotation_set, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        return added, skipped

    def _shown(self, stored: str) -> str:
        """An image's stored path as a message shows it: absolute."""
        return stored if os.path.isabs(stored) else os.path.normpath(self.path.parent.absolute() / stored)

    def image_ids(
        self, *, phase: str | None = None, statuses: Sequence[str] | None = None, assignee: str | None = None
    ) -> list[int]:
        """Ids of images (optionally of one phase, main-set statuses and assignee), ascending."""
        sql, params = "SELECT id FROM images WHERE 1", []
        if assignee is not None:
            sql += " AND assignee = ?"
            params.append(assignee)
        if phase is not None:
            sql += " AND phase = ?"
            params.append(phase)
        if statuses is not None:
            sql += f" AND status IN ({','.join('?' * len(statuses))})"
            params += list(statuses)
        return [int(r[0]) for r in self._db.execute(sql + " ORDER BY id", params)]

    def require_images(self, image_ids: Sequence[int]) -> None:
        """Raise :class:`ProjectError` naming any id that is not in the project."""
        known = set(self.image_ids())
        missing = [i for i in image_ids if i not in known]
        if missing:
            raise ProjectError(f"{self.path}: no image with id {missing[:10]} in this project.")

    def image_states(self, image_ids: Sequence[int]) -> dict[int, tuple[str, str]]:
        """Image id -> ``(phase, status)`` of its main set, in the order given (ids must exist)."""
        self.require_images(image_ids)
        states = {}
        for image_id in dict.fromkeys(image_ids):
            row = self._db.execute("SELECT phase, status FROM images WHERE id = ?", (image_id,)).fetchone()
            states[int(image_id)] = (str(row[0]), str(row[1]))
        return states

    # -- work items -------------------------------------------------------------------------
    def item(self, image_id: int, owner: str = "") -> WorkItem:
        """The work item ``(image_id, owner)``."""
        row = self._db.execute(
            f"SELECT {_WORK_COLUMNS} FROM work WHERE image_id = ? AND owner = ?", (image_id, owner)
        ).fetchone()
        if row is None:
            who = f" for annotator {owner!r}" if owner else ""
            raise ProjectError(f"{self.path}: no annotation set of image id {image_id}{who} in this project.")
        return _item(row)

    def count_items(self, where: ItemFilter | None = None) -> int:
        """Number of work items matching ``where``."""
        clause, params = (where or ItemFilter()).where()
        return int(self._db.execute(f"SELECT COUNT(*) FROM work{clause}", params).fetchone()[0])

    def items(self, where: ItemFilter | None = None, *, offset: int = 0, limit: int = 256) -> list[WorkItem]:
        """One page of work items matching ``where``, ordered by image id then owner."""
        clause, params = (where or ItemFilter()).where()
        rows = self._db.execute(
            f"SELECT {_WORK_COLUMNS} FROM work{clause} ORDER BY image_id, owner LIMIT ? OFFSET ?",
            [*params, limit, offset],
        )
        return [_item(r) for r in rows]

    def item_keys(self, where: ItemFilter | None = None) -> list[tuple[int, str]]:
        """Keys ``(image_id, owner)`` of every work item matching ``where``, in list order.

        Main sets and calibration sets are read with one index-ordered query each and
        merged; a view then reads any page with :meth:`items_between`.
        """
        where = where or ItemFilter()
        main: list[tuple[int, str]] = []
        if where.phase in (None, "production"):
            clause, params = _main_clause(where)
            rows = self._db.execute(f"SELECT id FROM images WHERE phase = 'production'{clause} ORDER BY id", params)
            main = [(i, "") for (i,) in rows]
        clause, params = where.where()
        clause = f"{clause} AND owner != ''" if clause else " WHERE owner != ''"
        sets = self._db.execute(f"SELECT image_id, owner FROM work{clause} ORDER BY image_id, owner", params)
        extra = [(int(i), o) for i, o in sets]
        return sorted(main + extra) if extra else main

    def items_between(self, keys: Sequence[tuple[int, str]]) -> list[WorkItem]:
        """The work items of ``keys`` (sorted, as from :meth:`item_keys`), in that order."""
        if not keys:
            return []
        rows = self._db.execute(
            f"SELECT {_WORK_COLUMNS} FROM work WHERE image_id BETWEEN ? AND ?", (keys[0][0], keys[-1][0])
        )
        found = {(it.image_id, it.owner): it for it in map(_item, rows)}
        return [found[k] for k in keys if k in found]

    def neighbour(self, annotator: str, after: tuple[int, str] | None, *, forward: bool = True) -> WorkItem | None:
        """The next (or previous) unfinished item ``annotator`` may work on, wrapping around.

        Two index lookups (main sets by image id; the annotator's calibration sets), so the
        cost does not grow with the size of the project.
        """
        start = after if after is not None else ((0, "") if forward else (2**62, ""))
        found = self._neighbour(annotator, start, forward)
        if found is None and after is not None:  # wrap around
            found = self._neighbour(annotator, (0, "") if forward else (2**62, ""), forward)
        return found

    def review_neighbour(self, after: tuple[int, str] | None, *, forward: bool = True) -> WorkItem | None:
        """The next (or previous) submitted main set to review, anyone's, wrapping around."""
        op, order = (">", "ASC") if forward else ("<", "DESC")
        sql = (
            f"SELECT id FROM images INDEXED BY images_status WHERE status = 'submitted' AND phase = 'production'"
            f" AND id {op} ? ORDER BY id {order} LIMIT 1"
        )
        for bound in ([after[0]] if after else []) + [0 if forward else 2**62]:
            row = self._db.execute(sql, (bound,)).fetchone()
            if row is not None:
                return self.item(int(row[0]))
        return None

    def _neighbour(self, annotator: str, start: tuple[int, str], forward: bool) -> WorkItem | None:
        op, order = (">", "ASC") if forward else ("<", "DESC")
        candidates: list[tuple[int, str]] = []
        # main sets have owner '': compare (id, '') with start without row values, so the
        # (assignee, status, id) index answers each lookup
        start_id, start_owner = start
        if forward:
            id_op, bound = ">", start_id
        else:
            id_op, bound = ("<=" if start_owner else "<"), start_id
        for assignee in (annotator, ""):
            for status in UNFINISHED:  # one index seek each (no sort of all matching rows)
                row = self._db.execute(
                    f"SELECT id FROM images INDEXED BY images_assignee WHERE assignee = ? AND status = ? AND id {id_op} ?"
                    f" AND phase = 'production' ORDER BY id {order} LIMIT 1",
                    [assignee, status, bound],
                ).fetchone()
                if row is not None:
                    candidates.append((int(row[0]), ""))
        for status in UNFINISHED:
            row = self._db.execute(
                f"SELECT image_id FROM assignments WHERE annotator = ? AND status = ?"
                f" AND (image_id, annotator) {op} (?, ?) ORDER BY image_id {order} LIMIT 1",
                [annotator, status, *start],
            ).fetchone()
            if row is not None:
                candidates.append((int(row[0]), annotator))
        if not candidates:
            return None
        best = min(candidates) if forward else max(candidates)
        return self.item(*best)

    def set_item(self, key: tuple[int, str], **changes: Any) -> None:
        """Update ``status`` / ``assignee`` / ``n_instances`` of one work item (one transaction)."""
        allowed = {"status", "assignee", "n_instances"}
        unknown = set(changes) - allowed
        if unknown:
            raise ProjectError(f"Cannot set {sorted(unknown)} of a work item; only {sorted(allowed)}.")
        if "status" in changes:
            check_choice(changes["status"], STATUSES, "status")
        image_id, owner = key
        table, id_clause = ("images", "id = ?") if owner == "" else ("assignments", "image_id = ? AND annotator = ?")
        if owner:
            changes.pop("assignee", None)
        sets = ", ".join(f"{k} = ?" for k in changes)
        params = [*changes.values(), time.time(), image_id] + ([owner] if owner else [])
        with self.transaction() as db:
            done = db.execute(f"UPDATE {table} SET {sets}, updated_at = ? WHERE {id_clause}", params).rowcount
            if owner:
                _sync_calibration_status(db, image_id)
        if not done:
            self.item(image_id, owner)  # raises naming the missing item

    def claim(self, key: tuple[int, str], annotator: str) -> WorkItem:
        """Mark an unfinished item 'in progress' by ``annotator`` (taking it when unassigned).

        Raises
        ------
        ProjectError
            When the image is assigned to someone else, or finished (submitted / reviewed:
            finished work is changed only in review, never silently by reopening it).
        """
        image_id, owner = key
        with self.transaction() as db:  # read and take in one write transaction: no race
            item = self.item(image_id, owner)
            if item.assignee not in ("", annotator):
                raise ProjectError(
                    f"Image id {item.image_id} ({item.file_name}) is assigned to {item.assignee!r}, not {annotator!r}."
                )
            if item.status in FINISHED:
                raise ProjectError(
                    f"Image id {item.image_id} ({item.file_name}) is {item.status}: finished work is not changed "
                    "outside review; turn on review mode to correct it."
                )
            if item.status in ("todo", "pre-labelled"):
                now = time.time()
                if owner:
                    db.execute(
                        "UPDATE assignments SET status = 'in progress', updated_at = ? WHERE image_id = ? AND annotator = ?",
                        (now, image_id, owner),
                    )
                    _sync_calibration_status(db, image_id)
                else:
                    db.execute(
                        "UPDATE images SET status = 'in progress', assignee = ?, updated_at = ? WHERE id = ?",
                        (annotator, now, image_id),
                    )
        return self.item(*key)

    # -- assignment and phases --------------------------------------------------------------
    def assignees(self, image_ids: Sequence[int]) -> dict[int, tuple[str, str]]:
        """Image id -> ``(assignee, status)`` of its main set, in the order given (ids must exist)."""
        self.require_images(image_ids)
        found = {}
        for image_id in dict.fromkeys(image_ids):
            row = self._db.execute("SELECT assignee, status FROM images WHERE id = ?", (image_id,)).fetchone()
            found[int(image_id)] = (str(row[0]), str(row[1]))
        return found

    def assign(self, image_ids: Sequence[int], annotator: str, *, force: bool = False) -> int:
        """Give production images to ``annotator`` (``''`` unassigns); returns how many changed.

        Parameters
        ----------
        image_ids : sequence of int
        annotator : str
        force : bool
            Also take images someone else has in progress (their store, with their edits, is
            kept and goes to ``annotator``).

        Raises
        ------
        ProjectError
            Naming the ids and their state when an image is finished (submitted / reviewed:
            its annotator's work is never taken away) or in the calibration phase; and,
            without ``force``, naming the ids and owners of images another annotator has in
            progress. Nothing is assigned then.
        """
        self.require_images(image_ids)
        refused = [
            f"{i} ({phase if phase != 'production' else status})"
            for i, (phase, status) in self.image_states(image_ids).items()
            if phase != "production" or status in FINISHED
        ]
        if refused:
            raise ProjectError(
                f"{self.path}: image(s) {', '.join(refused[:10])} cannot be (re)assigned: a submitted or reviewed "
                "image keeps its annotator and a calibration image belongs to its round; nothing was assigned."
            )
        now = time.time()
        with self.transaction() as db:  # checked and changed in one write transaction: no race
            if not force:
                self._refuse_started(db, image_ids, annotator)
            return int(
                db.executemany(
                    "UPDATE images SET assignee = ?, updated_at = ? WHERE id = ? AND phase = 'production'",
                    [(annotator, now, i) for i in image_ids],
                ).rowcount
            )

    def _refuse_started(self, db: sqlite3.Connection, image_ids: Sequence[int], annotator: str) -> None:
        wanted = set(image_ids)
        rows = [
            (i, who)
            for i, who in db.execute(
                "SELECT id, assignee FROM images WHERE status = 'in progress' AND assignee NOT IN ('', ?) ORDER BY id",
                (annotator,),
            )
            if i in wanted
        ]  # images in progress are few: one index scan, whatever the number of ids
        if rows:
            started = ", ".join(f"{i} ({who}'s, in progress)" for i, who in rows[:10])
            raise ProjectError(
                f"{self.path}: image(s) {started} are being annotated by someone else; assigning them would take "
                "that work over. Pass --force to reassign them anyway (their edits stay in the image's store); "
                "nothing was assigned."
            )

    def start_calibration(self, image_ids: Sequence[int], annotators: Sequence[str]) -> int:
        """Move images to the calibration phase with one set per annotator; returns sets added."""
        self.require_images(image_ids)
        now = time.time()
        rows = [
            (i, a, "calibration", "todo", f"stores/{i:07d}.{a}.zarr", now, now) for i in image_ids for a in annotators
        ]
        with self.transaction() as db:
            db.executemany(
                "UPDATE images SET phase = 'calibration', updated_at = ? WHERE id = ?", [(now, i) for i in image_ids]
            )
            before = db.total_changes
            db.executemany(
                "INSERT OR IGNORE INTO assignments (image_id, annotator, phase, status, store, assigned_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            return int(db.total_changes - before)

    def calibration_sets(self) -> dict[int, dict[str, WorkItem]]:
        """Calibration sets by image id, then annotator."""
        out: dict[int, dict[str, WorkItem]] = {}
        rows = self._db.execute(f"SELECT {_WORK_COLUMNS} FROM work WHERE phase = 'calibration' AND owner != ''")
        for row in rows:
            item = _item(row)
            out.setdefault(item.image_id, {})[item.owner] = item
        return out

    # -- reporting ---------------------------------------------------------------------------
    def counts(self) -> dict[str, dict[str, int]]:
        """Numbers of work items by status, by phase and by assignee (``''`` = unassigned).

        One grouped scan of each table, whatever the number of images.
        """
        out: dict[str, dict[str, int]] = {"status": {}, "phase": {}, "assignee": {}}
        rows = self._db.execute(
            "SELECT status, phase, assignee, COUNT(*) FROM images WHERE phase = 'production'"
            " GROUP BY status, phase, assignee"
        ).fetchall()
        rows += self._db.execute(
            "SELECT status, phase, annotator, COUNT(*) FROM assignments GROUP BY status, phase, annotator"
        ).fetchall()
        for status, phase, assignee, n in rows:
            for column, key in (("status", status), ("phase", phase), ("assignee", assignee)):
                out[column][key] = out[column].get(key, 0) + int(n)
        out["images"] = {"total": int(self._db.execute("SELECT COUNT(*) FROM images").fetchone()[0])}
        return out

    def finished_items(self, *, phase: str = "production") -> list[WorkItem]:
        """Submitted or reviewed items of ``phase``, by image id."""
        rows = self._db.execute(
            f"SELECT {_WORK_COLUMNS} FROM work WHERE phase = ? AND status IN ('submitted', 'reviewed')"
            " ORDER BY image_id, owner",
            (phase,),
        )
        return [_item(r) for r in rows]


def _main_clause(where: ItemFilter) -> tuple[str, list[Any]]:
    """The conditions of ``where`` on the ``images`` table (main sets only)."""
    clauses, params = [], []
    if where.status is not None:
        clauses.append("status = ?")
        params.append(check_choice(where.status, STATUSES, "status"))
    if where.assignee is not None:
        clauses.append("assignee = ?")
        params.append(where.assignee)
    if where.annotator is not None:
        clauses.append("assignee IN (?, '')")
        params.append(where.annotator)
    return "".join(f" AND {c}" for c in clauses), params


def _sync_calibration_status(db: sqlite3.Connection, image_id: int) -> None:
    """A calibration image's own status is the least advanced of its annotators' sets."""
    statuses = [r[0] for r in db.execute("SELECT status FROM assignments WHERE image_id = ?", (image_id,))]
    if statuses:
        least = min(statuses, key=STATUSES.index)
        db.execute("UPDATE images SET status = ? WHERE id = ?", (least, image_id))


def _journal_mode() -> str:
    """WAL by default; ``NAPARI_INSTSEG_MANIFEST_JOURNAL=delete`` for a project on a network
    share used from several machines (SQLite's WAL needs memory shared by every user's host)."""
    mode = os.environ.get("NAPARI_INSTSEG_MANIFEST_JOURNAL", "wal").lower()
    if mode not in ("wal", "delete"):
        raise ProjectError(f"NAPARI_INSTSEG_MANIFEST_JOURNAL must be 'wal' or 'delete', got {mode!r}.")
    return mode


def _connect_read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection. A WAL database in a folder nobody lets us write opens only
    while its shared-memory file exists (another user has it open); otherwise it is read as
    immutable, which is what it is for us."""
    uri = path.resolve().as_uri()
    db = sqlite3.connect(
        f"{uri}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
    )
    try:
        db.execute("SELECT 1 FROM meta LIMIT 1").fetchall()
    except sqlite3.OperationalError:
        db.close()
        db = sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, isolation_level=None, check_same_thread=False)
    return db


def _connect(path: Path) -> sqlite3.Connection:
    mode = _journal_mode()
    db = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
    db.execute(f"PRAGMA journal_mode = {mode.upper()}")
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute("PRAGMA foreign_keys = ON")
    return db
