"""Display order for the DICOM tree: the index keeps children in arrival order; the tree shows them sorted.

Per container (the root, a patient, a study, a series) one list of its children as the model has
announced them, in display order, plus the display row of every patient, study and series node (the
model's ``parent()`` needs it). Instances get no per-row entry: a series' list holds the index's own
records.
"""

from __future__ import annotations

from collections.abc import Sequence

from xnat_uploader.core.dicom.index import PatientNode, SeriesNode, StudyNode
from xnat_uploader.core.dicom.records import InstanceRecord


def sort_key(item: object) -> tuple:
    """Patients by name then ID, studies by date and time, series by number, instances by number."""
    if isinstance(item, InstanceRecord):
        return (item.instance_number is None, item.instance_number or 0, item.path, item.member)
    if isinstance(item, SeriesNode):
        return (item.number is None, item.number or 0, item.description, item.uid)
    if isinstance(item, StudyNode):
        return (item.date, item.time, item.uid)
    if isinstance(item, PatientNode):
        return (item.patient_name.upper(), item.patient_id)
    return ()


class DisplayOrder:
    """Children in display order per container, and display rows of nodes. GUI thread only."""

    def __init__(self) -> None:
        self._lists: dict[int, list] = {}
        self._rows: dict[int, int] = {}

    def children(self, container: object) -> list:
        return self._lists.get(id(container), [])

    def row(self, node: object) -> int:
        return self._rows[id(node)]

    def snapshot(self, container: object, live: Sequence) -> None:
        """Take a container's current children, sorted (for a node new to the model)."""
        items = sorted(live, key=sort_key)
        self._lists[id(container)] = items
        self._number(items, 0)

    def append(self, container: object, items: Sequence) -> bool:
        """Append announced children at the end; returns whether the list is still in display order."""
        current = self._lists.setdefault(id(container), [])
        keys = [sort_key(x) for x in items]
        in_order = all(a <= b for a, b in zip(keys, keys[1:], strict=False))
        if current and keys and sort_key(current[-1]) > keys[0]:
            in_order = False
        start = len(current)
        current.extend(items)
        self._number(current, start)
        return in_order

    def sort(self, container: object) -> None:
        items = self._lists.get(id(container), [])
        items.sort(key=sort_key)
        self._number(items, 0)

    def _number(self, items: list, start: int) -> None:
        if items and not isinstance(items[0], InstanceRecord):
            rows = self._rows
            for row in range(start, len(items)):
                rows[id(items[row])] = row
