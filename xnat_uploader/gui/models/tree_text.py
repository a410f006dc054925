"""What the DICOM tree shows in each cell: text, tooltips and icons per kind of row.

Kept apart from :mod:`.dicom_tree_model` so the model holds only the row bookkeeping.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication, QStyle

from xnat_uploader.core.dicom.checks import Finding, Severity
from xnat_uploader.core.dicom.index import PatientNode, SeriesNode, StudyNode
from xnat_uploader.core.dicom.records import InstanceRecord, Rejected
from xnat_uploader.core.exam import ExamItem

# Header labels (translated by the model, which passes them through tr()).
COLUMNS = ("Name", "Images", "Size", "Date", "Modality", "UID")
NAME, COUNT, SIZE, DATE, MODALITY, UID = range(len(COLUMNS))

Tr = Callable[[str], str]


@dataclass(eq=False)
class FindingItem:
    """One pre-flight finding as a row under "Problems"; its files are its children."""

    finding: Finding
    row: int


@dataclass(eq=False)
class Problems:
    """The "Problems" node: findings first, then the index's rejected files (of the first ``seen`` announced,
    those that are not among the other files)."""

    findings: list[FindingItem] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    seen: int = 0
    shown: bool = False

    @property
    def count(self) -> int:
        return len(self.findings) + len(self.rejected)


@dataclass(eq=False)
class OtherFiles:
    """The "Other files (not DICOM)" node: the top-level non-DICOM folders and files of dropped folders."""

    items: list[ExamItem] = field(default_factory=list)

    @property
    def shown(self) -> bool:
        return bool(self.items)


def human_bytes(n: float) -> str:
    """``812 MB``-style sizes (powers of 1000, as file managers show them)."""
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n:,.1f} TB"


def dicom_date(value: str) -> str:
    """``YYYYMMDD`` as ``YYYY-MM-DD`` (anything else as it is)."""
    return f"{value[:4]}-{value[4:6]}-{value[6:8]}" if len(value) == 8 and value.isdigit() else value


def short_message(finding: Finding) -> str:
    """The first sentence of a finding's message (the whole message is the tooltip)."""
    head, sep, _ = finding.message.partition(". ")
    return head + "." if sep else head


def cell_text(item: object, column: int, problems: Problems, tr: Tr) -> str | None:
    if isinstance(item, InstanceRecord):
        if column == NAME:
            number = item.instance_number if item.instance_number is not None else "?"
            return f"{number}  {os.path.basename(item.member or item.path)}"
        return {SIZE: human_bytes(item.size), UID: item.sop_instance_uid}.get(column)
    if isinstance(item, SeriesNode):
        if column == NAME:
            number = item.number if item.number is not None else "-"
            return f"{number}  {item.description or tr('(no description)')}"
        return _counted(item, column) or {MODALITY: item.modality, UID: item.uid}.get(column)
    if isinstance(item, StudyNode):
        if column == NAME:
            return item.description or tr("(no description)")
        values = {DATE: dicom_date(item.date), MODALITY: "/".join(item.modalities), UID: item.uid}
        return _counted(item, column) or values.get(column)
    if isinstance(item, PatientNode):
        if column == NAME:
            return f"{item.patient_name or tr('(no name)')}  {item.patient_id}".rstrip()
        first, last = item.dates
        dates = dicom_date(first) if first == last else f"{dicom_date(first)} \u2013 {dicom_date(last)}"
        modalities = "/".join(sorted({m for s in item.studies for m in s.modalities}))
        return _counted(item, column) or {DATE: dates, MODALITY: modalities}.get(column)
    if isinstance(item, Problems):
        return (
            tr("Problems ({})").format(item.count)
            if column == NAME
            else (f"{item.count:,}" if column == COUNT else None)
        )
    if isinstance(item, OtherFiles):
        return tr("Other files (not DICOM) ({})").format(len(item.items)) if column == NAME else _others(item, column)
    if isinstance(item, ExamItem):
        if column == NAME:
            name = os.path.basename(os.path.normpath(item.path)) or item.path
            return name + "/" if item.is_folder else name
        return {COUNT: f"{item.files:,}", SIZE: human_bytes(item.bytes)}.get(column)
    if isinstance(item, FindingItem):
        finding = item.finding
        values = {NAME: short_message(finding), COUNT: f"{len(finding.paths):,}"}
        values[UID] = finding.series_uid or finding.study_uid
        return values.get(column)
    if isinstance(item, Rejected):
        return f"{os.path.basename(item.member or item.path) or item.path}: {item.reason}" if column == NAME else None
    if isinstance(item, str):  # a file of a finding
        return item if column == NAME else None
    return None


def _others(node: OtherFiles, column: int) -> str | None:
    if column == COUNT:
        return f"{sum(i.files for i in node.items):,}"
    if column == SIZE:
        return human_bytes(sum(i.bytes for i in node.items))
    return None


def _counted(node: PatientNode | StudyNode | SeriesNode, column: int) -> str | None:
    if column == COUNT:
        return f"{node.instance_count:,}"
    if column == SIZE:
        return human_bytes(node.bytes)
    return None


def tooltip_text(item: object, tr: Tr) -> str | None:
    if isinstance(item, PatientNode):
        return tr("{} studies, {} series, {} images").format(
            len(item.studies), item.series_count, f"{item.instance_count:,}"
        )
    if isinstance(item, StudyNode):
        text = tr("{} series, {} images").format(len(item.series), f"{item.instance_count:,}")
        return text + (tr("\nAccession number: {}").format(item.accession) if item.accession else "")
    if isinstance(item, SeriesNode):
        return tr("{} images").format(f"{item.instance_count:,}")
    if isinstance(item, InstanceRecord):
        return item.display_path
    if isinstance(item, FindingItem):
        return item.finding.message
    if isinstance(item, Rejected):
        return f"{item.display_path}\n{item.reason}"
    if isinstance(item, str):
        return item
    if isinstance(item, Problems):
        return tr("Files that were not used, and what the pre-flight checks found")
    if isinstance(item, OtherFiles):
        return tr("Folders and files beside the DICOM: the form can attach them to the session as resources")
    if isinstance(item, ExamItem):
        kind = tr("Folder of {} files").format(f"{item.files:,}") if item.is_folder else tr("File")
        return tr("{}\n{}; can be attached as resource {}").format(item.path, kind, item.resource)
    return None


_ICONS: dict[str, QIcon] = {}


def icon_for(item: object) -> QIcon | None:
    """A severity icon for problem rows, a folder or file icon for other files; nothing for the DICOM rows."""
    if isinstance(item, OtherFiles | ExamItem):
        folder = isinstance(item, OtherFiles) or item.is_folder
        key = "folder" if folder else "file"
        if key not in _ICONS:
            pixmap = QStyle.StandardPixmap.SP_DirIcon if folder else QStyle.StandardPixmap.SP_FileIcon
            _ICONS[key] = QApplication.style().standardIcon(pixmap)
        return _ICONS[key]
    if isinstance(item, FindingItem):
        key = item.finding.severity.value
    elif isinstance(item, Problems | Rejected):
        key = Severity.WARNING.value
    else:
        return None
    if key not in _ICONS:
        pixmap = {
            Severity.ERROR.value: QStyle.StandardPixmap.SP_MessageBoxCritical,
            Severity.WARNING.value: QStyle.StandardPixmap.SP_MessageBoxWarning,
            Severity.INFO.value: QStyle.StandardPixmap.SP_MessageBoxInformation,
        }[key]
        _ICONS[key] = QApplication.style().standardIcon(pixmap)
    return _ICONS[key]
