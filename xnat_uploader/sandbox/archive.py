"""``POST /data/services/archive`` (xnat-api.md 4.5) and the Direct-Archive XAPI (3.12, 14).

One session: archived synchronously (slowly, with ``Settings.commit_seconds``: :mod:`.commit`); 200
``text/uri-list`` (URI + CRLF), or 303 with ``Location``
when ``redirect=true`` or the session auto-archives; failures 500 ``FAILED: <reason>`` with the
row left in CONFLICT/ERROR. Several sessions: marked ARCHIVING, archived in a background thread,
and the rows' table is returned (XML unless ``format`` says otherwise).
"""

from __future__ import annotations

import contextlib
import json
import threading
from typing import TYPE_CHECKING

from xnat_uploader.sandbox import commit, sessions
from xnat_uploader.sandbox.httpd import HttpError, Request, Response, Router
from xnat_uploader.sandbox.store import ARCHIVING, RECEIVING, UNASSIGNED, PrearcSession

if TYPE_CHECKING:
    from xnat_uploader.sandbox.app import App

_OWN = {
    "src",
    "format",
    "redirect",
    "http-session-listener",
    "project",
    "PREARC_TIMESTAMP",
    "PREARC_SESSION_FOLDER",
    "dest",
    "XNAT_CSRF",
}


def register(router: Router, app: App) -> None:
    from xnat_uploader.sandbox.prearchive import COLUMNS, load_params, parse_src
    from xnat_uploader.sandbox.tables import table, uri_list

    store = app.store

    def locate(request: Request, project: str, ts: str, folder: str, src: str) -> PrearcSession:
        if project.lower() == UNASSIGNED.lower():
            raise HttpError(400, "Cannot archive sessions from the Unassigned folder.")
        proj = store.find_project(project)
        if proj is not None and not request.user.can_edit(proj.id):
            raise HttpError(
                403, f"Specified user account has insufficient privileges for experiments in the {proj.id} project."
            )
        session = store.get_prearc(proj.id if proj else project, ts, folder)
        if session is None or session.direct:
            raise HttpError(404, f"{src} not found.")
        if session.status == ARCHIVING:
            raise HttpError(403, "Operation already in progress on this prearchive entry.")
        return session

    def archive_service(request: Request) -> Response:
        params = load_params(request)
        srcs = request.params("src")
        targets: list[PrearcSession] = []
        for src in srcs:
            if src.lstrip("/").split("/", 2)[:2] in (["data", "archive"], ["archive"]) or "/archive/" in src:
                raise HttpError(400, f"Invalid src URI ({src})")
            project, ts, folder = parse_src(src)
            targets.append(locate(request, project, ts, folder, src))
        if not srcs:
            if params.get("project") and params.get("PREARC_TIMESTAMP") and params.get("PREARC_SESSION_FOLDER"):
                p, ts, folder = params["project"], params["PREARC_TIMESTAMP"], params["PREARC_SESSION_FOLDER"]
                targets.append(locate(request, p, ts, folder, f"/prearchive/projects/{p}/{ts}/{folder}"))
            elif params.get("dest"):
                # Per XNAT's source a dest without src never builds a session list and ends in a 500.
                raise HttpError(500, "Unknown prearchive session.")
            else:
                raise HttpError(404, "Unknown prearchive session.")
        overrides = {k: v for k, v in params.items() if k not in _OWN}
        if len(targets) == 1:
            session = targets[0]
            auto = sessions.should_auto_archive(store, session, params.get("AA", params.get("auto-archive")))
            try:
                exp = commit.archive_one(app, request.user, session, overrides)
            except sessions.ArchiveFailure as failure:
                raise HttpError(500, f"FAILED: {failure}") from None
            uri = sessions.archive_uri(store, exp)
            if request.flag("redirect") or auto:
                host = request.headers.get("Host") or "localhost"
                resp = Response(303, b"", "text/plain")
                resp.headers.append(("Location", f"http://{host}{uri}"))
                return resp
            return uri_list([uri])
        rows = []
        for s in targets:
            s.status = ARCHIVING
            rows.append(s.row())
        threading.Thread(
            target=_archive_all, args=(app, request.user, targets, overrides), daemon=True, name="sandbox-archive-batch"
        ).start()
        return table(request, rows, COLUMNS, default="xml")

    def direct_session(request: Request, project: str, uid: str, label: str) -> Response:
        with store.lock:
            found = [
                s
                for s in store.prearchive.values()
                if s.direct and s.project == project and s.tag == uid and s.name == label
            ]
        if not found or not request.user.can_edit(project):
            raise HttpError(404, f"No direct-archive session {project}/{uid}/{label}")
        session = found[0]
        if request.method == "POST":
            return commit.trigger_direct(app, request, session)  # queued: archived later, in the background
        body = {
            "project": session.project,
            "subject": session.subject,
            "label": session.name,
            "tag": session.tag,
            "status": session.status if session.status != RECEIVING else "RECEIVING",
            "location": str(session.content.dir.relative_to(store.data_dir)),
            "timestamp": session.timestamp,
        }
        return Response(200, json.dumps(body).encode(), "application/json")

    def direct_list(request: Request) -> Response:
        with store.lock:
            rows = [
                {"project": s.project, "subject": s.subject, "label": s.name, "tag": s.tag, "status": s.status}
                for s in store.prearchive.values()
                if s.direct and request.user.can_edit(s.project)
            ]
        return Response(200, json.dumps(rows).encode(), "application/json")

    router.add("POST", r"/(?:data|REST)/services/archive", archive_service)
    router.add("GET POST", r"/xapi/direct-archive/(?P<project>[^/]+)/(?P<uid>[^/]+)/(?P<label>[^/]+)", direct_session)
    router.add("POST", r"/xapi/direct-archive", direct_list)


def _archive_all(app: App, user, targets: list[PrearcSession], overrides: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    for session in targets:
        # A failure leaves the row in CONFLICT/ERROR, visible in the listing.
        with contextlib.suppress(sessions.ArchiveFailure, HttpError):
            rules = sessions.MergeRules.archive_service(app.store, session, overrides, several=True)
            sessions.archive(app.store, user, session, overrides, rules)
