"""Pre-flight checks over indexes built from the generator's files (records read here with pydicom)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import os
import tarfile
import zipfile
from pathlib import Path

import pytest
from pydicom.uid import JPEG2000Lossless, JPEGBaseline8Bit

from tests.core.test_index import rec
from tests.dicomgen import conflicting_series, make_odd_corpus, secondary_capture_series, write_archives, write_one
from xnat_uploader.core.dicom import checks
from xnat_uploader.core.dicom.checks import Severity, file_sha256, log_findings, run_checks, transfer_syntax_name
from xnat_uploader.core.dicom.fallback import read_with_pydicom
from xnat_uploader.core.dicom.index import DicomIndex, build_index
from xnat_uploader.core.dicom.records import InstanceRecord
from xnat_uploader.sandbox.synthetic import write_corpus


def record_from(data: bytes, path: str, member: str = "") -> InstanceRecord:
    """The record pydicom gives for these bytes (the scanner's own fallback path)."""
    return read_with_pydicom(io.BytesIO(data), len(data), path, member)


def index_of(*paths: Path) -> DicomIndex:
    """Index the DICOM files among ``paths`` (folders are walked)."""
    files = []
    for p in paths:
        files += sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    records = [record_from(f.read_bytes(), str(f)) for f in files]
    return build_index(records)


def codes(findings) -> list[str]:
    return [f.code for f in findings]


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> dict[str, list[Path]]:
    return conflicting_series(tmp_path_factory.mktemp("cases"))


def _no_patient_data(findings, *secrets: str) -> None:
    for f in findings:
        for secret in secrets:
            assert secret.lower() not in f.message.lower(), (f.code, secret)
            assert secret.lower() not in f.log_message.lower(), (f.code, secret)


def test_clean_corpus_has_no_findings(tmp_path):
    write_corpus(tmp_path, patients=2, studies_per_patient=2, series_per_study=3, instances_per_series=2)
    index = index_of(tmp_path)
    assert index.instance_count == 24
    assert run_checks(index) == []


def test_several_patients_in_one_study(cases):
    index = index_of(cases["two_patients"][0].parent)
    [finding] = run_checks(index)
    assert finding.code == checks.SEVERAL_PATIENTS
    assert finding.severity is Severity.ERROR
    assert set(finding.paths) == {str(p) for p in cases["two_patients"]}
    assert "2 different patients" in finding.message
    assert "XNAT" in finding.message
    assert finding.study_uid == index.study_uids()[0]
    _no_patient_data([finding], "SYNOTHER", "Other^Patient", "Other Patient", *(p.patient_id for p in index.patients))


def test_duplicate_uid_same_bytes(cases):
    [finding] = run_checks(index_of(cases["dup_same"][0].parent))
    assert finding.code == checks.DUPLICATE_SAME
    assert finding.severity is Severity.INFO
    assert set(finding.paths) == {str(p) for p in cases["dup_same"]}
    assert "identical" in finding.message


def test_duplicate_uid_different_bytes_of_equal_size_is_found_by_hash(cases):
    a, b = cases["dup_diff"]
    assert a.stat().st_size == b.stat().st_size  # so the SHA-256 comparison decides
    [finding] = run_checks(index_of(a.parent))
    assert finding.code == checks.DUPLICATE_DIFFERENT
    assert finding.severity is Severity.ERROR
    assert set(finding.paths) == {str(a), str(b)}
    # Without reading the files, equal sizes are taken for copies.
    assert codes(run_checks(index_of(a.parent), compare_content=False)) == [checks.DUPLICATE_SAME]


def test_duplicate_uid_different_sizes_needs_no_reading():
    index = build_index([rec("gone/1", "5.1", size=10), rec("gone/2", "5.1", size=11)])  # files do not exist
    assert codes(run_checks(index)) == [checks.DUPLICATE_DIFFERENT]


def test_duplicate_of_an_unreadable_file_is_not_called_a_copy(caplog):
    index = build_index([rec("gone/1", "5.1"), rec("gone/2", "5.1")])
    with caplog.at_level(logging.WARNING):
        assert codes(run_checks(index)) == [checks.DUPLICATE_DIFFERENT]
    assert "5.1" in caplog.text


def test_same_series_number_different_uids(cases):
    [finding] = run_checks(index_of(cases["series_number"][0].parent))
    assert finding.code == checks.SERIES_NUMBER_CONFLICT
    assert finding.severity is Severity.WARNING
    assert "series number 5" in finding.message
    assert set(finding.paths) == {str(p) for p in cases["series_number"]}


def test_missing_uids(cases, tmp_path):
    [finding] = run_checks(index_of(cases["missing_uid"][0]))
    assert finding.code == checks.MISSING_SOP_INSTANCE_UID
    assert finding.severity is Severity.ERROR
    assert finding.paths == (str(cases["missing_uid"][0]),)
    no_study = write_one(tmp_path / "no_study", seed=70, StudyInstanceUID=None)
    no_series = write_one(tmp_path / "no_series", seed=71, SeriesInstanceUID=None)
    found = {f.code: f for f in run_checks(index_of(no_study, no_series))}
    assert set(found) == {checks.MISSING_STUDY_UID, checks.MISSING_SERIES_UID}
    assert found[checks.MISSING_STUDY_UID].paths == (str(no_study),)
    assert found[checks.MISSING_SERIES_UID].paths == (str(no_series),)


def test_compressed_transfer_syntax_is_named(tmp_path):
    odd = make_odd_corpus(tmp_path / "odd")
    jpeg = next(p for p in odd.good if p.name == "jpeg.dcm")
    [finding] = run_checks(index_of(jpeg))
    assert finding.code == checks.COMPRESSED
    assert finding.severity is Severity.WARNING
    assert "JPEG Baseline" in finding.message
    assert "lossy" in finding.message
    assert finding.paths == (str(jpeg),)
    lossless = build_index([rec("j2k", "6.1", transfer_syntax=JPEG2000Lossless)])
    [finding] = run_checks(lossless)
    assert finding.severity is Severity.INFO
    assert "JPEG 2000 Lossless" in finding.message
    assert transfer_syntax_name(JPEGBaseline8Bit) == "JPEG Baseline"
    assert transfer_syntax_name("1.2.840.10008.1.2.4.100").startswith("MPEG2")
    # Uncompressed syntaxes (explicit, implicit, big-endian, deflated) are not findings.
    others = [p for p in odd.good if p.name != "jpeg.dcm"]
    assert checks.COMPRESSED not in codes(run_checks(index_of(*others)))


def test_unknown_transfer_syntax():
    [finding] = run_checks(build_index([rec("x", "6.2", transfer_syntax="1.2.3.4.5")]))
    assert finding.code == checks.UNKNOWN_TRANSFER_SYNTAX
    assert "1.2.3.4.5" in finding.message


def test_secondary_capture_with_burned_in_annotation(tmp_path):
    paths = secondary_capture_series(tmp_path)
    [finding] = run_checks(index_of(*paths))
    assert finding.code == checks.BURNED_IN
    assert finding.severity is Severity.WARNING
    assert set(finding.paths) == {str(p) for p in paths}
    assert '"Screen save"' in finding.message


def test_secondary_capture_and_derived_without_the_flag():
    sc = rec("sc", "8.1", sop_class_uid="1.2.840.10008.5.1.4.1.1.7", series_uid="8")
    sc_type = rec("sct", "8.2", image_type="DERIVED\\SECONDARY", series_uid="9", series_number=2)
    derived = rec("d", "8.3", image_type="DERIVED\\PRIMARY\\ADC", series_uid="10", series_number=3)
    found = run_checks(build_index([sc, sc_type, derived]))
    assert codes(found) == [checks.SECONDARY_CAPTURE, checks.SECONDARY_CAPTURE, checks.DERIVED]
    assert found[-1].severity is Severity.INFO


def test_everything_at_once_sorted_errors_first_and_no_patient_data_anywhere(cases, tmp_path, caplog):
    sc = secondary_capture_series(tmp_path / "sc")
    index = index_of(*(p for paths in cases.values() for p in paths), *sc)
    found = run_checks(index)
    assert {
        checks.SEVERAL_PATIENTS,
        checks.DUPLICATE_SAME,
        checks.DUPLICATE_DIFFERENT,
        checks.SERIES_NUMBER_CONFLICT,
        checks.MISSING_SOP_INSTANCE_UID,
        checks.BURNED_IN,
    } <= set(codes(found))
    ranks = [f.severity.rank for f in found]
    assert ranks == sorted(ranks)
    names = [p.patient_name for p in index.patients] + [p.patient_id for p in index.patients]
    names += [n.replace("^", " ") for n in names]
    _no_patient_data(found, *names)
    with caplog.at_level(logging.INFO, logger="xnat_uploader"):
        log_findings(found)
    assert len(caplog.records) == len(found)
    for secret in names:
        assert secret not in caplog.text
    assert all(set(f.to_dict()) >= {"code", "severity", "message", "paths"} for f in found)


def test_archive_members_are_hashed_and_compared_with_loose_files(tmp_path):
    written = write_corpus(tmp_path / "src", patients=1, series_per_study=1, instances_per_series=2)
    zpath, tpath = write_archives(tmp_path / "arch", written)
    first = written[0].path
    expected = hashlib.sha256(first.read_bytes()).hexdigest()
    common = Path(os.path.commonpath([w.path for w in written]))
    member = first.relative_to(common).as_posix()
    with zipfile.ZipFile(zpath) as z, tarfile.open(tpath) as t:
        contents = {zpath: z.read(member), tpath: t.extractfile(member).read()}
    records = []
    for archive, data in contents.items():
        r = record_from(data, str(archive), member)
        assert file_sha256(r) == expected
        records.append(r)
    loose = record_from(first.read_bytes(), str(first))
    [finding] = run_checks(build_index([loose, *records]))
    assert finding.code == checks.DUPLICATE_SAME
    assert set(finding.paths) == {str(first), f"{zpath}!{member}", f"{tpath}!{member}"}
    changed = dataclasses.replace(records[0], member="missing/member")
    assert codes(run_checks(build_index([loose, changed]))) == [checks.DUPLICATE_DIFFERENT]


def test_sha256_many_reads_each_archive_once(tmp_path, monkeypatch):
    written = write_corpus(tmp_path / "src", patients=1, series_per_study=1, instances_per_series=3)
    _, tpath = write_archives(tmp_path / "arch", written)
    common = Path(os.path.commonpath([w.path for w in written]))
    records = [
        rec(str(tpath), w.sop_instance_uid, member=w.path.relative_to(common).as_posix(), size=w.size) for w in written
    ]
    records.append(rec(str(tpath), "9.9", member="not/there.dcm"))
    opened = []
    real_open = tarfile.open
    monkeypatch.setattr(tarfile, "open", lambda *a, **k: opened.append(a) or real_open(*a, **k))
    digests = checks.sha256_many(records)
    assert len(opened) == 1
    assert set(digests) == {f"{tpath}!{r.member}" for r in records[:3]}
    for w, r in zip(written, records, strict=False):
        assert digests[f"{tpath}!{r.member}"] == hashlib.sha256(w.path.read_bytes()).hexdigest()
