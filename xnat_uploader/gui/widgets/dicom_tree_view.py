"""The DICOM tree view: a drop target for folders, files, archives and DICOMDIRs (no I/O here)."""

from __future__ import annotations

from PySide6.QtCore import QMimeData, Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDragMoveEvent, QDropEvent, QPainter, QPaintEvent, QPalette
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTreeView, QWidget


def local_paths(mime: QMimeData | None) -> list[str]:
    """The local files and folders a drag carries (URLs only: a text-only drag carries none)."""
    if mime is None or not mime.hasUrls():
        return []
    return [url.toLocalFile() for url in mime.urls() if url.isLocalFile() and url.toLocalFile()]


def accept_drag(event: QDragEnterEvent | QDragMoveEvent) -> None:
    """Accept a drag that carries local paths, refuse anything else (e.g. plain text)."""
    if local_paths(event.mimeData()):
        event.setDropAction(Qt.DropAction.CopyAction)
        event.accept()
    else:
        event.ignore()


class DicomTreeView(QTreeView):
    """Shows the DICOM tree; emits ``paths_dropped(list[str])`` when files or folders are dropped on it."""

    paths_dropped = Signal(list)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAcceptDrops(True)
        self.viewport().setAcceptDrops(True)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DropOnly)
        self.setUniformRowHeights(True)  # lets the view skip measuring 100,000 rows
        self.setAlternatingRowColors(True)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setAllColumnsShowFocus(True)
        self.header().setStretchLastSection(True)
        self.header().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.empty_text = self.tr(
            "Drop DICOM folders, files, zip/tar archives or a DICOMDIR here,\nor use Open Folder."
        )

    def set_column_widths(self, widths: list[int]) -> None:
        for column, width in enumerate(widths):
            self.setColumnWidth(column, width)

    # Drag and drop: handled here, not by the model (the model is read-only).
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802
        accept_drag(event)

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:  # noqa: N802
        accept_drag(event)

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        paths = local_paths(event.mimeData())
        if not paths:
            event.ignore()
            return
        event.setDropAction(Qt.DropAction.CopyAction)
        event.accept()
        self.paths_dropped.emit(paths)

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802
        super().paintEvent(event)
        model = self.model()
        if model is None or model.rowCount() == 0:
            palette = self.palette()  # keep the copy alive: a brush taken from a temporary palette dangles
            painter = QPainter(self.viewport())
            painter.setPen(palette.color(QPalette.ColorRole.PlaceholderText))
            painter.drawText(self.viewport().rect(), Qt.AlignmentFlag.AlignCenter, self.empty_text)
            painter.end()
