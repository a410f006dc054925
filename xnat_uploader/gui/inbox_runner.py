"""The inbox import of data already on the server's disk, run and followed off the GUI thread.

The import runs in a :class:`~xnat_uploader.gui.workers.Worker` (:func:`inbox_work`): one POST to the import
service, then :meth:`XnatClient.follow_inbox` polls the job; each status change reaches the GUI thread through
a queued signal of :class:`InboxRunner`. Cancel only stops following (the import goes on on the server), at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, Signal, Slot

from xnat_uploader.core.errors import UserError
from xnat_uploader.core.xnat import ImportHandler, ImportOptions, InboxStatus, XnatClient
from xnat_uploader.core.xnat import errors as E
from xnat_uploader.core.xnat.inbox import job_id
from xnat_uploader.gui.upload_controller import UploadController
from xnat_uploader.gui.workers import Worker, WorkerRunner


@dataclass(frozen=True)
class InboxRequest:
    """What the dialog asks for. Empty subject/session: XNAT takes them from the data."""

    url: str
    user: str
    project: str
    path: str
    subject: str = ""
    session: str = ""
    keep_files: bool = True

    def options(self) -> ImportOptions:
        return ImportOptions(
            handler=ImportHandler.INBOX, project=self.project, subject=self.subject or None,
            session=self.session or None, inbox_path=self.path,
            cleanup_after_import=False if self.keep_files else None,
        )  # fmt: skip


@dataclass(frozen=True)
class InboxOutcome:
    """How following ended: the final status, or none when the server does not report progress (``note``)."""

    uri: str
    status: InboxStatus | None
    note: str = ""


def outside_inbox(request: InboxRequest, exc: E.BadRequestError) -> UserError:
    """XNAT's long 400 for a path outside the inbox, said plainly; other 400s are passed on as they are."""
    if "inbox path" not in f"{exc.message} {exc.detail}".lower():
        return exc
    return UserError(
        f"The server refused '{request.path}': it is not a folder or archive inside its inbox for project "
        f"{request.project}.",
        f"Put the data below the server's inbox folder, in a folder named {request.project}, and give that path.",
    )


def inbox_work(
    client: XnatClient, request: InboxRequest, on_status: Callable[[InboxStatus], None], interval: float = 2.0
) -> Callable[[threading.Event], Generator[Any, None, InboxOutcome]]:
    """Start the import and follow it until Completed or Failed (a worker function; blocking calls)."""

    def work(cancel: threading.Event) -> Generator[Any, None, InboxOutcome]:
        yield from ()
        try:
            result = client.import_data(None, request.options())
        except E.BadRequestError as exc:
            raise outside_inbox(request, exc) from None
        uri = next((u for u in result.uris if job_id(u) is not None), None)
        if uri is None:
            note = "XNAT accepted the request but named no import job; look in the project's prearchive."
            return InboxOutcome(", ".join(result.uris), None, note)
        try:
            status = client.follow_inbox(uri, interval=interval, cancel=cancel, on_status=on_status)
        except E.ProgressUnavailableError as exc:
            return InboxOutcome(uri, None, f"{exc.message} {exc.hint}".strip())
        return InboxOutcome(uri, status)

    return work


class InboxRunner(QObject):
    """Runs one inbox import at a time for a dialog. Signals (GUI thread, plain data): ``status_changed(InboxStatus)``,
    ``finished(InboxOutcome)``, ``failed(message, hint)``. After :meth:`cancel` nothing more is reported."""

    status_changed = Signal(object)
    finished = Signal(object)
    failed = Signal(str, str)
    _status_from_thread = Signal(object, object)  # worker, InboxStatus

    def __init__(self, controller: UploadController, parent: QObject | None = None, interval: float = 2.0) -> None:
        super().__init__(parent)
        self.controller = controller
        self.interval = interval
        self.runner = WorkerRunner(self)
        self._worker: Worker | None = None
        self._status_from_thread.connect(self._on_status)

    @property
    def running(self) -> bool:
        return self._worker is not None

    def start(self, request: InboxRequest) -> bool:
        """Start the import; False (and ``failed``) when the login is gone."""
        client = self.controller.logins.client(request.url, request.user)
        if client is None:
            self.failed.emit(self.tr("Not signed in to {} as {}.").format(request.url, request.user),
                             self.tr("Sign in to this server first."))  # fmt: skip
            return False
        worker: Worker | None = None

        def report(status: InboxStatus) -> None:  # on the worker thread: a queued signal carries it over
            self._status_from_thread.emit(worker, status)

        worker = Worker(inbox_work(client, request, report, self.interval), name="inbox-import")
        worker.finished.connect(self._on_finished)
        worker.failed.connect(self._on_failed)
        worker.cancelled.connect(self._on_cancelled)
        self._worker = worker
        self.runner.start(worker)
        return True

    def cancel(self) -> None:
        """Stop following now; a late answer of the old worker is ignored."""
        if self._worker is not None:
            self._worker.cancel()
            self._worker = None

    def shutdown(self, timeout_ms: int = 3000) -> bool:
        self._worker = None
        return self.runner.shutdown(timeout_ms)

    @Slot(object, object)
    def _on_status(self, worker: object, status: InboxStatus) -> None:
        if worker is self._worker:
            self.status_changed.emit(status)

    @Slot(object)
    def _on_finished(self, outcome: InboxOutcome) -> None:
        if self.sender() is self._worker:
            self._worker = None
            self.finished.emit(outcome)

    @Slot(str, str)
    def _on_failed(self, message: str, hint: str) -> None:
        if self.sender() is self._worker:
            self._worker = None
            self.failed.emit(message, hint)

    @Slot()
    def _on_cancelled(self) -> None:
        if self.sender() is self._worker:
            self._worker = None
