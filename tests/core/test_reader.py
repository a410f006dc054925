"""Our header reader gives pydicom's values, on pydicom's own test files and on our synthetic corpus."""

from __future__ import annotations

import os
import warnings
from dataclasses import fields
from pathlib import Path

import pydicom
import pytest
from pydicom import config
from pydicom.data import get_charset_files, get_palette_files, get_testdata_files
from pydicom.encaps import generate_fragments
from pydicom.multival import MultiValue
from pydicom.pixels.utils import get_expected_length
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from tests.dicomgen import make_odd_corpus, write_corpus, write_one
from xnat_uploader.core.dicom import reader
from xnat_uploader.core.dicom.reader import NotDicom, read_bytes, read_file
from xnat_uploader.core.dicom.records import InstanceRecord

FIELDS = {
    "patient_id": "PatientID",
    "patient_name": "PatientName",
    "study_uid": "StudyInstanceUID",
    "study_date": "StudyDate",
    "study_time": "StudyTime",
    "study_description": "StudyDescription",
    "accession_number": "AccessionNumber",
    "series_uid": "SeriesInstanceUID",
    "series_number": "SeriesNumber",
    "series_description": "SeriesDescription",
    "modality": "Modality",
    "sop_class_uid": "SOPClassUID",
    "sop_instance_uid": "SOPInstanceUID",
    "instance_number": "InstanceNumber",
    "image_type": "ImageType",
    "burned_in_annotation": "BurnedInAnnotation",
}
NUMBERS = {"series_number", "instance_number"}


def _plain(value, number: bool):
    """pydicom's value in our record's terms, written independently of the reader's own helpers."""
    if number:
        if isinstance(value, int) and not isinstance(value, bool):
            return int(value)
        return None
    if value is None:
        return ""
    if isinstance(value, MultiValue | list):
        return "\\".join(str(x) for x in value)
    return str(value)


def _has_preamble(path: str) -> bool:
    with open(path, "rb") as f:
        f.seek(128)
        return f.read(4) == b"DICM"


def expected_from_pydicom(path: str) -> dict | None:
    """What a plain full-header pydicom read says, or None when pydicom cannot read the file.

    Files without a preamble need ``force=True`` in pydicom; the issue asks us to accept them.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=not _has_preamble(path))
    except Exception:  # noqa: BLE001 - "pydicom cannot read it" is the fact we record
        return None
    out: dict = {}
    for name, keyword in FIELDS.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                value = ds.get(keyword)
        except (ValueError, TypeError, OverflowError):
            value = None
        out[name] = _plain(value, name in NUMBERS)
    ts = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if not ts:
        implicit, little = ds.original_encoding
        ts = ImplicitVRLittleEndian if implicit else (ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
    out["transfer_syntax"] = str(ts)
    out["_media_class"] = str(ds.file_meta.get("MediaStorageSOPClassUID", "")) if hasattr(ds, "file_meta") else ""
    out["_empty"] = not any(out[name] not in ("", None) for name in FIELDS)
    return out


def _known_truncated(path: str) -> bool:
    """Independent truth for our "truncated" verdicts.

    pydicom reads cut files silently, so the truth is pydicom's own name for its cut test files, or
    pixel data shorter than pydicom's ``get_expected_length`` after a full read.
    """
    if "truncated" in Path(path).name:
        return True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path)
            if "PixelData" not in ds:
                # An image (by its header) whose pixels a full read cannot find at all.
                return "Rows" in pydicom.dcmread(path, stop_before_pixels=True)
            if ds.file_meta.TransferSyntaxUID.is_compressed:
                list(generate_fragments(ds.PixelData))  # raises on a cut fragment
                return False
            return len(ds.PixelData) < get_expected_length(ds)
    except Exception:  # noqa: BLE001 - a failed full read counts as broken
        return True


def _rejection_is_justified(reason: str, expected: dict | None, path: str) -> bool:
    """We may reject a file pydicom cannot read, a DICOMDIR, a file pydicom finds nothing in, a cut file."""
    if expected is None:
        return True
    if reason == reader.DICOMDIR_REASON:
        return expected["_media_class"] == reader.DICOMDIR_SOP_CLASS
    if reason == reader.NO_FIELDS or reason.startswith("not a DICOM file"):
        return expected["_empty"]
    return reason.startswith("truncated") and _known_truncated(path)


def all_pydicom_files() -> list[str]:
    """pydicom's bundled test, charset and palette files, folders (e.g. a DICOMDIR tree) walked."""
    files: set[str] = set()
    for entry in [*get_testdata_files(), *get_charset_files(), *get_palette_files()]:
        if os.path.isdir(entry):
            files.update(str(p) for p in Path(entry).rglob("*") if p.is_file())
        else:
            files.add(entry)
    return sorted(f for f in files if not f.endswith((".json", ".txt", ".py", ".pyc", ".dump", ".icc", ".gz")))


def test_values_equal_pydicom_on_its_test_files(capsys, monkeypatch):
    fell_back: set[str] = set()
    real = reader._read_with_pydicom

    def counting(fileobj, size, path, member):
        fell_back.add(path)
        return real(fileobj, size, path, member)

    monkeypatch.setattr(reader, "_read_with_pydicom", counting)
    compared, rejected_ok, mismatches = 0, 0, []
    files = all_pydicom_files()
    for path in files:
        expected = expected_from_pydicom(path)
        try:
            record = read_file(path)
        except NotDicom as exc:
            if _rejection_is_justified(exc.reason, expected, path):
                rejected_ok += 1
            else:
                mismatches.append((Path(path).name, "rejected: " + exc.reason))
            continue
        if expected is None:
            mismatches.append((Path(path).name, "read by us, pydicom fails"))
            continue
        compared += 1
        # The in-memory path (archive members) reads the same bytes to the same record.
        assert read_bytes(Path(path).read_bytes(), path) == record, path
        got = {name: getattr(record, name) for name in [*FIELDS, "transfer_syntax"]}
        want = {name: expected[name] for name in got}
        if got != want:
            diff = {k: (got[k], want[k]) for k in got if got[k] != want[k]}
            mismatches.append((Path(path).name, diff))
        assert record.size == os.path.getsize(path)
    with capsys.disabled():
        print(
            f"\n[reader] pydicom test files: {len(files)}; values compared: {compared}; "
            f"rejected where pydicom agrees: {rejected_ok}; pydicom fallback used: {len(fell_back)}"
        )
    assert not mismatches, mismatches
    assert compared >= 150


def test_synthetic_corpus_values(tmp_path):
    written = write_corpus(tmp_path, patients=2, studies_per_patient=2, series_per_study=2, instances_per_series=2)
    for w in written:
        record = read_file(str(w.path))
        ds = pydicom.dcmread(w.path, stop_before_pixels=True)
        assert record.sop_instance_uid == w.sop_instance_uid
        assert record.series_uid == w.series_uid
        assert record.patient_id == w.patient_id
        assert record.patient_name == str(ds.PatientName)
        assert record.image_type == "\\".join(ds.ImageType)
        assert record.series_number == ds.SeriesNumber
        assert record.size == w.size
        assert record.transfer_syntax == ds.file_meta.TransferSyntaxUID
    # The same bytes in memory (an archive member) give the same record but for the member name.
    data = written[0].path.read_bytes()
    from_bytes = read_bytes(data, str(written[0].path), "a/b.dcm")
    assert from_bytes == InstanceRecord(**{**_asdict(read_file(str(written[0].path))), "member": "a/b.dcm"})


def _asdict(record: InstanceRecord) -> dict:
    return {f.name: getattr(record, f.name) for f in fields(record)}


@pytest.mark.filterwarnings("ignore:Invalid value for VR IS")  # pydicom warns on writing "7.0"
@pytest.mark.parametrize(
    ("fields_", "check"),
    [
        ({"SeriesNumber": "  5 "}, lambda r: r.series_number == 5),
        ({"SeriesNumber": ["5", "6"]}, lambda r: r.series_number is None),
        ({"InstanceNumber": "7.0"}, lambda r: r.instance_number == 7),
        ({"SpecificCharacterSet": "ISO_IR 192", "PatientName": "Yamada^Tarou=山田^太郎"}, None),
        ({"SpecificCharacterSet": "ISO_IR 100", "StudyDescription": "Tête  "}, None),
        ({"SpecificCharacterSet": ["", "ISO 2022 IR 87"], "PatientName": "Yamada^Tarou=山田^太郎=やまだ^たろう"}, None),
        ({"SpecificCharacterSet": "ISO_IR 144", "PatientName": "Люкceмбypг", "PatientID": "Ю42"}, None),
        ({"PatientName": None, "SOPInstanceUID": None}, lambda r: r.patient_name == "" and r.sop_instance_uid == ""),
    ],
)
def test_odd_values_match_pydicom(tmp_path, fields_, check):
    path = write_one(tmp_path / "x.dcm", **fields_)
    record = read_file(str(path))
    expected = expected_from_pydicom(str(path))
    assert {k: getattr(record, k) for k in FIELDS} == {k: expected[k] for k in FIELDS}
    if check:
        assert check(record)


def test_odd_files(tmp_path):
    odd = make_odd_corpus(tmp_path)
    reasons = {}
    for key, path in odd.bad.items():
        with pytest.raises(NotDicom) as info:
            read_file(str(path))
        reasons[key] = info.value.reason
    assert reasons["zero_byte"] == "empty file (0 bytes)"
    assert reasons["truncated"] == reader.TRUNCATED_HEADER
    assert reasons["text"] == "not a DICOM file (text)"
    assert reasons["pdf"] == "not a DICOM file (PDF document)"
    assert reasons["not_dicom_with_dcm_suffix"] == "not a DICOM file (text)"
    assert reasons["thumbs_db"].startswith("not a DICOM file")
    assert reasons["ds_store"].startswith("not a DICOM file")
    for path in odd.good:
        record = read_file(str(path))
        assert record.sop_instance_uid == pydicom.dcmread(path, force=True).SOPInstanceUID
    with pytest.raises(reader.IsDicomdir):
        read_file(str(odd.dicomdir))


def test_truncated_pixel_data_is_rejected(tmp_path):
    path = write_one(tmp_path / "full.dcm")
    data = path.read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[:-100])
    with pytest.raises(NotDicom, match="pixel data ends early"):
        read_file(str(cut))
    jpeg = write_one(tmp_path / "jpeg.dcm", transfer_syntax="1.2.840.10008.1.2.4.50")
    read_file(str(jpeg))  # complete encapsulated file: accepted
    cut.write_bytes(jpeg.read_bytes()[:-20])
    with pytest.raises(NotDicom, match="pixel data ends early"):
        read_file(str(cut))


def test_reader_never_writes(tmp_path):
    path = write_one(tmp_path / "ro.dcm")
    path.chmod(0o444)
    before = path.stat()
    read_file(str(path))
    after = path.stat()
    assert (before.st_mtime_ns, before.st_size, before.st_mode) == (after.st_mtime_ns, after.st_size, after.st_mode)
    assert config.settings.reading_validation_mode == config.WARN  # our quiet mode was restored


@pytest.mark.parametrize("transfer_syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_values_inside_sequences_are_not_taken(tmp_path, transfer_syntax):
    """A nested PatientID/StudyInstanceUID (e.g. in a referenced-image item) is not the instance's."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    item = Dataset()
    item.PatientID = "NESTED"
    item.StudyInstanceUID = "9.9.9"
    inner = Dataset()
    inner.SeriesInstanceUID = "8.8.8"
    item.ReferencedSeriesSequence = Sequence([inner])
    path = write_one(tmp_path / "seq.dcm", transfer_syntax=transfer_syntax, ReferencedImageSequence=Sequence([item]))
    ds = pydicom.dcmread(path)
    for elem in ds.iterall():  # rewrite every sequence and item with undefined length
        if elem.VR == "SQ":
            elem.is_undefined_length = True
            for each in elem.value:
                each.is_undefined_length_sequence_item = True
    ds.save_as(path)
    assert b"\xfe\xff\xdd\xe0" in path.read_bytes()  # undefined-length sequences, walked item by item
    record = read_file(str(path))
    expected = expected_from_pydicom(str(path))
    assert {k: getattr(record, k) for k in FIELDS} == {k: expected[k] for k in FIELDS}
    assert record.patient_id != "NESTED"
    assert record.study_uid != "9.9.9"


@pytest.mark.parametrize(("elements", "keep"), [(2, -1000), (40, -1000), (100, 0.6)])
def test_truncation_found_past_large_private_groups(tmp_path, elements, keep):
    """Big private elements between group 0x0028 and the pixels (as Siemens CSA headers): a cut is still found.

    With up to ~60 such elements the reader walks on to the pixel data (one read each); past that it
    stops early, and a cut shows as an element running past the end or as fewer bytes left than
    Rows x Columns x BitsAllocated need.
    """
    path = write_one(tmp_path / "csa.dcm")
    ds = pydicom.dcmread(path)
    ds.add_new(0x00290010, "LO", "SYNTHETIC CSA")
    for i in range(elements):
        ds.add_new(0x00291010 + i, "OB", bytes(9000))
    ds.save_as(path)
    record = read_file(str(path))
    assert record.sop_instance_uid == ds.SOPInstanceUID
    data = path.read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[:keep] if keep < 0 else data[: int(len(data) * keep)])
    with pytest.raises(NotDicom, match="truncated DICOM file"):
        read_file(str(cut))
