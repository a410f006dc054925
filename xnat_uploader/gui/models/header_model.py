"""The header preview's models: a tree of header rows (sequences expandable) and its search filter."""

from __future__ import annotations

import re

from PySide6.QtCore import QAbstractItemModel, QModelIndex, QObject, QSortFilterProxyModel, Qt
from PySide6.QtGui import QBrush, QColor, QFont

from xnat_uploader.core.dicom.header import ITEM_TAG, HeaderRow
from xnat_uploader.gui.models.filtering import change_row_filter

COLUMNS = ("Tag", "Keyword", "VR", "Value")
Role = Qt.ItemDataRole
_TAG_QUERY = re.compile(r"^\(?\s*([0-9a-fA-F]{4})\s*(?:,\s*([0-9a-fA-F]{0,4}))?\s*\)?$|^([0-9a-fA-F]{5,8})$")


class HeaderNode:
    """One row of the tree: a header row, its parent and children."""

    __slots__ = ("header", "parent", "row", "children")

    def __init__(self, header: HeaderRow | None, parent: HeaderNode | None, row: int) -> None:
        self.header = header
        self.parent = parent
        self.row = row
        self.children: list[HeaderNode] = []

    @property
    def in_private(self) -> bool:
        """Whether this row or an enclosing sequence is private."""
        node: HeaderNode | None = self
        while node is not None and node.header is not None:
            if node.header.private:
                return True
            node = node.parent
        return False


def build_tree(rows: list[HeaderRow]) -> HeaderNode:
    """Nest flat rows by their depth: an element at depth d+1 belongs to the last row at depth d."""
    root = HeaderNode(None, None, 0)
    stack: list[HeaderNode] = [root]  # stack[d] is the parent for depth d
    for header in rows:
        depth = min(header.depth, len(stack) - 1)
        del stack[depth + 1 :]
        parent = stack[depth]
        node = HeaderNode(header, parent, len(parent.children))
        parent.children.append(node)
        stack.append(node)
    return root


class HeaderModel(QAbstractItemModel):
    """Tag, keyword, VR and value of one instance's header. GUI thread only."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._root = HeaderNode(None, None, 0)
        self._private_font = QFont()
        self._private_font.setItalic(True)

    def set_rows(self, rows: list[HeaderRow]) -> None:
        self.beginResetModel()
        self._root = build_tree(rows)
        self.endResetModel()

    def node(self, index: QModelIndex) -> HeaderNode:
        return index.internalPointer() if index.isValid() else self._root

    def index(self, row: int, column: int, parent: QModelIndex = QModelIndex()) -> QModelIndex:  # noqa: B008
        if parent.isValid() and parent.column() != 0:
            return QModelIndex()
        node = self.node(parent)
        if 0 <= row < len(node.children) and 0 <= column < len(COLUMNS):
            return self.createIndex(row, column, node.children[row])
        return QModelIndex()

    def parent(self, index: QModelIndex = QModelIndex()) -> QModelIndex:  # type: ignore[override]  # noqa: B008
        if not index.isValid():
            return QModelIndex()
        parent = self.node(index).parent
        if parent is None or parent is self._root:
            return QModelIndex()
        return self.createIndex(parent.row, 0, parent)

    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008, N802
        if parent.isValid() and parent.column() != 0:
            return 0
        return len(self.node(parent).children)

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008, N802
        return len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Role.DisplayRole) -> object:  # noqa: N802
        if orientation == Qt.Orientation.Horizontal and role == Role.DisplayRole and 0 <= section < len(COLUMNS):
            return self.tr(COLUMNS[section])
        return None

    def data(self, index: QModelIndex, role: int = Role.DisplayRole) -> object:
        if not index.isValid():
            return None
        header = self.node(index).header
        if header is None:
            return None
        column = index.column()
        if role in (Role.DisplayRole, Role.ToolTipRole):
            if column == 0:
                return "" if header.tag == ITEM_TAG else header.tag_text
            if column == 1:
                return header.keyword
            if column == 2:
                return header.vr
            if column == 3:
                return header.value
        if header.private and header.tag != ITEM_TAG:
            if role == Role.FontRole:
                return self._private_font
            if role == Role.ForegroundRole:
                return QBrush(QColor(120, 80, 150))
        return None


class HeaderFilterModel(QSortFilterProxyModel):
    """Filters header rows by tag (``0010,0010``, ``00100010``, ``(0010`` ...), keyword or value.

    Recursive: a sequence stays visible when one of its elements matches. Private tags can be hidden.
    """

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.setRecursiveFilteringEnabled(True)
        self._text = ""
        self._tag_prefix = ""
        self._show_private = True

    def set_query(self, text: str) -> None:
        def change() -> None:
            self._text = text.strip().casefold()
            self._tag_prefix = tag_prefix(text)

        self._change_filter(change)

    def set_show_private(self, show: bool) -> None:
        self._change_filter(lambda: setattr(self, "_show_private", show))

    def _change_filter(self, change) -> None:  # noqa: ANN001
        change_row_filter(self, change)

    @property
    def query(self) -> str:
        return self._text

    def filterAcceptsRow(self, source_row: int, source_parent: QModelIndex) -> bool:  # noqa: N802
        model = self.sourceModel()
        node = model.node(model.index(source_row, 0, source_parent))
        header = node.header
        if header is None:
            return False
        if not self._show_private and node.in_private:
            return False
        if not self._text:
            return True
        if self._tag_prefix and header.tag != ITEM_TAG and f"{header.tag:08X}".startswith(self._tag_prefix):
            return True
        return self._text in header.keyword.casefold() or self._text in header.value.casefold()


def tag_prefix(text: str) -> str:
    """The hex digits of a tag-like query (``0010,0010`` -> ``00100010``, ``(0008`` -> ``0008``), else ""."""
    match = _TAG_QUERY.match(text.strip())
    if not match:
        return ""
    if match.group(3):
        return match.group(3).upper()
    return (match.group(1) + (match.group(2) or "")).upper()
