"""Logging set-up: a rotating file in the log dir, plus stderr for the command line.

Every line goes through :class:`~xnat_uploader.core.redact.RedactingFormatter` (no secrets, labels, local paths
or patient names in any log). The log file is owner-only (:mod:`xnat_uploader.core.private`). A full disk
never stops the work: the file handler says so once on stderr and drops lines until there is room again.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import logging.handlers
import sys

from xnat_uploader import paths
from xnat_uploader.core import private
from xnat_uploader.core.diagnostics import LOG_FILE_NAME
from xnat_uploader.core.redact import RedactingFormatter

FORMAT = "%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s"


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time (it may be replaced after set-up, e.g. by pytest)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


class PrivateLogFileHandler(logging.handlers.RotatingFileHandler):
    """The rotating log file, created owner-only (each rotation too), quiet about a full disk.

    ``logging`` prints a traceback to stderr for every line it cannot write; on a full disk that would be one
    per line. This handler prints one plain sentence instead and tries again with the next line.
    """

    def __init__(self, filename: str, **kwargs: object) -> None:
        self._full = False  # the disk was full at the last line: said once, not again until a line gets through
        self._failed = False
        super().__init__(filename, **kwargs)  # type: ignore[arg-type]

    def _open(self):  # type: ignore[no-untyped-def]
        return open(self.baseFilename, self.mode, encoding=self.encoding, errors=self.errors, opener=private.opener)

    def emit(self, record: logging.LogRecord) -> None:
        self._failed = False
        super().emit(record)
        if not self._failed:
            self._full = False

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        exc = sys.exc_info()[1]
        if not (isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)):
            super().handleError(record)
            return
        self._failed = True
        stream, self.stream = self.stream, None  # type: ignore[assignment]  # reopened for the next line
        if stream is not None:
            with contextlib.suppress(OSError):  # what is still buffered cannot be written either: dropped
                stream.close()
        if not self._full:
            self._full = True
            print(  # noqa: T201 - the log itself cannot take it
                f"The disk holding the log ({self.baseFilename}) is full: log lines are left out until there is "
                "free space again. Uploads go on.",
                file=sys.stderr,
            )


def setup(verbose: bool = False, to_file: bool = True) -> None:
    """Configure the root logger once. Call from the main thread at start-up."""
    root = logging.getLogger()
    if getattr(root, "_xnat_uploader_configured", False):
        return
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    stream = _StderrHandler()
    stream.setLevel(logging.DEBUG if verbose else logging.WARNING)
    stream.setFormatter(RedactingFormatter("%(levelname)s: %(message)s"))
    root.addHandler(stream)
    if to_file:
        try:
            folder = paths.ensure(paths.log_dir())
            handler = PrivateLogFileHandler(
                str(folder / LOG_FILE_NAME), maxBytes=5_000_000, backupCount=5, encoding="utf-8"
            )
        except OSError as exc:
            logging.getLogger(__name__).warning("Cannot write the log file: %s", exc)
        else:
            handler.setFormatter(RedactingFormatter(FORMAT))
            root.addHandler(handler)
    root._xnat_uploader_configured = True  # type: ignore[attr-defined]
