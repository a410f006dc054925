"""Scan the members of zip and tar(.gz/.bz2/.xz) archives in place: nothing is extracted to disk.

Each regular member is read into memory (one at a time) and handed to the header reader; the
resulting record keeps ``path`` = the archive and ``member`` = the name inside it. Tar archives are
read as a stream (``r|*``), so compressed tars are decompressed once, front to back.

Called by :mod:`.scan` on the scanning thread; ``cancel`` is checked between members.
"""

from __future__ import annotations

import logging
import tarfile
import threading
import zipfile
from collections.abc import Iterator

from xnat_uploader.core.dicom.reader import IsArchive, IsDicomdir, NotDicom, read_bytes
from xnat_uploader.core.dicom.records import InstanceRecord, Rejected
from xnat_uploader.core.dicom.walk import os_error_reason
from xnat_uploader.core.errors import Cancelled

logger = logging.getLogger(__name__)

MAX_MEMBER_BYTES = 512 * 1024 * 1024  # a member is held in memory while read; bigger ones are reported

Item = tuple[InstanceRecord | Rejected, int]  # a result and the bytes it accounts for


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


def _member_result(data: bytes, path: str, name: str) -> InstanceRecord | Rejected:
    try:
        return read_bytes(data, path, name)
    except IsDicomdir as exc:
        return Rejected(path, exc.reason, name)  # its files are members too, scanned anyway
    except IsArchive:
        return Rejected(path, "archive inside an archive (not scanned; extract it first)", name)
    except NotDicom as exc:
        return Rejected(path, exc.reason, name)


def _scan_zip(path: str, cancel: threading.Event | None) -> Iterator[Item]:
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        yield Rejected(path, "damaged zip archive"), 0
        return
    except OSError as exc:
        yield Rejected(path, os_error_reason(exc, "archive")), 0
        return
    with archive:
        for info in archive.infolist():
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            if info.is_dir():
                continue
            name = info.filename
            if info.file_size > MAX_MEMBER_BYTES:
                yield Rejected(path, "archive member too large to scan in place (extract it first)", name), 0
                continue
            try:
                data = archive.read(info)
            except Exception as exc:  # noqa: BLE001 - bad CRC, encryption, unsupported method: report, go on
                yield Rejected(path, f"archive member cannot be read ({type(exc).__name__})", name), 0
                continue
            yield _member_result(data, path, name), len(data)


def _scan_tar(path: str, cancel: threading.Event | None) -> Iterator[Item]:
    try:
        archive = tarfile.open(path, mode="r|*")  # noqa: SIM115 - closed by the `with` below; opened here to report
    except OSError as exc:
        yield Rejected(path, os_error_reason(exc, "archive")), 0
        return
    except (tarfile.TarError, EOFError) as exc:
        yield Rejected(path, _not_archive_reason(path, exc)), 0
        return
    try:
        with archive:
            for info in archive:
                if cancel is not None and cancel.is_set():
                    raise Cancelled()
                if not info.isfile():
                    continue
                if info.size > MAX_MEMBER_BYTES:
                    yield Rejected(path, "archive member too large to scan in place (extract it first)", info.name), 0
                    continue
                handle = archive.extractfile(info)
                data = handle.read() if handle is not None else b""
                if len(data) < info.size:
                    yield Rejected(path, "truncated archive: member ends early", info.name), len(data)
                    continue
                yield _member_result(data, path, info.name), len(data)
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
