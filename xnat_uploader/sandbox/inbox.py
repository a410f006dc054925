"""The ``inbox`` import handler as XNAT runs it: checked at once, imported in the background (xnat-api.md 3.10).

``POST /data/services/import?import-handler=inbox`` validates the request synchronously (400 with the
long message, 409 for an existing session label), records a ``DicomInboxImportRequest`` and answers
its URI ``/xapi/dicom/<id>``. One worker thread per server then imports the queued requests, one at
a time: Queued -> Importing -> Completed, or Failed with the reason in ``resolution``.

XNAT's ``DicomTransactionApi`` reports them: ``GET /xapi/dicom/<id>`` (404 when unknown or another
user's, site admins see all), ``GET /xapi/dicom/list/active`` (not Completed/Failed) and
``GET /xapi/dicom/list/all``.

Simplifications: the requests live in memory only (a restarted sandbox forgets them); each file is
received as gradual-DICOM would and the sessions are left RECEIVING for the auto-builder, as in
XNAT's per-file inbox importer. ``Settings.inbox_file_delay`` slows every file down so that tests
can watch the status change.
"""

from __future__ import annotations

import json
import logging
import queue
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from xnat_uploader.sandbox import sessions
from xnat_uploader.sandbox.dicomio import NotDicom
from xnat_uploader.sandbox.httpd import HttpError, Request, Response, Router
from xnat_uploader.sandbox.sessions import Target

if TYPE_CHECKING:
    from xnat_uploader.sandbox.app import App
    from xnat_uploader.sandbox.auth import User
    from xnat_uploader.sandbox.store import PrearcSession

log = logging.getLogger(__name__)

QUEUED, IMPORTING, COMPLETED, FAILED = "Queued", "Importing", "Completed", "Failed"
FINAL = (COMPLETED, FAILED)

LONG_MESSAGE = (
    "You must specify a valid path to a directory or archive file within the inbox path, "
    "a project you can edit and the directory must be in a folder named for that project."
)


@dataclass
class InboxRequest:
    """One ``DicomInboxImportRequest``; ``source``, ``target`` and ``user`` are what the worker needs."""

    id: int
    username: str
    parameters: dict[str, str]
    source: Path
    cleanup: bool
    target: Target = field(repr=False)
    user: User = field(repr=False)
    status: str = QUEUED
    resolution: str | None = None
    created: int = field(default_factory=lambda: int(time.time() * 1000))
    timestamp: int = 0

    def set(self, status: str, resolution: str | None = None) -> None:
        # Status last: a reader on another thread never sees a final status without its resolution.
        self.resolution = resolution
        self.timestamp = int(time.time() * 1000)
        self.status = status

    def as_json(self) -> dict[str, object]:
        """The entity as XNAT's Jackson writes it (AbstractHibernateEntity fields included)."""
        return {
            "id": self.id,
            "enabled": True,
            "created": self.created,
            "timestamp": self.timestamp or self.created,
            "disabled": 0,
            "username": self.username,
            "parameters": dict(self.parameters),
            "sessionPath": str(self.source),
            "status": self.status,
            "cleanupAfterImport": self.cleanup,
            "resolution": self.resolution,
        }


class _Stopped(Exception):
    """The server is shutting down in the middle of an import."""


class InboxJobs:
    """The inbox requests of one server and the worker thread that imports them."""

    def __init__(self, app: App):
        self.app = app
        self._requests: dict[int, InboxRequest] = {}
        self._lock = threading.Lock()
        self._queue: queue.Queue[InboxRequest] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the import service side ----------------------------------------------------------------
    def submit(self, request: Request) -> str:
        """Check the request as XNAT does before queueing it; returns the job URI."""
        from xnat_uploader.sandbox.handlers import target_from

        store = self.app.store
        path_param = request.param("path") or ""
        project = store.find_project(request.param("PROJECT_ID") or request.param("project"))
        inbox_root = (store.data_dir / "inbox").resolve()
        candidate = Path(path_param)
        source = (candidate if candidate.is_absolute() else inbox_root / candidate).resolve()
        if (
            project is None
            or not request.user.can_edit(project.id)
            or not path_param
            or not source.exists()
            or not source.is_relative_to(inbox_root / project.id)
        ):
            raise HttpError(400, LONG_MESSAGE)
        label = request.param("EXPT_LABEL") or request.param("session")
        if label and store.find_experiment(project.id, label) is not None:
            raise HttpError(409, f"The session {label} already exists in project {project.id}.")
        params = {k: v for k, v in request.all_params().items() if k.lower() != "xnat_csrf"}
        job = InboxRequest(
            id=store.next_id("inbox"),
            username=request.user.login,
            parameters=params,
            source=source,
            cleanup=(request.param("cleanupAfterImport") or "true").lower() != "false",
            target=target_from(request, gradual=False),
            user=request.user,
        )
        with self._lock:
            self._requests[job.id] = job
            if self._thread is None:
                self._stop.clear()
                self._thread = threading.Thread(target=self._run, name="sandbox-inbox", daemon=True)
                self._thread.start()
        self._queue.put(job)
        return f"/xapi/dicom/{job.id}"

    # -- the DicomTransactionApi side -----------------------------------------------------------
    def get(self, job_id: int, user: User) -> InboxRequest:
        with self._lock:
            job = self._requests.get(job_id)
        if job is None or not (user.admin or job.username == user.login):
            raise HttpError(404, f"No DICOM inbox import request with ID {job_id} found.")
        return job

    def visible(self, user: User, *, active: bool) -> list[InboxRequest]:
        with self._lock:
            jobs = sorted(self._requests.values(), key=lambda j: j.id)
        return [j for j in jobs if (user.admin or j.username == user.login) and not (active and j.status in FINAL)]

    # -- the worker -----------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop the worker (an import under way ends Failed) and wait for it; jobs still queued stay Queued."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                job = self._queue.get(timeout=0.05)
            except queue.Empty:
                continue
            try:
                self._import(job)
            except _Stopped:
                job.set(FAILED, "The import was interrupted: the server shut down.")
                return
            except HttpError as err:
                job.set(FAILED, err.message or str(err.status))
            except Exception as exc:  # noqa: BLE001 - a failed import is reported in its request, as XNAT does
                log.exception("sandbox inbox import %d failed", job.id)
                job.set(FAILED, f"An error occurred during the import: {type(exc).__name__}: {exc}")

    def _import(self, job: InboxRequest) -> None:
        from xnat_uploader.sandbox.handlers import archive_kind, iter_entries

        job.set(IMPORTING)
        store = self.app.store
        source = job.source
        files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
        touched: list[PrearcSession] = []
        count = 0
        for file in files:
            kind = archive_kind(file.name.lower())
            if kind:
                for name, temp, size in iter_entries(store, file, kind):
                    count += self._one(job, touched, temp, name, size)
            else:
                temp = store.temp_path()
                shutil.copyfile(file, temp)
                count += self._one(job, touched, temp, file.name, temp.stat().st_size)
        if not count:
            job.set(FAILED, f"No DICOM files were found to import in {source}.")
            return
        if job.cleanup:
            shutil.rmtree(source) if source.is_dir() else source.unlink()
        uris = ", ".join(sessions.receiver_uri(s) for s in touched)
        job.set(COMPLETED, f"Imported {count} DICOM files into {len(touched)} session(s): {uris}")

    def _one(self, job: InboxRequest, touched: list[PrearcSession], temp: Path, name: str, size: int) -> int:
        try:
            delay = self.app.settings.inbox_file_delay
            if (delay and self._stop.wait(delay)) or self._stop.is_set():
                raise _Stopped()
            session = sessions.receive(self.app.store, job.user, job.target, temp, name.rsplit("/", 1)[-1], size)
        except NotDicom:
            return 0  # XNAT logs the file and goes on
        finally:
            temp.unlink(missing_ok=True)
        if session not in touched:
            touched.append(session)
        return 1


def register(router: Router, app: App) -> None:
    jobs = app.inbox

    def one(request: Request, job_id: str) -> Response:
        return _json(jobs.get(int(job_id), request.user).as_json())

    def listing(request: Request, which: str) -> Response:
        return _json([j.as_json() for j in jobs.visible(request.user, active=which == "active")])

    router.add("GET", r"/xapi/dicom/list/(?P<which>active|all)", listing)
    router.add("GET", r"/xapi/dicom/(?P<job_id>\d+)", one)


def _json(obj: object) -> Response:
    return Response(200, json.dumps(obj).encode(), "application/json;charset=UTF-8")
