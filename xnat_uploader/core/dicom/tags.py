"""The DICOM tags the scanner reads, as keys of one little-endian ``"<I"`` read of a tag.

A tag (gggg,eeee) is stored as group then element, each little-endian; read as one 32-bit
little-endian integer it is ``(eeee << 16) | gggg``. Comparing those keys saves a shift per element
in the reader's hot loop.
"""

from __future__ import annotations


def _key(group: int, elem: int) -> int:
    """Tags as read by one little-endian "<I": (elem << 16) | group. Saves a shift per element."""
    return (elem << 16) | group


K_TS = _key(0x0002, 0x0010)
K_MEDIA_CLASS = _key(0x0002, 0x0002)
K_PIXEL = _key(0x7FE0, 0x0010)
K_ITEM, K_ITEM_END, K_SEQ_END = _key(0xFFFE, 0xE000), _key(0xFFFE, 0xE00D), _key(0xFFFE, 0xE0DD)

K_CHARSET = _key(0x0008, 0x0005)
K_IMAGE_TYPE = _key(0x0008, 0x0008)
K_SOP_CLASS = _key(0x0008, 0x0016)
K_SOP_INSTANCE = _key(0x0008, 0x0018)
K_STUDY_DATE = _key(0x0008, 0x0020)
K_STUDY_TIME = _key(0x0008, 0x0030)
K_ACCESSION = _key(0x0008, 0x0050)
K_MODALITY = _key(0x0008, 0x0060)
K_STUDY_DESCRIPTION = _key(0x0008, 0x1030)
K_SERIES_DESCRIPTION = _key(0x0008, 0x103E)
K_PATIENT_NAME = _key(0x0010, 0x0010)
K_PATIENT_ID = _key(0x0010, 0x0020)
K_STUDY_UID = _key(0x0020, 0x000D)
K_SERIES_UID = _key(0x0020, 0x000E)
K_SERIES_NUMBER = _key(0x0020, 0x0011)
K_INSTANCE_NUMBER = _key(0x0020, 0x0013)
K_SAMPLES = _key(0x0028, 0x0002)
K_PHOTOMETRIC = _key(0x0028, 0x0004)
K_FRAMES = _key(0x0028, 0x0008)
K_ROWS = _key(0x0028, 0x0010)
K_COLUMNS = _key(0x0028, 0x0011)
K_BITS = _key(0x0028, 0x0100)
K_BURNED_IN = _key(0x0028, 0x0301)

# The tags we keep, with the VRs we decode them as (any other explicit VR goes to pydicom).
WANT: dict[int, bytes] = {
    K_CHARSET: b"CS",  # SpecificCharacterSet
    K_IMAGE_TYPE: b"CS",  # ImageType
    K_SOP_CLASS: b"UI",  # SOPClassUID
    K_SOP_INSTANCE: b"UI",  # SOPInstanceUID
    K_STUDY_DATE: b"DA",  # StudyDate
    K_STUDY_TIME: b"TM",  # StudyTime
    K_ACCESSION: b"SH",  # AccessionNumber
    K_MODALITY: b"CS",  # Modality
    K_STUDY_DESCRIPTION: b"LO",  # StudyDescription
    K_SERIES_DESCRIPTION: b"LO",  # SeriesDescription
    K_PATIENT_NAME: b"PN",  # PatientName
    K_PATIENT_ID: b"LO",  # PatientID
    K_STUDY_UID: b"UI",  # StudyInstanceUID
    K_SERIES_UID: b"UI",  # SeriesInstanceUID
    K_SERIES_NUMBER: b"IS",  # SeriesNumber
    K_INSTANCE_NUMBER: b"IS",  # InstanceNumber
    K_SAMPLES: b"US",  # SamplesPerPixel
    K_PHOTOMETRIC: b"CS",  # PhotometricInterpretation
    K_FRAMES: b"IS",  # NumberOfFrames
    K_ROWS: b"US",  # Rows
    K_COLUMNS: b"US",  # Columns
    K_BITS: b"US",  # BitsAllocated
    K_BURNED_IN: b"CS",  # BurnedInAnnotation
}
