"""One instance's full header as plain rows, for the header preview (no Qt here).

Not to be confused with :mod:`.tags`, the scanner's table of the few tags it reads. This module reads
*every* element before the pixel data with pydicom and turns it into :class:`HeaderRow` tuples a view
can show: tag, keyword, VR, a value text (truncated; binary values as ``<N bytes>``), the nesting depth
(sequence items and their elements are indented one level each) and whether the tag is private.

It reads a file: call it from a worker thread, never the GUI thread.
"""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Iterator
from typing import BinaryIO, NamedTuple

import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filereader import read_dataset

from xnat_uploader.core.dicom import deflated
from xnat_uploader.core.dicom.rejects import NotDicom
from xnat_uploader.core.transfer.base import open_source

MAX_VALUE = 200  # characters of a value shown; the rest is cut with an ellipsis
MAX_ITEMS = 100  # sequence items listed per sequence; a note row says how many more there are
ITEM_TAG = 0xFFFEE000

_BINARY_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "UN", "OB or OW", "US or OW", "US or SS or OW"}


class HeaderRow(NamedTuple):
    """One element (or sequence item) of a header, as text a view shows as it is."""

    tag: int  # (group << 16) | element; ITEM_TAG for a sequence item row
    keyword: str  # "PatientName"; for private or unknown tags the dictionary name or "[private]"
    vr: str
    value: str
    depth: int  # 0 for top-level elements, +1 per item level (an item row itself is one deeper than its sequence)
    private: bool

    @property
    def tag_text(self) -> str:
        """``(gggg,eeee)``, upper-case hex."""
        return f"({self.tag >> 16:04X},{self.tag & 0xFFFF:04X})"


def read_header(path: str, member: str = "") -> list[HeaderRow]:
    """Every element of one instance's header (file meta first), without pixel data.

    ``member`` names a file inside a zip/tar archive at ``path``. Raises ``OSError`` when the file
    cannot be read and ``pydicom.errors.InvalidDicomError`` (a ``ValueError``) when it is not DICOM.
    Reads the file: worker threads only.
    """
    with open_source(path, member) as fh:
        ds = _read(fh)
    rows: list[HeaderRow] = []
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        rows.extend(_rows(meta, 0))
    rows.extend(_rows(ds, 0))
    return rows


def _read(fh: BinaryIO) -> Dataset:
    """pydicom's reading of the header. A deflated dataset is inflated only up to :data:`deflated.MAX_INFLATED`
    (pydicom would unpack it whole, and a small file can unpack to gigabytes in the window's process)."""
    start = deflated.dataset_start(fh)
    fh.seek(0)
    if start is None:
        return pydicom.dcmread(fh, stop_before_pixels=True, force=True)
    meta = fh.read(start)

    def read_at(pos: int, n: int) -> bytes:
        fh.seek(pos)
        return fh.read(n)

    inflater = deflated.Inflater(read_at, start, sys.maxsize)
    with contextlib.suppress(NotDicom):  # the cap: show what fits
        while not inflater.complete:
            inflater.more()
    ds = pydicom.dcmread(io.BytesIO(bytes(inflater.data)), stop_before_pixels=True, force=True)
    offset = 132 if meta[128:132] == b"DICM" else 0
    ds.file_meta = FileMetaDataset(read_dataset(io.BytesIO(meta[offset:]), False, True))
    return ds


def _rows(ds: Dataset, depth: int) -> Iterator[HeaderRow]:
    for elem in ds:  # sequences are walked by _element_rows, one depth level per item
        yield from _element_rows(elem, depth)


def _element_rows(elem: DataElement, depth: int) -> Iterator[HeaderRow]:
    tag = int(elem.tag)
    private = elem.tag.is_private
    keyword = elem.keyword or _name(elem)
    vr = str(elem.VR or "")
    if vr == "SQ":
        items = elem.value or []
        n = len(items)
        yield HeaderRow(tag, keyword, vr, f"{n} item{'s' if n != 1 else ''}", depth, private)
        for i, item in enumerate(items[:MAX_ITEMS], start=1):
            yield HeaderRow(ITEM_TAG, f"Item {i}", "", "", depth + 1, private)
            yield from _rows(item, depth + 2)
        if n > MAX_ITEMS:
            yield HeaderRow(ITEM_TAG, f"... {n - MAX_ITEMS} more items", "", "", depth + 1, private)
        return
    yield HeaderRow(tag, keyword, vr, value_text(elem), depth, private)


def _name(elem: DataElement) -> str:
    if elem.tag.is_private:
        if elem.tag.is_private_creator:
            return "[private creator]"
        name = elem.name
        return name if name and not name.startswith("Private tag") else "[private]"
    return elem.name or "[unknown]"


def value_text(elem: DataElement) -> str:
    """The value of one (non-sequence) element as short text; binary values as ``<N bytes>``."""
    value = elem.value
    if value is None or value == "":
        return ""
    if isinstance(value, bytes | bytearray | memoryview) or str(elem.VR) in _BINARY_VRS:
        size = len(value) if hasattr(value, "__len__") else 0
        return f"<{size:,} bytes>"
    try:
        if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
            text = "\\".join(str(v) for v in value)
        else:
            text = str(value)
    except Exception as exc:  # noqa: BLE001 - one odd value must not hide the whole header
        text = f"<cannot show: {type(exc).__name__}>"
    text = text.replace("\r", " ").replace("\n", " ").replace("\0", "")
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 1] + "\u2026"
