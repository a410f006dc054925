"""A file's data set as a DICOM receiver can read it: where it starts, whether its bytes match the
transfer syntax its header declares, and a lossless re-encoding when they do not or when the receiver
wants another transfer syntax.

C-STORE sends a file's data set bytes as they are (never decoded: that is what makes it fast). Some
files in the wild cannot go as they are, and a receiver that meets them breaks off the association
or, as Orthanc does, stops answering until its own time-out:

* a data set of **odd length**. DICOM encodes every element to an even length, so a whole data set
  is even; the upper layer relies on it (PS3.8 9.3.5.1: PDV fragments are even, and Orthanc refuses
  "DIMSE: Odd Fragment Length"). A deflated data set is odd when the writer left out the one NUL byte
  PS3.5 A.5 asks for after the deflate stream: appending it changes nothing the receiver inflates.
  Otherwise some element has an odd length: pydicom reads the file and writes it again, padding each
  value as the standard says (text with a space, UIDs and binary values with a NUL);
* a data set whose elements are **implicit VR although the header says explicit** (or the reverse):
  the receiver would read garbage. pydicom finds the real encoding when it reads and writes the
  declared one. Likewise standard elements written as VR UN ("unknown"; Orthanc cannot find the
  UIDs and refuses the file): pydicom writes them with their dictionary VR;
* a transfer syntax the receiver does not accept: among the uncompressed little-endian ones (implicit,
  explicit, deflated) pydicom converts without touching a value (:data:`LOSSLESS`). Compressed pixel
  data, big endian and private syntaxes go as they are or not at all.

The checks look at a few bytes (the data set's length and its first element) so the ordinary file
pays nothing; pydicom is imported only for a file that needs it. Pure functions; any thread.
"""

from __future__ import annotations

import io
import struct

from xnat_uploader.core.dicom.reader import LONG_VRS, VALID_VRS
from xnat_uploader.core.dicom.rejects import DEFLATED_LE, EXPLICIT_BE, EXPLICIT_LE, IMPLICIT_LE

JPIP_DEFLATE = "1.2.840.10008.1.2.4.95"  # JPIP referenced, with a deflated data set like DEFLATED_LE
DEFLATED = frozenset({DEFLATED_LE, JPIP_DEFLATE})
# A file in the key's transfer syntax can be sent, unchanged in every value, in these others (by pydicom).
LOSSLESS: dict[str, tuple[str, ...]] = {
    EXPLICIT_LE: (IMPLICIT_LE,),
    IMPLICIT_LE: (EXPLICIT_LE,),
    DEFLATED_LE: (EXPLICIT_LE, IMPLICIT_LE),
}
ODD_LENGTH = "its data set has an odd length (an element of odd length), which DICOM does not allow"
WRONG_VR = "its elements are encoded {found} VR although its header declares {declared} VR"
ALL_UN = "its elements are encoded as 'unknown' (VR UN) although DICOM defines them"


class CannotSendError(Exception):
    """The file cannot be made into a data set the receiver can read; ``reason`` says why in plain words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def read_meta(data: bytes | memoryview) -> tuple[int, str, str]:
    """(dataset offset, MediaStorageSOPClassUID, TransferSyntaxUID) of a DICOM file's start.

    The offset is where the dataset begins, after the preamble and file meta group (0 when there is
    none; the UIDs are then ""). ``data`` may be only the file's first few KB: the offset is right
    whenever the meta group is complete in it.
    """
    view = memoryview(data)
    pos = 132 if bytes(view[128:132]) == b"DICM" else 0
    sop_class = ts = ""
    # File meta is always explicit VR little endian (PS3.10 7.1); walk it to its end.
    while pos + 8 <= len(view):
        group, element = struct.unpack_from("<HH", view, pos)
        if group != 0x0002:
            break
        if bytes(view[pos + 4 : pos + 6]) in LONG_VRS:
            (length,) = struct.unpack_from("<L", view, pos + 8)
            start = pos + 12
        else:
            (length,) = struct.unpack_from("<H", view, pos + 6)
            start = pos + 8
        if element in (0x0002, 0x0010):
            value = bytes(view[start : start + length]).decode("ascii", "replace").strip(" \0")
            sop_class, ts = (value, ts) if element == 0x0002 else (sop_class, value)
        pos = start + length
    return pos, sop_class, ts


def dataset_offset(data: bytes | memoryview) -> int:
    """Where the dataset starts in a DICOM file: after the preamble and file meta group (0 when absent)."""
    return read_meta(data)[0]


def is_explicit(transfer_syntax: str) -> bool | None:
    """Whether a standard transfer syntax encodes explicit VR; ``None`` for a private or deflated one."""
    if transfer_syntax == IMPLICIT_LE:
        return False
    if transfer_syntax in DEFLATED or not transfer_syntax.startswith("1.2.840.10008.1.2."):
        return None
    return True


def encoding_problem(dataset: bytes | memoryview, transfer_syntax: str) -> str | None:
    """Why ``dataset`` (a file's bytes after its meta group) cannot be sent as it is in ``transfer_syntax``.

    ``None`` when it can. Looks at its length and its first element only: O(1).
    """
    if len(dataset) % 2:
        return ODD_LENGTH
    explicit = is_explicit(transfer_syntax)
    if explicit is None or len(dataset) < 8:
        return None
    vr = bytes(dataset[4:6])
    looks_explicit = vr in VALID_VRS
    if explicit and not looks_explicit:
        return WRONG_VR.format(found="implicit", declared="explicit")
    group = struct.unpack_from(">H" if transfer_syntax == EXPLICIT_BE else "<H", dataset)[0]
    if explicit and vr == b"UN" and group % 2 == 0:  # a standard element written as UN: the first of many
        return ALL_UN
    if not explicit and looks_explicit:
        return WRONG_VR.format(found="explicit", declared="implicit")
    return None


def streamable(head: bytes, size: int, transfer_syntax: str) -> int | None:
    """Where the data set starts, when a file of ``size`` bytes whose first bytes are ``head`` can be sent as it is.

    The same checks as :func:`dataset_to_send` makes on a whole file, from its length and first element:
    ``None`` when the file needs re-writing (or ``head`` ends before its first data set element), so the
    caller reads it whole and lets :func:`dataset_to_send` fix it.
    """
    offset = read_meta(head)[0]
    first = min(8, size - offset)  # what encoding_problem looks at
    if first < 0 or offset + first > len(head) or (size - offset) % 2:
        return None
    return offset if encoding_problem(head[offset : offset + first], transfer_syntax) is None else None


def sendable(transfer_syntax: str) -> tuple[str, ...]:
    """The transfer syntaxes a file in ``transfer_syntax`` can be sent in, its own first."""
    return (transfer_syntax, *LOSSLESS.get(transfer_syntax, ()))


def dataset_to_send(
    data: bytes, transfer_syntax: str, send_as: str | None = None, patient_comments: str | None = None
) -> bytes | memoryview:
    """The data set bytes of the DICOM file ``data`` to send in ``send_as`` (default: its own ``transfer_syntax``).

    The file's own bytes (a view, no copy) when they can go as they are; otherwise a lossless
    re-encoding (see the module's docstring). ``patient_comments`` replaces PatientComments in the
    copy (routing for XNAT's receiver). Raises :class:`CannotSendError` when no sendable form exists.
    """
    send_as = send_as or transfer_syntax
    view = memoryview(data)[dataset_offset(data) :]
    problem = encoding_problem(view, transfer_syntax)
    if send_as == transfer_syntax and patient_comments is None:
        if problem is None:
            return view
        if problem == ODD_LENGTH and transfer_syntax in DEFLATED:
            return bytes(view) + b"\0"  # the pad byte PS3.5 A.5 asks for after the deflate stream
    if send_as != transfer_syntax and send_as not in LOSSLESS.get(transfer_syntax, ()):
        raise CannotSendError(f"it cannot be converted from {_name(transfer_syntax)} to {_name(send_as)}")
    out = _rewrite(data, transfer_syntax, send_as, patient_comments, problem)
    again = encoding_problem(out, send_as)
    if again is not None:
        raise CannotSendError(f"{again}, and re-writing it did not help")
    return out


def _rewrite(data: bytes, transfer_syntax: str, send_as: str, comments: str | None, problem: str | None) -> bytes:
    import pydicom  # only for the files that need it: the plain path never decodes a file
    from pydicom.uid import UID

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
        if "TransferSyntaxUID" not in ds.file_meta:  # a raw data set without file meta
            ds.file_meta.TransferSyntaxUID = UID(transfer_syntax)
        pixels = ds.get_item(0x7FE00010)  # raw (as read) or decoded, either way its value is the bytes read
        undefined = getattr(pixels, "length", 0) == 0xFFFFFFFF or getattr(pixels, "is_undefined_length", False)
        if pixels is not None and undefined and len(pixels.value or b"") % 2:
            # Compressed pixel data whose fragments are not even: padding would break its item structure.
            raise CannotSendError("its compressed pixel data has a fragment of odd length, which DICOM does not allow")
        for _ in ds.iterall():  # elements read as implicit VR get their VR (from the dictionary) to be written
            pass
        if comments is not None:
            # Replace, not append: an older "Project: X" in the comment would otherwise win.
            ds.PatientComments = comments
        ds.file_meta.TransferSyntaxUID = UID(send_as)
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=True)  # pixel data left as it was
    except CannotSendError:
        raise
    except Exception as exc:  # noqa: BLE001 - any pydicom failure means: this file cannot be re-written
        why = f" ({problem})" if problem else ""
        raise CannotSendError(f"it could not be re-written for sending{why}: {exc}") from None
    copy = out.getvalue()
    return copy[dataset_offset(copy) :]


def _name(uid: str) -> str:
    from pydicom.uid import UID  # names for a message only

    name = UID(uid).name
    return name if name and name != uid else uid
