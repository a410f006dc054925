"""Diagnostics for a support request: versions, platform and the last log lines, with secrets and PHI removed.

No Qt here: the GUI adds its own versions through ``extra``. Any thread may call these functions (they only
read the log file).

Every log line is redacted again when read (:func:`xnat_uploader.core.redact.redact`: secrets, labels in XNAT
routes, local paths, patient names and IDs, the labels this process has met), so lines an older version wrote
are cleaned too. UIDs (digits and dots) are kept.
"""

from __future__ import annotations

import logging
import logging.handlers
import platform
import sys
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path

from xnat_uploader import __version__, paths
from xnat_uploader.core.redact import REDACTED, redact

LOG_FILE_NAME = "xnat-uploader.log"
__all__ = ["REDACTED", "redact", "current_log_path", "diagnostics_text", "tail", "versions"]
_TAIL_BYTES = 512 * 1024  # enough for a few thousand lines; never read a whole 5 MB log into memory


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
