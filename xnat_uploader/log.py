"""Logging set-up: a rotating file in the log dir, plus stderr for the command line."""

from __future__ import annotations

import logging
import logging.handlers
import sys

from xnat_uploader import paths

FORMAT = "%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s"


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time (it may be replaced after set-up, e.g. by pytest)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def setup(verbose: bool = False, to_file: bool = True) -> None:
    """Configure the root logger once. Call from the main thread at start-up."""
    root = logging.getLogger()
    if getattr(root, "_xnat_uploader_configured", False):
        return
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    stream = _StderrHandler()
    stream.setLevel(logging.DEBUG if verbose else logging.WARNING)
    stream.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    root.addHandler(stream)
    if to_file:
        try:
            folder = paths.ensure(paths.log_dir())
            handler = logging.handlers.RotatingFileHandler(
                folder / "xnat-uploader.log", maxBytes=5_000_000, backupCount=5, encoding="utf-8"
            )
        except OSError as exc:
            logging.getLogger(__name__).warning("Cannot write the log file: %s", exc)
        else:
            handler.setFormatter(logging.Formatter(FORMAT))
            root.addHandler(handler)
    root._xnat_uploader_configured = True  # type: ignore[attr-defined]
