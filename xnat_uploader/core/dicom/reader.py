"""A small, fast DICOM header reader of our own, with pydicom as the fallback.

pydicom's ``dcmread(stop_before_pixels=True)`` costs 0.2-0.7 ms a file whatever its options (it builds
a Dataset of every element); a scan needs 20 values. This reader decides DICOM-or-not from the first
bytes, walks the elements of explicit or implicit VR little-endian files with ``struct``, keeps the
raw bytes of the tags we want, skips everything else by its length (undefined-length sequences and
items are followed, never decoded), and stops once group 0x0028 is behind it. It then walks on to the
pixel data only while that is cheap, to tell a complete file from a truncated one.

Anything unusual (big endian, deflated, a VR that disagrees with the dictionary, a command group, an
implicit item inside an explicit dataset ...) raises the internal :class:`_Fallback` and the file is
read again with pydicom; values are decoded by :mod:`.values` on both paths, so they are identical.

All functions may be called from any thread or process; they never write.
"""

from __future__ import annotations

import functools
import io
import os
import struct
import sys
from collections.abc import Callable
from typing import BinaryIO

from xnat_uploader.core.dicom import values as v
from xnat_uploader.core.dicom.records import InstanceRecord
from xnat_uploader.core.dicom.rejects import (
    DEFLATED_LE,
    DICOMDIR_REASON,
    DICOMDIR_SOP_CLASS,
    EXPLICIT_BE,
    EXPLICIT_LE,
    IMPLICIT_LE,
    NO_FIELDS,
    SHORT_PIXELS,
    TRUNCATED_HEADER,
    TRUNCATED_PIXELS,
    IsArchive,
    IsDicomdir,
    NotDicom,
    not_dicom_reason,
)
from xnat_uploader.core.dicom.tags import (
    K_ACCESSION,
    K_BITS,
    K_BURNED_IN,
    K_CHARSET,
    K_COLUMNS,
    K_FRAMES,
    K_IMAGE_TYPE,
    K_INSTANCE_NUMBER,
    K_ITEM,
    K_ITEM_END,
    K_MEDIA_CLASS,
    K_MODALITY,
    K_PATIENT_ID,
    K_PATIENT_NAME,
    K_PHOTOMETRIC,
    K_PIXEL,
    K_ROWS,
    K_SAMPLES,
    K_SEQ_END,
    K_SERIES_DESCRIPTION,
    K_SERIES_NUMBER,
    K_SERIES_UID,
    K_SOP_CLASS,
    K_SOP_INSTANCE,
    K_STUDY_DATE,
    K_STUDY_DESCRIPTION,
    K_STUDY_TIME,
    K_STUDY_UID,
    K_TS,
    WANT,
)

__all__ = [
    "DICOMDIR_REASON",
    "DICOMDIR_SOP_CLASS",
    "NO_FIELDS",
    "SHORT_PIXELS",
    "TRUNCATED_HEADER",
    "TRUNCATED_PIXELS",
    "IsArchive",
    "IsDicomdir",
    "NotDicom",
    "read_bytes",
    "read_file",
]


def _fallback(f: BinaryIO, size: int, path: str, member: str) -> InstanceRecord:
    # Imported on first use: most folders never need pydicom, and importing it costs ~0.15 s.
    from xnat_uploader.core.dicom.fallback import read_with_pydicom

    return read_with_pydicom(f, size, path, member)


# The pydicom fallback; called through this module's global so tests can count its uses.
_read_with_pydicom = _fallback


def _private_syntaxes() -> list[str]:
    """Transfer syntaxes registered with pydicom as private (none unless pydicom was imported and told so)."""
    uid_module = sys.modules.get("pydicom.uid")
    return uid_module.PrivateTransferSyntaxes if uid_module is not None else []


class _Fallback(Exception):
    """Internal: this file needs pydicom."""


_ARCHIVE_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")
_FIRST_READ = 8192  # one read covers the header of nearly every file before group 0x0028
_PIXEL_PHASE_READS = 64  # reads allowed past group 0x0028 to reach the pixels (Siemens CSA headers need ~4)
_UNDEFINED = 0xFFFFFFFF
MAX_VALUE = 1 << 20  # a wanted header value (a name, a UID) longer than this is not a real one
HUGE_VALUE = "damaged DICOM header: a field is far longer than DICOM allows"
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"})
_VRS = _LONG_VRS | {b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT", b"PN", b"SH"}
_VRS |= {b"SL", b"SQ", b"SS", b"ST", b"TM", b"UI", b"UL", b"US"}
_SHORT_VRS = _VRS - _LONG_VRS
VALID_VRS, LONG_VRS = _VRS, _LONG_VRS  # the same lists for the C-STORE encoding check (transfer/encoding.py)

_EXPLICIT = struct.Struct("<I2sH")  # key, VR, 16-bit length
_IMPLICIT = struct.Struct("<IL")  # key, 32-bit length
_U32 = struct.Struct("<L")
_U16 = struct.Struct("<H")


# Found only these, a file has nothing an upload could use.
_NOT_IDENTIFYING = frozenset({K_CHARSET, *(k for k in WANT if k & 0xFFFF == 0x0028)})

ReadAt = Callable[[int, int], bytes]


def read_file(path: str) -> InstanceRecord:
    """Read the header of the DICOM file at ``path``.

    Raises :class:`NotDicom` (or :class:`IsDicomdir`) with a plain-language reason for anything that
    is not a usable instance, and ``OSError`` when the file cannot be opened or read.
    Any thread or process may call it.
    """
    with open(path, "rb", buffering=0) as f:
        size = os.fstat(f.fileno()).st_size
        return _read_handle(f, size, path, "", sequential=False)


def read_stream(fileobj: BinaryIO, size: int, path: str, member: str) -> InstanceRecord:
    """Read the header of a file that is read front to back, such as an archive member, never holding it whole.

    ``fileobj`` must be seekable, but backward seeks may be slow (a compressed member is decompressed again),
    so the reader walks forward only: it reads the header, then at most its way to the pixel data. Same
    rules and errors as :func:`read_file`.
    """
    return _read_handle(fileobj, size, path, member, sequential=True)


def _read_handle(f: BinaryIO, size: int, path: str, member: str, *, sequential: bool) -> InstanceRecord:
    if size == 0:
        raise NotDicom("empty file (0 bytes)", 0)
    head = f.read(_FIRST_READ)

    def read_at(pos: int, n: int) -> bytes:
        f.seek(pos)
        return f.read(n)

    try:
        return _read(read_at, size, head, path, member, sequential)
    except _Fallback:
        pass
    f.seek(0)
    # pydicom reads in many small pieces: buffer them when the file object itself is unbuffered.
    buffered = io.BufferedReader(f, 65536) if isinstance(f, io.RawIOBase) else f
    return _read_with_pydicom(buffered, size, path, member)


def read_bytes(data: bytes, path: str, member: str = "") -> InstanceRecord:
    """Read the header of a DICOM file held in memory. Same rules as :func:`read_file`."""
    size = len(data)
    if size == 0:
        raise NotDicom("empty file (0 bytes)", 0)
    view = memoryview(data)

    def read_at(pos: int, n: int) -> bytes:
        return bytes(view[pos : pos + n])

    try:
        return _read(read_at, size, data[:_FIRST_READ], path, member)
    except _Fallback:
        return _read_with_pydicom(io.BytesIO(data), size, path, member)


def _read(read_at: ReadAt, size: int, head: bytes, path: str, member: str, sequential: bool = False) -> InstanceRecord:
    """The fast path. Raises NotDicom, or _Fallback when pydicom must decide.

    ``sequential``: reads go forward only (a stream): see :func:`_check_encapsulated`.
    """
    if len(head) >= 132 and head[128:132] == b"DICM":
        pos = 132
    elif len(head) >= 8 and head[1] == 0 and head[0] in (2, 8) and head[2:4] != b"\xff\xff":
        # No preamble: accept a group 0002/0008 element in explicit or plausible implicit VR LE.
        if head[4:6] not in _VRS and _U32.unpack_from(head, 4)[0] > size:
            raise NotDicom(not_dicom_reason(head), size)
        pos = 0
    elif len(head) >= 8 and head[0] == 0 and head[1] in (2, 8) and head[4:6] in _VRS:
        raise _Fallback  # big-endian start without preamble
    elif head.startswith(_ARCHIVE_MAGIC) or head[257:262] == b"ustar":
        raise IsArchive(size)
    else:
        raise NotDicom(not_dicom_reason(head), size)

    buf, base = head, 0

    # File meta group: always explicit VR little endian.
    ts: str | None = None
    media_class = ""
    while pos + 8 <= size:
        i = pos - base
        if i + 12 > len(buf):
            buf, base, i = read_at(pos, _FIRST_READ), pos, 0
        key, vr, length = _EXPLICIT.unpack_from(buf, i)
        if key & 0xFFFF != 2:
            break
        if vr not in _VRS:
            raise _Fallback  # implicit-VR meta: pydicom has rules for that
        hdr = 8
        if vr in _LONG_VRS:
            if pos + 12 > size:
                raise NotDicom(TRUNCATED_HEADER, size)
            length, hdr = _U32.unpack_from(buf, i + 8)[0], 12
        if length == _UNDEFINED:
            raise _Fallback
        end = pos + hdr + length
        if end > size:
            raise NotDicom(TRUNCATED_HEADER, size)
        if key in (K_TS, K_MEDIA_CLASS):
            if length > MAX_VALUE:
                raise NotDicom(HUGE_VALUE, size)
            if end - base > len(buf):
                buf, base, i = read_at(pos, hdr + length), pos, 0
            raw = bytes(buf[i + hdr : i + hdr + length])
            if key == K_TS:
                ts = v.uid(raw)
            else:
                media_class = v.uid(raw)
        pos = end

    if media_class == DICOMDIR_SOP_CLASS:
        raise IsDicomdir(size)
    if ts == DEFLATED_LE:
        return _read_deflated(read_at, size, pos, path, member)
    return _read_dataset(read_at, size, buf, base, pos, ts, path, member, sequential=sequential)


def _read_deflated(read_at: ReadAt, size: int, start: int, path: str, member: str) -> InstanceRecord:
    """A deflated dataset: inflate only as much as the header needs, never more than :data:`deflated.MAX_INFLATED`.

    The inflated bytes are an explicit VR little endian dataset, walked by the same loop; what lies beyond
    the inflated part (the pixel data, usually) is never inflated, so its completeness is not checked.
    """
    from xnat_uploader.core.dicom import deflated

    inflater = deflated.Inflater(read_at, start, size)
    while True:
        data = inflater.data
        try:
            return _read_dataset(
                functools.partial(_slice, data), len(data), _slice(data, 0, _FIRST_READ), 0, 0, DEFLATED_LE,
                path, member, open_end=not inflater.complete, reported_size=size,
            )  # fmt: skip
        except _NeedMore:
            inflater.more()  # raises NotDicom once the cap is reached
        except _Fallback:
            return deflated.read_inflated(inflater, size, path, member)


def _slice(data: bytearray, pos: int, n: int) -> bytes:
    """``n`` bytes at ``pos`` of the inflated data, as ``bytes`` (values are kept and hashed)."""
    return bytes(memoryview(data)[pos : pos + n])


class _NeedMore(Exception):
    """Internal: the header goes on beyond the bytes inflated so far."""


def _read_dataset(
    read_at: ReadAt, size: int, buf: bytes, base: int, pos: int, ts: str | None, path: str, member: str, *,
    sequential: bool = False, open_end: bool = False, reported_size: int | None = None,
) -> InstanceRecord:  # fmt: skip
    """Walk the dataset from ``pos`` (after the file meta group) and build the record.

    ``open_end``: the bytes go on beyond ``size`` (a part of an inflated dataset): running past it raises
    :class:`_NeedMore` while the header is not complete, and ends the walk once it is. ``reported_size`` is the
    file's size for the record and the reasons (the size of the bytes walked when not given).
    """
    file_size = size if reported_size is None else reported_size

    def past_end(header_done: bool, reason: str) -> None:
        """Running past the bytes we have: truncated, or (open end) more to inflate, or the walk is over."""
        if not open_end:
            raise NotDicom(reason, file_size)
        if not header_done:
            raise _NeedMore

    # Transfer syntax -> encoding, with pydicom's rules (filereader.read_partial).
    if pos + 6 <= size:
        i = pos - base
        if i + 12 > len(buf):
            buf, base, i = read_at(pos, _FIRST_READ), pos, 0
        first_group = _U16.unpack_from(buf, i)[0]
        if first_group == 0:
            raise _Fallback  # a command group: pydicom reads it separately
        first_vr = buf[i + 4 : i + 6]
        if ts is None:
            implicit = first_vr not in _VRS
            if not implicit and first_group >= 1024:
                raise _Fallback  # big endian guessed
        elif ts == IMPLICIT_LE:
            implicit = True
        elif ts == EXPLICIT_BE or ts in _private_syntaxes():
            raise _Fallback
        else:
            implicit = False  # explicit VR LE and every encapsulated syntax
        # pydicom re-checks the first element (_is_implicit_vr) and switches with a warning.
        if implicit == (0x40 < first_vr[0] < 0x5B and 0x40 < first_vr[1] < 0x5B):
            raise _Fallback
    else:
        implicit = ts == IMPLICIT_LE or ts is None
    dataset_implicit = implicit

    found: dict[int, bytes] = {}
    want = WANT
    short_vrs, long_vrs = _SHORT_VRS, _LONG_VRS
    unpack_explicit, unpack_implicit, unpack_u32 = _EXPLICIT.unpack_from, _IMPLICIT.unpack_from, _U32.unpack_from
    depth = 0
    stack: list[bool] = []  # implicit flag to restore when leaving an undefined-length container
    header_done = False  # True once group 0x0028 is behind us
    extra_reads = 0
    gave_up = False  # stopped walking towards the pixel data because it was too far
    blen = len(buf)
    # The hot loop: one pass per element, ~0.5 us each. Keep it lean.
    while True:
        i = pos - base
        if i + 12 > blen:
            if pos + 8 > size:
                if pos == size and depth == 0 and not open_end:
                    break  # clean end of file
                past_end(header_done, TRUNCATED_HEADER)
                break
            if header_done:
                extra_reads += 1
                if extra_reads > _PIXEL_PHASE_READS:
                    gave_up = True
                    break
            buf, base, i = read_at(pos, _FIRST_READ), pos, 0
            blen = len(buf)
        if implicit:
            key, length = unpack_implicit(buf, i)
            group = key & 0xFFFF
            hdr = 8
            vr = b""
        else:
            key, vr, length = unpack_explicit(buf, i)
            group = key & 0xFFFF
            if group == 0xFFFE:  # items and delimiters have no VR, whatever the syntax
                length = unpack_u32(buf, i + 4)[0]
            elif vr in short_vrs:
                hdr = 8
            elif vr in long_vrs:
                if pos + 12 > size:
                    past_end(header_done, TRUNCATED_HEADER)
                    break
                length, hdr = unpack_u32(buf, i + 8)[0], 12
            else:
                raise _Fallback
        if group == 0xFFFE:
            if key == K_ITEM and depth > 0:
                if length == _UNDEFINED:
                    stack.append(implicit)
                    depth += 1
                    pos += 8
                else:
                    pos += 8 + length
                    if pos > size:
                        past_end(header_done, TRUNCATED_HEADER)
                        break
            elif key in (K_ITEM_END, K_SEQ_END) and depth > 0:
                implicit = stack.pop()
                depth -= 1
                pos += 8
            else:
                raise _Fallback
            continue
        if length == _UNDEFINED:
            if key == K_PIXEL and depth == 0:
                if not open_end:
                    _check_encapsulated(read_at, size, pos + hdr, sequential)
                break
            if implicit or vr == b"SQ":
                stack.append(implicit)
                depth += 1
            elif vr == b"UN":
                stack.append(implicit)
                depth += 1
                implicit = True  # an undefined-length UN holds an implicit VR LE sequence
            else:
                raise _Fallback
            pos += hdr
            continue
        end = pos + hdr + length
        if depth == 0:
            if group > 0x0028:
                header_done = True
                if key == K_PIXEL:
                    if end > size:
                        past_end(True, TRUNCATED_PIXELS)
                        break
                    _check_native(found, ts, length, size)
                    break
                if group >= 0x7FE0:
                    break  # float pixel data, or past the pixels
            elif key in want:
                if end > size:  # before any fallback: pydicom would read a cut value as it is
                    past_end(False, TRUNCATED_HEADER)
                if not implicit and vr != want[key]:
                    raise _Fallback  # a VR that disagrees with the dictionary: pydicom converts it
                if length > MAX_VALUE:
                    raise NotDicom(HUGE_VALUE, file_size)
                if end - base > blen:
                    buf, base, i = read_at(pos, max(_FIRST_READ, hdr + length)), pos, 0
                    blen = len(buf)
                found[key] = buf[i + hdr : i + hdr + length]
        if end > size:
            past_end(header_done, TRUNCATED_HEADER)
            break
        pos = end

    if gave_up:
        # The pixel data was too far to reach cheaply: compare what is left with what it needs.
        need = _native_bytes(found, ts)
        if need and size - pos < need:
            raise NotDicom(TRUNCATED_PIXELS, size)
    if not ts:
        # No transfer syntax in the file: name the encoding it actually uses (pydicom guesses the same).
        ts = IMPLICIT_LE if dataset_implicit else EXPLICIT_LE
    return _record(found, file_size, ts, path, member)


def _native_bytes(found: dict[int, bytes], ts: str | None) -> int:
    """Bytes of native pixel data that Rows x Columns x ... call for (0 if unknown or compressed)."""
    if ts not in (None, IMPLICIT_LE, EXPLICIT_LE):
        return 0
    try:
        rows = _U16.unpack(found[K_ROWS])[0]
        cols = _U16.unpack(found[K_COLUMNS])[0]
        bits = _U16.unpack(found[K_BITS])[0]
    except (KeyError, struct.error):
        return 0
    spp_raw = found.get(K_SAMPLES)
    spp = _U16.unpack(spp_raw)[0] if spp_raw and len(spp_raw) == 2 else 1
    frames_raw = found.get(K_FRAMES)
    frames = v.integer(frames_raw) if frames_raw else 1
    if frames is None or frames < 1:
        frames = 1
    # As pydicom.pixels.utils.get_expected_length: 1-bit data packed, 4:2:2 YBR two samples a pixel.
    pixels = rows * cols * spp * frames
    need = (pixels + 7) // 8 if bits == 1 else pixels * (bits // 8)
    if v.string(found.get(K_PHOTOMETRIC, b"")) == "YBR_FULL_422":
        need = need // 3 * 2
    return need


def _check_native(found: dict[int, bytes], ts: str | None, length: int, size: int) -> None:
    need = _native_bytes(found, ts)
    if need and length < need:
        raise NotDicom(SHORT_PIXELS, size)  # the writer stopped early, or the header lies


def _check_encapsulated(read_at: ReadAt, size: int, start: int, sequential: bool = False) -> None:
    """Encapsulated pixel data: the file should end with the sequence delimiter, or its items must fit.

    ``sequential`` (a stream): walk the items from the start only; jumping to the end first and coming back
    would read a compressed member twice.
    """
    if not sequential and size - start >= 8 and read_at(size - 8, 8) == b"\xfe\xff\xdd\xe0\x00\x00\x00\x00":
        return
    # Something follows the pixel data (padding, or a writer's oddity): walk the fragment items.
    pos = start
    for _ in range(100_000):
        if pos + 8 > size:
            raise NotDicom(TRUNCATED_PIXELS, size)
        key, length = _IMPLICIT.unpack(read_at(pos, 8))
        if key == K_SEQ_END:
            return
        if key != K_ITEM:
            return  # not ours to judge
        pos += 8 + length
        if pos > size:
            raise NotDicom(TRUNCATED_PIXELS, size)


# Decoded values by (tag, charset, raw bytes): files of one series repeat their patient, study and
# series values, so most fields are a dict hit instead of a decode, a strip and an intern.
_decoded: dict[tuple[int, bytes | None, bytes], str] = {}
_decoded_rows: dict[tuple[bytes | None, ...], tuple[str, ...]] = {}
_DECODED_MAX = 16_384  # entries; cleared when full, so memory stays a few MB whatever the corpus
_ROWS_MAX = 4_096
_TEXT_FIELDS = (
    (K_PATIENT_ID, "text"),
    (K_PATIENT_NAME, "pn"),
    (K_STUDY_UID, "uid"),
    (K_STUDY_DATE, "str"),
    (K_STUDY_TIME, "str"),
    (K_STUDY_DESCRIPTION, "text"),
    (K_ACCESSION, "text"),
    (K_SERIES_UID, "uid"),
    (K_SERIES_DESCRIPTION, "text"),
    (K_MODALITY, "str"),
    (K_SOP_CLASS, "uid"),
    (K_IMAGE_TYPE, "str"),
    (K_BURNED_IN, "str"),
)


def _decoded_value(key: int, kind: str, raw: bytes, charset: bytes | None) -> str:
    """One field decoded as pydicom would, interned; cached per (tag, charset, raw bytes)."""
    cache_key = (key, charset, raw)
    value = _decoded.get(cache_key)
    if value is not None:
        return value
    if kind in ("text", "pn"):
        # ASCII without escapes reads the same in every character set: no need to look the set up.
        plain = raw.isascii() and b"\x1b" not in raw
        encodings = v.DEFAULT_ENCODINGS if plain else v.encodings_for(charset)
        value = v.text(raw, encodings) if kind == "text" else v.person_name(raw, encodings)
    elif kind == "uid":
        value = v.uid(raw)
    else:
        value = v.string(raw)
    if len(_decoded) >= _DECODED_MAX:
        _decoded.clear()
    value = _decoded[cache_key] = sys.intern(value)
    return value


def _record(found: dict[int, bytes], size: int, ts: str, path: str, member: str) -> InstanceRecord:
    if not found.keys() - _NOT_IDENTIFYING:
        raise NotDicom(NO_FIELDS, size)
    get = found.get
    charset = get(K_CHARSET)
    # One lookup for all 13 repeated fields: files of a series differ only in their instance values.
    raws = (charset, *[get(key, b"") for key, _ in _TEXT_FIELDS])
    values = _decoded_rows.get(raws)
    if values is None:
        fields = zip(_TEXT_FIELDS, raws[1:], strict=True)
        values = tuple(_decoded_value(key, kind, raw, charset) for (key, kind), raw in fields)
        if len(_decoded_rows) >= _ROWS_MAX:
            _decoded_rows.clear()
        _decoded_rows[raws] = values
    (patient_id, patient_name, study_uid, study_date, study_time, study_description, accession_number,
     series_uid, series_description, modality, sop_class_uid, image_type, burned_in_annotation) = values  # fmt: skip
    return InstanceRecord(
        path=path,
        size=size,
        patient_id=patient_id,
        patient_name=patient_name,
        study_uid=study_uid,
        study_date=study_date,
        study_time=study_time,
        study_description=study_description,
        accession_number=accession_number,
        series_uid=series_uid,
        series_number=v.integer(get(K_SERIES_NUMBER, b"")),
        series_description=series_description,
        modality=modality,
        sop_class_uid=sop_class_uid,
        sop_instance_uid=v.uid(get(K_SOP_INSTANCE, b"")),
        instance_number=v.integer(get(K_INSTANCE_NUMBER, b"")),
        transfer_syntax=sys.intern(ts),
        image_type=image_type,
        burned_in_annotation=burned_in_annotation,
        member=member,
    )
