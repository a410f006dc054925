"""The association PDUs of the DICOM upper layer (PS3.8 9.3): A-ASSOCIATE-RQ out; A-ASSOCIATE-AC/RJ and
A-ABORT in.

Encoding these few PDUs here keeps pynetdicom (and with it pydicom, ~0.2 s of imports) off the
command line's C-STORE path; pynetdicom stays the independent peer the tests check them against.
Pure functions over bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

_PDU_HEAD = struct.Struct(">BxL")
_ITEM_HEAD = struct.Struct(">BxH")
_FIXED = struct.Struct(">HH16s16s32x")  # protocol version, reserved, called AE, calling AE, reserved
PROTOCOL_VERSION = 1


class PduError(ValueError):
    """A malformed association PDU from the peer."""


def _item(kind: int, body: bytes) -> bytes:
    return _ITEM_HEAD.pack(kind, len(body)) + body


def _ae(title: str) -> bytes:
    return title.encode("ascii").ljust(16, b" ")[:16]


def associate_rq(
    called: str,
    calling: str,
    application_context: str,
    contexts: Sequence[tuple[int, str, Sequence[str]]],
    *,
    max_pdu: int,
    implementation_uid: str,
    implementation_version: str = "",
) -> bytes:
    """An A-ASSOCIATE-RQ PDU. ``contexts``: (odd context ID, abstract syntax, transfer syntaxes)."""
    items = [_item(0x10, application_context.encode("ascii"))]
    for context_id, abstract, syntaxes in contexts:
        sub = _item(0x30, abstract.encode("ascii")) + b"".join(_item(0x40, ts.encode("ascii")) for ts in syntaxes)
        items.append(_item(0x20, bytes((context_id, 0, 0, 0)) + sub))
    user = _item(0x51, struct.pack(">L", max_pdu)) + _item(0x52, implementation_uid.encode("ascii"))
    if implementation_version:
        user += _item(0x55, implementation_version.encode("ascii")[:16])
    items.append(_item(0x50, user))
    body = _FIXED.pack(PROTOCOL_VERSION, 0, _ae(called), _ae(calling)) + b"".join(items)
    return _PDU_HEAD.pack(0x01, len(body)) + body


@dataclass
class AssociateAc:
    """What an A-ASSOCIATE-AC tells the requestor: per context ID its result (0 = accepted) and transfer
    syntax, and the largest PDU the acceptor takes (0 = no limit)."""

    results: dict[int, tuple[int, str]] = field(default_factory=dict)
    max_pdu: int = 0


def _items(data: bytes, pos: int, end: int) -> list[tuple[int, bytes]]:
    out = []
    while pos < end:
        if pos + 4 > end:
            raise PduError("item header runs past the end of the PDU")
        kind, length = _ITEM_HEAD.unpack_from(data, pos)
        if pos + 4 + length > end:
            raise PduError(f"item 0x{kind:02x} runs past the end of the PDU")
        out.append((kind, data[pos + 4 : pos + 4 + length]))
        pos += 4 + length
    return out


def parse_associate_ac(body: bytes) -> AssociateAc:
    """Read an A-ASSOCIATE-AC PDU's body (the bytes after its 6-byte header)."""
    if len(body) < _FIXED.size:
        raise PduError("A-ASSOCIATE-AC shorter than its fixed part")
    ac = AssociateAc()
    for kind, data in _items(body, _FIXED.size, len(body)):
        if kind == 0x21:
            if len(data) < 4:
                raise PduError("presentation context item too short")
            syntaxes = [sub for k, sub in _items(data, 4, len(data)) if k == 0x40]
            ts = syntaxes[0].decode("ascii", "replace").rstrip("\0 ") if syntaxes else ""
            ac.results[data[0]] = (data[2], ts)
        elif kind == 0x50:
            for sub_kind, sub in _items(data, 0, len(data)):
                if sub_kind == 0x51 and len(sub) == 4:
                    (ac.max_pdu,) = struct.unpack(">L", sub)
    return ac


def parse_associate_rj(body: bytes) -> tuple[int, int, int]:
    """(result, source, reason) of an A-ASSOCIATE-RJ PDU's body."""
    if len(body) < 4:
        raise PduError("A-ASSOCIATE-RJ shorter than 4 bytes")
    return body[1], body[2], body[3]


def parse_abort(body: bytes) -> tuple[int, int]:
    """(source, reason) of an A-ABORT PDU's body; (0, 0) when it is too short to say."""
    return (body[2], body[3]) if len(body) >= 4 else (0, 0)
