"""Plain records that flow from the scanner to the index.

Records are slotted and immutable; repeated strings are interned by the scanner so that
100,000 instances stay small. They carry no pydicom objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True, frozen=True)
class InstanceRecord:
    """The header fields of one DICOM instance that the index, the checks and the uploads need.

    ``path`` is the file on disk. For a member of a zip/tar archive, ``path`` is the archive and
    ``member`` the name inside it; otherwise ``member`` is empty.
    Text values are decoded with the file's SpecificCharacterSet and stripped of padding;
    missing values are empty strings (``instance_number`` and ``series_number`` are ``None``).
    """

    path: str
    size: int
    patient_id: str
    patient_name: str
    study_uid: str
    study_date: str
    study_time: str
    study_description: str
    accession_number: str
    series_uid: str
    series_number: int | None
    series_description: str
    modality: str
    sop_class_uid: str
    sop_instance_uid: str
    instance_number: int | None
    transfer_syntax: str
    image_type: str = ""
    burned_in_annotation: str = ""
    member: str = ""

    @property
    def display_path(self) -> str:
        """The path a user recognises: ``archive.zip!member`` for archive members."""
        return f"{self.path}!{self.member}" if self.member else self.path


@dataclass(slots=True, frozen=True)
class Rejected:
    """A file (or folder) that is not a usable DICOM instance, with the reason in plain words."""

    path: str
    reason: str
    member: str = ""

    @property
    def display_path(self) -> str:
        return f"{self.path}!{self.member}" if self.member else self.path


@dataclass(slots=True)
class ScanProgress:
    """A snapshot of a running scan."""

    files_seen: int = 0
    bytes_seen: int = 0
    instances: int = 0
    rejected: int = 0
    elapsed: float = 0.0
    done: bool = False

    @property
    def files_per_second(self) -> float:
        return self.files_seen / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def bytes_per_second(self) -> float:
        return self.bytes_seen / self.elapsed if self.elapsed > 0 else 0.0


@dataclass(slots=True)
class ScanBatch:
    """What a scan yields: the instances and rejected files found since the last batch."""

    instances: list[InstanceRecord] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    progress: ScanProgress = field(default_factory=ScanProgress)
