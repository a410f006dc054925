"""The DICOM tree: a lazy item model over a :class:`DicomIndex`, plus "Problems" and "Other files" nodes.

Rows are never copied into Python objects of their own. Each QModelIndex carries, as its internal
pointer, the *container* of its row (the root sentinel, a patient, a study, a series, the problems
node or one finding); the row's item is the container's child at that row in display order
(:mod:`.tree_order`: the index keeps arrival order, the tree shows patients by name, studies by date,
series and images by number), and ``parent()`` is the container's own display row. So 100,000
instances cost one list slot each beyond the index's own records, and only rows a view asks for are
touched.

Growth follows :class:`~xnat_uploader.core.dicom.index.Changes`: rows the model has not announced are
not in its display lists; ``apply`` appends each grown parent's new children inside
``beginInsertRows``/``endInsertRows`` and, when they break the order, sorts that one parent inside a
layout change. Call :meth:`apply` on the GUI thread right after each ``add``.

Check boxes (tri-state for patients and studies) include or exclude series; :meth:`selected_series`
and :attr:`series_selection_changed` serve the upload form. The last top-level row, "Other files (not
DICOM)", lists the top-level non-DICOM folders and files of dropped folders (:meth:`set_exam_items`); the
form decides which of them are attached as resources.
"""

from __future__ import annotations

import os

from PySide6.QtCore import QAbstractItemModel, QModelIndex, QObject, Qt, Signal

from xnat_uploader.core.dicom.checks import Finding
from xnat_uploader.core.dicom.index import Changes, DicomIndex, PatientNode, SeriesNode, StudyNode
from xnat_uploader.core.dicom.records import InstanceRecord, Rejected
from xnat_uploader.core.exam import ExamItem
from xnat_uploader.gui.models.tree_order import DisplayOrder
from xnat_uploader.gui.models.tree_text import (
    COLUMNS,
    FindingItem,
    OtherFiles,
    Problems,
    cell_text,
    icon_for,
    tooltip_text,
)

_CHECKABLE = (PatientNode, StudyNode, SeriesNode)


class _Root:
    """The invisible root's sentinel (the container of patients and of the problems node)."""


ROOT = _Root()
Role = Qt.ItemDataRole


class DicomTreeModel(QAbstractItemModel):
    """Patient > study > series > instance, then "Problems" (rejected files and pre-flight findings), then
    "Other files (not DICOM)".

    GUI thread only. ``series_selection_changed`` is emitted when series are checked, unchecked or
    added (new series start checked).
    """

    series_selection_changed = Signal()

    def __init__(self, index: DicomIndex | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._index = index if index is not None else DicomIndex()
        self._init_state()

    def _init_state(self) -> None:
        self.order = DisplayOrder()
        self.order.snapshot(ROOT, self._index.patients)
        for patient in self._index.patients:
            self.order.snapshot(patient, patient.studies)
            for study in patient.studies:
                self.order.snapshot(study, study.series)
                for series in study.series:
                    self.order.snapshot(series, series.instances)
        self._excluded: set[SeriesNode] = set()
        rejected = list(self._index.rejected)
        self.problems = Problems(rejected=rejected, seen=len(rejected), shown=bool(rejected))
        self._retired: list[FindingItem] = []  # replaced findings stay alive while views may hold indexes
        self.others = OtherFiles()
        self._other_paths: tuple[str, ...] = ()

    # ---- public API ---------------------------------------------------------------------------

    @property
    def dicom_index(self) -> DicomIndex:
        return self._index

    def set_dicom_index(self, index: DicomIndex) -> None:
        """Show another index (e.g. an empty one to clear the tree)."""
        self.beginResetModel()
        self._index = index
        self._init_state()
        self.endResetModel()
        self.series_selection_changed.emit()

    def apply(self, changes: Changes) -> None:
        """Announce what one ``DicomIndex.add`` changed (call right after it, on the GUI thread)."""
        for node in changes.new_nodes:  # parents first; their children came with them, none announced yet
            self.order.snapshot(node, node.children)
        for growth in changes.grown:
            container = ROOT if growth.parent is None else growth.parent
            live = self._index.patients if growth.parent is None else growth.parent.children
            new = live[growth.first : growth.last + 1]
            if not new:
                continue
            parent = QModelIndex() if growth.parent is None else self.index_of(growth.parent)
            first = len(self.order.children(container))
            self.beginInsertRows(parent, first, first + len(new) - 1)
            in_order = self.order.append(container, new)
            self.endInsertRows()
            if not in_order:
                self._sort(container)
        self._refresh_counts(changes.touched_series)
        if changes.rejected_added:
            self._show_rejected()
        if any(isinstance(node, SeriesNode) for node in changes.new_nodes):
            self.series_selection_changed.emit()

    def set_findings(self, findings: list[Finding]) -> None:
        """Replace the pre-flight findings shown under "Problems"."""
        problems = self.problems
        if problems.findings:
            self.beginRemoveRows(self._problems_index(), 0, len(problems.findings) - 1)
            self._retired.extend(problems.findings)
            problems.findings = []
            self.endRemoveRows()
        items = [FindingItem(f, row) for row, f in enumerate(findings)]
        if items and not problems.shown:
            self._show_problems(lambda: setattr(problems, "findings", items))
        elif items:
            self.beginInsertRows(self._problems_index(), 0, len(items) - 1)
            problems.findings = items
            self.endInsertRows()
        self._problems_changed()

    def set_exam_items(self, items: list[ExamItem]) -> None:
        """Replace the rows under "Other files (not DICOM)" (the node is shown only while there are some)."""
        others, items = self.others, list(items)
        if items == others.items:
            return
        if others.shown:
            row = self._others_index().row()
            self.beginRemoveRows(QModelIndex(), row, row)
            others.items = []
            self.endRemoveRows()
        self._other_paths = tuple(os.path.normpath(i.path) for i in items)
        self._filter_rejected()
        if items:
            row = self._count(ROOT)
            self.beginInsertRows(QModelIndex(), row, row)
            others.items = items
            self.endInsertRows()

    @property
    def exam_items(self) -> list[ExamItem]:
        return list(self.others.items)

    def selected_series(self) -> list[SeriesNode]:
        """The checked series, in tree order."""
        order = self.order
        return [
            series
            for patient in order.children(ROOT)
            for study in order.children(patient)
            for series in order.children(study)
            if series not in self._excluded
        ]

    def selected_series_uids(self) -> list[str]:
        """SeriesInstanceUIDs of the checked series, in tree order."""
        return [s.uid for s in self.selected_series()]

    def item(self, index: QModelIndex) -> object:
        """What a row shows: a node, an :class:`InstanceRecord`, a ``Rejected`` file, a finding item,
        a path (``str``, a finding's file) or the problems node. None for the invisible root."""
        if not index.isValid():
            return None
        return self._child(index.internalPointer(), index.row())

    def first_instance(self, index: QModelIndex) -> InstanceRecord | None:
        """The instance a header preview shows for a row: itself, or the first one (in display order) below it."""
        item = self.item(index)
        while isinstance(item, _CHECKABLE):
            children = self.order.children(item)
            item = children[0] if children else None
        return item if isinstance(item, InstanceRecord) else None

    def index_of(self, node: object) -> QModelIndex:
        """The index (column 0) of a patient, study, series node or of the problems or other-files node."""
        if node is self.problems:
            return self._problems_index()
        if node is self.others:
            return self._others_index()
        container = ROOT if isinstance(node, PatientNode) else node.parent  # type: ignore[attr-defined]
        return self.createIndex(self.order.row(node), 0, container)

    # ---- QAbstractItemModel --------------------------------------------------------------------

    def _child(self, container: object, row: int) -> object:
        if container is ROOT:
            patients = self.order.children(ROOT)
            if row < len(patients):
                return patients[row]
            return self.problems if row == len(patients) and self.problems.shown else self.others
        if container is self.others:
            return self.others.items[row]
        if container is self.problems:
            findings = self.problems.findings
            return findings[row] if row < len(findings) else self.problems.rejected[row - len(findings)]
        if isinstance(container, FindingItem):
            return container.finding.paths[row]
        return self.order.children(container)[row]

    def _count(self, item: object) -> int:
        if item is ROOT:
            return len(self.order.children(ROOT)) + self.problems.shown + self.others.shown
        if item is self.problems:
            return self.problems.count
        if item is self.others:
            return len(self.others.items)
        if isinstance(item, FindingItem):
            return len(item.finding.paths)
        if isinstance(item, _CHECKABLE):
            return len(self.order.children(item))
        return 0

    def index(self, row: int, column: int, parent: QModelIndex = QModelIndex()) -> QModelIndex:  # noqa: B008
        container = self.item(parent) if parent.isValid() else ROOT
        if parent.isValid() and parent.column() != 0:
            return QModelIndex()
        if row < 0 or column < 0 or column >= len(COLUMNS) or row >= self._count(container):
            return QModelIndex()
        return self.createIndex(row, column, container)

    def parent(self, index: QModelIndex = QModelIndex()) -> QModelIndex:  # type: ignore[override]  # noqa: B008
        if not index.isValid():
            return QModelIndex()
        container = index.internalPointer()
        if container is ROOT:
            return QModelIndex()
        if isinstance(container, FindingItem):
            return self.createIndex(container.row, 0, self.problems)
        return self.index_of(container)

    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008, N802
        if not parent.isValid():
            return self._count(ROOT)
        if parent.column() != 0:
            return 0
        return self._count(self.item(parent))

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008, N802
        return len(COLUMNS)

    def hasChildren(self, parent: QModelIndex = QModelIndex()) -> bool:  # noqa: B008, N802
        return self.rowCount(parent) > 0

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Role.DisplayRole) -> object:  # noqa: N802
        if orientation == Qt.Orientation.Horizontal and role == Role.DisplayRole and 0 <= section < len(COLUMNS):
            return self.tr(COLUMNS[section])
        return None

    def flags(self, index: QModelIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        flags = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
        if index.column() == 0 and isinstance(self.item(index), _CHECKABLE):
            flags |= Qt.ItemFlag.ItemIsUserCheckable
        return flags

    def data(self, index: QModelIndex, role: int = Role.DisplayRole) -> object:
        if not index.isValid():
            return None
        item = self.item(index)
        column = index.column()
        if role == Role.DisplayRole:
            return cell_text(item, column, self.problems, self.tr)
        if role == Role.ToolTipRole:
            return tooltip_text(item, self.tr)
        if role == Role.CheckStateRole and column == 0 and isinstance(item, _CHECKABLE):
            return self._check_state(item)
        if role == Role.TextAlignmentRole and column in (1, 2):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Role.DecorationRole and column == 0:
            return icon_for(item)
        return None

    def setData(self, index: QModelIndex, value: object, role: int = Role.EditRole) -> bool:  # noqa: N802
        item = self.item(index)
        if role != Role.CheckStateRole or index.column() != 0 or not isinstance(item, _CHECKABLE):
            return False
        checked = int(getattr(value, "value", value)) == Qt.CheckState.Checked.value  # type: ignore[call-overload]
        series = _series_below(item)
        if checked:
            self._excluded.difference_update(series)
        else:
            self._excluded.update(series)
        self._changed_below(item)
        node = item
        while node is not None:  # the ancestors' tri-state follows
            cell = self.index_of(node)
            self.dataChanged.emit(cell, cell, [Role.CheckStateRole])
            node = node.parent
        self.series_selection_changed.emit()
        return True

    # ---- helpers -------------------------------------------------------------------------------

    def _check_state(self, item: PatientNode | StudyNode | SeriesNode) -> Qt.CheckState:
        if isinstance(item, SeriesNode):
            return Qt.CheckState.Unchecked if item in self._excluded else Qt.CheckState.Checked
        series = _series_below(item)
        excluded = sum(1 for s in series if s in self._excluded)
        if excluded == 0:
            return Qt.CheckState.Checked
        return Qt.CheckState.Unchecked if excluded == len(series) else Qt.CheckState.PartiallyChecked

    def _changed_below(self, item: PatientNode | StudyNode | SeriesNode) -> None:
        if isinstance(item, SeriesNode):
            return
        n = self._count(item)
        if n:
            self.dataChanged.emit(self.createIndex(0, 0, item), self.createIndex(n - 1, 0, item), [Role.CheckStateRole])
        if isinstance(item, PatientNode):
            for study in item.studies[:n]:
                self._changed_below(study)

    def _refresh_counts(self, touched: list[SeriesNode]) -> None:
        nodes: dict[int, object] = {}
        for series in touched:
            node: object = series
            while node is not None and id(node) not in nodes:
                nodes[id(node)] = node
                node = node.parent  # type: ignore[attr-defined]
        last = len(COLUMNS) - 1
        for node in nodes.values():
            cell = self.index_of(node)
            self.dataChanged.emit(cell, cell.siblingAtColumn(last), [Role.DisplayRole, Role.ToolTipRole])

    def _sort(self, container: object) -> None:
        """Put one parent's children back in display order, moving the persistent indexes along."""
        # PySide6 emits only the argument-less overload from Python: a whole-model layout change.
        self.layoutAboutToBeChanged.emit()
        children = self.order.children(container)
        moved = [p for p in self.persistentIndexList() if p.internalPointer() is container]
        items = [children[p.row()] for p in moved]
        self.order.sort(container)
        if moved:
            rows = {id(item): row for row, item in enumerate(children)}
            targets = [self.createIndex(rows[id(i)], p.column(), container) for p, i in zip(moved, items, strict=True)]
            self.changePersistentIndexList(moved, targets)
        self.layoutChanged.emit()

    def _problems_index(self) -> QModelIndex:
        return self.createIndex(len(self.order.children(ROOT)), 0, ROOT)

    def _others_index(self) -> QModelIndex:
        return self.createIndex(len(self.order.children(ROOT)) + self.problems.shown, 0, ROOT)

    def _show_problems(self, fill) -> None:  # noqa: ANN001
        row = len(self.order.children(ROOT))
        self.beginInsertRows(QModelIndex(), row, row)
        self.problems.shown = True
        fill()
        self.endInsertRows()

    def _show_rejected(self) -> None:
        problems = self.problems
        new = [r for r in self._index.rejected[problems.seen :] if not self._is_other(r)]
        problems.seen = len(self._index.rejected)
        if not new:
            return
        if not problems.shown:
            self._show_problems(lambda: problems.rejected.extend(new))
        else:
            first = problems.count
            self.beginInsertRows(self._problems_index(), first, first + len(new) - 1)
            problems.rejected.extend(new)
            self.endInsertRows()

    def _is_other(self, rejected: Rejected) -> bool:
        """A rejected file that belongs to the other files (shown there, not under "Problems")."""
        path = os.path.normpath(rejected.path)
        return any(path == p or path.startswith(p + os.sep) for p in self._other_paths)

    def _filter_rejected(self) -> None:
        """After the other files changed: show under "Problems" only the rejected files that are not among them."""
        problems = self.problems
        wanted = [r for r in self._index.rejected[: problems.seen] if not self._is_other(r)]
        if wanted == problems.rejected:
            return
        offset = len(problems.findings)
        if problems.rejected:
            self.beginRemoveRows(self._problems_index(), offset, problems.count - 1)
            problems.rejected = []
            self.endRemoveRows()
        if not problems.count and problems.shown:
            row = self._problems_index().row()
            self.beginRemoveRows(QModelIndex(), row, row)
            problems.shown = False
            self.endRemoveRows()
        if wanted and not problems.shown:
            self._show_problems(lambda: problems.rejected.extend(wanted))
        elif wanted:
            self.beginInsertRows(self._problems_index(), offset, offset + len(wanted) - 1)
            problems.rejected = wanted
            self.endInsertRows()
        self._problems_changed()

    def _problems_changed(self) -> None:
        if self.problems.shown:
            cell = self._problems_index()
            self.dataChanged.emit(cell, cell.siblingAtColumn(len(COLUMNS) - 1), [Role.DisplayRole])


def _series_below(item: PatientNode | StudyNode | SeriesNode) -> list[SeriesNode]:
    if isinstance(item, SeriesNode):
        return [item]
    if isinstance(item, StudyNode):
        return list(item.series)
    return [s for study in item.studies for s in study.series]
