"""The pydicom fallback of the header reader, for big endian, deflated and anything unusual.

pydicom reads the file (``stop_before_pixels``, only our tags); its values pass through the same
conversions as the fast reader's (:mod:`.values`), so both paths give identical records.
Any thread or process may call it.
"""

from __future__ import annotations

import sys
from typing import BinaryIO

from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from pydicom.tag import Tag

from xnat_uploader.core.dicom import values as v
from xnat_uploader.core.dicom.records import InstanceRecord
from xnat_uploader.core.dicom.rejects import (
    DICOMDIR_SOP_CLASS,
    EXPLICIT_BE,
    EXPLICIT_LE,
    IMPLICIT_LE,
    NO_FIELDS,
    IsDicomdir,
    NotDicom,
)

_IDENTIFYING_KEYWORDS = frozenset(
    {
        *("ImageType", "SOPClassUID", "SOPInstanceUID", "StudyDate", "StudyTime", "AccessionNumber", "Modality"),
        *("StudyDescription", "SeriesDescription", "PatientName", "PatientID", "StudyInstanceUID"),
        *("SeriesInstanceUID", "SeriesNumber", "InstanceNumber"),
    }
)
# For pydicom's specific_tags (pydicom adds SpecificCharacterSet itself).
PYDICOM_TAGS = [Tag(keyword) for keyword in sorted(_IDENTIFYING_KEYWORDS)] + [
    Tag(keyword) for keyword in ("BurnedInAnnotation", "SamplesPerPixel", "Rows", "Columns", "BitsAllocated")
]


def read_with_pydicom(fileobj: BinaryIO, size: int, path: str, member: str) -> InstanceRecord:
    """The fallback: pydicom reads the file; values go through the same conversions as ours."""
    try:
        with v.quiet_pydicom():
            ds = dcmread(fileobj, stop_before_pixels=True, specific_tags=PYDICOM_TAGS, force=True)
            meta = getattr(ds, "file_meta", None)
            if meta is not None and v.as_text(meta.get("MediaStorageSOPClassUID")) == DICOMDIR_SOP_CLASS:
                raise IsDicomdir(size)
            ts = v.as_text(meta.get("TransferSyntaxUID")) if meta is not None else ""
            if not ts:
                implicit_vr, little_endian = ds.original_encoding
                ts = IMPLICIT_LE if implicit_vr else (EXPLICIT_LE if little_endian else EXPLICIT_BE)
            if not any(k in _IDENTIFYING_KEYWORDS for k in ds.dir()):
                raise NotDicom(NO_FIELDS, size)

            def text(keyword: str, intern: bool = True) -> str:
                try:
                    value = v.as_text(ds.get(keyword))
                    return sys.intern(value) if intern else value
                except (ValueError, TypeError, UnicodeError, LookupError, NotImplementedError):
                    return ""  # pydicom cannot convert it either

            def number(keyword: str) -> int | None:
                try:
                    return v.as_int(ds.get(keyword))
                except (ValueError, TypeError, OverflowError, NotImplementedError):
                    return None

            return InstanceRecord(
                path=path,
                size=size,
                patient_id=text("PatientID"),
                patient_name=text("PatientName"),
                study_uid=text("StudyInstanceUID"),
                study_date=text("StudyDate"),
                study_time=text("StudyTime"),
                study_description=text("StudyDescription"),
                accession_number=text("AccessionNumber"),
                series_uid=text("SeriesInstanceUID"),
                series_number=number("SeriesNumber"),
                series_description=text("SeriesDescription"),
                modality=text("Modality"),
                sop_class_uid=text("SOPClassUID"),
                sop_instance_uid=text("SOPInstanceUID", intern=False),  # unique: nothing to share
                instance_number=number("InstanceNumber"),
                transfer_syntax=sys.intern(ts),
                image_type=text("ImageType"),
                burned_in_annotation=text("BurnedInAnnotation"),
                member=member,
            )
    except NotDicom:
        raise
    except InvalidDicomError as exc:
        raise NotDicom("not a DICOM file", size) from exc
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types on broken files; none may stop a scan
        raise NotDicom(f"unreadable DICOM header ({type(exc).__name__})", size) from exc
