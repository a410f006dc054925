"""Diagnostics for a support request: versions, platform and the last log lines, with secrets and PHI removed.

No Qt here: the GUI adds its own versions through ``extra``. Any thread may call these functions (they only
read the log file).

What is removed from every line (:func:`redact`): passwords and other ``key=value`` secrets, credentials in
URLs, ``Authorization`` headers and ``Basic``/``Bearer`` tokens, ``JSESSIONID`` values and any 32-hex token,
patient names and IDs (``PatientName=``, ``PatientID=``, ``patient_id:`` and the like, DICOM tags
``(0010,xxxx)``, and ``^``-separated person names such as ``DOE^JANE``). UIDs (digits and dots) are kept.
"""

from __future__ import annotations

import logging
import logging.handlers
import platform
import re
import sys
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path

from xnat_uploader import __version__, paths

LOG_FILE_NAME = "xnat-uploader.log"
REDACTED = "[redacted]"
_TAIL_BYTES = 512 * 1024  # enough for a few thousand lines; never read a whole 5 MB log into memory

_RULES: list[tuple[re.Pattern[str], str]] = [
    # Authorization: Basic xxx / Bearer xxx / any scheme, to the end of the header value
    (re.compile(r"(authorization[\"']?\s*[:=]\s*[\"']?)[^\"'\r\n,}]*", re.I), rf"\1{REDACTED}"),
    (re.compile(r"\b(basic|bearer)\s+[A-Za-z0-9+/=._~-]{6,}", re.I), rf"\1 {REDACTED}"),
    # JSESSIONID=..., "JSESSIONID": "...", Cookie headers
    (re.compile(r"(jsessionid[\"']?\s*[:=]\s*[\"']?)[^\s;,\"'&}]+", re.I), rf"\1{REDACTED}"),
    (re.compile(r"(cookie[\"']?\s*[:=]\s*)[^\r\n]*", re.I), rf"\1{REDACTED}"),
    # password=..., "password": "...", token: ..., secret=...
    (
        re.compile(r"((?:password|passwd|pwd|secret|token|api[_-]?key)[\"']?\s*[:=]\s*[\"']?)[^\s,;&\"'}]+", re.I),
        rf"\1{REDACTED}",
    ),
    # credentials in a URL: scheme://user:password@host
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^\s/:@]+:)[^\s/@]+@", re.I), rf"\1{REDACTED}@"),
    # any 32-hex token with at least one letter (a session id), not a decimal UID component
    (re.compile(r"\b(?=[0-9]*[A-Fa-f])[0-9A-Fa-f]{32}\b"), REDACTED),
    # PatientName=..., PatientID: ..., patient_id=..., "Patient's Name": ... up to a separator
    (
        re.compile(r"(patient(?:'s)?[\s_]*(?:name|id|birth[\s_]*date)\b[\"']?\s*[:=]\s*)[^,;|)\"'\r\n]*", re.I),
        rf"\1{REDACTED}",
    ),
    # DICOM patient module tags as printed by pydicom: "(0010, 0010) Patient's Name  PN: 'DOE^JANE'"
    (re.compile(r"(\(0010,\s*[0-9A-Fa-f]{4}\)).*"), rf"\1 {REDACTED}"),
    # person names in DICOM PN form: DOE^JANE, DOE^JANE^M^^
    (re.compile(r"\w[^\s^=:,;\"'()\[\]]*(?:\^[^\s^=:,;\"'()\[\]]*)+"), REDACTED),
]


def redact(line: str) -> str:
    """``line`` without passwords, session ids, auth headers and patient identifiers."""
    for pattern, replacement in _RULES:
        line = pattern.sub(replacement, line)
    return line


def current_log_path() -> Path:
    """The file the root logger writes to (its rotating file handler), else the default place in the log dir."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.handlers.RotatingFileHandler):
            return Path(handler.baseFilename)
    return paths.log_dir() / LOG_FILE_NAME


def tail(path: Path, lines: int = 200) -> list[str]:
    """The last ``lines`` lines of a text file (reads at most the last 512 KiB). Missing file: ``[]``."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - _TAIL_BYTES))
            data = handle.read()
    except OSError:
        return []
    text = data.decode("utf-8", errors="replace").splitlines()
    if len(data) >= _TAIL_BYTES and text:
        text = text[1:]  # the first line was cut in the middle
    return text[-lines:] if lines > 0 else []


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _keyring_backend() -> str:
    try:
        import keyring

        backend = keyring.get_keyring()
    except Exception as exc:  # noqa: BLE001 - a broken keyring set-up is itself a diagnostic
        return f"unavailable ({type(exc).__name__})"
    cls = type(backend)
    return f"{cls.__module__}.{cls.__qualname__}"


def versions(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """App, platform, Python and library versions, plus the keyring backend in use."""
    out = {
        "xnat-uploader": __version__,
        "Platform": platform.platform(),
        "Python": f"{platform.python_version()} ({platform.python_implementation()})",
        "Frozen": "yes" if getattr(sys, "frozen", False) else "no",
        "pydicom": _version("pydicom"),
        "pynetdicom": _version("pynetdicom"),
        "requests": _version("requests"),
        "keyring": _version("keyring"),
        "Keyring backend": _keyring_backend(),
    }
    out.update(extra or {})
    return out


def diagnostics_text(log_path: Path | None = None, lines: int = 200, extra: Mapping[str, str] | None = None) -> str:
    """A plain-text report: versions (plus ``extra``, e.g. Qt's), then the last ``lines`` log lines, redacted.

    Parameters
    ----------
    log_path:
        The log file; ``None``: :func:`current_log_path`.
    lines:
        How many of the last log lines to include.
    extra:
        More ``name: version`` rows (the GUI adds PySide6 and Qt).
    """
    log_path = log_path if log_path is not None else current_log_path()
    out = ["xnat-uploader diagnostics", ""]
    out += [f"{name}: {value}" for name, value in versions(extra).items()]
    out += ["", f"Log file: {log_path}", f"Last {lines} log lines (passwords, session ids and patient data removed):"]
    tail_lines = tail(log_path, lines)
    out += [redact(line) for line in tail_lines] if tail_lines else ["(no log lines)"]
    return "\n".join(out) + "\n"
