"""XNAT's slow steps: the synchronous commit and archive, and the queued Direct-Archive (xnat-api.md 14).

XNAT builds and archives a session inside the ``action=commit`` request (and inside
``/data/services/archive``), for up to ``sessionArchiveTimeoutInterval`` (600 s). With
``Settings.commit_seconds`` (plus ``commit_seconds_per_file``) the sandbox holds such a request that long,
without its store lock, so listings are answered meanwhile and show what XNAT shows: BUILDING while it
builds (not a locking status: a second commit then builds again), then ``_ARCHIVING`` (locked: a second
commit gets 409 "session document locked", a second archive 403 "Operation already in progress").

The Direct-Archive trigger answers 200 once the archive job is queued (QUEUED_BUILDING); the job runs
``Settings.direct_archive_delay`` seconds later in the background. Until then the experiment does not
exist (its listings answer 404). A failure moves the session into the prearchive as ERROR, with
"Attempt to direct-archive failed" in its log (``DirectArchiveSessionServiceImpl.doPrearchiveMove``).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from xnat_uploader.sandbox import sessions
from xnat_uploader.sandbox.httpd import HttpError, Request, Response
from xnat_uploader.sandbox.store import (
    ARCHIVING,
    BUILDING,
    CODE_NAMES,
    ERROR,
    RECEIVING,
    Experiment,
    PrearcSession,
    Store,
)

if TYPE_CHECKING:
    from xnat_uploader.sandbox.app import App
    from xnat_uploader.sandbox.auth import User

log = logging.getLogger(__name__)

LOCKED_ARCHIVING = "_ARCHIVING"  # ARCHIVING while XNAT's archiver holds the row (PrearcDatabase.lockSession)
QUEUED_BUILDING, QUEUED_ARCHIVING = "QUEUED_BUILDING", "QUEUED_ARCHIVING"
DIRECT_FAILED = "Attempt to direct-archive failed"


def key(session: PrearcSession) -> str:
    return f"{session.project}/{session.timestamp}/{session.folder}"


def _alive(store: Store, session: PrearcSession) -> bool:
    with store.lock:
        return store.get_prearc(session.project, session.timestamp, session.folder) is session


def _hold(app: App, session: PrearcSession, share: float) -> None:
    """Hold the request for ``share`` of the session's build-and-archive time (the store lock is free)."""
    settings = app.settings
    seconds = settings.commit_seconds + settings.commit_seconds_per_file * session.content.file_count()
    if seconds > 0:
        time.sleep(seconds * share)


def _gone() -> HttpError:
    # PrearcDatabase: SessionException(DoesntExist) -> 404 without a page message of its own.
    return HttpError(404, "A record with this session, timestamp and project could not be found.")


def commit(
    app: App, request: Request, session: PrearcSession, params: dict[str, str], fields: dict[str, str]
) -> Response:
    """``action=commit``: build, and archive when the row, the ``AA`` parameter or the project says so."""
    store = app.store
    app.count_action("commit", key(session))
    with store.lock:
        if session.status.startswith("_"):
            raise HttpError(409, "session document locked")
        session.status = BUILDING  # not a locking status: a second commit now builds again
        if not session.autoarchive:
            proj = store.projects.get(session.project)
            session.autoarchive = CODE_NAMES.get(proj.prearchive_code, "Manual") if proj else ""
        auto = sessions.should_auto_archive(store, session, params.get("AA", params.get("auto-archive")))
    _hold(app, session, 0.5 if auto else 1.0)
    with store.lock:
        if not _alive(store, session):
            raise _gone()
        sessions.build(store, session, **fields)
        if not auto:
            return Response(200, f"/data{session.url}".encode(), "text/uri-list")
        if session.status.startswith("_"):
            raise HttpError(409, "session document locked")  # another commit is archiving it now
        session.status = LOCKED_ARCHIVING
    _hold(app, session, 0.5)
    if not _alive(store, session):
        raise _gone()
    try:
        exp = sessions.archive(store, request.user, session, params, sessions.MergeRules.commit(store, session, params))
    except sessions.ArchiveFailure as failure:
        raise HttpError(500, f"FAILED: {failure}") from None
    return Response(301, sessions.archive_uri(store, exp).encode(), "text/plain;charset=UTF-8")


def archive_one(app: App, user: User, session: PrearcSession, overrides: dict[str, str]) -> Experiment:
    """One session through ``/data/services/archive``: ARCHIVING, then ``_ARCHIVING``, then gone. It merges
    into an existing session whatever ``overwrite`` says (:meth:`.merge.MergeRules.archive_service`)."""
    store = app.store
    app.count_action("archive", key(session))
    with store.lock:
        if session.status.startswith("_") or session.status == ARCHIVING:
            raise HttpError(403, "Operation already in progress on this prearchive entry.")
        session.status = ARCHIVING
    _hold(app, session, 0.5)
    with store.lock:
        if not _alive(store, session):
            raise HttpError(404, f"/prearchive/projects/{key(session)} not found.")
        session.status = LOCKED_ARCHIVING
    _hold(app, session, 0.5)
    rules = sessions.MergeRules.archive_service(store, session, overrides, several=False)
    return sessions.archive(store, user, session, overrides, rules)


def trigger_direct(app: App, request: Request, session: PrearcSession) -> Response:
    """``POST /xapi/direct-archive/P/UID/label``: queue the archive job and answer at once."""
    store, settings = app.store, app.settings
    app.count_action("direct-archive", f"{session.project}/{session.tag}/{session.name}")
    with store.lock:
        if time.monotonic() - session.touched < settings.lock_linger:
            raise HttpError(
                400,
                f"Refusing to trigger archive on DirectArchiveSession {session.name} because it is still "
                "receiving new files or doesn't have an id",
            )
        session.status = QUEUED_BUILDING
    user = request.user
    threading.Thread(target=run_direct, args=(app, session, user), name="sandbox-direct-archive", daemon=True).start()
    return Response(200, b"", "application/json")


def run_direct(app: App, session: PrearcSession, user: User, delay: float | None = None) -> None:
    """The queued archive job: wait, build, archive; on failure move the session into the prearchive."""
    store, settings = app.store, app.settings
    wait = settings.direct_archive_delay if delay is None else delay
    if wait > 0:
        time.sleep(wait)
    with store.lock:
        if not _alive(store, session) or not session.direct:
            return  # another job (a second trigger, the idle timer) got there first
        session.status = BUILDING
        sessions.build(store, session)
        session.status = ARCHIVING
        try:
            if settings.direct_archive_error:
                raise sessions.ArchiveFailure(settings.direct_archive_error, conflict=False)
            sessions.archive(store, user, session, {}, sessions.MergeRules())  # never merges
        except (sessions.ArchiveFailure, HttpError) as exc:
            direct_failed(session, str(exc))


def direct_failed(session: PrearcSession, reason: str) -> None:
    """XNAT moves a session it could not archive directly into the prearchive, ERROR once built."""
    session.direct = False
    session.status = ERROR if session.built else RECEIVING
    session.log.append(f"{DIRECT_FAILED}\norg.nrg.xnat.archive.ArchivingException: {reason}")
    log.info("sandbox direct-archive of %s failed; moved into the prearchive", session.tag)
