"""Reading the DICOM header fields the sandbox routes by, and XNAT's default routing (xnat-api.md 10.2).

pydicom (``stop_before_pixels``, only the tags needed) is the judge, and costs ~0.5 ms a file. Most
uploads are plain files whose answer the scanner's fast reader (:mod:`xnat_uploader.core.dicom.reader`,
~0.04 ms) gives as well, so :func:`read_header` asks it first, but only where its answer is certainly
pydicom's: a Part-10 file (preamble and ``DICM``) whose pixel data element is found in the first
64 KiB and ends the file, with none of the routing comment tags' bytes before it (the fast reader
does not read comments), and no value with a backslash (pydicom makes a list of those). Everything
else, every error included, is pydicom's, so answers and messages are unchanged.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

from xnat_uploader.core.dicom import reader

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
# Their tags as stored (group, element little-endian): (0010,4000), (0032,4000), (0010,21B0).
_COMMENT_TAGS = (b"\x10\x00\x00\x40", b"\x32\x00\x00\x40", b"\x10\x00\xb0\x21")
_PIXEL_TAG = b"\xe0\x7f\x10\x00"  # (7FE0,0010)
_SEQUENCE_END = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
_HEAD = 65536
_U32 = struct.Struct("<L")


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
    return _read_fast(path) or _read_pydicom(path, name or path.name)


def _read_fast(path: Path) -> DicomInfo | None:
    """The fast reader's answer where it is certainly pydicom's (see the module notes), else None."""
    try:
        with open(path, "rb", buffering=0) as f:
            head = f.read(_HEAD)
            size = os.fstat(f.fileno()).st_size
            tail = os.pread(f.fileno(), 8, size - 8) if size >= 8 else b""
        if head[128:132] != b"DICM":
            return None
        pixels = _pixel_data_at(head, tail, size)
        if pixels < 0 or any(head.find(tag, 132, pixels) >= 0 for tag in _COMMENT_TAGS):
            return None
        rec = reader.read_file(str(path))
    except (reader.NotDicom, OSError):
        return None  # pydicom decides, with its own message
    text = {
        "sop_class": rec.sop_class_uid,
        "sop_uid": rec.sop_instance_uid,
        "study_uid": rec.study_uid,
        "series_uid": rec.series_uid,
        "series_description": rec.series_description,
        "modality": rec.modality,
        "study_date": rec.study_date,
        "study_time": rec.study_time,
        "study_description": rec.study_description,
        "accession": rec.accession_number,
        "patient_name": rec.patient_name,
        "patient_id": rec.patient_id,
    }
    if not rec.sop_class_uid or not rec.sop_instance_uid or any("\\" in value for value in text.values()):
        return None
    info = DicomInfo(**{k: value.strip() for k, value in text.items()}, series_number="", comments=())
    info.series_uid = info.series_uid or f"{info.study_uid}.0"
    info.series_number = "" if rec.series_number is None else str(rec.series_number)
    return info


def _pixel_data_at(head: bytes, tail: bytes, size: int) -> int:
    """Offset of the top-level pixel data element in ``head``, or -1 when not certain.

    Certain means its length (explicit or implicit VR) ends exactly at the end of the file, or an
    encapsulated one (undefined length) when the file ends with the sequence delimiter.
    """
    pos = head.find(_PIXEL_TAG, 132)
    while 0 <= pos <= len(head) - 12:
        explicit = head[pos + 4 : pos + 8] in (b"OB\0\0", b"OW\0\0")
        length = _U32.unpack_from(head, pos + 8 if explicit else pos + 4)[0]
        if explicit and length == 0xFFFFFFFF:
            if tail == _SEQUENCE_END:
                return pos
        elif pos + (12 if explicit else 8) + length == size:
            return pos
        pos = head.find(_PIXEL_TAG, pos + 1)
    return -1


def _read_pydicom(path: Path, label: str) -> DicomInfo:
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
