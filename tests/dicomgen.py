"""Test-data helper: realistic synthetic DICOM plus the odd cases a scanner meets in the wild.

The realistic corpus comes from :mod:`xnat_uploader.sandbox.synthetic` (the demo mode uses it too);
this module adds the awkward files and folders. Everything is written by our own code, except
:func:`pydicom_session_files`, which picks from pydicom's own test files.
"""

from __future__ import annotations

import os
import tarfile
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_files
from pydicom.fileset import FileSet
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, JPEGBaseline8Bit

from xnat_uploader.sandbox.synthetic import (
    SECONDARY_CAPTURE,
    PatientSpec,
    SeriesSpec,
    StudySpec,
    UidMaker,
    WrittenFile,
    make_dataset,
    plan_corpus,
    write_corpus,
    write_dataset,
)

__all__ = ["OddCorpus", "make_odd_corpus", "write_corpus", "plan_corpus", "write_one", "pydicom_session_files"]
SESSION_UIDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")


def pydicom_session_files() -> list[Path]:
    """pydicom's test files (``get_testdata_files()``: the bundled ones, plus pydicom-data's when installed)
    that pydicom reads as DICOM and that carry the four UIDs a session needs: a zoo of transfer syntaxes
    and of files that bend the standard, for the C-STORE interop tests and benchmark."""
    found = []
    for name in get_testdata_files():
        try:
            with warnings.catch_warnings():  # pydicom's remarks on files that bend the standard: expected here
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(name, stop_before_pixels=True)
        except Exception:  # noqa: BLE001 - not a DICOM file (JSON, text, broken on purpose): not in the corpus
            continue
        if all(k in ds for k in SESSION_UIDS):
            found.append(Path(name))
    return found


def write_one(path: Path, seed: int = 99, preamble: bool = True, transfer_syntax: str | None = None, **fields) -> Path:
    """Write a single instance to ``path``; ``fields`` override header keywords (e.g. PatientName=...)."""
    patient = plan_corpus(patients=1, series_per_study=1, instances_per_series=1, seed=seed)[0]
    study = patient.studies[0]
    series = study.series[0]
    if transfer_syntax:
        series.transfer_syntax = transfer_syntax
    ds = make_dataset(patient, study, series, f"{series.uid}.1", 1)
    for keyword, value in fields.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    write_dataset(ds, path, preamble=preamble)
    return path


@dataclass
class OddCorpus:
    """A folder full of awkward cases. ``good`` lists the usable instances, ``bad`` the files to reject."""

    root: Path
    good: list[Path] = field(default_factory=list)
    bad: dict[str, Path] = field(default_factory=dict)
    dicomdir: Path | None = None
    loop: Path | None = None
    deep: Path | None = None


def make_odd_corpus(root: Path) -> OddCorpus:
    """Write the odd cases of the scanner issue under ``root``.

    Rejected on purpose (keys of ``bad``): text, pdf, ds_store, thumbs_db, zero_byte, truncated,
    not_dicom_with_dcm_suffix. Accepted: a file without preamble, a big-endian and a deflated file,
    a compressed (JPEG) file, a non-ASCII file name, a file 40 folders deep, a symlink loop (the loop
    itself is reported, its files are not scanned twice). A DICOMDIR with two referenced files.
    """
    odd = OddCorpus(root)
    root.mkdir(parents=True, exist_ok=True)

    def bad(key: str, name: str, data: bytes) -> None:
        path = root / "junk" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        odd.bad[key] = path

    bad("text", "notes.txt", b"Scan notes: patient moved during series 3.\n")
    bad("pdf", "report.pdf", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n%%EOF\n")
    bad("ds_store", ".DS_Store", b"\x00\x00\x00\x01Bud1" + bytes(2000))
    bad("thumbs_db", "Thumbs.db", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(1000))
    bad("zero_byte", "IM_EMPTY", b"")
    bad("not_dicom_with_dcm_suffix", "fake.dcm", b"this is not a dicom file at all" * 10)

    full = write_one(root / "junk" / "_full.dcm", seed=90)
    data = full.read_bytes()
    full.unlink()
    bad("truncated", "IM_TRUNC", data[:300])  # cut inside the header

    odd.good.append(write_one(root / "odd" / "no_preamble", seed=91, preamble=False))
    odd.good.append(write_one(root / "odd" / "big_endian.dcm", seed=92, transfer_syntax=ExplicitVRBigEndian))
    odd.good.append(write_one(root / "odd" / "deflated.dcm", seed=93, transfer_syntax=DeflatedExplicitVRLittleEndian))
    odd.good.append(write_one(root / "odd" / "jpeg.dcm", seed=94, transfer_syntax=JPEGBaseline8Bit))
    odd.good.append(write_one(root / "odd" / "Ünïcødé_名前.dcm", seed=95, PatientName="Müller^Jürgen"))

    deep = root / "deep"
    for i in range(40):
        deep = deep / f"level{i:02d}"
    odd.deep = write_one(deep / "IM_DEEP", seed=96)
    odd.good.append(odd.deep)

    loop_dir = root / "loop"
    odd.good.append(write_one(loop_dir / "IM_LOOP", seed=97))
    odd.loop = loop_dir / "again"
    os.symlink("..", odd.loop)  # loop/again -> loop

    odd.dicomdir = write_dicomdir(root / "cd", seed=98)
    return odd


def write_dicomdir(folder: Path, seed: int = 98, instances: int = 2) -> Path:
    """A CD-style folder: DICOMDIR plus referenced files under IMAGES/. Returns the DICOMDIR path."""
    patient = plan_corpus(patients=1, series_per_study=1, instances_per_series=instances, seed=seed)[0]
    study, series = patient.studies[0], patient.studies[0].series[0]
    fs = FileSet()
    for i in range(instances):
        fs.add(make_dataset(patient, study, series, f"{series.uid}.{i + 1}", i + 1))
    folder.mkdir(parents=True, exist_ok=True)
    fs.write(folder)
    return folder / "DICOMDIR"


def write_archives(folder: Path, files: list[WrittenFile]) -> tuple[Path, Path]:
    """Pack ``files`` into a zip and a tar.gz (relative names, plus one junk member each)."""
    folder.mkdir(parents=True, exist_ok=True)
    common = Path(os.path.commonpath([f.path for f in files]))
    zpath, tpath = folder / "export.zip", folder / "export.tar.gz"
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as z:
        for f in files:
            z.write(f.path, f.path.relative_to(common).as_posix())
        z.writestr("README.txt", "not dicom")
    with tarfile.open(tpath, "w:gz") as t:
        for f in files:
            t.add(f.path, f.path.relative_to(common).as_posix())
    return zpath, tpath


def secondary_capture_series(root: Path, seed: int = 80) -> list[Path]:
    """Two derived secondary-capture instances (possible burned-in text)."""
    patient = plan_corpus(patients=1, series_per_study=1, instances_per_series=2, seed=seed)[0]
    study, series = patient.studies[0], patient.studies[0].series[0]
    series.sop_class = SECONDARY_CAPTURE
    series.description = "Screen save"
    out = []
    for i in range(2):
        ds = make_dataset(patient, study, series, f"{series.uid}.{i + 1}", i + 1)
        ds.ImageType = ["DERIVED", "SECONDARY"]
        ds.BurnedInAnnotation = "YES"
        ds.ConversionType = "WSD"
        out.append(root / f"SC_{i + 1}.dcm")
        write_dataset(ds, out[-1])
    return out


def conflicting_series(root: Path, seed: int = 81) -> dict[str, list[Path]]:
    """Cases for the pre-flight checks, each in its own folder:

    ``two_patients``: one study whose instances carry two PatientIDs;
    ``dup_same``: the same SOPInstanceUID twice, same bytes; ``dup_diff``: twice with different bytes;
    ``series_number``: two series UIDs sharing series number 5; ``missing_uid``: no SOPInstanceUID.
    """
    out: dict[str, list[Path]] = {}
    uid = UidMaker(seed)
    base = plan_corpus(patients=1, series_per_study=1, instances_per_series=1, seed=seed)[0]
    study, series = base.studies[0], base.studies[0].series[0]

    other = PatientSpec("SYNOTHER", "Other^Patient", [study])
    out["two_patients"] = []
    for i, patient in enumerate([base, other]):
        p = root / "two_patients" / f"IM{i}"
        write_dataset(make_dataset(patient, study, series, uid(), i + 1), p)
        out["two_patients"].append(p)

    same_uid = uid()
    out["dup_same"] = []
    for i in range(2):
        p = root / "dup_same" / f"IM{i}"
        write_dataset(make_dataset(base, study, series, same_uid, 1), p)
        out["dup_same"].append(p)

    diff_uid = uid()
    out["dup_diff"] = []
    for i in range(2):
        p = root / "dup_diff" / f"IM{i}"
        write_dataset(make_dataset(base, study, series, diff_uid, i + 1), p)
        out["dup_diff"].append(p)

    out["series_number"] = []
    for i in range(2):
        s = SeriesSpec(uid(), 5, f"Series {i}", "MR", series.sop_class, 1)
        p = root / "series_number" / f"IM{i}"
        write_dataset(make_dataset(base, StudySpec(study.uid, study.date, study.time, "", ""), s, uid(), 1), p)
        out["series_number"].append(p)

    p = root / "missing_uid" / "IM0"
    ds = make_dataset(base, study, series, uid(), 1)
    del ds.SOPInstanceUID
    write_dataset(ds, p)
    out["missing_uid"] = [p]
    return out
