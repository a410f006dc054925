"""The log panel: the app's log lines as they are written, a level filter, and "Copy diagnostics".

:class:`QtLogHandler` is a ``logging.Handler`` on the root logger. Any thread may log: ``emit`` only formats the
record and emits a Qt signal with plain data (level number, line) from a QObject that lives on the GUI thread,
so Qt queues the call and the panel's slot runs on the GUI thread (Picard's ``TailLogHandler`` idea). The
handler never touches a widget.
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from pathlib import Path

import PySide6
from PySide6.QtCore import QObject, QTimer, Signal, Slot, qVersion
from PySide6.QtGui import QFontDatabase, QGuiApplication
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget

from xnat_uploader.core import diagnostics
from xnat_uploader.core.redact import RedactingFormatter, redact

FORMAT = "%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s"  # as in the log file
MAX_LINES = 5000
_LEVELS = {name: getattr(logging, name) for name in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")}


class _Bridge(QObject):
    line_logged = Signal(int, str)  # level number, formatted line


class QtLogHandler(logging.Handler):
    """Turns log records (from any thread) into ``bridge.line_logged(level, line)``; create on the GUI thread."""

    def __init__(self, parent: QObject | None = None, level: int = logging.DEBUG) -> None:
        super().__init__(level)
        self.setFormatter(RedactingFormatter(FORMAT))  # the panel shows what the log file holds: no PHI
        self.bridge = _Bridge(parent)
        self.line_logged = self.bridge.line_logged

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:  # noqa: BLE001 - logging must never raise into the caller
            self.handleError(record)
            return
        with contextlib.suppress(RuntimeError):  # the panel is gone (shutdown): nothing to show the line in
            self.line_logged.emit(record.levelno, line)

    def attach(self, logger: logging.Logger | None = None) -> None:
        (logger or logging.getLogger()).addHandler(self)

    def detach(self, logger: logging.Logger | None = None) -> None:
        (logger or logging.getLogger()).removeHandler(self)


class LogPanel(QWidget):
    """Shows log lines at or above the chosen level; "Copy diagnostics" puts a redacted report on the clipboard.

    The panel installs its handler on the root logger; :meth:`detach` (also run when the panel is destroyed)
    removes it.
    """

    diagnostics_copied = Signal(str)

    def __init__(self, parent: QWidget | None = None, *, log_path: Path | None = None, preload: int = 200) -> None:
        super().__init__(parent)
        self.log_path = log_path if log_path is not None else diagnostics.current_log_path()
        self._lines: deque[tuple[int, str]] = deque(maxlen=MAX_LINES)
        self.level_combo = QComboBox(self)
        for name, number in _LEVELS.items():
            if number < logging.CRITICAL:
                self.level_combo.addItem(name.capitalize(), number)
        self.level_combo.setCurrentIndex(self.level_combo.findData(logging.INFO))
        self.copy_button = QPushButton(self.tr("Copy diagnostics"), self)
        self.copy_button.setToolTip(
            self.tr("Versions and the last log lines, without passwords, session ids or patient data")
        )
        self.clear_button = QPushButton(self.tr("Clear"), self)
        self.note_label = QLabel(self)
        self.text = QPlainTextEdit(self)
        self.text.setReadOnly(True)
        self.text.setMaximumBlockCount(MAX_LINES)
        self.text.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        top = QHBoxLayout()
        top.addWidget(QLabel(self.tr("Show"), self))
        top.addWidget(self.level_combo)
        top.addWidget(self.clear_button)
        top.addStretch(1)
        top.addWidget(self.note_label)
        top.addWidget(self.copy_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(top)
        layout.addWidget(self.text)
        self._note_timer = QTimer(self, singleShot=True, interval=4000)
        self._note_timer.timeout.connect(self.note_label.clear)

        for line in diagnostics.tail(self.log_path, preload) if preload else ():
            self._lines.append((_level_of(line), redact(line)))  # lines an older version wrote, cleaned too
        self._rebuild()
        self.handler = handler = QtLogHandler(self)
        handler.line_logged.connect(self.add_line)
        handler.attach()
        self.destroyed.connect(lambda *_args: handler.detach())  # not a bound method: self is gone by then
        self.level_combo.currentIndexChanged.connect(lambda _i: self._rebuild())
        self.clear_button.clicked.connect(self.clear)
        self.copy_button.clicked.connect(self.copy_diagnostics)

    def level(self) -> int:
        return int(self.level_combo.currentData())

    def set_level(self, level: int) -> None:
        self.level_combo.setCurrentIndex(max(0, self.level_combo.findData(level)))

    @Slot(int, str)
    def add_line(self, level: int, line: str) -> None:
        """Keep ``line``; show it when its level passes the filter. GUI thread (queued from the handler)."""
        self._lines.append((level, line))
        if level >= self.level():
            self.text.appendPlainText(line)

    def shown_text(self) -> str:
        return self.text.toPlainText()

    def clear(self) -> None:
        self._lines.clear()
        self.text.clear()

    def copy_diagnostics(self) -> str:
        """Put the redacted diagnostics on the clipboard; returns the text."""
        text = diagnostics.diagnostics_text(self.log_path, extra={"PySide6": PySide6.__version__, "Qt": qVersion()})
        QGuiApplication.clipboard().setText(text)
        self.note_label.setText(self.tr("Copied to the clipboard"))
        self._note_timer.start()
        self.diagnostics_copied.emit(text)
        return text

    def detach(self) -> None:
        """Stop receiving log lines (at shutdown, or before the panel is thrown away)."""
        self.handler.detach()

    def _rebuild(self) -> None:
        wanted = self.level()
        self.text.setPlainText("\n".join(line for level, line in self._lines if level >= wanted))
        self.text.moveCursor(self.text.textCursor().MoveOperation.End)


def _level_of(line: str) -> int:
    """The level of a line from the log file ("<date> <time> LEVEL ..."); continuation lines count as INFO."""
    parts = line.split(" ", 3)
    return _LEVELS.get(parts[2], logging.INFO) if len(parts) > 2 else logging.INFO
