"""Reading the DICOM header fields the sandbox routes by, and XNAT's default routing (xnat-api.md 10.2).

Uses pydicom with ``stop_before_pixels`` and only the tags needed. (When the scanner's own header
reader in ``core/dicom`` is ready it could replace this; the sandbox must stay independent of the
client code it tests, so pydicom is the safer judge anyway.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

_TAGS = [
    "SOPClassUID",
    "SOPInstanceUID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SeriesNumber",
    "SeriesDescription",
    "Modality",
    "StudyDate",
    "StudyTime",
    "StudyDescription",
    "AccessionNumber",
    "PatientName",
    "PatientID",
    "PatientComments",
    "StudyComments",
    "AdditionalPatientHistory",
]
# Fields searched for "Key: value" assignments, in XNAT's order.
_COMMENT_FIELDS = ("PatientComments", "StudyComments", "AdditionalPatientHistory")


class NotDicom(Exception):
    """The file is not a readable DICOM object (XNAT: ``unable to read DICOM object <name>``)."""


@dataclass
class DicomInfo:
    sop_class: str
    sop_uid: str
    study_uid: str
    series_uid: str
    series_number: str
    series_description: str
    modality: str
    study_date: str
    study_time: str
    study_description: str
    accession: str
    patient_name: str
    patient_id: str
    comments: tuple[str, ...]

    @property
    def scan_date_sql(self) -> str:
        """StudyDate + StudyTime as an SQL timestamp text (the prearchive's ``scan_date``)."""
        d = self.study_date
        if len(d) != 8 or not d.isdigit():
            return ""
        t = (self.study_time.split(".")[0] + "000000")[:6]
        return f"{d[:4]}-{d[4:6]}-{d[6:]} {t[:2]}:{t[2:4]}:{t[4:6]}.0"

    def assignment(self, key: str) -> str | None:
        """``Key: value`` from PatientComments, StudyComments or AdditionalPatientHistory."""
        for text in self.comments:
            value = extract_assignment(text, key)
            if value:
                return value
        return None


def extract_assignment(text: str, key: str) -> str | None:
    """XNAT's ContainedAssignmentExtractor: key at start or after whitespace/``,``/``;``, value
    ``[A-Za-z0-9_-]*`` followed by whitespace/``,``/``;`` or the end."""
    m = re.search(rf"(?:^|[\s,;]){re.escape(key)}\s*:\s*([A-Za-z0-9_\-]*)(?=$|[\s,;])", text, re.IGNORECASE)
    return m.group(1) if m and m.group(1) else None


def _text(ds: pydicom.Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    if value is None:
        return ""
    return str(value).strip()


def read_header(path: Path, name: str | None = None) -> DicomInfo:
    """The routing fields of one file; raises :class:`NotDicom` with XNAT's message."""
    label = name or path.name
    try:
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_TAGS)
        except InvalidDicomError:
            # No preamble: accept it only if it really parses as a dataset with UIDs (raw DICOM).
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_TAGS, force=True)
            if "SOPInstanceUID" not in ds and "StudyInstanceUID" not in ds:
                raise NotDicom(f"unable to read DICOM object {label}") from None
        sop_class = _text(ds, "SOPClassUID")
        sop_uid = _text(ds, "SOPInstanceUID")
    except NotDicom:
        raise
    except Exception as exc:  # noqa: BLE001 - pydicom raises many kinds of errors on junk
        raise NotDicom(f"unable to read DICOM object {label}") from exc
    if not sop_class:
        raise NotDicom(f"object {label} contains no SOP Class UID")
    if not sop_uid:
        raise NotDicom(f"object {label} contains no SOP Instance UID")
    try:
        series_number = str(int(ds.get("SeriesNumber"))) if ds.get("SeriesNumber") not in (None, "") else ""
    except (TypeError, ValueError):
        series_number = ""
    return DicomInfo(
        sop_class=sop_class,
        sop_uid=sop_uid,
        study_uid=_text(ds, "StudyInstanceUID"),
        series_uid=_text(ds, "SeriesInstanceUID") or f"{_text(ds, 'StudyInstanceUID')}.0",
        series_number=series_number,
        series_description=_text(ds, "SeriesDescription"),
        modality=_text(ds, "Modality"),
        study_date=_text(ds, "StudyDate"),
        study_time=_text(ds, "StudyTime"),
        study_description=_text(ds, "StudyDescription"),
        accession=_text(ds, "AccessionNumber"),
        patient_name=_text(ds, "PatientName"),
        patient_id=_text(ds, "PatientID"),
        comments=tuple(_text(ds, f) for f in _COMMENT_FIELDS if _text(ds, f)),
    )
