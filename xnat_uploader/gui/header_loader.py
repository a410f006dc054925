"""Reads the header of the selected instance in a worker (never on the GUI thread); the newest request wins.

Selection changes come fast while a user arrows through the tree, so requests are collected for a
moment (``delay_ms``) and only the last one is read; a result that arrives after a newer request is
dropped.
"""

from __future__ import annotations

import threading
from collections.abc import Generator
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from xnat_uploader.core.dicom import header
from xnat_uploader.core.dicom.header import HeaderRow
from xnat_uploader.gui.workers import Worker, WorkerRunner


def header_work(path: str, member: str):  # noqa: ANN201
    def work(cancel: threading.Event) -> Generator[Any, None, list[HeaderRow]]:
        yield from ()
        return header.read_header(path, member)

    return work


class HeaderLoader(QObject):
    """``request(path, member, title)``; then ``loaded(title, rows)`` or ``failed(title, message)``."""

    loaded = Signal(str, list)
    failed = Signal(str, str)

    def __init__(self, runner: WorkerRunner, parent: QObject | None = None, delay_ms: int = 60) -> None:
        super().__init__(parent)
        self.runner = runner
        self._pending: tuple[str, str, str] | None = None
        self._current: Worker | None = None
        self._title = ""
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(delay_ms)
        self._timer.timeout.connect(self._start)

    @property
    def busy(self) -> bool:
        return self._current is not None or self._timer.isActive()

    def request(self, path: str, member: str, title: str) -> None:
        self._pending = (path, member, title)
        self._timer.start()

    def forget(self) -> None:
        """Drop what is pending or running (nothing is selected any more)."""
        self._timer.stop()
        self._pending = None
        self._current = None

    def _start(self) -> None:
        if self._pending is None:
            return
        path, member, self._title = self._pending
        self._pending = None
        worker = Worker(header_work(path, member), name="header")
        worker.finished.connect(self._on_finished)
        worker.failed.connect(self._on_failed)
        self._current = worker
        self.runner.start(worker)

    def _on_finished(self, rows: list[HeaderRow]) -> None:
        if self.sender() is self._current:
            self._current = None
            self.loaded.emit(self._title, rows)

    def _on_failed(self, message: str, details: str) -> None:
        if self.sender() is self._current:
            self._current = None
            self.failed.emit(self._title, message)
