"""The Project panel's table: work items read from the manifest a page at a time, and the
panel's error reporting for its slots."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from qtpy.QtCore import QAbstractTableModel, QModelIndex, Qt

__all__ = ["PAGE_ROWS", "ProjectTableModel", "reporting"]

PAGE_ROWS = 256
"""Rows read from the manifest at once; a few pages are kept."""


def reporting(slot: Any) -> Any:
    """A slot that shows an :class:`InstsegError` / ``OSError`` to the user instead of raising."""
    import functools

    @functools.wraps(slot)
    def wrapper(self: Any, *args: Any) -> Any:
        from napari.utils.notifications import show_error

        from napari_instseg.core.errors import InstsegError

        try:
            return slot(self, *args)
        except (InstsegError, OSError) as exc:
            self.summary.setText(str(exc))
            show_error(str(exc))
            return None

    return wrapper


class ProjectTableModel(QAbstractTableModel):
    """The project's work items as a table; rows are read from the manifest a page at a time.

    Opening reads only the ordered keys of the matching items; the rows a view shows are
    fetched in pages of ``PAGE_ROWS`` and a few pages are kept.
    """

    COLUMNS = ("id", "file", "status", "phase", "assignee", "instances")

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.project: Any = None
        self.where: Any = None
        self.keys: list[tuple[int, str]] = []
        self._pages: OrderedDict[int, dict[tuple[int, str], Any]] = OrderedDict()

    def set_source(self, project: Any, where: Any) -> None:
        """Show ``project``'s items matching ``where`` (an ``ItemFilter``)."""
        self.beginResetModel()
        self.project, self.where = project, where
        self.keys = [] if project is None else project.manifest.item_keys(where)
        self._pages.clear()
        self.endResetModel()

    def refresh(self) -> None:
        """Re-read the rows (statuses change as people work)."""
        self.set_source(self.project, self.where)

    def touch(self) -> None:
        """Re-read the rows on screen (statuses changed; the list itself did not)."""
        self._pages.clear()
        if self.keys:
            self.dataChanged.emit(self.index(0, 0), self.index(len(self.keys) - 1, len(self.COLUMNS) - 1))

    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.keys)

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.COLUMNS)

    def item_at(self, row: int) -> Any:
        """The work item of ``row`` (None when someone moved it out of this listing since it
        was read, e.g. into a calibration round; *Refresh list* re-reads it)."""
        page = row // PAGE_ROWS
        if page not in self._pages:
            keys = self.keys[page * PAGE_ROWS : (page + 1) * PAGE_ROWS]
            self._pages[page] = {it.key: it for it in self.project.manifest.items_between(keys)}
            while len(self._pages) > 8:
                self._pages.popitem(last=False)
        self._pages.move_to_end(page)
        return self._pages[page].get(self.keys[row])

    def row_of(self, key: tuple[int, str]) -> int:
        """The row of an item key, or -1."""
        import bisect

        row = bisect.bisect_left(self.keys, key)
        return row if row < len(self.keys) and self.keys[row] == key else -1

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or role != Qt.ItemDataRole.DisplayRole:
            return None
        item = self.item_at(index.row())
        if item is None:
            return "(moved)" if index.column() == 2 else ""
        name = item.file_name + (f" [{item.owner}]" if item.owner else "")
        values = (item.image_id, name, item.status, item.phase, item.assignee, item.n_instances)
        return str(values[index.column()])

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return self.COLUMNS[section]
        return None
