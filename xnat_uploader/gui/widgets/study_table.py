"""The per-study table of the target form: one row per selected study, subject and session editable per row.

Defaults and problems come from the plan (:func:`~xnat_uploader.core.plan.plan_jobs`); a cell the user typed in
keeps the user's text, the others follow the defaults. A cell with a problem turns red and says why.
"""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QStringListModel, Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCompleter,
    QHeaderView,
    QLineEdit,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from xnat_uploader.core.plan import PlannedJob

COL_STUDY, COL_FILES, COL_SUBJECT, COL_SESSION, COL_PROBLEM = range(5)
UidRole = Qt.ItemDataRole.UserRole + 1
BAD = QColor(255, 215, 215)
RED = QColor(176, 0, 0)


class _SubjectDelegate(QStyledItemDelegate):
    """Edits a subject cell with the project's existing subjects offered as completions."""

    def __init__(self, subjects: QStringListModel, parent: QWidget) -> None:
        super().__init__(parent)
        self._subjects = subjects

    def createEditor(
        self, parent: QWidget, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> QWidget:
        editor = QLineEdit(parent)
        completer = QCompleter(self._subjects, editor)
        completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        editor.setCompleter(completer)
        return editor


class StudyTable(QTableWidget):
    """``edited(study_uid, subject, session)`` when the user changes a cell ("" = back to the default)."""

    edited = Signal(str, str, str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(0, 5, parent)
        self.setHorizontalHeaderLabels(
            [self.tr("Study"), self.tr("Files"), self.tr("Subject"), self.tr("Session"), self.tr("Problem")]
        )
        self.verticalHeader().hide()
        self.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        header = self.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.subjects = QStringListModel(self)
        self.setItemDelegateForColumn(COL_SUBJECT, _SubjectDelegate(self.subjects, self))
        self._user: dict[str, tuple[str, str]] = {}
        self._filling = False
        self.itemChanged.connect(self._on_item_changed)

    def set_subjects(self, subjects: list[str]) -> None:
        self.subjects.setStringList(subjects)

    def show_jobs(self, jobs: list[PlannedJob], descriptions: dict[str, str], user: dict[str, tuple[str, str]]) -> None:
        """Show one row per planned job; ``user`` holds the cells the user typed (kept as typed)."""
        self._filling = True
        self._user = dict(user)
        try:
            if self.rowCount() != len(jobs) or [self.uid_at(r) for r in range(self.rowCount())] != [
                j.study_uid for j in jobs
            ]:
                self.setRowCount(len(jobs))
                for row, job in enumerate(jobs):
                    study = QTableWidgetItem(descriptions.get(job.study_uid, job.description) or job.study_uid)
                    study.setData(UidRole, job.study_uid)
                    study.setToolTip(job.study_uid)
                    study.setFlags(Qt.ItemFlag.ItemIsEnabled)
                    self.setItem(row, COL_STUDY, study)
                    for col in (COL_FILES, COL_PROBLEM):
                        item = QTableWidgetItem()
                        item.setFlags(Qt.ItemFlag.ItemIsEnabled)
                        self.setItem(row, col, item)
                    for col in (COL_SUBJECT, COL_SESSION):
                        self.setItem(row, col, QTableWidgetItem())
            for row, job in enumerate(jobs):
                self.item(row, COL_FILES).setText(f"{len(job.files):,}")
                subject_bad = [p for p in job.problems if p.startswith("Subject label")]
                session_bad = [p for p in job.problems if p not in subject_bad]
                self._set_cell(row, COL_SUBJECT, job.subject, subject_bad)
                self._set_cell(row, COL_SESSION, job.session_label, session_bad)
                problem = self.item(row, COL_PROBLEM)
                problem.setText(" ".join(job.problems) or self.tr("ok"))
                problem.setForeground(QBrush(RED if job.problems else QColor(0, 120, 0)))
                problem.setToolTip("\n".join(job.problems))
        finally:
            self._filling = False
        self._fit_height()

    def _fit_height(self, max_rows: int = 6) -> None:
        """As tall as its rows (up to ``max_rows``; then it scrolls), so the queue below keeps the room."""
        rows = min(self.rowCount(), max_rows)
        height = self.horizontalHeader().height() + 2 * self.frameWidth() + 6
        height += sum(self.rowHeight(r) for r in range(rows)) or self.verticalHeader().defaultSectionSize()
        self.setMaximumHeight(height)

    def uid_at(self, row: int) -> str:
        item = self.item(row, COL_STUDY)
        return str(item.data(UidRole)) if item is not None else ""

    def row_of(self, study_uid: str) -> int:
        return next((r for r in range(self.rowCount()) if self.uid_at(r) == study_uid), -1)

    def _set_cell(self, row: int, col: int, text: str, problems: list[str]) -> None:
        item = self.item(row, col)
        if item.text() != text:
            item.setText(text)
        item.setBackground(QBrush(BAD) if problems else QBrush())
        item.setToolTip("\n".join(problems))

    def _on_item_changed(self, item: QTableWidgetItem) -> None:
        if self._filling or item.column() not in (COL_SUBJECT, COL_SESSION):
            return
        uid = self.uid_at(item.row())
        subject, session = self._user.get(uid, ("", ""))
        text = item.text().strip()
        if item.column() == COL_SUBJECT:
            subject = text
        else:
            session = text
        self._user[uid] = (subject, session)
        self.edited.emit(uid, subject, session)
