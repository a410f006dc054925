"""Why a file is not a usable DICOM instance: the exceptions the reader raises, and their reasons.

Reasons are plain words shown to users next to the path; they never contain header values.
"""

from __future__ import annotations

DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
DICOMDIR_REASON = "DICOMDIR (read, not uploaded)"
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"
TRUNCATED_HEADER = "truncated DICOM file: header ends early"
TRUNCATED_PIXELS = "truncated DICOM file: pixel data ends early"
SHORT_PIXELS = "truncated DICOM file: pixel data shorter than its image size (rows x columns x bits)"
NO_FIELDS = "DICOM file without any of the header fields an upload needs"


class NotDicom(Exception):
    """The file is not a usable DICOM instance; ``reason`` says why in plain words."""

    def __init__(self, reason: str, size: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.size = size


class IsDicomdir(NotDicom):
    """The file is a DICOMDIR: the scanner reads its references, it is never uploaded."""

    def __init__(self, size: int = 0) -> None:
        super().__init__(DICOMDIR_REASON, size)


class IsArchive(NotDicom):
    """The file is a zip, tar or compressed file: the scanner looks inside it."""

    def __init__(self, size: int = 0) -> None:
        super().__init__("archive", size)


def not_dicom_reason(head: bytes) -> str:
    """A plain-language guess at what a non-DICOM file is."""
    if head.startswith(b"%PDF"):
        return "not a DICOM file (PDF document)"
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        return "not a DICOM file (Windows thumbnail or Office file)"
    if head[4:8] == b"Bud1":
        return "not a DICOM file (macOS folder settings)"
    sample = head[:1024]
    if sample and b"\0" not in sample:
        try:
            sample.decode("utf-8")
            return "not a DICOM file (text)"
        except UnicodeDecodeError:
            pass
    return "not a DICOM file"
