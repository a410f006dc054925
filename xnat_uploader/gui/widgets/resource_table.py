"""The form's "Attach as resources" table: the other files of the dropped folders, each with an "attach" tick
and an editable resource name, plus "overwrite existing files". Hidden while there are no such files.

No I/O: the items come from the scan controller (:class:`~xnat_uploader.core.exam.ExamItem`), and the form
hands :meth:`ResourceTable.chosen` to :func:`~xnat_uploader.core.exam.assign_exam_items`.
"""

from __future__ import annotations

import os
from dataclasses import replace

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from xnat_uploader.core.exam import ExamItem
from xnat_uploader.core.plan import label_problem
from xnat_uploader.gui.models.tree_text import human_bytes, icon_for

ATTACH, ITEM, FILES, SIZE, RESOURCE = range(5)
BAD = QColor("#ffecec")
ROWS_SHOWN = 4  # rows visible before the table scrolls


def item_name(item: ExamItem) -> str:
    name = os.path.basename(os.path.normpath(item.path)) or item.path
    return name + "/" if item.is_folder else name


class ResourceTable(QWidget):
    """``changed()`` when a tick, a resource name or the overwrite choice changes."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._items: list[ExamItem] = []
        self._choices: dict[str, tuple[bool, str]] = {}  # path -> (attach, resource name), kept across refills
        self._filling = False
        title = QLabel(self.tr("<b>Attach as resources</b>: files beside the DICOM, added to the session"), self)
        self.overwrite_check = QCheckBox(self.tr("Overwrite files that already exist in a resource"), self)
        self.note_label = QLabel(self)
        self.note_label.setStyleSheet("color: #606060")
        self.note_label.setWordWrap(True)
        self.table = QTableWidget(0, 5, self)
        self.table.setHorizontalHeaderLabels(
            [self.tr("Attach"), self.tr("Item"), self.tr("Files"), self.tr("Size"), self.tr("Resource")]
        )
        self.table.verticalHeader().hide()
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.setEditTriggers(
            QAbstractItemView.EditTrigger.DoubleClicked
            | QAbstractItemView.EditTrigger.SelectedClicked
            | QAbstractItemView.EditTrigger.EditKeyPressed
            | QAbstractItemView.EditTrigger.AnyKeyPressed
        )
        header = self.table.horizontalHeader()
        for column in (ATTACH, FILES, SIZE):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(ITEM, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(RESOURCE, QHeaderView.ResizeMode.Stretch)
        top = QHBoxLayout()
        top.addWidget(title)
        top.addStretch(1)
        top.addWidget(self.overwrite_check)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 4, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.table)
        layout.addWidget(self.note_label)
        self.note_label.hide()
        self.table.itemChanged.connect(self._on_item_changed)
        self.overwrite_check.toggled.connect(lambda _on: self.changed.emit())
        self.setVisible(False)

    # -- filling ----------------------------------------------------------------------------------
    def set_items(self, items: list[ExamItem]) -> None:
        """Show these items (ticked, with their proposed names, unless the user changed them before)."""
        self._items = list(items)
        self._filling = True
        self.table.setRowCount(len(items))
        for row, item in enumerate(items):
            attach, name = self._choices.get(item.path, (True, item.resource))
            tick = QTableWidgetItem()
            tick.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsUserCheckable)
            tick.setCheckState(Qt.CheckState.Checked if attach else Qt.CheckState.Unchecked)
            tick.setToolTip(self.tr("Attach this to the session"))
            self.table.setItem(row, ATTACH, tick)
            cells = {ITEM: item_name(item), FILES: f"{item.files:,}", SIZE: human_bytes(item.bytes)}
            for column, text in cells.items():
                cell = QTableWidgetItem(text)
                cell.setFlags(Qt.ItemFlag.ItemIsEnabled)
                cell.setToolTip(item.path)
                if column != ITEM:
                    cell.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(row, column, cell)
            self.table.item(row, ITEM).setIcon(icon_for(item))
            resource = QTableWidgetItem(name)
            resource.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsEditable | Qt.ItemFlag.ItemIsSelectable)
            resource.setToolTip(self.tr("Resource name on the server (letters, digits, '_' and '-')"))
            self.table.setItem(row, RESOURCE, resource)
        self._filling = False
        self._mark()
        row_height = self.table.verticalHeader().defaultSectionSize()
        rows = min(max(len(items), 1), ROWS_SHOWN)
        self.table.setFixedHeight(self.table.horizontalHeader().sizeHint().height() + rows * row_height + 4)
        self.setVisible(bool(items))
        self.changed.emit()

    def set_destination(self, destination: str) -> None:
        """``"prearchive"`` shows when the resources will really be attached."""
        prearchive = destination == "prearchive"
        self.note_label.setText(
            self.tr("The session goes to the prearchive first: these resources are attached once it is archived "
                    "(Prearchive tab, Archive...).") if prearchive else ""
        )  # fmt: skip
        self.note_label.setVisible(prearchive)

    # -- reading ----------------------------------------------------------------------------------
    def chosen(self) -> list[ExamItem]:
        """The ticked items, with the resource names as typed."""
        out = []
        for row, item in enumerate(self._items):
            if self.table.item(row, ATTACH).checkState() == Qt.CheckState.Checked:
                out.append(replace(item, resource=self._name(row)))
        return out

    def problems(self) -> list[str]:
        """Plain messages for ticked items whose resource name XNAT would refuse."""
        out = []
        for row, item in enumerate(self._items):
            if self.table.item(row, ATTACH).checkState() == Qt.CheckState.Checked:
                problem = label_problem(self._name(row), self.tr("Resource name for {}").format(item_name(item)))
                if problem:
                    out.append(problem)
        return out

    @property
    def items(self) -> list[ExamItem]:
        return list(self._items)

    def overwrite(self) -> bool:
        return self.overwrite_check.isChecked()

    # -- inside -----------------------------------------------------------------------------------
    def _name(self, row: int) -> str:
        return self.table.item(row, RESOURCE).text().strip()

    def _on_item_changed(self, cell: QTableWidgetItem) -> None:
        if self._filling:
            return
        row = cell.row()
        attach = self.table.item(row, ATTACH).checkState() == Qt.CheckState.Checked
        self._choices[self._items[row].path] = (attach, self._name(row))
        self._mark()
        self.changed.emit()

    def _mark(self) -> None:
        """A red background on resource names that would be refused (of ticked items)."""
        self._filling = True
        for row in range(len(self._items)):
            attach = self.table.item(row, ATTACH).checkState() == Qt.CheckState.Checked
            bad = attach and label_problem(self._name(row)) is not None
            self.table.item(row, RESOURCE).setBackground(QBrush(BAD) if bad else QBrush())
            for column in (ITEM, FILES, SIZE, RESOURCE):
                self.table.item(row, column).setForeground(QBrush() if attach else QBrush(QColor("#909090")))
        self._filling = False
