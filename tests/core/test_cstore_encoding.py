"""The data set bytes C-STORE sends (:mod:`core.transfer.encoding`): the file's own when they can go as
they are; otherwise even, in the declared encoding, or converted, with every value kept.

The files are pydicom's test files and copies of them changed here byte by byte (an odd-length element,
standard elements written as VR UN); what is sent is read back with pydicom, an independent reader.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset

from xnat_uploader.core.transfer import dimse
from xnat_uploader.core.transfer.encoding import (
    ALL_UN,
    DEFLATED_LE,
    EXPLICIT_LE,
    IMPLICIT_LE,
    ODD_LENGTH,
    CannotSendError,
    dataset_offset,
    dataset_to_send,
    encoding_problem,
    read_meta,
    sendable,
    streamable,
)

pytestmark = pytest.mark.filterwarnings("ignore:Expected explicit VR, but found implicit VR:UserWarning")


def load(name: str) -> tuple[bytes, str]:
    data = Path(get_testdata_file(name)).read_bytes()
    return data, read_meta(data)[2]


def read_sent(dataset: bytes | memoryview, transfer_syntax: str) -> pydicom.Dataset:
    """pydicom's reading of a data set as sent (no file meta) in an uncompressed little-endian syntax."""
    raw = bytes(dataset)
    if transfer_syntax == DEFLATED_LE:
        raw = zlib.decompressobj(-zlib.MAX_WBITS).decompress(raw)
    return read_dataset(DicomBytesIO(raw), transfer_syntax == IMPLICIT_LE, True)


def values(ds: pydicom.Dataset) -> list[tuple[int, object]]:
    return [(e.tag, e.value) for e in ds]


def with_element(data: bytes, element: bytes) -> bytes:
    """``data`` (an explicit VR LE file) with ``element`` inserted before its pixel data."""
    at = data.index(b"\xe0\x7f\x10\x00")
    return data[:at] + element + data[at:]


def test_an_ordinary_file_goes_as_it_is_without_a_copy() -> None:
    data, ts = load("CT_small.dcm")
    sent = dataset_to_send(data, ts)
    assert isinstance(sent, memoryview)
    assert sent.obj is data
    assert bytes(sent) == data[dataset_offset(data) :]
    assert sendable(ts) == (EXPLICIT_LE, IMPLICIT_LE)


def test_odd_deflate_stream_gets_the_pad_byte_and_inflates_the_same() -> None:
    data, ts = load("image_dfl.dcm")
    own = data[dataset_offset(data) :]
    assert ts == DEFLATED_LE
    assert encoding_problem(own, ts) == ODD_LENGTH
    sent = dataset_to_send(data, ts)
    assert bytes(sent) == own + b"\0"
    assert values(read_sent(sent, ts)) == values(pydicom.dcmread(get_testdata_file("image_dfl.dcm")))


def test_odd_length_element_is_padded_by_rewriting() -> None:
    data, ts = load("CT_small.dcm")
    odd = struct.pack("<HH2sH", 0x0099, 0x0010, b"LO", 3) + b"XYZ"  # a private creator of 3 bytes
    bad = with_element(data, odd)
    assert encoding_problem(bad[dataset_offset(bad) :], ts) == ODD_LENGTH
    sent = dataset_to_send(bad, ts)
    assert len(sent) % 2 == 0
    assert encoding_problem(sent, ts) is None
    assert values(read_sent(sent, ts)) == values(pydicom.dcmread(io.BytesIO(bad)))
    assert read_sent(sent, ts)[0x00990010].value == "XYZ"


def test_implicit_elements_under_an_explicit_header_are_written_explicit() -> None:
    data, ts = load("SC_rgb_jpeg.dcm")  # says JPEG Baseline (explicit VR) but its elements are implicit VR
    assert "encoded implicit VR" in (encoding_problem(data[dataset_offset(data) :], ts) or "")
    sent = dataset_to_send(data, ts)
    assert bytes(sent[4:6]) == b"CS"  # (0008,0008) ImageType, now with its VR
    assert values(read_sent(sent, EXPLICIT_LE)) == values(pydicom.dcmread(get_testdata_file("SC_rgb_jpeg.dcm")))


def test_standard_elements_written_as_unknown_get_their_vr() -> None:
    data, ts = load("CT_small.dcm")
    start = dataset_offset(data)
    vr, length = data[start + 4 : start + 6], struct.unpack_from("<H", data, start + 6)[0]
    assert vr == b"CS"
    first_as_un = data[start : start + 4] + b"UN\0\0" + struct.pack("<L", length) + data[start + 8 : start + 8 + length]
    bad = data[:start] + first_as_un + data[start + 8 + length :]
    assert encoding_problem(bad[start:], ts) == ALL_UN
    sent = dataset_to_send(bad, ts)
    assert bytes(sent[4:6]) == b"CS"
    assert values(read_sent(sent, ts)) == values(pydicom.dcmread(get_testdata_file("CT_small.dcm")))


def test_streamable_from_the_first_bytes_exactly_when_the_whole_file_goes_as_it_is() -> None:
    ct, ts = load("CT_small.dcm")
    odd = with_element(ct, struct.pack("<HH2sH", 0x0099, 0x0010, b"LO", 3) + b"XYZ")
    files = [(ct, ts), load("image_dfl.dcm"), (odd, ts), load("SC_rgb_jpeg.dcm"), load("MR_small_implicit.dcm")]
    for data, syntax in files:
        as_is = isinstance(sent := dataset_to_send(data, syntax), memoryview) and sent.obj is data
        assert streamable(data[:4096], len(data), syntax) == (dataset_offset(data) if as_is else None)
    # Where the head ends before the first element, the file is read whole (and checked there).
    assert streamable(ct[: dataset_offset(ct) + 4], len(ct), ts) is None


@pytest.mark.parametrize(
    ("name", "send_as"),
    [("CT_small.dcm", IMPLICIT_LE), ("MR_small_implicit.dcm", EXPLICIT_LE), ("image_dfl.dcm", EXPLICIT_LE),
     ("image_dfl.dcm", IMPLICIT_LE)],
)  # fmt: skip
def test_conversions_keep_every_value(name: str, send_as: str) -> None:
    data, ts = load(name)
    assert send_as in sendable(ts)
    sent = dataset_to_send(data, ts, send_as)
    assert encoding_problem(sent, send_as) is None
    assert values(read_sent(sent, send_as)) == values(pydicom.dcmread(get_testdata_file(name)))


@pytest.mark.parametrize(("name", "send_as"), [("JPEG2000.dcm", IMPLICIT_LE), ("MR_small_bigendian.dcm", EXPLICIT_LE)])
def test_compressed_or_big_endian_files_are_not_converted(name: str, send_as: str) -> None:
    data, ts = load(name)
    assert sendable(ts) == (ts,)
    with pytest.raises(CannotSendError) as info:
        dataset_to_send(data, ts, send_as)
    assert "cannot be converted from" in info.value.reason


def test_a_file_pydicom_cannot_read_is_refused_with_the_reason() -> None:
    data, ts = load("CT_small.dcm")
    start = dataset_offset(data)
    broken = data[: start + 6] + b"\xff\xff" + data[start + 8 :]  # first element "65 KB long": past the end
    broken = broken[:-1]  # and odd, so it must be re-written
    with pytest.raises(CannotSendError) as info:
        dataset_to_send(broken, ts)
    assert info.value.reason.startswith("it could not be re-written for sending")


# -- the wire's own guards (dimse) ----------------------------------------------------------------------


def bare_association(peer_max_pdu: int) -> dimse.Association:
    """An Association object without a connection, for the checks that run before anything is sent."""
    assoc = dimse.Association.__new__(dimse.Association)
    assoc.endpoint = dimse.Endpoint("127.0.0.1", 1, "ANY")
    assoc.accepted = {("1.2.3", EXPLICIT_LE): 1}
    assoc.peer_max_pdu = peer_max_pdu
    assoc._sock = None  # type: ignore[assignment]  # never reached by these checks
    return assoc


@pytest.mark.parametrize(("peer_max", "fragment"), [(16385, 16378), (16384, 16378), (0, 256 * 1024 - 6), (9, 2)])
def test_fragments_are_even_whatever_the_peer_allows(peer_max: int, fragment: int) -> None:
    assert bare_association(peer_max)._fragment_size() == fragment


def test_an_odd_data_set_is_refused_before_anything_is_sent() -> None:
    with pytest.raises(dimse.OddLengthError) as info:
        bare_association(16384).store("1.2.3", "1.2.3.4", EXPLICIT_LE, b"\x08\x00\x05\x00CS\x01\x00A")
    assert "odd length (9 bytes)" in info.value.message
    assert not info.value.transient
