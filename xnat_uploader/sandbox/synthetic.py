"""Synthetic DICOM corpora: realistic-looking studies written by our own code, no patient data.

Used by the demo mode, the tests and the benchmarks. Every name, ID and UID is made up; UIDs are
derived from a fixed root plus a counter so that corpora are reproducible for a given seed.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
)

# A UID root for synthetic data only (2.25 is the UUID-derived arc; the digits below are ours).
UID_ROOT = "2.25.1789320451"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"

_FIRST = ["Jane", "John", "Ada", "Alan", "Grace", "Linus", "Edsger", "Barbara", "Ken", "Margaret"]
_LAST = ["Doe", "Roe", "Lovelace", "Turing", "Hopper", "Torvalds", "Dijkstra", "Liskov", "Thompson", "Hamilton"]
_MR_SERIES = ["Localizer", "T1 MPRAGE", "T2 FLAIR", "DWI", "BOLD rest", "Field map"]
_CT_SERIES = ["Scout", "Head 5mm", "Head 1mm bone", "Angio"]


@dataclass
class SeriesSpec:
    uid: str
    number: int
    description: str
    modality: str
    sop_class: str
    instances: int
    transfer_syntax: str = ExplicitVRLittleEndian


@dataclass
class StudySpec:
    uid: str
    date: str
    time: str
    description: str
    accession: str
    series: list[SeriesSpec] = field(default_factory=list)


@dataclass
class PatientSpec:
    patient_id: str
    name: str
    studies: list[StudySpec] = field(default_factory=list)


@dataclass
class WrittenFile:
    """What was written, so tests can compare the scanner's results with the truth."""

    path: Path
    patient_id: str
    study_uid: str
    series_uid: str
    sop_instance_uid: str
    size: int


class UidMaker:
    """Reproducible, unique UIDs under :data:`UID_ROOT`."""

    def __init__(self, seed: int = 0) -> None:
        self._prefix = f"{UID_ROOT}.{seed}"
        self._n = 0

    def __call__(self) -> str:
        self._n += 1
        return f"{self._prefix}.{self._n}"


def plan_corpus(
    patients: int = 2,
    studies_per_patient: int = 1,
    series_per_study: int = 3,
    instances_per_series: int = 5,
    seed: int = 0,
    modality: str | None = None,
) -> list[PatientSpec]:
    """Describe a corpus: patients > studies > series, alternating MR and CT unless ``modality`` is given."""
    rng = random.Random(seed)
    uid = UidMaker(seed)
    out: list[PatientSpec] = []
    for p in range(patients):
        patient = PatientSpec(
            patient_id=f"SYN{seed:02d}{p + 1:04d}",
            name=f"{rng.choice(_LAST)}^{rng.choice(_FIRST)}",
        )
        for s in range(studies_per_patient):
            mod = modality or ("MR" if (p + s) % 2 == 0 else "CT")
            study = StudySpec(
                uid=uid(),
                date=f"2024{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}",
                time=f"{rng.randint(7, 19):02d}{rng.randint(0, 59):02d}{rng.randint(0, 59):02d}",
                description="BRAIN MR" if mod == "MR" else "HEAD CT",
                accession=f"ACC{seed:02d}{p:03d}{s:03d}",
            )
            names = _MR_SERIES if mod == "MR" else _CT_SERIES
            for k in range(series_per_study):
                study.series.append(
                    SeriesSpec(
                        uid=uid(),
                        number=k + 1,
                        description=names[k % len(names)],
                        modality=mod,
                        sop_class=MR_IMAGE if mod == "MR" else CT_IMAGE,
                        instances=instances_per_series,
                        # Alternate explicit and implicit VR so both are always covered.
                        transfer_syntax=ExplicitVRLittleEndian if k % 2 == 0 else ImplicitVRLittleEndian,
                    )
                )
            patient.studies.append(study)
        out.append(patient)
    return out


def make_dataset(
    patient: PatientSpec,
    study: StudySpec,
    series: SeriesSpec,
    sop_instance_uid: str,
    instance_number: int,
    rows: int = 64,
    columns: int = 64,
) -> Dataset:
    """One instance with realistic header fields and 16-bit (or compressed) pixel data."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = series.sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = series.transfer_syntax
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "XNATUPL_SYNTH"

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M" if series.modality == "MR" else "AXIAL"]
    ds.SOPClassUID = series.sop_class
    ds.SOPInstanceUID = sop_instance_uid
    ds.StudyDate = study.date
    ds.SeriesDate = study.date
    ds.StudyTime = study.time
    ds.AccessionNumber = study.accession
    ds.Modality = series.modality
    ds.Manufacturer = "SYNTHETIC"
    ds.InstitutionName = "Synthetic Imaging Centre"
    ds.StudyDescription = study.description
    ds.SeriesDescription = series.description
    ds.PatientName = patient.name
    ds.PatientID = patient.patient_id
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.SliceThickness = "1.0"
    ds.StudyInstanceUID = study.uid
    ds.SeriesInstanceUID = series.uid
    ds.StudyID = "1"
    ds.SeriesNumber = series.number
    ds.InstanceNumber = instance_number
    ds.ImagePositionPatient = [0.0, 0.0, float(instance_number)]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.FrameOfReferenceUID = series.uid + ".1"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = columns
    ds.PixelSpacing = [1.0, 1.0]
    if series.transfer_syntax == JPEGBaseline8Bit:
        ds.BitsAllocated = 8
        ds.BitsStored = 8
        ds.HighBit = 7
        ds.PixelRepresentation = 0
        # Not a decodable JPEG: scanning and uploading never decode pixels.
        ds.PixelData = encapsulate([b"\xff\xd8" + bytes(rows * columns // 4) + b"\xff\xd9"])
        ds["PixelData"].VR = "OB"
    else:
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelRepresentation = 0
        ds.PixelData = _pixels(rows, columns, instance_number)
        ds["PixelData"].VR = "OW"
    return ds


def _pixels(rows: int, columns: int, seed: int) -> bytes:
    row = b"".join(((c * 37 + seed * 11) % 4096).to_bytes(2, "little") for c in range(columns))
    return row * rows


def write_dataset(ds: Dataset, path: Path, preamble: bool = True) -> int:
    """Write ``ds`` as a DICOM file (Part 10 with preamble, or raw without). Returns the size."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ts = ds.file_meta.TransferSyntaxUID
    ds.preamble = b"\0" * 128 if preamble else None
    if ts == ExplicitVRBigEndian:
        ds.save_as(path, implicit_vr=False, little_endian=False, enforce_file_format=preamble)
    else:
        ds.save_as(path, enforce_file_format=preamble)
    return path.stat().st_size


def iter_instances(corpus: list[PatientSpec]) -> Iterator[tuple[PatientSpec, StudySpec, SeriesSpec, str, int]]:
    """Every instance of a planned corpus: (patient, study, series, sop_instance_uid, instance_number)."""
    for patient in corpus:
        for study in patient.studies:
            for series in study.series:
                for i in range(series.instances):
                    yield patient, study, series, f"{series.uid}.{i + 1}", i + 1


def write_corpus(
    root: Path,
    corpus: list[PatientSpec] | None = None,
    rows: int = 64,
    columns: int = 64,
    layout: str = "nested",
    **plan: int,
) -> list[WrittenFile]:
    """Write a planned corpus under ``root`` and return what was written.

    ``layout="nested"`` writes ``PATIENT/STUDY/SERIES/IM_0001.dcm``; ``layout="flat"`` writes
    extensionless files ``IM000001`` in one folder, as many scanner exports do.
    """
    corpus = corpus if corpus is not None else plan_corpus(**plan)
    written: list[WrittenFile] = []
    for n, (patient, study, series, sop_uid, number) in enumerate(iter_instances(corpus), start=1):
        if layout == "flat":
            path = root / f"IM{n:06d}"
        else:
            path = (
                root
                / patient.patient_id
                / f"{study.date}_{study.accession}"
                / f"{series.number:03d}_{series.description.replace(' ', '_')}"
                / f"IM_{number:04d}.dcm"
            )
        ds = make_dataset(patient, study, series, sop_uid, number, rows=rows, columns=columns)
        size = write_dataset(ds, path)
        written.append(WrittenFile(path, patient.patient_id, study.uid, series.uid, sop_uid, size))
    return written
