"""The sandbox's header reading: the fast path (our own reader) must answer exactly as pydicom does.

``dicomio.read_header`` asks :mod:`xnat_uploader.core.dicom.reader` first and pydicom only where the
fast reader cannot be sure; these tests compare both paths on the synthetic corpus, on pydicom's own
sample files and on the awkward cases (routing comments, a backslash, a truncated file, no preamble).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pydicom.data
import pytest
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGBaseline8Bit

from tests.dicomgen import make_odd_corpus, write_one
from xnat_uploader.sandbox import dicomio
from xnat_uploader.sandbox.synthetic import plan_corpus, write_corpus

SAMPLES = sorted(Path(pydicom.data.get_testdata_file("CT_small.dcm")).parent.glob("*.dcm"))


def by_pydicom(path: Path) -> dicomio.DicomInfo | str:
    """pydicom's answer (the judge): the fields, or the NotDicom message."""
    try:
        return dicomio._read_pydicom(path, path.name)
    except dicomio.NotDicom as err:
        return f"NotDicom: {err}"


def answer(path: Path) -> dicomio.DicomInfo | str:
    try:
        return dicomio.read_header(path)
    except dicomio.NotDicom as err:
        return f"NotDicom: {err}"


def test_synthetic_corpus_takes_the_fast_path_with_pydicoms_answer(tmp_path):
    files = write_corpus(
        tmp_path, plan_corpus(patients=2, series_per_study=3, instances_per_series=2), rows=16, columns=16
    )
    syntaxes = {pydicom.dcmread(f.path, stop_before_pixels=True).file_meta.TransferSyntaxUID for f in files}
    assert {ExplicitVRLittleEndian, ImplicitVRLittleEndian} <= syntaxes
    for f in files:
        fast = dicomio._read_fast(f.path)
        assert fast is not None, f.path
        assert fast == by_pydicom(f.path)
        assert fast.sop_uid == f.sop_instance_uid
        assert fast.series_number.isdigit()


@pytest.mark.filterwarnings("ignore:Expected explicit VR:UserWarning")  # one sample's VR lies, on purpose
@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_pydicom_sample_files_get_pydicoms_answer(path):
    assert answer(path) == by_pydicom(path)
    fast = dicomio._read_fast(path)
    assert fast is None or fast == by_pydicom(path)


def test_the_fast_path_covers_most_plain_sample_files():
    fast = [p.name for p in SAMPLES if dicomio._read_fast(p) is not None]
    assert "MR_small_implicit.dcm" in fast  # implicit VR little endian
    assert len(fast) >= 20


def test_routing_comments_are_read_by_pydicom(tmp_path):
    for i, keyword in enumerate(("PatientComments", "StudyComments", "AdditionalPatientHistory")):
        path = write_one(tmp_path / f"{keyword}.dcm", **{keyword: "Project: DEMO Session: S1_MR1"})
        assert dicomio._read_fast(path) is None
        info = dicomio.read_header(path)
        assert info == by_pydicom(path)
        assert info.assignment("Project") == "DEMO"
        assert info.assignment("Session") == "S1_MR1", i


@pytest.mark.parametrize(
    "fields",
    [
        {"StudyDescription": "HEAD\\NECK"},  # pydicom makes a list of it
        {"PatientName": "Müller^Jürgen", "SpecificCharacterSet": "ISO_IR 100"},
        {"SeriesNumber": None, "SeriesInstanceUID": None},
        {"SeriesNumber": "007"},
        {"StudyDate": "", "StudyTime": "101112.123"},
        {"SOPClassUID": None},
        {"SOPInstanceUID": None},
    ],
    ids=["backslash", "latin1", "no-series", "series-007", "dates", "no-sop-class", "no-sop-uid"],
)
def test_odd_values_get_pydicoms_answer(tmp_path, fields):
    path = write_one(tmp_path / "one.dcm", **fields)
    assert answer(path) == by_pydicom(path)


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGBaseline8Bit])
def test_truncated_files_get_pydicoms_answer(tmp_path, syntax):
    whole = write_one(tmp_path / "whole.dcm", transfer_syntax=syntax).read_bytes()
    for cut in (100, 140, 400, len(whole) // 2, len(whole) - 10, len(whole) - 1):
        path = tmp_path / f"cut{cut}.dcm"
        path.write_bytes(whole[:cut])
        assert dicomio._read_fast(path) is None
        assert answer(path) == by_pydicom(path)


def test_odd_corpus_gets_pydicoms_answers(tmp_path):
    odd = make_odd_corpus(tmp_path)
    for path in [*odd.good, *odd.bad.values()]:
        assert answer(path) == by_pydicom(path), path.name
    assert dicomio._read_fast(odd.good[0]) is None  # no preamble: pydicom's rules for raw datasets


def test_trailing_data_after_the_pixels_goes_to_pydicom(tmp_path):
    path = write_one(tmp_path / "padded.dcm")
    with open(path, "ab") as f:
        f.write(b"\xfc\xff\xfc\xff" + b"OB\0\0" + (4).to_bytes(4, "little") + bytes(4))  # trailing padding
    assert dicomio._read_fast(path) is None
    assert answer(path) == by_pydicom(path)


def test_comment_tag_bytes_inside_a_value_only_cost_the_fast_path(tmp_path):
    path = write_one(tmp_path / "lookalike.dcm", StudyDescription="\x10\x00\x00\x40")
    assert dicomio._read_fast(path) is None
    info = dicomio.read_header(path)
    assert dataclasses.astuple(info) == dataclasses.astuple(by_pydicom(path))
