"""Decode raw header values exactly as pydicom does, without pydicom's per-element machinery.

The fast reader hands raw bytes here; the pydicom fallback hands pydicom values. Both end as the
plain ``str`` / ``int | None`` values of :class:`~.records.InstanceRecord`, so the two paths agree
by construction. The rules copy ``pydicom.values`` (3.x): text VRs are decoded with the file's
SpecificCharacterSet through :func:`pydicom.charset.decode_bytes` (so ISO 2022 escapes work), CS/DA/TM
with the default encoding, each stripped the way pydicom strips that VR. Multi-valued strings are
joined with a backslash, as they are stored.

All functions are pure and may be called from any thread.
"""

from __future__ import annotations

import re
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# pydicom is imported where a value needs it (another character set, an odd number), not at the top:
# plain ASCII values, most of them, are decoded here, and the command line starts ~0.15 s faster.

DEFAULT_ENCODINGS = ["iso8859"]  # pydicom.charset.default_encoding, as a list

_encodings_cache: dict[bytes, list[str]] = {}
_quiet_lock = threading.RLock()


@contextmanager
def quiet_pydicom() -> Iterator[None]:
    """Silence pydicom's value validation while we read.

    pydicom's default ("WARN") validation logs messages that quote element values, which could put a
    patient name into our log file. IGNORE gives the same values (validation never changes a value in
    WARN mode), only without the messages. The setting is global to pydicom, so a lock keeps two
    threads from restoring it out of order; other threads see IGNORE for the short time it is held.
    """
    from pydicom import config

    with _quiet_lock:
        previous = config.settings._reading_validation_mode
        config.settings.reading_validation_mode = config.IGNORE
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                yield
        finally:
            config.settings._reading_validation_mode = previous


_UID = re.compile(r"[0-9]+(?:\.[0-9]+)*")


def is_valid_uid(value: str) -> bool:
    """True for a UID of digit groups joined by single dots, at most 64 characters (DICOM PS3.5 9.1).

    Leading zeros are let through, as many real systems write them and XNAT accepts them. What matters to
    us: such a UID cannot carry ``/``, ``\\``, ``..``, letters or control characters, so a name built from it
    is safe to send.
    """
    return 0 < len(value) <= 64 and _UID.fullmatch(value) is not None


def encodings_for(raw: bytes | None) -> list[str]:
    """Python encodings for a raw (0008,0005) SpecificCharacterSet value (cached: few distinct values)."""
    if not raw:
        return DEFAULT_ENCODINGS
    cached = _encodings_cache.get(raw)
    if cached is None:
        # As pydicom: CS decoded with the default encoding, trailing padding stripped, split on "\".
        text = raw.decode("iso8859").rstrip(" \x00")
        if not text:
            cached = DEFAULT_ENCODINGS
        else:
            parts = text.split("\\")
            from pydicom.charset import convert_encodings

            with quiet_pydicom():
                cached = convert_encodings(parts[0] if len(parts) == 1 else parts)
        if len(_encodings_cache) < 256:
            _encodings_cache[raw] = cached
    return cached


def text(raw: bytes, encodings: list[str]) -> str:
    """SH, LO (pydicom ``convert_text``): charset-decoded, each value right-stripped of spaces and NULs."""
    if not raw:
        return ""
    if raw.isascii() and b"\x1b" not in raw:
        # ASCII without escape sequences decodes to itself in every DICOM character set.
        value = raw.decode("ascii")
    else:
        from pydicom.charset import decode_bytes
        from pydicom.values import TEXT_VR_DELIMS

        value = decode_bytes(raw, encodings, TEXT_VR_DELIMS)
    if "\\" not in value:
        return value.rstrip("\0 ")
    return "\\".join(v.rstrip("\0 ") for v in value.split("\\"))


def string(raw: bytes) -> str:
    """CS, DA, TM (pydicom ``convert_string``): default encoding, the whole value right-stripped."""
    return raw.decode("iso8859").rstrip(" \x00")


def uid(raw: bytes) -> str:
    """UI (pydicom ``convert_UI`` then ``UID()``): trailing NULs/spaces dropped, each value stripped."""
    value = raw.decode("iso8859").rstrip("\0 ")
    if "\\" not in value:
        return value.strip()
    return "\\".join(v.strip() for v in value.split("\\"))


def person_name(raw: bytes, encodings: list[str]) -> str:
    """PN as ``str(ds.PatientName)``; several values joined with a backslash."""
    if not raw:
        return ""
    if raw.isascii() and b"=" not in raw and b"\\" not in raw and b"\x1b" not in raw:
        # A plain ASCII name with no component groups decodes to itself in every DICOM charset.
        return raw.rstrip(b"\0 ").decode("ascii")
    from pydicom.values import convert_PN

    with quiet_pydicom():
        return as_text(convert_PN(raw, encodings))


def integer(raw: bytes) -> int | None:
    """IS as an int where pydicom's value is one int; None if empty, several values or unparsable."""
    value = raw.decode("iso8859").rstrip(" \x00")
    stripped = value.strip()
    if stripped.isascii() and stripped.isdigit():
        return int(stripped)
    if not stripped or "\\" in value:
        return None
    from pydicom import config
    from pydicom.valuerep import IS

    try:
        parsed = IS(value, config.IGNORE)
    except (ValueError, TypeError, OverflowError):
        return None
    return as_int(parsed)


def as_text(value: Any) -> str:
    """A pydicom element value as our plain string (MultiValue joined with a backslash)."""
    from pydicom.multival import MultiValue
    from pydicom.valuerep import PersonName

    if value is None:
        return ""
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(as_text(v) for v in value)
    if isinstance(value, PersonName):
        return str(value)
    if isinstance(value, bytes):
        # Only where pydicom could not decode (e.g. a wrong VR): keep something readable.
        return value.decode("iso8859").rstrip("\0 ")
    return str(value)


def as_int(value: Any) -> int | None:
    """A pydicom IS value as an int: only a single integral IS counts."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return int(value)
