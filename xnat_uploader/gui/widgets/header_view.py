"""The header preview: title, search box, "private tags" toggle and the tag tree (no I/O here)."""

from __future__ import annotations

from PySide6.QtCore import QModelIndex
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QLineEdit, QTreeView, QVBoxLayout, QWidget

from xnat_uploader.core.dicom.header import HeaderRow
from xnat_uploader.gui.models.header_model import HeaderFilterModel, HeaderModel


class HeaderView(QWidget):
    """Shows one instance's header; the search box filters by tag, keyword or value."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = HeaderModel(self)
        self.proxy = HeaderFilterModel(self)
        self.proxy.setSourceModel(self.model)

        self.title = QLabel(self.tr("Select an image, series or study to see its header."))
        self.title.setWordWrap(True)
        self.search = QLineEdit()
        self.search.setPlaceholderText(self.tr("Search tag (0010,0010), keyword or value"))
        self.search.setClearButtonEnabled(True)
        self.private = QCheckBox(self.tr("Private tags"))
        self.private.setChecked(True)
        self.tree = QTreeView()
        self.tree.setModel(self.proxy)
        self.tree.setUniformRowHeights(True)
        self.tree.setAlternatingRowColors(True)
        self.tree.setIndentation(14)
        metrics = self.tree.fontMetrics()  # "(0008,1150)" inside an item of a sequence still fits
        self.tree.setColumnWidth(0, metrics.horizontalAdvance("(0000,0000)") + 4 * self.tree.indentation() + 8)
        self.tree.setColumnWidth(1, metrics.horizontalAdvance("MediaStorageSOPInstanceUID") + 12)
        self.tree.setColumnWidth(2, metrics.horizontalAdvance("VR") + 24)

        bar = QHBoxLayout()
        bar.addWidget(self.search, 1)
        bar.addWidget(self.private)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addLayout(bar)
        layout.addWidget(self.tree, 1)

        self.search.textChanged.connect(self._on_search)
        self.private.toggled.connect(self._on_private)

    def show_rows(self, title: str, rows: list[HeaderRow]) -> None:
        self.title.setText(self.tr("Header of: {}").format(title))
        self.model.set_rows(rows)
        self._expand()

    def show_message(self, text: str) -> None:
        """Empty the table and say why (nothing selected, not DICOM, unreadable)."""
        self.title.setText(text)
        self.model.set_rows([])

    def visible_rows(self) -> list[HeaderRow]:
        """The rows the filter lets through, in tree order (for tests and copy)."""
        out: list[HeaderRow] = []

        def walk(parent: QModelIndex) -> None:
            for row in range(self.proxy.rowCount(parent)):
                index = self.proxy.index(row, 0, parent)
                header = self.model.node(self.proxy.mapToSource(index)).header
                if header is not None:
                    out.append(header)
                walk(index)

        walk(QModelIndex())
        return out

    def _on_search(self, text: str) -> None:
        self.proxy.set_query(text)
        self._expand()

    def _on_private(self, show: bool) -> None:
        self.proxy.set_show_private(show)
        self._expand()

    def _expand(self) -> None:
        if self.proxy.query:
            self.tree.expandAll()  # matches inside sequences must be seen
