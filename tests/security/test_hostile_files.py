"""Hostile files: bombs, cut files, climbing UIDs, files no session can take. Each gets a clear outcome, in
bounded time and memory.

The memory of a whole scan is measured in a child process (``resource.getrusage``: its peak resident size),
the memory of one read with ``tracemalloc`` (every byte Python allocates, zlib's output included).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
import tracemalloc
import zipfile
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import DeflatedExplicitVRLittleEndian

from tests.dicomgen import write_one
from tests.integration.conftest import sandbox, sandbox_factory  # noqa: F401 - the sandbox fixtures
from tests.security.hostile_inputs import (
    EVIL_UID,
    MARK,
    MB,
    deflated_bomb,
    dicomdir_pointing_out,
    evil_uid_file,
    folder_with_links_out,
    marked_file,
    run_cli,
    truncated_un,
    zip_of_large_members,
)
from xnat_uploader.core.dicom import deflated
from xnat_uploader.core.dicom.archives import DAMAGED_MEMBER, scan_archive
from xnat_uploader.core.dicom.checks import INVALID_UID, run_checks
from xnat_uploader.core.dicom.dicomdir import OUTSIDE_REASON
from xnat_uploader.core.dicom.fallback import read_with_pydicom
from xnat_uploader.core.dicom.header import read_header
from xnat_uploader.core.dicom.index import build_index
from xnat_uploader.core.dicom.reader import TRUNCATED_HEADER, NotDicom, read_bytes, read_file
from xnat_uploader.core.dicom.records import InstanceRecord
from xnat_uploader.core.dicom.scan import scan_paths
from xnat_uploader.core.dicom.walk import OUTSIDE_LINK
from xnat_uploader.core.plan import NO_STUDY_UID
from xnat_uploader.core.queue.store import FileRow, FileState
from xnat_uploader.core.transfer.dicom_zip import _member, arcname
from xnat_uploader.core.transfer.zipstream import ZipStream
from xnat_uploader.core.xnat.importer import stored_name

PEAK_LIMIT_MB = 300  # the whole security corpus, scanned in one process


def _peak(fn):
    """``fn()``'s result, the bytes Python allocated at the peak of the call, and the seconds it took."""
    tracemalloc.start()
    start = time.monotonic()
    try:
        result = fn()
    finally:
        seconds = time.monotonic() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return result, peak, seconds


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """The security corpus: every crafted input of the review in one chosen folder, a marked file beside it."""
    base = tmp_path_factory.mktemp("security")
    outside = marked_file(base / "outside" / "MARKED.dcm")
    chosen = base / "chosen"
    chosen.mkdir()
    deflated_bomb(chosen / "bomb_pixels.dcm")  # 640 MB of zeros once inflated
    deflated_bomb(chosen / "bomb_header.dcm", 100 * MB, in_header=True)
    zip_of_large_members(chosen / "three_large.zip")  # 3 x 200 MB members
    truncated_un(chosen / "un_le.dcm")
    truncated_un(chosen / "un_le_private.dcm", wanted=False)
    truncated_un(chosen / "un_be.dcm", big_endian=True)
    truncated_un(chosen / "un_be_private.dcm", big_endian=True, wanted=False)
    evil_uid_file(chosen / "evil" / "evil.dcm")
    dicomdir_pointing_out(chosen / "cd", outside)
    folder_with_links_out(chosen / "links", outside)
    return chosen


def test_deflated_bomb_is_read_in_pieces(corpus):
    record, peak, seconds = _peak(lambda: read_file(str(corpus / "bomb_pixels.dcm")))
    assert record.transfer_syntax == "1.2.840.10008.1.2.1.99"
    assert record.sop_instance_uid == "1.2.826.0.1.3680043.2.1143.17.1"
    assert peak < 8 * MB, peak  # its pixels (640 MB) are never inflated
    assert seconds < 1.0
    print(f"\n[security] deflated bomb (640 MB of pixels): read in {seconds:.3f} s, peak {peak / MB:.1f} MB")


def test_header_preview_of_a_deflated_bomb_is_bounded(corpus, tmp_path):
    rows, peak, seconds = _peak(lambda: read_header(str(corpus / "bomb_pixels.dcm")))
    assert ("SOPInstanceUID", "1.2.826.0.1.3680043.2.1143.17.1") in {(r.keyword, r.value) for r in rows}
    assert peak < 3 * deflated.MAX_INFLATED, peak
    assert seconds < 2.0
    # An ordinary deflated file shows the same rows as pydicom's own reading.
    plain = write_one(tmp_path / "deflated.dcm", transfer_syntax=DeflatedExplicitVRLittleEndian)
    ds = pydicom.dcmread(plain, stop_before_pixels=True)
    assert [r.tag for r in read_header(str(plain)) if r.depth == 0] == [int(e.tag) for e in [*ds.file_meta, *ds]]


def test_deflated_header_bomb_is_refused_at_the_cap(corpus):
    def read() -> str:
        try:
            read_file(str(corpus / "bomb_header.dcm"))
        except NotDicom as exc:
            return exc.reason
        return "read"

    reason, peak, seconds = _peak(read)
    assert reason == deflated.TOO_LARGE
    assert peak < 4 * deflated.MAX_INFLATED, peak
    assert seconds < 2.0
    print(f"\n[security] deflated header bomb: {reason!r} in {seconds:.2f} s, peak {peak / MB:.1f} MB")


def test_zip_of_large_members_is_scanned_without_holding_them(corpus):
    items, peak, seconds = _peak(lambda: list(scan_archive(str(corpus / "three_large.zip"))))
    records = [r for r, _ in items if isinstance(r, InstanceRecord)]
    assert sorted(r.member for r in records) == ["big0.dcm", "big1.dcm", "big2.dcm"]
    assert all(r.size > 200 * MB for r in records)
    assert peak < 16 * MB, peak  # each member is 200 MB once unpacked
    print(f"\n[security] zip of 3 x 200 MB members: scanned (CRC checked) in {seconds:.1f} s, peak {peak / MB:.1f} MB")


def test_a_damaged_member_is_reported_by_the_scan(corpus, tmp_path):
    data = (corpus / "evil" / "evil.dcm").read_bytes()
    path = tmp_path / "damaged.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("a.dcm", data)
        z.writestr("b.dcm", data)
    raw = bytearray(path.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 14), (b"PK\x01\x02", 16)):  # a.dcm's CRC, in both headers
        raw[raw.index(signature) + offset] ^= 0xFF
    path.write_bytes(raw)
    results = [r for r, _ in scan_archive(str(path))]
    assert [(r.member, getattr(r, "reason", "read")) for r in results] == [("a.dcm", DAMAGED_MEMBER), ("b.dcm", "read")]


@pytest.mark.parametrize(
    ("name", "fallback"),
    [("un_le.dcm", False), ("un_le_private.dcm", False), ("un_be.dcm", True), ("un_be_private.dcm", True)],
)
def test_truncated_un_element_is_refused_by_both_readers(corpus, name, fallback):
    path = corpus / name
    data = path.read_bytes()
    for read in (lambda: read_file(str(path)), lambda: read_bytes(data, str(path))):
        with pytest.raises(NotDicom) as refused:
            read()
        assert refused.value.reason == TRUNCATED_HEADER
    # pydicom itself (force=True) reads the file without complaint; our fallback refuses it.
    with pytest.raises(NotDicom) as refused:
        read_with_pydicom(io.BytesIO(data), len(data), str(path), "")
    assert refused.value.reason == TRUNCATED_HEADER
    # As an archive member (streamed), the same.
    member = corpus.parent / f"{name}.zip"
    with zipfile.ZipFile(member, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(name, data)
    [(rejected, _)] = list(scan_archive(str(member)))
    assert rejected.reason == TRUNCATED_HEADER


def test_a_climbing_uid_is_a_finding_and_never_a_name(corpus, tmp_path):
    result = scan_paths([corpus / "evil"], workers=1)
    [record] = result.instances
    assert record.sop_instance_uid == EVIL_UID
    findings = [f for f in run_checks(build_index(result.instances, result.rejected)) if f.code == INVALID_UID]
    assert [f.paths for f in findings] == [(record.path,)]
    assert "invalid UID (series, SOP instance)" in findings[0].message

    row = FileRow(7, 1, record.path, "", record.size, record.sop_instance_uid, record.series_uid, None,
                  FileState.PENDING, None, 0, "", "")  # fmt: skip
    assert arcname(row) == "series/file7.dcm"
    names = zipfile.ZipFile(io.BytesIO(b"".join(ZipStream([_member(row)])))).namelist()
    assert names == ["series/file7.dcm"]
    assert stored_name(EVIL_UID) is None  # gradual: no name in the URL, XNAT names the file


@pytest.mark.parametrize("mode", ["zip", "gradual"])
def test_a_climbing_uid_uploads_under_safe_names(corpus, tmp_path, sandbox, mode):  # noqa: F811
    out, seconds = run_cli(
        tmp_path, "upload", str(corpus / "evil"), "--url", sandbox.url, "--user", "admin", "-P", "DEMO",
        "--mode", mode, "--json",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    [receipt] = json.loads(out.stdout)["receipts"]
    assert receipt["counts"]["files"] == 1
    assert receipt["verified"]["ok"]
    stored = [p for p in Path(sandbox.data_dir).rglob("*") if p.is_file()]
    assert stored
    assert all(".." not in p.relative_to(sandbox.data_dir).parts for p in stored)
    assert list(tmp_path.parent.rglob("x/evil*")) == []  # nowhere, neither here nor in the sandbox's folder
    print(f"\n[security] SOPInstanceUID {EVIL_UID!r} ({mode}): exit {out.returncode}, {seconds:.2f} s")


def test_scan_of_the_security_corpus_stays_small(corpus, tmp_path):
    """The whole corpus through ``xnat-uploader scan`` in a child process: its peak memory, time and messages."""
    # The child's own peak: VmHWM where /proc exists (ru_maxrss would also count the pytest process it was forked
    # from, as Linux keeps that figure across exec), ru_maxrss elsewhere (bytes on macOS, KiB on Linux).
    code = (
        "import json, os, resource, sys\n"
        "from xnat_uploader import cli\n"
        f"rc = cli.main(['scan', {str(corpus)!r}, '--json'])\n"
        "kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // (1024 if sys.platform == 'darwin' else 1)\n"
        "if os.path.exists('/proc/self/status'):\n"
        "    kib = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:'))\n"
        "print(json.dumps({'rc': rc, 'peak_kib': kib}), file=sys.stderr)\n"
    )
    env = dict(os.environ, XNAT_UPLOADER_CONFIG_DIR=str(tmp_path / "app"))
    start = time.monotonic()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    seconds = time.monotonic() - start
    usage = json.loads(out.stderr.strip().splitlines()[-1])
    peak_mb = usage["peak_kib"] / 1024
    assert usage["rc"] == 0, out.stderr
    report = json.loads(out.stdout)
    assert MARK not in out.stdout
    reasons = {(Path(r["path"]).name, r["reason"]) for r in report["rejected"]}
    assert ("bomb_header.dcm", deflated.TOO_LARGE) in reasons
    assert {name for name, reason in reasons if reason == TRUNCATED_HEADER} == {
        "un_le.dcm",
        "un_le_private.dcm",
        "un_be.dcm",
        "un_be_private.dcm",
    }
    assert ("MARKED.dcm", OUTSIDE_REASON) in reasons
    assert {name for name, reason in reasons if reason == OUTSIDE_LINK} == {"to_outside.dcm", "to_outside_folder"}
    assert INVALID_UID in {f["code"] for f in report["findings"]}
    assert peak_mb < PEAK_LIMIT_MB, peak_mb
    counts = f"{report['instances']} instances, {len(report['rejected'])} rejected"
    print(f"\n[security] scan of the security corpus: exit 0, {seconds:.1f} s, peak {peak_mb:.0f} MB "
          f"(limit {PEAK_LIMIT_MB} MB), {counts}")  # fmt: skip


@pytest.mark.filterwarnings("ignore:Expected explicit VR:UserWarning")  # the sandbox's pydicom, on pydicom's odd file
def test_files_without_a_study_uid_are_left_out_and_the_rest_is_uploaded(tmp_path, sandbox):  # noqa: F811
    """pydicom's own test files: six have no StudyInstanceUID. They are listed; every other study is sent."""
    source = Path(get_testdata_file("CT_small.dcm")).parent
    folder = tmp_path / "pydicom"
    shutil.copytree(source, folder)
    for name in _without_series_number(folder):
        (folder / name).unlink()  # not about this issue: see the note in the report (verification by scan number)
    out, seconds = run_cli(tmp_path, "upload", str(folder), "--url", sandbox.url, "--user", "admin", "-P", "DEMO",
                        "--json")  # fmt: skip
    assert out.returncode == 3, out.stderr
    result = json.loads(out.stdout)
    left_out = {Path(r["path"]).name for r in result["left_out"]}
    assert "JPEGLSNearLossless_08.dcm" in left_out
    assert all(r["reason"] == NO_STUDY_UID for r in result["left_out"])
    assert "Left out" in out.stderr
    assert "no StudyInstanceUID" in out.stderr
    receipts = result["receipts"]
    assert len(receipts) >= 25
    assert all(r["verified"]["ok"] for r in receipts)
    assert len(sandbox.inventory()) == len(receipts)
    print(f"\n[security] pydicom's test files: exit {out.returncode}, {seconds:.1f} s, {len(receipts)} sessions "
          f"uploaded and verified, {len(left_out)} files left out")  # fmt: skip


def _without_series_number(folder: Path) -> list[str]:
    """Files of a study without a SeriesNumber: what XNAT names their scan is not settled here."""
    result = scan_paths([folder], workers=1)
    return [os.path.relpath(r.path, folder) for r in result.instances if r.study_uid and r.series_number is None]
