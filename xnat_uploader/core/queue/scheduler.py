"""The queue in the background: runs queued jobs, a limited number at a time per server.

The GUI (through its worker adapter) and long-running tools use this; the command line runs jobs
one after the other with :func:`~xnat_uploader.core.queue.runner.run_job` directly. On start the
scheduler picks up every job a crash or a quit interrupted. Pause, resume, cancel and retry act
per job; all of their effects are in the queue store, so they survive a restart too.

Another process may share the queue (a second copy of the program, a command-line upload): the scheduler
runs only jobs it claims (:mod:`~xnat_uploader.core.queue.claims`), leaves those another live copy sends
alone (never pauses, resets or runs them) and takes over those whose owner stopped. Pause, cancel and
remove act only on jobs this scheduler may claim; retry and resume claim the job for this scheduler.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from xnat_uploader.core.errors import UserError
from xnat_uploader.core.queue.claims import JobOwnedElsewhere
from xnat_uploader.core.queue.guard import QueueStoreError
from xnat_uploader.core.queue.runner import JobControl, run_job
from xnat_uploader.core.queue.store import RESUMABLE, FileState, JobState, QueueStore
from xnat_uploader.core.transfer.base import ProgressFn

if TYPE_CHECKING:
    from xnat_uploader.core.xnat.session import XnatSession

log = logging.getLogger(__name__)

SessionFor = Callable[[str, str], "XnatSession"]  # (server_url, user) -> a logged-in session, shared per server
StateFn = Callable[[int, JobState], None]
ErrorFn = Callable[[int, str, str], None]  # (job id, message, hint): the queue itself failed (a full disk)


class Scheduler:
    """Runs queued jobs on worker threads; at most ``per_server`` at once for each server.

    Every public method may be called from any thread. Callbacks (``on_progress``, ``on_state``, ``on_error``)
    come from worker threads: a GUI must hand them to its own thread (Qt signals do).
    """

    def __init__(
        self,
        store: QueueStore,
        session_for: SessionFor,
        receipts_dir: Path,
        *,
        per_server: int = 1,
        on_progress: ProgressFn | None = None,
        on_state: StateFn | None = None,
        on_error: ErrorFn | None = None,
    ) -> None:
        self.store = store
        self.session_for = session_for
        self.receipts_dir = receipts_dir
        self.per_server = per_server
        self.on_progress = on_progress
        self.on_state = on_state
        self.on_error = on_error
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._running: dict[int, tuple[threading.Thread, JobControl, str]] = {}
        self._stopping = False
        self._dispatcher: threading.Thread | None = None

    # -- life cycle --------------------------------------------------------------------------
    def start(self) -> None:
        """Resume interrupted jobs (not those another live copy is sending) and start dispatching."""
        for job in self.store.jobs([s for s in RESUMABLE if s is not JobState.QUEUED]):
            if self.store.owned_elsewhere(job) is None and self.store.claim(job.id) is None:
                self.store.set_state(job.id, JobState.QUEUED, "Resumed after a restart.")
                self.store.release(job.id)
        self._dispatcher = threading.Thread(target=self._dispatch, name="queue-dispatcher", daemon=True)
        self._dispatcher.start()

    def shutdown(self, timeout: float = 5.0) -> bool:
        """Pause running jobs (they resume on the next start) and stop. True if every thread ended in time."""
        with self._lock:
            self._stopping = True
            running = list(self._running.values())
            self._wake.notify_all()
        for _, control, _ in running:
            control.pause()
        ok = True
        for thread, _, _ in running:
            thread.join(timeout)
            ok = ok and not thread.is_alive()
        if self._dispatcher is not None:
            self._dispatcher.join(timeout)
        return ok

    # -- per job -----------------------------------------------------------------------------
    def wake(self) -> None:
        """Look for queued jobs now (call after adding jobs to the store)."""
        with self._lock:
            self._wake.notify_all()

    def pause(self, job_id: int) -> None:
        """Stop a job to resume later. :class:`JobOwnedElsewhere` if another live copy is sending it."""
        with self._lock:
            running = self._running.get(job_id)
            if running is None:
                with self._claimed(job_id):
                    if self.store.job(job_id).state is JobState.QUEUED:
                        self._set(job_id, JobState.PAUSED, "Paused.")
        if running:
            running[1].pause()

    def resume(self, job_id: int) -> None:
        """Queue a paused job again, claimed for this scheduler."""
        with self._lock, self._claimed(job_id, keep=True) as keep:
            if self.store.job(job_id).state is JobState.PAUSED:
                self._set(job_id, JobState.QUEUED, "")
                keep.append(True)
        self.wake()

    def cancel(self, job_id: int) -> None:
        """End a job. :class:`JobOwnedElsewhere` if another live copy is sending it."""
        with self._lock:
            running = self._running.get(job_id)
            if running is None:
                with self._claimed(job_id):
                    if not self.store.job(job_id).state.finished:
                        self._set(job_id, JobState.CANCELLED, "Cancelled by the user.")
        if running:
            running[1].cancel()

    def retry(self, job_id: int) -> None:
        """Queue a failed or cancelled job again, claimed for this scheduler; files the server refused for
        good stay refused."""
        with self._lock, self._claimed(job_id, keep=True) as keep:
            if job_id not in self._running and self.store.job(job_id).state in (JobState.FAILED, JobState.CANCELLED):
                failed = [f.id for f in self.store.files(job_id, [FileState.FAILED])]
                self.store.reset_files(job_id, failed)
                self._set(job_id, JobState.QUEUED, "")
                keep.append(True)
        self.wake()

    def requeue(self, job_id: int, change: Callable[[], None]) -> None:
        """Run ``change`` (which queues the job again) on a job this scheduler may claim, and keep the claim,
        so this scheduler runs it next (e.g. the GUI's "re-send missing")."""
        with self._lock, self._claimed(job_id, keep=True) as keep:
            change()
            keep.append(True)
        self.wake()

    def remove(self, job_id: int) -> None:
        """Forget a job that is not running (its receipt file stays)."""
        with self._lock:
            if job_id in self._running:
                raise RuntimeError("cancel the job before removing it")
            with self._claimed(job_id):
                self.store.remove_job(job_id)

    def running(self) -> list[int]:
        with self._lock:
            return list(self._running)

    # -- inside ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _claimed(self, job_id: int, *, keep: bool = False) -> Iterator[list[bool]]:
        """Act on a job that is not running here: claim it (or raise :class:`JobOwnedElsewhere`), then
        release it, unless ``keep`` and the body appended to the list it is given (the job is queued
        again for this scheduler). Call with ``self._lock`` held, so the dispatcher cannot start the job
        (and then lose its claim to this release) meanwhile."""
        other = self.store.claim(job_id)
        if other is not None:
            raise JobOwnedElsewhere(job_id, self.store.job(job_id).spec.project, other)
        kept: list[bool] = []
        try:
            yield kept
        finally:
            if not (keep and kept) and job_id not in self._running:
                with contextlib.suppress(KeyError):
                    self.store.release(job_id)

    def _claim_quietly(self, job_id: int) -> bool:
        """For the dispatcher: False also when the job was removed or the queue cannot be written just now (the
        next pass tries again; the dispatcher must not stop)."""
        try:
            return self.store.claim(job_id) is None
        except (KeyError, sqlite3.Error, UserError) as exc:
            if not isinstance(exc, KeyError):
                log.warning("Job %d could not be claimed now: %s", job_id, exc)
            return False

    def _set(self, job_id: int, state: JobState, message: str) -> None:
        self.store.set_state(job_id, state, message)
        if self.on_state:
            self.on_state(job_id, state)

    def _dispatch(self) -> None:
        while True:
            with self._lock:
                if self._stopping:
                    return
                busy: dict[str, int] = {}
                for _, _, server in self._running.values():
                    busy[server] = busy.get(server, 0) + 1
                # Interrupted jobs too (running, committing, verifying): one whose owner stopped is taken over.
                for job in self.store.jobs(RESUMABLE):
                    server = job.spec.server_url
                    if job.id in self._running or busy.get(server, 0) >= self.per_server:
                        continue
                    if self.store.owned_elsewhere(job) is not None or not self._claim_quietly(job.id):
                        continue  # another live copy sends it (or it was removed)
                    busy[server] = busy.get(server, 0) + 1
                    control = JobControl()
                    thread = threading.Thread(target=self._run, args=(job.id, control), name=f"job-{job.id}")
                    self._running[job.id] = (thread, control, server)
                    thread.start()
                self._wake.wait(timeout=1.0)

    def _run(self, job_id: int, control: JobControl) -> None:
        state = JobState.FAILED
        try:
            job = self.store.job(job_id)
            if self.on_state:
                self.on_state(job_id, JobState.RUNNING)
            # C-STORE jobs sent without an XNAT login are keyed dicom://host:port: nothing to log in to.
            direct_dicom = job.spec.server_url.startswith("dicom://")
            session = None if direct_dicom else self.session_for(job.spec.server_url, job.spec.user)
            state = run_job(
                self.store, job_id, session, receipts_dir=self.receipts_dir, progress=self.on_progress, control=control
            )
        except JobOwnedElsewhere as exc:  # taken over meanwhile: the other copy reports it
            log.info("Job %d is sent by another copy of the program (%s)", job_id, exc.owner.describe())
        except QueueStoreError as exc:  # the queue cannot record anything now: the job resumes as recorded
            log.warning("Job %d stopped: %s", job_id, exc.message)
            if self.on_error:
                self.on_error(job_id, exc.message, exc.hint)
        except Exception as exc:  # noqa: BLE001 - a job's failure must never stop the queue
            log.exception("Job %d stopped unexpectedly", job_id)
            message = getattr(exc, "message", None) or f"Unexpected error: {type(exc).__name__}"
            self.store.set_state(job_id, JobState.FAILED, message, getattr(exc, "hint", ""))
        finally:
            with self._lock:
                # The claim ends with the run (also when it failed before run_job, e.g. no login).
                with contextlib.suppress(KeyError):
                    self.store.release(job_id)
                self._running.pop(job_id, None)
                self._wake.notify_all()
            if self.on_state:
                # The store's state, not this run's: the job may already be queued again (a retry or a
                # re-send started the moment it finished), and a late "done" would show it as finished.
                with contextlib.suppress(KeyError):
                    state = self.store.job(job_id).state
                self.on_state(job_id, state)
