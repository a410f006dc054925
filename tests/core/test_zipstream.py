"""The streamed ZIP: exact length up front, readable by zipfile and by a sequential (Java-style) reader."""

from __future__ import annotations

import hashlib
import io
import struct
import threading
import zipfile
import zlib

import pytest

from xnat_uploader.core.errors import Cancelled
from xnat_uploader.core.transfer import zipstream
from xnat_uploader.core.transfer.zipstream import SourceChanged, ZipMember, ZipStream, write_zip_file


def _files(tmp_path, sizes):
    members = []
    for i, size in enumerate(sizes):
        path = tmp_path / f"f{i}.dcm"
        path.write_bytes(bytes((i + k) % 251 for k in range(size)))
        members.append(ZipMember.from_path(path, f"series/{i:04d}.dcm"))
    return members


def read_sequentially(data: bytes) -> dict[str, bytes]:
    """Read local headers in order, as Java's ZipInputStream does: sizes and CRC must be in the header."""
    out, pos = {}, 0
    while struct.unpack_from("<I", data, pos)[0] == 0x04034B50:
        _, _, flags, method, _, _, crc, csize, usize, nlen, xlen = struct.unpack_from("<IHHHHHIIIHH", data, pos)
        assert not flags & 0x08, "a data descriptor: ZipInputStream refuses it for STORED entries"
        name = data[pos + 30 : pos + 30 + nlen].decode("utf-8" if flags & 0x800 else "cp437")
        start = pos + 30 + nlen + xlen
        body = data[start : start + csize]
        body = zlib.decompress(body, -15) if method == 8 else body
        assert len(body) == usize
        assert zlib.crc32(body) == crc
        out[name] = body
        pos = start + csize
    assert struct.unpack_from("<I", data, pos)[0] == 0x02014B50  # then the central directory
    return out


def test_stored_archive_has_exact_length_and_round_trips(tmp_path, monkeypatch):
    monkeypatch.setattr(zipstream, "SMALL_MEMBER", 1000)  # exercise the two-pass path for big members
    members = _files(tmp_path, [0, 1, 999, 1000, 1001, 300_000, 700_000])
    seen = []
    stream = ZipStream(members, on_bytes=seen.append)
    data = b"".join(stream)
    assert len(stream) == len(data)
    assert stream.content_length == len(data)
    assert sum(seen) == len(data)
    assert max(seen) <= zipstream.CHUNK
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        assert z.testzip() is None
        for m in members:
            assert z.read(m.arcname) == (tmp_path / m.path.split("/")[-1]).read_bytes()
            assert z.getinfo(m.arcname).compress_type == zipfile.ZIP_STORED
    sequential = read_sequentially(data)
    assert list(sequential) == [m.arcname for m in members]
    assert stream.crcs[members[-1].arcname] == zlib.crc32((tmp_path / "f6.dcm").read_bytes())
    for i, m in enumerate(members):
        assert stream.sha256[m.arcname] == hashlib.sha256((tmp_path / f"f{i}.dcm").read_bytes()).hexdigest()


def test_deflated_archive_has_exact_length_from_a_first_pass(tmp_path, monkeypatch):
    monkeypatch.setattr(zipstream, "CHUNK", 4096)  # several chunks per member
    members = _files(tmp_path, [0, 5000, 20000])
    stream = ZipStream(members, compress_level=1)
    length = len(stream)
    data = b"".join(stream)
    assert len(data) == length
    assert len(data) < 25000  # the repeating pattern compresses
    assert read_sequentially(data)[members[2].arcname] == (tmp_path / "f2.dcm").read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        assert z.testzip() is None
        assert z.getinfo(members[1].arcname).compress_type == zipfile.ZIP_DEFLATED
    assert stream.sha256[members[1].arcname] == hashlib.sha256((tmp_path / "f1.dcm").read_bytes()).hexdigest()
    again = ZipStream(members, compress_level=1, measured=stream.measured)  # a retry re-uses the first pass
    assert b"".join(again) == data


def test_a_file_changed_between_the_deflate_passes_is_caught(tmp_path):
    members = _files(tmp_path, [5000])
    stream = ZipStream(members, compress_level=1)
    len(stream)
    (tmp_path / "f0.dcm").write_bytes(bytes(range(256)) * 19 + bytes(136))  # same size, other content
    with pytest.raises(SourceChanged):
        b"".join(stream)


def test_non_ascii_names_are_flagged_utf8(tmp_path):
    path = tmp_path / "x"
    path.write_bytes(b"abc")
    data = b"".join(ZipStream([ZipMember.from_path(path, "Séries 3/名前.dcm")]))
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        assert z.namelist() == ["Séries 3/名前.dcm"]


def test_a_file_that_changes_size_aborts_the_archive(tmp_path):
    members = _files(tmp_path, [100, 100])
    (tmp_path / "f1.dcm").write_bytes(b"longer now" * 50)
    with pytest.raises(SourceChanged, match="changed size"):
        b"".join(ZipStream(members))


def test_a_vanished_file_gives_a_clear_error(tmp_path):
    members = _files(tmp_path, [100])
    (tmp_path / "f0.dcm").unlink()
    with pytest.raises(SourceChanged, match="Could not read"):
        b"".join(ZipStream(members))


def test_cancel_stops_between_chunks(tmp_path):
    members = _files(tmp_path, [zipstream.CHUNK * 3])
    cancel = threading.Event()
    stream = ZipStream(members, cancel=cancel)
    it = iter(stream)
    next(it)
    cancel.set()
    with pytest.raises(Cancelled):
        list(it)
    assert stream.sent < len(stream)


def test_write_zip_file_fallback(tmp_path):
    members = _files(tmp_path, [10, 20])
    target = tmp_path / "batch.zip"
    with target.open("wb") as fh:
        n = write_zip_file(members, fh)
    assert n == target.stat().st_size == zipstream.stored_length(members)
    assert zipfile.is_zipfile(target)
