"""The test-data helper writes what it says: files pydicom reads back with the planned values."""

import pydicom

from tests.dicomgen import conflicting_series, make_odd_corpus, secondary_capture_series, write_archives, write_corpus


def test_corpus_round_trips_through_pydicom(tmp_path):
    written = write_corpus(tmp_path, patients=2, studies_per_patient=2, series_per_study=2, instances_per_series=3)
    assert len(written) == 2 * 2 * 2 * 3
    assert len({w.sop_instance_uid for w in written}) == len(written)
    implicit = set()
    for w in written:
        ds = pydicom.dcmread(w.path)
        assert ds.SOPInstanceUID == w.sop_instance_uid
        assert ds.SeriesInstanceUID == w.series_uid
        assert ds.PatientID == w.patient_id
        assert w.size == w.path.stat().st_size
        implicit.add(ds.original_encoding[0])
    assert implicit == {True, False}  # both implicit and explicit VR present


def test_odd_corpus(tmp_path):
    odd = make_odd_corpus(tmp_path)
    for path in odd.good:
        ds = pydicom.dcmread(path, force=True)
        assert ds.SOPInstanceUID
    for key in ("zero_byte", "truncated", "text", "pdf"):
        assert odd.bad[key].exists()
    # pydicom reads a truncated file silently (it stops at the end): the pixels are gone.
    assert "PixelData" not in pydicom.dcmread(odd.bad["truncated"])
    dicomdir = pydicom.dcmread(odd.dicomdir)
    assert len(dicomdir.DirectoryRecordSequence) >= 4  # patient, study, series, 2 images
    assert odd.loop.is_symlink()


def test_check_cases_and_archives(tmp_path):
    cases = conflicting_series(tmp_path / "c")
    ids = {pydicom.dcmread(p).PatientID for p in cases["two_patients"]}
    assert len(ids) == 2
    a, b = (pydicom.dcmread(p) for p in cases["dup_diff"])
    assert a.SOPInstanceUID == b.SOPInstanceUID
    assert a.InstanceNumber != b.InstanceNumber
    assert "SOPInstanceUID" not in pydicom.dcmread(cases["missing_uid"][0])
    sc = secondary_capture_series(tmp_path / "sc")
    assert pydicom.dcmread(sc[0]).BurnedInAnnotation == "YES"
    written = write_corpus(tmp_path / "w", patients=1, series_per_study=1, instances_per_series=2)
    zpath, tpath = write_archives(tmp_path / "arch", written)
    assert zpath.stat().st_size > 0
    assert tpath.stat().st_size > 0
