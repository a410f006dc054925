"""Deflated DICOM (transfer syntax 1.2.840.10008.1.2.1.99): inflate the header only, in pieces, with a cap.

Everything after the file meta group is one raw deflate stream. pydicom inflates it whole before reading a
single element; a file of a few hundred kilobytes can unpack to gigabytes (a "decompression bomb"), so up
to four scan workers would each hold that much. Here the stream is inflated a piece at a time, only as far
as the header reader asks (it stops before the pixel data), and never beyond :data:`MAX_INFLATED` bytes:
a header that needs more is reported, not read. The pixel data is never inflated, so a deflated file cut
inside its pixels is not noticed here (the server's own check is the last word).

Any thread or process may use it; nothing is shared.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from typing import BinaryIO

from xnat_uploader.core.dicom.records import InstanceRecord
from xnat_uploader.core.dicom.rejects import DEFLATED_LE, NotDicom

MAX_INFLATED = 16 << 20  # inflated bytes the header may use; real headers need well under 1 MB
FIRST_STEP = 256 << 10  # inflated at first; each further step inflates four times as much, up to the cap
INPUT_CHUNK = 64 << 10  # compressed bytes read at once
TOO_LARGE = "compressed (deflated) DICOM file whose header unpacks to more than 16 MB (not read)"
DAMAGED = "damaged compressed (deflated) DICOM file"


class Inflater:
    """The inflated dataset so far (``data``), grown on demand by :meth:`more`.

    ``read_at(pos, n)`` reads the raw file; the deflate stream starts at ``start``. ``complete`` is True once
    the stream has ended (or the file has: a cut stream simply ends early, and the reader then finds the
    dataset truncated).
    """

    def __init__(self, read_at: Callable[[int, int], bytes], start: int, size: int) -> None:
        self._read_at = read_at
        self._pos = start
        self._size = size
        self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
        self._target = FIRST_STEP
        self.data = bytearray()
        self.complete = False
        self._fill()

    def more(self) -> None:
        """Inflate further; :class:`NotDicom` when the cap is reached and the header still goes on."""
        if self.complete or self._target >= MAX_INFLATED:
            raise NotDicom(TOO_LARGE, self._size)
        self._target = min(self._target * 4, MAX_INFLATED)
        self._fill()

    def _fill(self) -> None:
        try:
            while len(self.data) < self._target and not self.complete:
                chunk = self._inflate.unconsumed_tail
                if not chunk:
                    chunk = self._read_at(self._pos, INPUT_CHUNK) if self._pos < self._size else b""
                    self._pos += len(chunk)
                    if not chunk:
                        self.complete = True  # the file ends before the stream does: the reader says truncated
                        break
                self.data += self._inflate.decompress(chunk, min(INPUT_CHUNK * 16, self._target - len(self.data)))
                if self._inflate.eof:
                    self.complete = True
        except zlib.error as exc:
            raise NotDicom(DAMAGED, self._size) from exc


def dataset_start(fh: BinaryIO) -> int | None:
    """Where the deflate stream of a deflated file begins (after its file meta group); ``None`` for any other file.

    Reads the file meta group only (explicit VR little endian, by the standard), at most 64 elements.
    """
    head = fh.read(132)
    pos = 132 if head[128:132] == b"DICM" else 0
    fh.seek(pos)
    syntax = b""
    for _ in range(64):
        raw = fh.read(12)
        if len(raw) < 8:
            return None
        group, _element, vr, length = struct.unpack_from("<HH2sH", raw)
        if group != 2:
            break
        size = 8
        if vr in (b"OB", b"OW", b"OF", b"SQ", b"UN", b"UT", b"UC", b"UR"):
            if len(raw) < 12:
                return None
            length, size = struct.unpack_from("<L", raw, 8)[0], 12
        if length > 1 << 16:
            return None  # not a file meta group we understand: let pydicom judge
        fh.seek(pos + size)
        value = fh.read(length)
        if _element == 0x0010:
            syntax = value
        pos += size + length
        fh.seek(pos)
    return pos if syntax.rstrip(b"\0 ") == DEFLATED_LE.encode() else None


def read_inflated(inflater: Inflater, size: int, path: str, member: str) -> InstanceRecord:
    """The pydicom fallback for a deflated file: pydicom reads the inflated bytes, never the deflated stream.

    When pydicom runs past the bytes inflated so far, more are inflated (up to the cap) and it reads again.
    """
    from xnat_uploader.core.dicom.fallback import RanPastEnd, read_with_pydicom

    while True:
        try:
            return read_with_pydicom(
                io.BytesIO(bytes(inflater.data)), size, path, member,
                transfer_syntax=DEFLATED_LE, complete=inflater.complete, stream_size=len(inflater.data),
            )  # fmt: skip
        except RanPastEnd:
            inflater.more()
