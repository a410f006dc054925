"""ZIP archives generated while they are sent: no temp file, memory independent of the batch size.

XNAT reads DICOM-zip uploads with Java's ``ZipInputStream``, which reads local headers in order
and refuses a STORED entry whose sizes and CRC are deferred to a data descriptor ("only DEFLATED
entries can have EXT descriptor"). So every local header here carries the real CRC-32 and sizes,
which means each member is read before its header is sent: small members once (into memory),
large ones twice (CRC pass, then send pass; the second read comes from the OS cache).

With ``ZIP_STORED`` (the default) the exact archive length is known before the first byte, so the
request carries a ``Content-Length`` and progress is exact. With deflate, members are compressed one
at a time in memory and the length is unknown: XNAT accepts a body without a length only for
``application/zip`` (xnat-api.md 3.1), which is what DICOM-zip sends.

Archives stay below the ZIP64 limits (4 GiB, 65,535 entries): callers split batches well below.
"""

from __future__ import annotations

import hashlib
import os
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from xnat_uploader.core.errors import Cancelled, UserError

MAX_ARCHIVE_BYTES = 0xFFFFFFFF - (1 << 20)
MAX_ENTRIES = 0xFFFF
SMALL_MEMBER = 8 << 20  # members up to this size are read once, into memory
CHUNK = 256 << 10  # what is handed to the socket at once: small enough to cancel quickly on slow links

_LOCAL = struct.Struct("<IHHHHHIIIHH")  # 30 bytes
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")  # 46 bytes
_END = struct.Struct("<IHHHHIIH")  # 22 bytes
_UTF8_FLAG = 0x0800
_VERSION = 20  # 2.0: the oldest that covers deflate and folders


@dataclass(frozen=True, slots=True)
class ZipMember:
    """One file to put into the archive.

    ``opener`` returns a binary file object positioned at the start of the member's bytes (a file on
    disk by default; archive members give their own). ``size`` is the size announced up front: if
    the bytes read differ, the archive is aborted with :class:`SourceChanged`.
    """

    arcname: str
    size: int
    path: str = ""
    opener: Callable[[], BinaryIO] | None = None
    mtime: float = 0.0

    def open(self) -> BinaryIO:
        if self.opener is not None:
            return self.opener()
        return open(self.path, "rb")  # noqa: SIM115 - closed by the caller

    @classmethod
    def from_path(cls, path: str | os.PathLike[str], arcname: str) -> ZipMember:
        st = os.stat(path)
        return cls(arcname=arcname, size=st.st_size, path=os.fspath(path), mtime=st.st_mtime)


class SourceChanged(UserError):
    """A file changed size or vanished while it was being sent."""


def _dos_datetime(ts: float) -> tuple[int, int]:
    t = time.localtime(ts) if ts else time.localtime(315532800)
    year = min(max(t.tm_year, 1980), 2107)
    date = ((year - 1980) << 9) | (t.tm_mon << 5) | t.tm_mday
    clock = (t.tm_hour << 11) | (t.tm_min << 5) | (t.tm_sec // 2)
    return date, clock


def _encode_name(name: str) -> tuple[bytes, int]:
    name = name.replace("\\", "/").lstrip("/")
    try:
        return name.encode("ascii"), 0
    except UnicodeEncodeError:
        return name.encode("utf-8"), _UTF8_FLAG


def stored_length(members: Sequence[ZipMember]) -> int:
    """The exact byte length of the ZIP_STORED archive of ``members``."""
    total = _END.size
    for m in members:
        name_len = len(_encode_name(m.arcname)[0])
        total += _LOCAL.size + name_len + m.size + _CENTRAL.size + name_len
    return total


class ZipStream:
    """An iterable of byte chunks that together form a ZIP archive of ``members``.

    Iterate it once (e.g. pass it as a ``requests`` body). ``on_bytes(n)`` is called after every
    chunk handed out, so progress follows the bytes actually given to the socket. ``cancel`` is
    checked between chunks (at most ``CHUNK`` bytes apart) and raises :class:`Cancelled`.
    Any thread may iterate it, one at a time.
    """

    def __init__(
        self,
        members: Sequence[ZipMember],
        *,
        compress_level: int | None = None,
        on_bytes: Callable[[int], None] | None = None,
        cancel: threading.Event | None = None,
        measured: dict[str, tuple[int, int, str]] | None = None,
    ) -> None:
        if len(members) > MAX_ENTRIES:
            raise ValueError(f"too many entries for one archive: {len(members)}")
        self.members = list(members)
        self.compress_level = compress_level
        self.on_bytes = on_bytes
        self.cancel = cancel
        self.sent = 0
        self.crcs: dict[str, int] = {}
        self._last_crc = 0
        self.sha256: dict[str, str] = {}  # arcname -> hex digest of the bytes sent, for the receipt
        # Deflated archives: arcname -> (crc, compressed size, sha256), from a first compression pass.
        self.measured: dict[str, tuple[int, int, str]] = dict(measured or {})
        self._length = stored_length(self.members) if compress_level is None else None
        if self._length is not None and self._length > MAX_ARCHIVE_BYTES:
            raise ValueError("archive would exceed 4 GiB: split the batch")

    def __len__(self) -> int:
        """The exact length. For a deflated archive the first call compresses everything once to know it."""
        if self._length is None:
            self.measure()
        return self._length  # type: ignore[return-value]

    @property
    def content_length(self) -> int:
        return len(self)

    def measure(self) -> None:
        """Deflate every member once (discarding the output) to learn the sizes the headers announce.

        Deflate is deterministic for the same bytes and level, so the second pass, while sending,
        produces exactly these sizes; if a file changed in between, :class:`SourceChanged` is raised.
        """
        total = _END.size
        for member in self.members:
            if member.arcname not in self.measured:
                crc, digest, packed = 0, hashlib.sha256(), 0
                for chunk in self._deflated(member, digest_into=digest):
                    packed += len(chunk)
                crc = self._last_crc
                self.measured[member.arcname] = (crc, packed, digest.hexdigest())
            name_len = len(_encode_name(member.arcname)[0])
            total += _LOCAL.size + _CENTRAL.size + 2 * name_len + self.measured[member.arcname][1]
        if total > MAX_ARCHIVE_BYTES:
            raise ValueError("archive would exceed 4 GiB: split the batch")
        self._length = total

    def __iter__(self) -> Iterator[bytes | memoryview]:
        central: list[bytes] = []
        offset = 0
        for member in self.members:
            name, flags = _encode_name(member.arcname)
            date, clock = _dos_datetime(member.mtime)
            crc, data_iter, comp_size, method = self._prepare(member)
            header = _LOCAL.pack(
                0x04034B50, _VERSION, flags, method, clock, date, crc, comp_size, member.size, len(name), 0
            )
            yield from self._emit(header + name)
            for chunk in data_iter:
                yield from self._emit(chunk)
            central.append(
                _CENTRAL.pack(
                    0x02014B50,
                    _VERSION,
                    _VERSION,
                    flags,
                    method,
                    clock,
                    date,
                    crc,
                    comp_size,
                    member.size,
                    len(name),
                    0,
                    0,
                    0,
                    0,
                    0,
                    offset,
                )
                + name
            )
            offset += _LOCAL.size + len(name) + comp_size
            self.crcs[member.arcname] = crc
        directory = b"".join(central)
        end = _END.pack(0x06054B50, 0, 0, len(central), len(central), len(directory), offset, 0)
        yield from self._emit(directory + end)

    def _emit(self, data: bytes) -> Iterator[bytes | memoryview]:
        # memoryview slices: a large member is handed to the socket in pieces without copying it again.
        view = memoryview(data) if len(data) > CHUNK else data
        for start in range(0, len(data), CHUNK):
            piece = view[start : start + CHUNK] if len(data) > CHUNK else data
            if self.cancel is not None and self.cancel.is_set():
                raise Cancelled()
            yield piece
            self.sent += len(piece)
            if self.on_bytes is not None:
                self.on_bytes(len(piece))

    def _prepare(self, member: ZipMember) -> tuple[int, Iterable[bytes], int, int]:
        """Read what the local header needs: (crc, data chunks, compressed size, method)."""
        try:
            if self.compress_level is not None:
                if member.arcname not in self.measured:
                    self.measure()
                crc, packed, digest = self.measured[member.arcname]
                self.sha256[member.arcname] = digest
                return crc, self._checked(self._deflated(member), packed, member), packed, 8
            if member.size <= SMALL_MEMBER:
                data = self._read_all(member)
                self.sha256[member.arcname] = hashlib.sha256(data).hexdigest()
                return zlib.crc32(data), [data], member.size, 0
            crc, digest = 0, hashlib.sha256()
            for chunk in self._read_chunks(member):
                crc = zlib.crc32(chunk, crc)
                digest.update(chunk)
            self.sha256[member.arcname] = digest.hexdigest()
            return crc, self._read_chunks(member), member.size, 0
        except OSError as exc:
            raise SourceChanged(
                f"Could not read {member.arcname}: {exc.strerror or exc}.",
                "Check that the folder is still there (drive connected), then retry.",
            ) from exc

    def _deflated(self, member: ZipMember, digest_into: hashlib._Hash | None = None) -> Iterator[bytes]:
        """The member's bytes deflated (raw stream), chunk by chunk; sets ``_last_crc`` at the end."""
        packer = zlib.compressobj(self.compress_level or 1, zlib.DEFLATED, -15)
        crc = 0
        for chunk in self._read_chunks(member):
            crc = zlib.crc32(chunk, crc)
            if digest_into is not None:
                digest_into.update(chunk)
            out = packer.compress(chunk)
            if out:
                yield out
        self._last_crc = crc
        yield packer.flush()

    def _checked(self, chunks: Iterator[bytes], expected: int, member: ZipMember) -> Iterator[bytes]:
        n = 0
        for chunk in chunks:
            n += len(chunk)
            if n > expected:
                break
            yield chunk
        if n != expected:
            raise SourceChanged(
                f"{member.arcname} changed while uploading.",
                "Scan the folder again before uploading; files must not change during an upload.",
            )

    def _read_all(self, member: ZipMember) -> bytes:
        with member.open() as fh:
            data = fh.read(member.size + 1)
        if len(data) != member.size:
            raise SourceChanged(
                f"{member.arcname} changed size while uploading ({member.size} -> {len(data)} bytes).",
                "Scan the folder again before uploading; files must not change during an upload.",
            )
        return data

    def _read_chunks(self, member: ZipMember) -> Iterator[bytes]:
        left = member.size
        with member.open() as fh:
            while left > 0:
                chunk = fh.read(min(CHUNK, left))
                if not chunk:
                    break
                left -= len(chunk)
                yield chunk
            extra = fh.read(1)
        if left or extra:
            raise SourceChanged(
                f"{member.arcname} changed size while uploading.",
                "Scan the folder again before uploading; files must not change during an upload.",
            )


def write_zip_file(members: Sequence[ZipMember], target: BinaryIO, **kwargs: object) -> int:
    """Write the archive to ``target`` (the "build the zip file first" fallback). Returns its length."""
    n = 0
    for chunk in ZipStream(members, **kwargs):  # type: ignore[arg-type]
        target.write(chunk)
        n += len(chunk)
    return n
