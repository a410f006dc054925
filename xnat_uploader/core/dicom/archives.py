"""Scan the members of zip and tar(.gz/.bz2/.xz) archives in place: nothing is extracted to disk.

Members are read as streams (:class:`MemberStream`), never held whole: the header reader takes what it
needs, then the rest of the member is read through (and dropped) so a damaged member (bad CRC, cut short)
is reported by the scan rather than by the upload. A zip of a few hundred kilobytes that unpacks to
gigabytes costs time, not memory. The resulting record keeps ``path`` = the archive and ``member`` = the
name inside it. Tar archives are read as a stream (``r|*``), so compressed tars are decompressed once,
front to back.

A member's name is only ever a name: it is looked up in its archive (:func:`open_member`), shown to the
user, and never joined to a folder or used to create a file, whatever ``..`` or ``/`` it holds. Two
members with the same name are ambiguous: the first is the one scanned and sent, the second is reported and
left out.

Called by :mod:`.scan` on the scanning thread; ``cancel`` is checked between members.
"""

from __future__ import annotations

import io
import logging
import tarfile
import threading
import zipfile
import zlib
from collections.abc import Callable, Iterator
from typing import BinaryIO

from xnat_uploader.core.dicom.reader import IsArchive, IsDicomdir, NotDicom, read_stream
from xnat_uploader.core.dicom.records import InstanceRecord, Rejected
from xnat_uploader.core.dicom.walk import os_error_reason
from xnat_uploader.core.errors import Cancelled

logger = logging.getLogger(__name__)

Item = tuple[InstanceRecord | Rejected, int]  # a result and the bytes it accounts for
Opened = tuple[BinaryIO, Callable[[], None]]  # a member's stream, and how to close it (and its archive)

SKIP_CHUNK = 1 << 20  # bytes read at once when reading forward through a member
DAMAGED_MEMBER = "damaged archive member: its content does not match its checksum"
DUPLICATE_NAME = "a second archive member with the same name (left out: only one of them could be uploaded)"
_READ_ERRORS = (OSError, EOFError, zipfile.BadZipFile, zlib.error, tarfile.TarError, RuntimeError, NotImplementedError)


class MemberStream(io.RawIOBase):
    """An archive member as a read-only seekable file that is never held in memory.

    Reads go forward through the member's own stream. A seek back opens the member again (``opener``) and
    reads forward to the position: for a zip member that decompresses it again from its start, for a member
    of a compressed tar the archive up to it. Wrap it in an ``io.BufferedReader`` so that short hops back
    stay inside the buffer. One thread at a time.
    """

    def __init__(self, opener: Callable[[], Opened], size: int, first: Opened | None = None, name: str = "") -> None:
        super().__init__()
        self.name = name  # as a file's (pydicom reads it from a buffered reader); the member's name, never a path
        self._opener = opener
        self._size = size
        self._fh, self._close = first if first is not None else opener()
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._fh.read(len(buffer))
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        target = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence] + offset
        if target < 0:
            raise ValueError("negative seek position")
        if target < self._pos:
            self._close()
            self._fh, self._close = self._opener()
            self._pos = 0
        while self._pos < target:
            skipped = len(self._fh.read(min(SKIP_CHUNK, target - self._pos)))
            if not skipped:
                self._pos = target  # past the end: reads give nothing, as for a file
                break
            self._pos += skipped
        return self._pos

    def read_to_end(self, cancel: threading.Event | None = None) -> None:
        """Read the rest and drop it: the archive library checks the member's CRC or length at its end."""
        while self._fh.read(SKIP_CHUNK):
            if cancel is not None and cancel.is_set():
                raise Cancelled()

    def close(self) -> None:
        if not self.closed:
            self._close()
        super().close()


def open_member(path: str, member: str) -> BinaryIO:
    """Open the member named ``member`` of the zip or tar archive at ``path`` for reading, streamed.

    ``member`` is looked up by name in the archive, never used as a path. Raises ``OSError`` (e.g.
    ``FileNotFoundError`` when there is no such member) or the archive library's errors.
    """
    if zipfile.is_zipfile(path):
        info = _zip_info(path, member)
        return io.BufferedReader(MemberStream(lambda: _open_zip(path, info), info.file_size, name=member), 1 << 16)
    with tarfile.open(path) as archive:  # the first member of that name, as the scan (getmember gives the last)
        info = next((i for i in archive if i.name == member and i.isfile()), None)
    if info is None:
        raise FileNotFoundError(f"{member} is not a file in {path}")
    return io.BufferedReader(MemberStream(lambda: _open_tar(path, info), info.size, name=member), 1 << 16)


def _zip_info(path: str, member: str) -> zipfile.ZipInfo:
    """The first member of that name, the one the scan read (``getinfo`` would give the last)."""
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if info.filename == member:
                return info
    raise FileNotFoundError(f"{member} is not a file in {path}")


def _open_zip(path: str, info: zipfile.ZipInfo) -> Opened:
    archive = zipfile.ZipFile(path)
    try:
        fh = archive.open(info)
    except BaseException:
        archive.close()
        raise

    def close() -> None:
        fh.close()
        archive.close()

    return fh, close  # type: ignore[return-value]


def _open_tar(path: str, info: tarfile.TarInfo) -> Opened:
    """Random access by the member's recorded offset: no listing of the archive, no copy on disk."""
    archive = tarfile.open(path)  # noqa: SIM115 - closed by the returned function
    fh = archive.extractfile(info)
    if fh is None:
        archive.close()
        raise FileNotFoundError(f"{info.name} is not a file in {path}")

    def close() -> None:
        fh.close()
        archive.close()

    return fh, close


def scan_archive(path: str, cancel: threading.Event | None = None) -> Iterator[Item]:
    """Yield ``(record or Rejected, size)`` for every member of the archive at ``path``.

    A file that is neither a readable zip nor tar gives one ``Rejected`` for the file itself.
    """
    try:
        if zipfile.is_zipfile(path):
            yield from _scan_zip(path, cancel)
            return
    except OSError as exc:
        yield Rejected(path, os_error_reason(exc, "archive")), 0
        return
    yield from _scan_tar(path, cancel)


def _member_result(
    stream: MemberStream, size: int, path: str, name: str, cancel: threading.Event | None
) -> InstanceRecord | Rejected:
    """Read a member's header, then the rest of it (checked by the archive library, dropped)."""
    try:
        with io.BufferedReader(stream, 1 << 16) as buffered:
            try:
                result: InstanceRecord | Rejected = read_stream(buffered, size, path, name)
            except IsDicomdir as exc:
                result = Rejected(path, exc.reason, name)  # its files are members too, scanned anyway
            except IsArchive:
                result = Rejected(path, "archive inside an archive (not scanned; extract it first)", name)
            except NotDicom as exc:
                result = Rejected(path, exc.reason, name)
            stream.read_to_end(cancel)
    except _READ_ERRORS as exc:
        return Rejected(path, _member_error(exc), name)
    return result


def _member_error(exc: BaseException) -> str:
    if isinstance(exc, EOFError | tarfile.ReadError) or "unexpected end" in str(exc):
        return "truncated archive: member ends early"
    if isinstance(exc, zipfile.BadZipFile) and "CRC" in str(exc):
        return DAMAGED_MEMBER
    return f"archive member cannot be read ({type(exc).__name__})"


def _scan_zip(path: str, cancel: threading.Event | None) -> Iterator[Item]:
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        yield Rejected(path, "damaged zip archive"), 0
        return
    except OSError as exc:
        yield Rejected(path, os_error_reason(exc, "archive")), 0
        return
    seen: set[str] = set()
    with archive:
        for info in archive.infolist():
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            if info.is_dir():
                continue
            name = info.filename
            if name in seen:
                yield Rejected(path, DUPLICATE_NAME, name), 0
                continue
            seen.add(name)
            try:
                stream = MemberStream(lambda info=info: _open_zip(path, info), info.file_size)  # type: ignore[misc]
            except _READ_ERRORS as exc:  # encrypted, unsupported method, damaged local header
                yield Rejected(path, f"archive member cannot be read ({type(exc).__name__})", name), 0
                continue
            yield _member_result(stream, info.file_size, path, name, cancel), info.file_size


def _scan_tar(path: str, cancel: threading.Event | None) -> Iterator[Item]:
    try:
        archive = tarfile.open(path, mode="r|*")  # noqa: SIM115 - closed by the `with` below; opened here to report
    except OSError as exc:
        yield Rejected(path, os_error_reason(exc, "archive")), 0
        return
    except (tarfile.TarError, EOFError, zlib.error, TypeError) as exc:
        # TypeError: tarfile's stream reader on a gzip header cut short (``ord()`` of nothing, CPython 3.11)
        yield Rejected(path, _not_archive_reason(path, exc)), 0
        return
    seen: set[str] = set()
    try:
        with archive:
            for info in archive:
                if cancel is not None and cancel.is_set():
                    raise Cancelled()
                if not info.isfile():
                    continue
                if info.name in seen:
                    yield Rejected(path, DUPLICATE_NAME, info.name), 0
                    continue
                seen.add(info.name)
                handle = archive.extractfile(info)
                if handle is None:
                    continue
                # The stream's own handle first (no second pass over a compressed tar); a seek back reopens
                # the archive at the member's offset.
                first: Opened = (handle, handle.close)
                stream = MemberStream(lambda info=info: _open_tar(path, info), info.size, first)  # type: ignore[misc]
                yield _member_result(stream, info.size, path, info.name, cancel), info.size
    except Cancelled:
        raise
    except Exception as exc:  # noqa: BLE001 - a damaged or cut stream ends the archive, not the scan
        logger.debug("tar stream ended early: %s", type(exc).__name__)
        yield Rejected(path, "damaged or cut tar archive: members after this point were not read"), 0


def _not_archive_reason(path: str, exc: BaseException) -> str:
    try:
        with open(path, "rb") as f:
            head = f.read(6)
    except OSError:
        head = b""
    if head.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ")):
        return "not a DICOM file (a compressed file that is not a tar archive)"
    return f"damaged archive ({type(exc).__name__})"
