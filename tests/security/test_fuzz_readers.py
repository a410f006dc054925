"""Property tests of the parsers that read untrusted bytes: the header reader, DICOMDIR, archive listing, and
the names the zip writer puts into an upload.

Each property: no exception other than our own error types, a bounded time per example (hypothesis'
``deadline``) and bounded memory (``tracemalloc``'s peak). Few examples each, so the suite stays fast; the
inputs are seeded with real structure (a valid file to mutate, element-shaped bytes), which finds far more
than random bytes alone.
"""

from __future__ import annotations

import io
import os
import re
import struct
import tarfile
import tempfile
import tracemalloc
import zipfile
import zlib
from contextlib import contextmanager
from pathlib import Path

import pydicom
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.dicomgen import write_dicomdir, write_one
from tests.security.hostile_inputs import DEFLATED, EXPLICIT_LE, element, file_meta, lenient_pydicom
from xnat_uploader.core.dicom.archives import scan_archive
from xnat_uploader.core.dicom.reader import NotDicom, read_bytes, read_stream
from xnat_uploader.core.dicom.records import InstanceRecord, Rejected
from xnat_uploader.core.dicom.scan import scan_paths
from xnat_uploader.core.dicom.walk import inside, real
from xnat_uploader.core.queue.store import FileRow, FileState
from xnat_uploader.core.transfer.dicom_zip import _member, arcname
from xnat_uploader.core.transfer.zipstream import ZipMember, ZipStream

MB = 1 << 20
FUZZ = settings(
    max_examples=60, deadline=1000, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
with tempfile.TemporaryDirectory() as _tmp:  # the seeds every mutation starts from
    VALID = write_one(Path(_tmp) / "valid.dcm", seed=500).read_bytes()
    DICOMDIR = write_dicomdir(Path(_tmp) / "cd", seed=503, instances=2).read_bytes()
SAFE_NAME = re.compile(r"(?:[0-9]+(?:\.[0-9]+)*|series)/(?:[0-9]+(?:\.[0-9]+)*|file[0-9]+)\.dcm")


@contextmanager
def bounded(limit: int = 48 * MB):
    """Fail when the block allocates more than ``limit`` bytes at its peak (every Python allocation counts)."""
    tracemalloc.start()
    try:
        yield
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < limit, f"peak {peak / MB:.1f} MB"


def _read_all_ways(data: bytes) -> None:
    """The reader on ``data`` in memory and as a stream: a record or NotDicom, nothing else, and the same answer."""
    answers = []
    for read in (lambda: read_bytes(data, "fuzz"), lambda: read_stream(io.BytesIO(data), len(data), "fuzz", "m")):
        try:
            record = read()
        except NotDicom as exc:
            answers.append(("rejected", exc.reason))
        else:
            assert isinstance(record, InstanceRecord)
            answers.append(("read", record.sop_instance_uid))
    assert answers[0] == answers[1], answers


# -- strategies -------------------------------------------------------------------------------------------------

_VRS = [b"AE", b"CS", b"DA", b"LO", b"OB", b"OW", b"PN", b"SH", b"SQ", b"UI", b"UL", b"UN", b"US", b"UT", b"XX"]
_TAGS = [(0x0008, 0x0016), (0x0008, 0x0018), (0x0010, 0x0010), (0x0020, 0x000D), (0x0028, 0x0010), (0x7FE0, 0x0010),
         (0xFFFE, 0xE000), (0xFFFE, 0xE00D), (0xFFFE, 0xE0DD), (0x0009, 0x1001), (0x0002, 0x0010)]  # fmt: skip
_LENGTHS = st.one_of(st.integers(0, 64), st.sampled_from([0xFFFFFFFF, 0xFFFFFFF0, 0x7FFFFFFF, 0xFFFF]))


@st.composite
def elements(draw: st.DrawFn) -> bytes:
    """A run of explicit-VR-shaped elements whose declared lengths may lie."""
    out = []
    for _ in range(draw(st.integers(1, 12))):
        group, elem = draw(st.one_of(st.sampled_from(_TAGS), st.tuples(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF))))
        vr = draw(st.sampled_from(_VRS))
        value = draw(st.binary(max_size=40))
        length = draw(st.one_of(st.none(), _LENGTHS))
        if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT"):
            out.append(struct.pack("<HH2sHL", group, elem, vr, 0, len(value) if length is None else length) + value)
        else:
            out.append(struct.pack("<HH2sH", group, elem, vr, (len(value) if length is None else length) & 0xFFFF))
            out.append(value)
    return b"".join(out)


@st.composite
def mutated(draw: st.DrawFn, data: bytes = VALID) -> bytes:
    """``data`` with a few bytes changed, a piece cut out or inserted, or cut short."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "truncate"]))
        pos = draw(st.integers(0, max(0, len(out) - 1)))
        if kind == "flip" and out:
            out[pos] = draw(st.integers(0, 255))
        elif kind == "cut":
            del out[pos : pos + draw(st.integers(1, 64))]
        elif kind == "insert":
            out[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        else:
            del out[pos:]
    return bytes(out)


# -- the header reader ------------------------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=2048))
def test_reader_on_random_bytes(data):
    with bounded():
        _read_all_ways(data)


@FUZZ
@given(mutated())
def test_reader_on_a_damaged_valid_file(data):
    with bounded():
        _read_all_ways(data)


@FUZZ
@given(st.sampled_from([EXPLICIT_LE, "1.2.840.10008.1.2", "1.2.840.10008.1.2.2"]), elements())
def test_reader_on_element_shaped_bytes(ts, body):
    with bounded():
        _read_all_ways(file_meta(ts, "1.2.3.4") + body)


@FUZZ
@given(elements(), st.booleans())
def test_reader_on_deflated_element_shaped_bytes(body, cut):
    stream = zlib.compress(element(0x0008, 0x0018, b"UI", b"1.2.3\0") + body)[2:-4]  # raw deflate
    if cut:
        stream = stream[: len(stream) // 2]
    with bounded():
        _read_all_ways(file_meta(DEFLATED, "1.2.3.4") + stream)


# -- DICOMDIR ---------------------------------------------------------------------------------------------------

_ID_PART = st.lists(st.sampled_from([*"AB1._/\\:", "..", "\0", "é"]), min_size=1, max_size=8).map("".join)


@settings(max_examples=25, deadline=3000, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(_ID_PART, min_size=1, max_size=4), min_size=1, max_size=3))
def test_dicomdir_never_reaches_outside_its_folder(file_ids):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_one(root / "outside.dcm", seed=501)  # beside the CD folder: must never be read
        cd = root / "cd"
        dicomdir = write_dicomdir(cd, seed=502, instances=len(file_ids))
        with lenient_pydicom():
            ds = pydicom.dcmread(dicomdir)
            images = [r for r in ds.DirectoryRecordSequence if r.DirectoryRecordType == "IMAGE"]
            for record, parts in zip(images, file_ids, strict=True):
                record.ReferencedFileID = parts
            ds.save_as(dicomdir)
        with bounded():
            result = scan_paths([dicomdir], workers=1)
        folder = real(str(cd))
        assert all(inside(real(r.path), folder) for r in result.instances)


@FUZZ
@given(mutated(DICOMDIR))
def test_damaged_dicomdir_is_reported_not_fatal(data):
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "DICOMDIR").write_bytes(data)
        with bounded():
            result = scan_paths([Path(tmp) / "DICOMDIR"], workers=1)
        assert result.rejected  # the DICOMDIR itself at least (read, not uploaded; or damaged)


# -- archive listing --------------------------------------------------------------------------------------------


def _zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("a/one.dcm", VALID)
        z.writestr("../two.dcm", VALID[:500])
    return buf.getvalue()


def _tar_bytes(mode: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as t:
        for name, data in (("one.dcm", VALID), ("/abs/two.dcm", b"not dicom")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


ARCHIVES = {"zip": _zip_bytes(), "tar": _tar_bytes("w"), "tgz": _tar_bytes("w:gz")}


@FUZZ
@given(st.sampled_from(sorted(ARCHIVES)).flatmap(lambda kind: st.tuples(st.just(kind), mutated(ARCHIVES[kind]))))
def test_archive_listing_of_damaged_archives(kind_and_data):
    kind, data = kind_and_data
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, f"fuzz.{kind}")
        Path(path).write_bytes(data)
        with bounded():
            results = [item for item, _ in scan_archive(path)]
        assert all(isinstance(r, InstanceRecord | Rejected) for r in results)
        assert os.listdir(tmp) == [f"fuzz.{kind}"]  # read in place: nothing extracted


# -- names in the upload zip ------------------------------------------------------------------------------------

_HOSTILE_TEXT = st.lists(st.sampled_from([*"0123456789./\\:aZ é\x00\x1f\n", "..", "1.2"]), max_size=40).map("".join)


@FUZZ
@given(st.integers(0, 10**9), _HOSTILE_TEXT, _HOSTILE_TEXT, _HOSTILE_TEXT)
def test_zip_entry_names_are_safe_whatever_the_headers(file_id, sop, series, member):
    row = FileRow(file_id, 1, "/data/IM1", member, 10, sop, series, None, FileState.PENDING, None, 0, "", "")
    name = arcname(row)
    assert SAFE_NAME.fullmatch(name), name
    assert ".." not in name.split("/")


@settings(max_examples=30, deadline=1000)
@given(st.lists(st.tuples(_HOSTILE_TEXT, st.binary(max_size=64)), min_size=1, max_size=5))
def test_zipstream_writes_what_zipfile_reads_back(rows):
    members, expected = [], {}
    for i, (sop, data) in enumerate(rows):
        row = FileRow(i, 1, "", "", len(data), sop, "1.2.3", None, FileState.PENDING, None, 0, "", "")
        name = arcname(row)
        if name in expected:
            continue  # the same valid UID twice: one entry (a duplicate is never queued twice)
        members.append(ZipMember(name, len(data), opener=lambda data=data: io.BytesIO(data)))
        expected[name] = data
        assert _member(row).arcname == name
    with bounded():
        body = b"".join(ZipStream(members))
    with zipfile.ZipFile(io.BytesIO(body)) as z:
        assert z.testzip() is None
        assert {n: z.read(n) for n in z.namelist()} == expected
