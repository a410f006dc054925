"""The prearchive of one server as a table: one row per session, with counts and the result of the last action.

Fed with plain data only (:class:`PrearchiveSession` rows, counts, result texts) by GUI-thread slots. Rows are
keyed by their :class:`PrearchiveRef`; a refresh updates rows in place so selection survives auto-refresh.
A session that an action removed (archived, moved, deleted) stays as a "gone" row with its result until the
next refresh the user asks for.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QObject, QPersistentModelIndex, QSortFilterProxyModel, Qt
from PySide6.QtGui import QColor

from xnat_uploader.core.xnat import PrearchiveRef, PrearchiveSession
from xnat_uploader.gui.models.filtering import change_row_filter

SortRole = Qt.ItemDataRole.UserRole + 1
RefRole = Qt.ItemDataRole.UserRole + 2
StatusRole = Qt.ItemDataRole.UserRole + 3

COLUMNS = ("Project", "Subject", "Session", "Scan date", "Uploaded", "Status", "Scans", "Files", "Result")
(
    COL_PROJECT, COL_SUBJECT, COL_SESSION, COL_SCAN_DATE, COL_UPLOADED, COL_STATUS, COL_SCANS, COL_FILES, COL_RESULT,
) = range(len(COLUMNS))  # fmt: skip

GREEN = QColor(0, 128, 0)
BLUE = QColor(0, 80, 200)
RED = QColor(190, 0, 0)
GREY = QColor(110, 110, 110)

BUSY = frozenset({"RECEIVING", "RECEIVING_INTERRUPT", "BUILDING", "ARCHIVING", "MOVING", "DELETING", "SEPARATING"})


def is_busy(status: str) -> bool:
    """Statuses that change on their own soon: receiving, building, queued or locked (auto-refresh while any)."""
    return status in BUSY or status.startswith(("QUEUED_", "_"))


def status_colour(status: str) -> QColor:
    if status == "READY":
        return GREEN
    if status.lstrip("_") in ("RECEIVING", "RECEIVING_INTERRUPT", "BUILDING", "QUEUED_BUILDING"):
        return BLUE
    if status.lstrip("_") in ("CONFLICT", "ERROR"):
        return RED
    return GREY


@dataclass(frozen=True)
class Row:
    session: PrearchiveSession
    scans: int | None = None
    files: int | None = None
    counted_at: str | None = None  # the session's ``lastmod`` when the counts were read
    result: str = ""
    ok: bool | None = None  # None: no action yet, or one running
    gone: bool = False


def _short_time(text: str) -> str:
    """``2024-05-01 10:11:12.345`` -> ``2024-05-01 10:11`` (listing texts are SQL timestamps)."""
    return text[:16] if len(text) >= 16 and text[10:11] == " " else text


class PrearchiveModel(QAbstractTableModel):
    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._rows: list[Row] = []
        self._index: dict[PrearchiveRef, int] = {}

    # -- reading ----------------------------------------------------------------------------------
    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: N802, B008
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: N802, B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole):  # noqa: N802, ANN201
        if (
            orientation == Qt.Orientation.Horizontal
            and role == Qt.ItemDataRole.DisplayRole
            and 0 <= section < len(COLUMNS)
        ):
            return self.tr(COLUMNS[section])
        return None

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole):  # noqa: ANN201
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        row, col = self._rows[index.row()], index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self._text(row, col)
        if role == SortRole:
            if col in (COL_SCANS, COL_FILES):
                value = row.scans if col == COL_SCANS else row.files
                return -1 if value is None else value
            if col in (COL_SCAN_DATE, COL_UPLOADED):
                return row.session.scan_date if col == COL_SCAN_DATE else row.session.uploaded
            return self._text(row, col).lower()
        if role == Qt.ItemDataRole.ForegroundRole:
            if col == COL_STATUS:
                return GREY if row.gone else status_colour(row.session.status)
            if col == COL_RESULT and row.ok is not None:
                return GREEN if row.ok else RED
            if row.gone:
                return GREY
        if role == Qt.ItemDataRole.ToolTipRole and col == COL_RESULT and row.result:
            return row.result
        if role == Qt.ItemDataRole.TextAlignmentRole and col in (COL_SCANS, COL_FILES):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == RefRole:
            return row.session.ref
        if role == StatusRole:
            return row.session.status
        return None

    def _text(self, row: Row, col: int) -> str:
        s = row.session
        if col == COL_PROJECT:
            return s.project
        if col == COL_SUBJECT:
            return s.subject
        if col == COL_SESSION:
            return s.name or s.folder
        if col == COL_SCAN_DATE:
            return _short_time(s.scan_date)
        if col == COL_UPLOADED:
            return _short_time(s.uploaded)
        if col == COL_STATUS:
            return self.tr("(gone)") if row.gone else s.status
        if col == COL_SCANS:
            return "" if row.scans is None else str(row.scans)
        if col == COL_FILES:
            return "" if row.files is None else str(row.files)
        if col == COL_RESULT:
            return row.result
        return ""

    def session(self, row: int) -> PrearchiveSession:
        return self._rows[row].session

    def row_of(self, ref: PrearchiveRef) -> int:
        return self._index.get(ref, -1)

    def row_data(self, ref: PrearchiveRef) -> Row | None:
        i = self._index.get(ref)
        return None if i is None else self._rows[i]

    def sessions(self) -> list[PrearchiveSession]:
        return [r.session for r in self._rows if not r.gone]

    def projects(self) -> list[str]:
        return sorted({r.session.project for r in self._rows}, key=str.lower)

    def any_busy(self) -> bool:
        return any(not r.gone and is_busy(r.session.status) for r in self._rows)

    def needs_counts(self) -> list[PrearchiveRef]:
        """Built sessions whose scan and file counts are unknown or older than their last change."""
        return [
            r.session.ref
            for r in self._rows
            if not r.gone and r.session.status == "READY" and r.counted_at != r.session.lastmod
        ]

    # -- writing (GUI thread) ------------------------------------------------------------------------
    def set_sessions(self, sessions: list[PrearchiveSession], *, drop_gone: bool = False) -> None:
        """Merge a fresh listing: rows update in place, new ones are appended, missing ones removed
        (or kept as gone rows when an action left a result on them, unless ``drop_gone``)."""
        fresh = {s.ref: s for s in sessions}
        for i in reversed(range(len(self._rows))):
            row = self._rows[i]
            ref = row.session.ref
            if ref in fresh:
                continue
            if row.result and not drop_gone:
                if not row.gone:
                    self._put(i, replace(row, gone=True))
                continue
            self.beginRemoveRows(QModelIndex(), i, i)
            del self._rows[i]
            self.endRemoveRows()
        self._reindex()
        for ref, session in fresh.items():
            i = self._index.get(ref)
            if i is None:
                continue
            old = self._rows[i]
            if old.session != session or old.gone:
                self._put(i, replace(old, session=session, gone=False))
        new = [s for ref, s in fresh.items() if ref not in self._index]
        if new:
            first = len(self._rows)
            self.beginInsertRows(QModelIndex(), first, first + len(new) - 1)
            self._rows.extend(Row(s) for s in new)
            self.endInsertRows()
            self._reindex()

    def set_counts(self, ref: PrearchiveRef, scans: int, files: int, lastmod: str) -> None:
        i = self._index.get(ref)
        if i is not None:
            self._put(i, replace(self._rows[i], scans=scans, files=files, counted_at=lastmod))

    def set_result(self, ref: PrearchiveRef, text: str, ok: bool | None) -> None:
        i = self._index.get(ref)
        if i is not None:
            self._put(i, replace(self._rows[i], result=text, ok=ok))

    def clear(self) -> None:
        self.beginResetModel()
        self._rows, self._index = [], {}
        self.endResetModel()

    def _put(self, i: int, row: Row) -> None:
        self._rows[i] = row
        self.dataChanged.emit(self.index(i, 0), self.index(i, len(COLUMNS) - 1))

    def _reindex(self) -> None:
        self._index = {r.session.ref: i for i, r in enumerate(self._rows)}


class PrearchiveFilter(QSortFilterProxyModel):
    """Sorting (by :data:`SortRole`), a text filter over every column and a project filter ("" = all)."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.setSortRole(SortRole)
        self.setSortCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self._text = ""
        self._project = ""

    def set_text(self, text: str) -> None:
        self._change_filter(lambda: setattr(self, "_text", text.strip().lower()))

    def set_project(self, project: str) -> None:
        self._change_filter(lambda: setattr(self, "_project", project))

    def _change_filter(self, change) -> None:  # noqa: ANN001
        change_row_filter(self, change)

    def filterAcceptsRow(self, source_row: int, source_parent: QModelIndex | QPersistentModelIndex) -> bool:  # noqa: N802
        model = self.sourceModel()
        if self._project and model.index(source_row, COL_PROJECT, source_parent).data() != self._project:
            return False
        if not self._text:
            return True
        return any(
            self._text in str(model.index(source_row, col, source_parent).data() or "").lower()
            for col in range(len(COLUMNS))
        )
