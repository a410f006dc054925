"""The pydicom fallback of the header reader, for big endian, deflated and anything unusual.

pydicom reads the file (``stop_before_pixels``, only our tags); its values pass through the same
conversions as the fast reader's (:mod:`.values`), so both paths give identical records.

pydicom with ``force=True`` reads a cut file without complaint: a value longer than what is left is read
short, an element it skips is skipped past the end. The file object pydicom reads is watched for both
(:class:`WatchedFile`), and the pixel data's length is compared with what is left, so a truncated file is
refused here with the fast reader's reasons.

Any thread or process may call it.
"""

from __future__ import annotations

import struct
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
    TRUNCATED_HEADER,
    TRUNCATED_PIXELS,
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


_PREAMBLE = 132  # pydicom reads 128 + 4 bytes first, whatever the file: a short read there is not a cut
_UNDEFINED = 0xFFFFFFFF
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"})


class RanPastEnd(NotDicom):
    """pydicom read past the end of bytes that were only a part of the file (see :mod:`.deflated`)."""

    def __init__(self, size: int) -> None:
        super().__init__(TRUNCATED_HEADER, size)


class WatchedFile:
    """A file object as pydicom sees it, noting a read cut short or a seek past the end (a truncated file).

    A read never asks for more than what is left: a damaged length (4 GB, say) would otherwise make the
    buffered reader allocate that much before finding the file shorter.
    """

    def __init__(self, fileobj: BinaryIO, size: int) -> None:
        self._f = fileobj
        self.size = size
        self.past_end = False

    def read(self, n: int = -1) -> bytes:
        start = self._f.tell()
        left = max(0, self.size - start)
        data = self._f.read(left if n is None or n < 0 or n > left else n)
        if n is not None and n >= 0 and len(data) < n and _PREAMBLE <= start < self.size:
            self.past_end = True
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        pos = self._f.seek(offset, whence)
        if pos > self.size:
            self.past_end = True
        return pos

    def tell(self) -> int:
        return self._f.tell()


def read_with_pydicom(
    fileobj: BinaryIO, size: int, path: str, member: str, *,
    transfer_syntax: str = "", complete: bool = True, stream_size: int | None = None,
) -> InstanceRecord:  # fmt: skip
    """The fallback: pydicom reads the file; values go through the same conversions as ours.

    ``fileobj`` holds ``stream_size`` bytes (default ``size``, the file's size given in the record and the
    reasons). ``transfer_syntax`` names the file's syntax when ``fileobj`` is its inflated dataset without the
    file meta (:mod:`.deflated`); ``complete`` False means those bytes are only the dataset's beginning:
    running past them raises :class:`RanPastEnd` instead of calling the file truncated.
    """
    watched = WatchedFile(fileobj, size if stream_size is None else stream_size)
    try:
        with v.quiet_pydicom():
            ds = dcmread(watched, stop_before_pixels=True, specific_tags=PYDICOM_TAGS, force=True)  # type: ignore[arg-type]
            if not complete and (watched.past_end or watched.tell() >= watched.size):
                raise RanPastEnd(size)  # stopped by the end of what was inflated, not by the pixel data
            if watched.past_end:
                raise NotDicom(TRUNCATED_HEADER, size)
            if complete:
                _check_pixels(watched, ds, size)
            meta = getattr(ds, "file_meta", None)
            if meta is not None and v.as_text(meta.get("MediaStorageSOPClassUID")) == DICOMDIR_SOP_CLASS:
                raise IsDicomdir(size)
            ts = transfer_syntax or (v.as_text(meta.get("TransferSyntaxUID")) if meta is not None else "")
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


def _check_pixels(watched: WatchedFile, ds: object, size: int) -> None:
    """pydicom stopped at the pixel data's tag (or the end): its declared length must fit in what is left."""
    pos = watched.tell()
    head = watched.read(12)
    if len(head) < 8:
        return
    little = getattr(ds, "original_encoding", (False, True))[1]
    order = "<" if little else ">"
    # As pydicom's _is_implicit_vr: the bytes decide (pydicom reads on when the syntax and the data disagree).
    implicit = not (0x40 < head[4] < 0x5B and 0x40 < head[5] < 0x5B)
    group, element = struct.unpack_from(order + "HH", head)
    if (group, element) != (0x7FE0, 0x0010):
        return
    if implicit:
        length, hdr = struct.unpack_from(order + "L", head, 4)[0], 8
    elif head[4:6] in _LONG_VRS:
        if len(head) < 12:
            raise NotDicom(TRUNCATED_PIXELS, size)
        length, hdr = struct.unpack_from(order + "L", head, 8)[0], 12
    else:
        length, hdr = struct.unpack_from(order + "H", head, 6)[0], 8
    if length != _UNDEFINED and pos + hdr + length > watched.size:
        raise NotDicom(TRUNCATED_PIXELS, size)
