"""The details pane of the Prearchive tab: the scans of one session with series description and file counts."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from xnat_uploader.core.xnat.models import Scan


def _kind(scan: Scan) -> str:
    """``xnat:mrScanData`` -> ``MR`` (prearchive scan listings have no ``type`` column)."""
    if scan.type:
        return scan.type
    return scan.xsi_type.removeprefix("xnat:").removesuffix("ScanData").upper()


class ScanDetails(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = QLabel()
        self.title.setWordWrap(True)
        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels([self.tr("Scan"), self.tr("Type"), self.tr("Series description"),
                                              self.tr("Files")])  # fmt: skip
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addWidget(self.table)
        self.clear()

    def clear(self) -> None:
        self.table.setRowCount(0)
        self.title.setText(self.tr("Select one session to see its scans."))

    def loading(self, name: str) -> None:
        self.table.setRowCount(0)
        self.title.setText(self.tr("Loading the scans of {}...").format(name))

    def show_error(self, name: str, error: str) -> None:
        self.table.setRowCount(0)
        self.title.setText(self.tr("Scans of {}: {}").format(name, error))

    def show_scans(self, name: str, scans: list[Scan]) -> None:
        files = sum(s.file_count or 0 for s in scans)
        self.title.setText(self.tr("Scans of {}: %n scan(s), {} file(s)", "", len(scans)).format(name, files))
        self.table.setRowCount(len(scans))
        for i, scan in enumerate(scans):
            count = "" if scan.file_count is None else str(scan.file_count)
            for col, text in enumerate((scan.id, _kind(scan), scan.series_description, count)):
                self.table.setItem(i, col, QTableWidgetItem(text))
