"""The upload side of the GUI: the persistent queue, its background scheduler, and one XNAT client per login.

Lives on the GUI thread and owns the signals the form and the queue panel listen to (STYLE.md 6.1: no
app-wide signals). Nothing here blocks the GUI thread:

* server listings (projects, subjects, sessions) run through :mod:`xnat_uploader.gui.workers`;
* queue changes (adding jobs, pause, cancel, retry, remove, re-send, reading details) run in order on one
  "queue-actions" thread, so a pause followed by a resume can never arrive the other way round;
* the :class:`~xnat_uploader.core.queue.scheduler.Scheduler` runs the jobs on its own threads; its
  callbacks are turned into queued signals and re-emitted here on the GUI thread;
* another process may share the queue (a command-line upload; a second window on the same data folder):
  the jobs it sends are its own (:mod:`~xnat_uploader.core.queue.claims`), never paused, reset or run
  here; a timer reads what changed in the queue every few seconds so their rows stay current.

Public signals carry plain data only and are always emitted on the GUI thread. Passwords are read on the GUI
thread (``credentials`` callable, default the keyring) and never logged or stored in a signal.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal, Slot

from xnat_uploader import paths
from xnat_uploader.core import settings as settings_mod
from xnat_uploader.core.dicom.index import DicomIndex
from xnat_uploader.core.errors import UserError
from xnat_uploader.core.plan import Existing, Plan, Target, enqueue, existing_on_server, plan_jobs, queued_labels
from xnat_uploader.core.queue.claims import Owner
from xnat_uploader.core.queue.closing import EVENT_RESEND
from xnat_uploader.core.queue.runner import TRANSPORTS
from xnat_uploader.core.queue.scheduler import Scheduler
from xnat_uploader.core.queue.store import RESUMABLE, FileState, JobRow, JobState, QueueStore
from xnat_uploader.core.secret import Secret
from xnat_uploader.core.settings import Settings
from xnat_uploader.core.transfer.base import TransferProgress
from xnat_uploader.core.xnat.transport import normalize_url
from xnat_uploader.gui.logins import Credentials, Logins, ServerChoice
from xnat_uploader.gui.workers import Worker, WorkerRunner

log = logging.getLogger(__name__)

QUIT_MESSAGE = "Interrupted when the program closed; it continues when the program starts again."
# How often (ms) the queue is read for what other processes changed in it.
POLL_MS = 2000


@dataclass(frozen=True)
class ProjectListing:
    """What a project already holds on the server (the queue part is added by :meth:`UploadController.plan`)."""

    url: str
    user: str
    project: str
    existing: Existing
    subjects: tuple[str, ...]


@dataclass(frozen=True)
class UploadRequest:
    """What the form's Upload button asks for."""

    server_url: str
    user: str
    plan: Plan
    mode: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class JobDetails:
    """A job's row, its history and the per-series verify result from its receipt (for the Details view)."""

    row: JobRow
    history: list[tuple[float, str, str]]
    verified: dict[str, Any] | None


class UploadController(QObject):
    job_progress = Signal(object)  # TransferProgress
    job_state_changed = Signal(int, str)  # job id, JobState value
    job_updated = Signal(object)  # JobRow (after any change of state, message or receipt)
    job_removed = Signal(int)
    jobs_changed = Signal()  # jobs were added or removed
    servers_changed = Signal()
    projects_loaded = Signal(str, str, object)  # url, user, list[str] of project IDs
    project_loaded = Signal(object)  # ProjectListing
    listing_failed = Signal(str, str, str, str, str)  # url, user, project ("" for the project list), message, hint
    details_ready = Signal(object)  # JobDetails
    action_failed = Signal(int, str, str)  # job id, message, hint

    _row_from_thread = Signal(object)
    _gone_from_thread = Signal(int)
    _progress_from_thread = Signal(object)
    _added_from_thread = Signal(object)  # list[JobRow]
    _failed_from_thread = Signal(int, str, str)
    _details_from_thread = Signal(object)

    def __init__(
        self,
        *,
        store_path: Path | None = None,
        receipts_dir: Path | None = None,
        credentials: Credentials | None = None,
        settings: Settings | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.logins = Logins(settings if settings is not None else settings_mod.load(), credentials)
        self._waiting: dict[tuple[str, str], set[int]] = {}  # jobs paused until a sign-in
        self._user_paused: set[int] = set()
        self._removed: set[int] = set()
        self._closing = False
        self._listings = WorkerRunner(self)
        self._actions = ThreadPoolExecutor(max_workers=1, thread_name_prefix="queue-actions")
        for signal, slot in (
            (self._row_from_thread, self._on_row),
            (self._gone_from_thread, self._on_gone),
            (self._progress_from_thread, self.job_progress),  # signal to signal: re-emitted here, in C++
            (self._added_from_thread, self._on_added),
            (self._failed_from_thread, self.action_failed),
            (self._details_from_thread, self.details_ready),
        ):
            signal.connect(slot)
        data = paths.ensure(paths.data_dir())
        self.store = QueueStore(store_path or data / "queue.sqlite3")
        self._hold_jobs_without_password()
        self.scheduler = Scheduler(
            self.store, self.logins.session_for, receipts_dir or data / "receipts", per_server=1,
            on_progress=self._progress_callback, on_state=self._state_callback, on_error=self._error_callback,
        )  # fmt: skip
        self._polled_at = time.time()
        self.scheduler.start()
        self._rows: dict[int, JobRow] = {r.id: r for r in self.store.jobs()}
        self._polling = False
        self._poll_timer = QTimer(self, interval=POLL_MS)
        self._poll_timer.timeout.connect(self._poll)
        self._poll_timer.start()

    # -- servers and logins ---------------------------------------------------------------------
    def servers(self) -> list[ServerChoice]:
        """Servers from the settings, then those signed in to during this run."""
        return self.logins.servers()

    def connect(self, url: str, user: str, password: str | Secret) -> ServerChoice:
        """Use this login from now on (the sign-in dialog calls it). Jobs waiting for it continue."""
        choice, new = self.logins.connect(url, user, password)
        if new:
            self.servers_changed.emit()
        for job_id in sorted(self._waiting.pop(choice.key, set())):
            self.resume(job_id)
        return choice

    def signed_in(self, url: str, user: str) -> bool:
        return self.logins.client(url, user) is not None

    def load_projects(self, url: str, user: str) -> None:
        """List the projects ``user`` may upload to; answers with ``projects_loaded`` or ``listing_failed``."""
        client = self.logins.client(url, user)
        if client is None:
            self.listing_failed.emit(url, user, "", *self._not_signed_in(url, user))
            return
        worker = Worker(_call(lambda: sorted((p.id for p in client.projects()), key=str.lower)), name="projects")
        worker.finished.connect(lambda ids: self.projects_loaded.emit(url, user, ids))
        worker.failed.connect(lambda msg, hint: self.listing_failed.emit(url, user, "", msg, hint))
        self._listings.start(worker)

    def load_project(self, url: str, user: str, project: str) -> None:
        """Read what ``project`` holds (sessions in archive and prearchive, subjects): ``project_loaded``."""
        client = self.logins.client(url, user)
        if client is None:
            self.listing_failed.emit(url, user, project, *self._not_signed_in(url, user))
            return

        def read() -> ProjectListing:
            existing = existing_on_server(client.session, project)
            return ProjectListing(url, user, project, existing, tuple(sorted(existing.subjects, key=str.lower)))

        worker = Worker(_call(read), name="project-listing")
        worker.finished.connect(self.project_loaded)
        worker.failed.connect(lambda msg, hint: self.listing_failed.emit(url, user, project, msg, hint))
        self._listings.start(worker)

    @staticmethod
    def transports() -> dict[str, bool]:
        """Transport name -> available in this build (C-STORE appears once its transport is registered)."""
        return {name: name in TRANSPORTS for name in ("zip", "gradual", "cstore")}

    # -- planning and submitting ------------------------------------------------------------------
    def plan(
        self,
        index: DicomIndex,
        target: Target,
        existing: Existing | None,
        selected_series: set[str] | None,
        server_url: str,
    ) -> Plan:
        """:func:`plan_jobs` with the unfinished jobs of this queue counted as existing sessions."""
        existing = existing or Existing()
        queue = queued_labels(self._rows.values(), target.project, server_url)
        return plan_jobs(index, target, replace(existing, queue=existing.queue | queue), selected_series)

    def submit(self, plan: Plan, mode: str, options: dict[str, Any], *, server_url: str, user: str) -> None:
        """Put the plan's jobs into the queue (on the actions thread); ``jobs_changed`` follows."""
        if not plan.ok or not plan.jobs:
            raise ValueError("submit() needs a plan without problems")
        url = normalize_url(server_url)

        def add() -> None:
            ids = [
                enqueue(self.store, j, server_url=url, user=user, mode=mode, options=options, claim=True)
                for j in plan.jobs
            ]
            self._added_from_thread.emit([self.store.job(i) for i in ids])
            self.scheduler.wake()

        self._act(0, add)

    def submit_request(self, request: UploadRequest) -> None:
        self.submit(request.plan, request.mode, request.options, server_url=request.server_url, user=request.user)

    # -- per job ------------------------------------------------------------------------------------
    def jobs(self) -> list[JobRow]:
        return [self._rows[i] for i in sorted(self._rows)]

    def job(self, job_id: int) -> JobRow | None:
        return self._rows.get(job_id)

    def owned_elsewhere(self, row: JobRow) -> Owner | None:
        """The other live copy of the program sending this job (its row is then only shown here), or None."""
        return None if row.state.finished else self.store.owned_elsewhere(row)

    def pause(self, job_id: int) -> None:
        self._user_paused.add(job_id)
        self._act(job_id, lambda: self.scheduler.pause(job_id))

    def resume(self, job_id: int) -> None:
        self._user_paused.discard(job_id)
        self._act(job_id, lambda: self.scheduler.resume(job_id))

    def cancel(self, job_id: int) -> None:
        self._act(job_id, lambda: self.scheduler.cancel(job_id))

    def retry(self, job_id: int) -> None:
        self._act(job_id, lambda: self.scheduler.retry(job_id))

    def remove(self, job_id: int) -> None:
        def run() -> None:
            if job_id in self.scheduler.running():
                raise UserError(self.tr("This upload is still running."), self.tr("Cancel it first, then remove it."))
            self.scheduler.remove(job_id)
            self._gone_from_thread.emit(job_id)

        self._act(job_id, run)

    def remove_finished(self) -> None:
        """Queue hygiene: forget every upload that is done or cancelled (their receipts stay)."""
        for row in self.jobs():
            if row.state in (JobState.DONE, JobState.CANCELLED):
                self.remove(row.id)

    def resend_missing(self, job_id: int) -> None:
        """Send again the series that verification found short (from the receipt), then verify again."""

        def run() -> None:
            row = self.store.job(job_id)
            if not row.state.finished or row.state is JobState.CANCELLED:
                raise UserError(self.tr("Only a finished upload can re-send missing files."), "")
            series = (_read_verified(row) or {}).get("series") or []
            short = {uid for s in series if s["on_server"] < s["sent"] for uid in s["series_uids"]}
            if not short:
                raise UserError(self.tr("Nothing is missing: every series arrived."), "")
            ids = [f.id for f in self.store.files(job_id, [FileState.SENT, FileState.FAILED]) if f.series_uid in short]

            def queue_again() -> None:
                self.store.reset_files(job_id, ids)
                # the commit may then overwrite the copies of these series already archived (core.queue.closing)
                self.store.log(job_id, EVENT_RESEND, f"{len(ids)} files of {len(short)} series")
                self.store.set_state(job_id, JobState.QUEUED, f"Re-sending {len(ids)} files of {len(short)} series.")

            self.scheduler.requeue(job_id, queue_again)  # claimed for this window, or refused
            self._state_callback(job_id, JobState.QUEUED)

        self._act(job_id, run)

    def refresh_job(self, job_id: int) -> None:
        """Show a job's row again after something beside the scheduler changed it (any thread; e.g. the
        prearchive tab attaching its resources after an archive)."""
        try:
            state = self.store.job(job_id).state
        except KeyError:
            return
        self._state_callback(job_id, state)

    def request_details(self, job_id: int) -> None:
        """Read the job's history and verify result off the GUI thread: ``details_ready``."""

        def run() -> None:
            row = self.store.job(job_id)
            self._details_from_thread.emit(JobDetails(row, self.store.history(job_id), _read_verified(row)))

        self._act(job_id, run)

    # -- shutdown -----------------------------------------------------------------------------------
    def shutdown(self, timeout: float = 5.0) -> bool:
        """Stop everything (on quit). Running uploads continue at the next start. True if all threads ended."""
        if self._closing:
            return True
        self._closing = True
        self._poll_timer.stop()
        running = set(self.scheduler.running())
        ok = self.scheduler.shutdown(timeout)
        self._actions.shutdown(wait=True)
        waiting = {i for ids in self._waiting.values() for i in ids}
        for job_id in (running - self._user_paused) | waiting:
            try:
                if self.store.job(job_id).state is JobState.PAUSED:
                    self.store.set_state(job_id, JobState.QUEUED, QUIT_MESSAGE)
            except KeyError:
                pass  # removed
        ok = self._listings.shutdown(int(timeout * 1000)) and ok
        self.logins.close(wait=timeout)
        self.store.close()
        return ok

    # -- inside -------------------------------------------------------------------------------------
    def _not_signed_in(self, url: str, user: str) -> tuple[str, str]:
        return (
            self.tr("Not signed in to {} as {}.").format(url, user),
            self.tr("Sign in to this server, then press Retry."),
        )

    def _hold_jobs_without_password(self) -> None:
        """Before the scheduler resumes jobs: prepare their logins; pause those with no password yet."""
        known: dict[tuple[str, str], bool] = {}
        for row in self.store.jobs(RESUMABLE):
            key = (row.spec.server_url, row.spec.user)
            if key not in known:
                known[key] = self.logins.client(*key) is not None
            if known[key] or self.store.owned_elsewhere(row) is not None:
                continue  # another copy of the program sends it: not ours to hold
            if self.store.claim(row.id) is None:
                self.store.set_state(
                    row.id, JobState.PAUSED, self.tr("Waiting for you to sign in to {} as {}.").format(*key)
                )
                self.store.release(row.id)
                self._waiting.setdefault(key, set()).add(row.id)

    def _act(self, job_id: int, fn: Callable[[], None]) -> None:
        if self._closing:
            return

        def run() -> None:
            try:
                fn()
            except UserError as exc:
                self._failed_from_thread.emit(job_id, exc.message, exc.hint)
            except KeyError:
                self._gone_from_thread.emit(job_id)
            except Exception as exc:  # noqa: BLE001 - reported to the user, never lost on a thread
                log.exception("Queue action on job %d failed", job_id)
                self._failed_from_thread.emit(job_id, f"Unexpected error: {type(exc).__name__}", "")

        self._actions.submit(run)

    @Slot()
    def _poll(self) -> None:
        """Every ``POLL_MS``: read (on the actions thread) the jobs that changed since the last look and are
        not run here: those another process sends or added, so their rows stay current."""
        if self._polling or self._closing:
            return
        self._polling = True

        def run() -> None:
            try:
                since, self._polled_at = self._polled_at - 1.0, time.time()  # a second's overlap: clocks are coarse
                here = set(self.scheduler.running())
                for row in self.store.jobs_changed_since(since):
                    if row.id not in here:
                        self._row_from_thread.emit(row)
            finally:
                self._polling = False

        self._act(0, run)

    def _progress_callback(self, progress: TransferProgress) -> None:
        if not self._closing:
            self._progress_from_thread.emit(progress)

    def _error_callback(self, job_id: int, message: str, hint: str) -> None:
        """From a job thread: the queue itself failed (a full disk); shown like a failed queue action."""
        if not self._closing:
            self._failed_from_thread.emit(job_id, message, hint)

    def _state_callback(self, job_id: int, state: JobState) -> None:
        """From job or action threads: read the row there, hand it to the GUI thread."""
        if self._closing:
            return
        try:
            row = self.store.job(job_id)
        except KeyError:
            self._gone_from_thread.emit(job_id)
            return
        self._row_from_thread.emit(replace(row, state=state))

    @Slot(object)
    def _on_row(self, row: JobRow) -> None:
        if row.id in self._removed:
            return  # a late report about a job removed meanwhile
        new = row.id not in self._rows
        self._rows[row.id] = row
        self.job_updated.emit(row)
        self.job_state_changed.emit(row.id, row.state.value)
        if new:
            self.jobs_changed.emit()

    @Slot(int)
    def _on_gone(self, job_id: int) -> None:
        self._removed.add(job_id)
        if self._rows.pop(job_id, None) is not None:
            self.job_removed.emit(job_id)
            self.jobs_changed.emit()

    @Slot(object)
    def _on_added(self, rows: list[JobRow]) -> None:
        for row in rows:
            self._rows.setdefault(row.id, row)  # a state report may have come first: keep the newer row
            self.job_updated.emit(self._rows[row.id])
        self.jobs_changed.emit()


def _call(fn: Callable[[], Any]) -> Callable[[threading.Event], Any]:
    """A one-shot blocking call as the generator function :class:`Worker` runs."""

    def work(cancel: threading.Event) -> Any:
        yield from ()
        return fn()

    return work


def _read_verified(row: JobRow) -> dict[str, Any] | None:
    """The verify result in the job's receipt (``summary``, per-``series`` counts), or None (no receipt)."""
    if not row.receipt:
        return None
    try:
        verified = json.loads(Path(row.receipt).read_text(encoding="utf-8")).get("verified")
    except (OSError, ValueError) as exc:
        log.info("Receipt of job %d unreadable: %s", row.id, type(exc).__name__)
        return None
    return verified if isinstance(verified, dict) else None
