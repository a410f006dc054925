"""The one dialog for the unexpected: message, details, "Copy report"; and the hooks that deliver to it.

:class:`CrashReporter` replaces ``sys.excepthook`` and ``threading.excepthook``. Both log the error;
then, unless the dialog is turned off (``--no-crash-dialog``), the report goes to the GUI thread
through a queued signal, whichever thread raised, and :func:`show_crash_dialog` shows it (tests patch
that one function).
"""

from __future__ import annotations

import logging
import platform
import sys
import threading
import traceback
from types import TracebackType

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from xnat_uploader import __version__
from xnat_uploader.core.redact import redact

log = logging.getLogger(__name__)


def crash_report(details: str) -> str:
    """The text "Copy report" puts on the clipboard: versions and the traceback, without settings, secrets,
    labels, local paths or patient data (an exception's message may quote a file's path)."""
    return (
        f"xnat-uploader {__version__}\n"
        f"Python {platform.python_version()} on {platform.platform()}\n\n"
        + "\n".join(redact(line) for line in details.rstrip().splitlines())
        + "\n"
    )


class CrashDialog(QDialog):
    def __init__(self, message: str, details: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(self.tr("Unexpected error"))
        self.report = crash_report(details)
        intro = QLabel(
            self.tr(
                "Something went wrong that the program did not expect. Your uploads are kept in the queue.\n"
                "If it happens again, copy the report and send it to your XNAT support."
            )
        )
        intro.setWordWrap(True)
        self.message = QLabel(message)
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.details = QPlainTextEdit(self.report)
        self.details.setReadOnly(True)
        self.details.setMinimumSize(560, 200)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.copy_button = QPushButton(self.tr("Copy report"))
        buttons.addButton(self.copy_button, QDialogButtonBox.ButtonRole.ActionRole)
        self.copy_button.clicked.connect(self.copy_report)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(self.message)
        layout.addWidget(self.details, 1)
        layout.addWidget(buttons)

    def copy_report(self) -> None:
        QGuiApplication.clipboard().setText(self.report)


def show_crash_dialog(message: str, details: str, parent: QWidget | None = None) -> None:
    """Show the crash dialog (modal). GUI thread only."""
    CrashDialog(message, details, parent).exec()


class CrashReporter(QObject):
    """Installs the exception hooks. Create it on the GUI thread; ``install()`` once, ``uninstall()`` to undo."""

    crashed = Signal(str, str)

    def __init__(self, show_dialog: bool = True, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.show_dialog = show_dialog
        self.window: QWidget | None = None
        self._previous: tuple = ()
        self._showing = False
        # Queued: the hook may run on any thread; the dialog opens on this object's (the GUI) thread.
        self.crashed.connect(self._show, Qt.ConnectionType.QueuedConnection)

    def install(self) -> None:
        self._previous = (sys.excepthook, threading.excepthook)
        sys.excepthook = self.excepthook
        threading.excepthook = self.thread_excepthook

    def uninstall(self) -> None:
        if self._previous:
            sys.excepthook, threading.excepthook = self._previous
            self._previous = ()

    def excepthook(self, kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, exc, tb)
            return
        self.report(kind, exc, tb)

    def thread_excepthook(self, args: threading.ExceptHookArgs) -> None:
        if args.exc_value is None or issubclass(args.exc_type, SystemExit):
            return
        thread = args.thread.name if args.thread is not None else "?"
        self.report(args.exc_type, args.exc_value, args.exc_traceback, thread)

    def report(self, kind: type[BaseException], exc: BaseException, tb: TracebackType | None, thread: str = "") -> None:
        where = f" in thread {thread}" if thread else ""
        log.error("Unexpected error%s", where, exc_info=(kind, exc, tb))
        if not self.show_dialog:
            return
        message = f"{kind.__name__}: {exc}"
        details = "".join(traceback.format_exception(kind, exc, tb))
        self.crashed.emit(message, details)

    def _show(self, message: str, details: str) -> None:
        if self._showing:  # one dialog at a time; the others are in the log
            return
        self._showing = True
        try:
            show_crash_dialog(message, details, self.window)
        finally:
            self._showing = False
