"""Crafted inputs of the security review (issue 17), written by the tests themselves: nothing binary is committed.

Every builder writes synthetic data only (:mod:`tests.dicomgen`, or DICOM bytes put together here). A file meant
to stay out of a scan or an upload carries the patient ID :data:`MARK`, so a test can show it was never read.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
import zlib
from contextlib import contextmanager
from pathlib import Path

import pydicom
from pydicom import config

from tests.dicomgen import write_dicomdir, write_one

MARK = "MARKED-OUTSIDE"  # the PatientID of every file that lies outside what the user chose
EVIL_UID = "../../../../x/evil"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
DEFLATED = "1.2.840.10008.1.2.1.99"
MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
MB = 1 << 20


@contextmanager
def lenient_pydicom():
    """Let pydicom write values the standard forbids (that is the point of a crafted file)."""
    saved = config.settings.writing_validation_mode, config.settings.reading_validation_mode
    config.settings.writing_validation_mode = config.settings.reading_validation_mode = config.IGNORE
    try:
        yield
    finally:
        config.settings.writing_validation_mode, config.settings.reading_validation_mode = saved


class OpenedFiles:
    """Every file this process opens while the block runs (a Python audit hook: nothing escapes it).

    ``with OpenedFiles() as opened: scan...`` then ``opened.under(folder)`` lists what was opened there."""

    _installed = False
    _active: list[OpenedFiles] = []
    _lock = threading.Lock()

    def __init__(self) -> None:
        self.paths: list[str] = []

    @classmethod
    def _hook(cls, event: str, args: tuple) -> None:
        if event in ("open", "os.listdir", "os.scandir") and cls._active and isinstance(args[0], str | bytes):
            path = os.path.realpath(os.fsdecode(args[0]))
            for watcher in cls._active:
                watcher.paths.append(path)

    def __enter__(self) -> OpenedFiles:
        with self._lock:
            if not OpenedFiles._installed:
                sys.addaudithook(OpenedFiles._hook)  # hooks cannot be removed: one for the whole session
                OpenedFiles._installed = True
            self._active.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._active.remove(self)

    def under(self, folder: Path) -> list[str]:
        root = os.path.realpath(folder)
        return [p for p in self.paths if p == root or p.startswith(root + os.sep)]


def marked_file(path: Path, seed: int = 400) -> Path:
    """A valid instance that must never be read: PatientID :data:`MARK`."""
    return write_one(path, seed=seed, PatientID=MARK, PatientName="OUTSIDE^MARKED")


def dicomdir_pointing_out(cd: Path, outside: Path) -> Path:
    """A CD folder whose DICOMDIR names one file of its own, one through ``..`` parts and one by absolute path,
    both pointing at ``outside`` (a marked file beside the CD folder)."""
    dicomdir = write_dicomdir(cd, seed=401, instances=3)
    with lenient_pydicom():
        ds = pydicom.dcmread(dicomdir)
        images = [r for r in ds.DirectoryRecordSequence if r.DirectoryRecordType == "IMAGE"]
        relative = os.path.relpath(outside, cd)
        images[1].ReferencedFileID = relative.split(os.sep)  # ['..', 'outside', 'MARKED.dcm']
        images[2].ReferencedFileID = str(outside)  # one absolute path
        ds.save_as(dicomdir)
    return dicomdir


def folder_with_links_out(root: Path, outside: Path) -> tuple[Path, list[Path]]:
    """``root`` with one instance, a link to it (inside), and links to ``outside``'s file and folder.

    Returns the chosen folder and the links that lead out."""
    own = write_one(root / "sub" / "own.dcm", seed=402)
    (root / "inside_link.dcm").symlink_to(own)
    out_file, out_dir = root / "to_outside.dcm", root / "to_outside_folder"
    out_file.symlink_to(outside)
    out_dir.symlink_to(outside.parent, target_is_directory=True)
    return root, [out_file, out_dir]


def zip_with_climbing_names(path: Path, instance: Path, absolute: Path) -> dict[str, bytes]:
    """A zip whose member names climb out (``../``, the absolute path ``absolute``, backslashes), each an
    instance of its own. Returns the member names and their bytes."""
    names = ["../../evil_up.dcm", str(absolute), "..\\..\\evil_back.dcm", "ok/plain.dcm"]
    members = {}
    for i, name in enumerate(names):
        data = write_one(instance.parent / f"_member{i}.dcm", seed=410 + i).read_bytes()
        (instance.parent / f"_member{i}.dcm").unlink()
        members[name] = data
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(zipfile.ZipInfo(name), data)
    return members


def tar_with_links_and_climbing_names(path: Path, instance: Path, outside: Path) -> None:
    """A tar whose members climb out by name, plus a symbolic and a hard link member to ``outside``."""
    data = instance.read_bytes()
    with tarfile.open(path, "w") as t:
        for name in ("../../evil_tar.dcm", "/abs/evil_tar2.dcm"):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            with instance.open("rb") as fh:
                t.addfile(info, fh)
        for kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
            info = tarfile.TarInfo(f"link{kind.decode()}.dcm")
            info.type, info.linkname = kind, str(outside)
            t.addfile(info)


def evil_uid_file(path: Path) -> Path:
    """An instance whose SOPInstanceUID is a path that climbs out, and whose SeriesInstanceUID is ``..``."""
    with lenient_pydicom():
        return write_one(path, seed=420, SOPInstanceUID=EVIL_UID, SeriesInstanceUID="..")


# -- DICOM bytes put together by hand -------------------------------------------------------------------------


def element(group: int, elem: int, vr: bytes, value: bytes, *, big: bool = False, length: int | None = None) -> bytes:
    """One explicit VR element (``length`` may lie about the value's length)."""
    order = ">" if big else "<"
    n = len(value) if length is None else length
    if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT", b"UC", b"UR"):
        return struct.pack(order + "HH2sHL", group, elem, vr, 0, n) + value
    return struct.pack(order + "HH2sH", group, elem, vr, n) + value


def _ui(uid: str) -> bytes:
    raw = uid.encode()
    return raw + b"\0" * (len(raw) % 2)


def _text(value: str) -> bytes:
    raw = value.encode()
    return raw + b" " * (len(raw) % 2)


def file_meta(ts: str, sop_uid: str) -> bytes:
    """Preamble, ``DICM`` and the file meta group (always explicit VR little endian)."""
    body = (
        element(0x0002, 0x0001, b"OB", b"\0\1")
        + element(0x0002, 0x0002, b"UI", _ui(MR_STORAGE))
        + element(0x0002, 0x0003, b"UI", _ui(sop_uid))
        + element(0x0002, 0x0010, b"UI", _ui(ts))
        + element(0x0002, 0x0012, b"UI", _ui("1.2.3.4"))
    )
    return b"\0" * 128 + b"DICM" + element(0x0002, 0x0000, b"UL", struct.pack("<L", len(body))) + body


def identifying(sop_uid: str, *, big: bool = False, private: bytes = b"") -> bytes:
    """The elements an upload needs, in tag order; ``private`` goes between groups 0008 and 0010."""
    e = lambda g, el, vr, v: element(g, el, vr, v, big=big)  # noqa: E731
    order = ">" if big else "<"
    return (
        e(0x0008, 0x0016, b"UI", _ui(MR_STORAGE))
        + e(0x0008, 0x0018, b"UI", _ui(sop_uid))
        + e(0x0008, 0x0060, b"CS", _text("MR"))
        + private
        + e(0x0010, 0x0010, b"PN", _text("CRAFTED^FILE"))
        + e(0x0010, 0x0020, b"LO", _text("CRAFTED"))
        + e(0x0020, 0x000D, b"UI", _ui(sop_uid + ".1"))
        + e(0x0020, 0x000E, b"UI", _ui(sop_uid + ".2"))
        + e(0x0028, 0x0100, b"US", struct.pack(order + "H", 8))
    )


def _zeros_deflated(n: int, level: int) -> bytes:
    packer = zlib.compressobj(level, zlib.DEFLATED, -15)
    zero = bytes(MB)
    out = [packer.compress(zero) for _ in range(n // MB)]
    out.append(packer.compress(bytes(n % MB)))
    return b"".join(out)


def deflated_bomb(path: Path, inflated: int = 640 * MB, *, in_header: bool = False) -> Path:
    """A deflated instance that unpacks to ``inflated`` bytes of zeros (a few MB on disk).

    The zeros are its pixel data, after a complete header; or, ``in_header``, a private element in the
    middle of the header (group 0009), so the header itself is that large."""
    sop = "1.2.826.0.1.3680043.2.1143.17.1" if not in_header else "1.2.826.0.1.3680043.2.1143.17.2"
    packer = zlib.compressobj(1, zlib.DEFLATED, -15)
    zeros = bytes(MB)
    with path.open("wb") as fh:
        fh.write(file_meta(DEFLATED, sop))
        if in_header:
            private = element(0x0009, 0x0010, b"LO", _text("BOMB")) + struct.pack(
                "<HH2sHL", 0x0009, 0x1001, b"OB", 0, inflated
            )
            head = identifying(sop, private=private)
            cut = head.index(private) + len(private)
            fh.write(packer.compress(head[:cut]))
            for _ in range(inflated // MB):
                fh.write(packer.compress(zeros))
            fh.write(packer.compress(head[cut:]))
        else:
            fh.write(packer.compress(identifying(sop) + struct.pack("<HH2sHL", 0x7FE0, 0x0010, b"OB", 0, inflated)))
            for _ in range(inflated // MB):
                fh.write(packer.compress(zeros))
        fh.write(packer.flush())
    return path


def big_instance_stream(sop: str, pixels: int) -> tuple[bytes, int]:
    """The header of an uncompressed instance whose pixel data is ``pixels`` zero bytes (written separately)."""
    head = file_meta(EXPLICIT_LE, sop) + identifying(sop) + struct.pack("<HH2sHL", 0x7FE0, 0x0010, b"OB", 0, pixels)
    return head, pixels


def zip_of_large_members(path: Path, members: int = 3, each: int = 200 * MB) -> Path:
    """A small zip (deflate level 1, a few MB) of ``members`` instances of ``each`` bytes, nearly all zeros."""
    zero = bytes(MB)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        for i in range(members):
            head, pixels = big_instance_stream(f"1.2.826.0.1.3680043.2.1143.17.3.{i}", each)
            with z.open(f"big{i}.dcm", "w", force_zip64=True) as fh:
                fh.write(head)
                for _ in range(pixels // MB):
                    fh.write(zero)
    return path


def truncated_un(path: Path, *, big_endian: bool = False, wanted: bool = True) -> Path:
    """An instance cut short: an UN element declares 0xFFFFFFF0 bytes and 16 follow.

    ``wanted``: the element is PatientName (a value the reader keeps) rather than a private one it skips.
    ``big_endian`` sends the file to the pydicom fallback whatever the element."""
    sop = "1.2.826.0.1.3680043.2.1143.17.4"
    tag = (0x0010, 0x0010) if wanted else (0x0009, 0x1010)
    head = (
        element(0x0008, 0x0016, b"UI", _ui(MR_STORAGE), big=big_endian)
        + element(0x0008, 0x0018, b"UI", _ui(sop), big=big_endian)
        + element(0x0008, 0x0060, b"CS", _text("MR"), big=big_endian)
    )
    cut = element(*tag, b"UN", b"TRUNCATED-VALUE!", big=big_endian, length=0xFFFFFFF0)
    path.write_bytes(file_meta(EXPLICIT_BE if big_endian else EXPLICIT_LE, sop) + head + cut)
    return path


def run_cli(tmp_path: Path, *args: str, timeout: float = 120) -> tuple[subprocess.CompletedProcess[str], float]:
    """``xnat-uploader ARGS`` in a child process with its own app folder; the result and the seconds it took."""
    env = dict(os.environ, XNAT_UPLOADER_CONFIG_DIR=str(tmp_path / "app"), XNAT_PASS="admin")
    start = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "xnat_uploader", *args], capture_output=True, text=True, env=env, timeout=timeout
    )
    return out, time.monotonic() - start
