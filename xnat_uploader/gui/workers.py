"""The one adapter from core work to Qt signals.

Core work is a plain generator function ``fn(cancel: threading.Event) -> Generator[progress, None, result]``:
it yields progress events (plain data), checks ``cancel`` between steps (raising
:class:`~xnat_uploader.core.errors.Cancelled`), and returns its result. A :class:`Worker` (a QObject
moved to a QThread) runs it and turns yields, the result and exceptions into signals carrying plain
data only. Only slots on the GUI thread touch widgets.

Progress is throttled here (``min_interval``), so a core loop may yield as often as it likes; the
latest event is always delivered before ``finished``.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable, Generator
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal, Slot

from xnat_uploader.core.errors import Cancelled, UserError

log = logging.getLogger(__name__)

WorkFn = Callable[[threading.Event], Generator[Any, None, Any]]


class Worker(QObject):
    """Runs one generator function on whatever thread calls :meth:`run`.

    Signals: ``progressed(event)``, ``finished(result)``, ``failed(message, details)``, ``cancelled()``.
    Exactly one of the last three is emitted per run.
    """

    progressed = Signal(object)
    finished = Signal(object)
    failed = Signal(str, str)
    cancelled = Signal()

    def __init__(self, fn: WorkFn, name: str = "work", min_interval: float = 0.1) -> None:
        super().__init__()
        self.fn = fn
        self.name = name
        self.min_interval = min_interval
        self.cancel_event = threading.Event()

    def cancel(self) -> None:
        """Ask the work to stop (any thread). It stops at its next cancel check."""
        self.cancel_event.set()

    @Slot()
    def run(self) -> None:
        last_emit = 0.0
        pending: Any = None
        has_pending = False
        try:
            gen = self.fn(self.cancel_event)
            while True:
                try:
                    event = next(gen)
                except StopIteration as stop:
                    result = stop.value
                    break
                now = time.monotonic()
                if now - last_emit >= self.min_interval:
                    self.progressed.emit(event)
                    last_emit, has_pending = now, False
                else:
                    pending, has_pending = event, True
            if has_pending:
                self.progressed.emit(pending)
            if self.cancel_event.is_set():
                self.cancelled.emit()
            else:
                self.finished.emit(result)
        except Cancelled:
            self.cancelled.emit()
        except UserError as exc:
            log.info("%s failed: %s", self.name, exc.message)
            self.failed.emit(exc.message, exc.hint)
        except Exception as exc:  # noqa: BLE001 - every error must reach the user, never kill the thread
            log.exception("%s failed unexpectedly", self.name)
            self.failed.emit(f"Unexpected error: {type(exc).__name__}: {exc}", traceback.format_exc())


class WorkerRunner(QObject):
    """Starts workers on their own QThreads and keeps them alive until their threads end.

    Lives on the GUI thread. :meth:`shutdown` cancels everything and waits for the threads
    (call it from ``closeEvent`` / ``aboutToQuit``).
    """

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._running: dict[Worker, QThread] = {}

    def start(self, worker: Worker) -> Worker:
        thread = QThread()
        thread.setObjectName(worker.name)
        worker.moveToThread(thread)
        thread.started.connect(worker.run)
        for signal in (worker.finished, worker.failed, worker.cancelled):
            signal.connect(thread.quit)
        # A bound slot of this GUI-thread object, not a lambda: PySide runs a lambda on the emitting thread.
        thread.finished.connect(self._thread_finished)
        self._running[worker] = thread  # strong references until the thread has ended
        thread.start()
        return worker

    @Slot()
    def _thread_finished(self) -> None:
        thread = self.sender()
        for worker, running in list(self._running.items()):
            if running is thread:
                self._forget(worker)

    def _forget(self, worker: Worker) -> None:
        thread = self._running.pop(worker, None)
        if thread is not None:
            thread.deleteLater()
        worker.deleteLater()

    @property
    def active(self) -> int:
        return len(self._running)

    def shutdown(self, timeout_ms: int = 5000) -> bool:
        """Cancel every worker and wait for its thread. Returns False if one did not stop in time."""
        ok = True
        for worker, thread in list(self._running.items()):
            worker.cancel()
            thread.quit()
            ok = thread.wait(timeout_ms) and ok
            self._forget(worker)
        return ok
