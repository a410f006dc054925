"""The prearchive: listings, one session (GET/DELETE/POST actions), its scans and files, the batch
services (move, delete, rebuild), Direct-Archive sessions, and the background auto-build timer.

xnat-api.md sections 4.1-4.6 and 3.12.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import zipfile
from typing import TYPE_CHECKING

from xnat_uploader.sandbox import commit, sessions
from xnat_uploader.sandbox.httpd import HttpError, Request, Response, Router
from xnat_uploader.sandbox.store import (
    BUILDING,
    READY,
    RECEIVING,
    RECEIVING_INTERRUPT,
    UNASSIGNED,
    PrearcSession,
    Store,
)
from xnat_uploader.sandbox.tables import table

if TYPE_CHECKING:
    from xnat_uploader.sandbox.app import App
    from xnat_uploader.sandbox.auth import User

log = logging.getLogger(__name__)

COLUMNS = [
    "project",
    "timestamp",
    "lastmod",
    "uploaded",
    "scan_date",
    "scan_time",
    "subject",
    "folderName",
    "name",
    "tag",
    "status",
    "url",
    "autoarchive",
    "prevent_anon",
    "prevent_auto_commit",
    "SOURCE",
    "VISIT",
    "PROTOCOL",
    "TIMEZONE",
]
NOT_BUILT = (
    "The named session exists, but its XNAT session document is not available. The session is likely "
    "invalid or incomplete."
)
SESSION = r"/(?:data|REST)/prearchive/projects/(?P<project>[^/]+)/(?P<ts>[^/]+)/(?P<folder>[^/]+)"


def visible_rows(store: Store, user: User, projects: list[str] | None) -> list[PrearcSession]:
    """Rows a user may see: projects they can edit; Unassigned too for all-data-access users, always."""
    with store.lock:
        rows = [s for s in store.prearchive.values() if not s.direct]
    out = []
    for s in rows:
        if s.project == UNASSIGNED:
            if user.all_data_access:
                out.append(s)
        elif user.can_edit(s.project) and (projects is None or s.project in projects):
            out.append(s)
    return sorted(out, key=lambda s: (s.project, s.timestamp, s.folder))


def session_for(app: App, request: Request, project: str, ts: str, folder: str, missing: int = 404) -> PrearcSession:
    """The addressed row; unknown project -> 500 "No project named P" (as XNAT), no edit rights -> 403."""
    if project.lower() == UNASSIGNED.lower():
        if not request.user.all_data_access:
            raise HttpError(403, "Specified user account has insufficient privileges for Unassigned sessions.")
    else:
        proj = app.store.find_project(project)
        if proj is None:
            raise HttpError(500, f"No project named {project}")
        if not request.user.can_edit(proj.id):
            raise HttpError(403, f"The current user does not have access to the requested project: {project}")
        project = proj.id
    session = app.store.get_prearc(project, ts, folder)
    if session is None or session.direct:
        raise HttpError(missing, NOT_BUILT if missing == 404 else f"Unable to find prearchive session {ts}/{folder}")
    return session


def parse_src(src: str) -> tuple[str, str, str]:
    """``/data/prearchive/projects/P/TS/FOLDER`` (``/data`` optional) -> (P, TS, FOLDER)."""
    path = src.split("?", 1)[0].strip()
    for prefix in ("/data", "/REST"):
        if path.startswith(prefix + "/"):
            path = path[len(prefix) :]
    parts = [p for p in path.split("/") if p]
    if len(parts) != 5 or parts[0] != "prearchive" or parts[1] != "projects":
        raise HttpError(400, f"Invalid src URI ({src})")
    return parts[2], parts[3], parts[4]


def load_params(request: Request) -> dict[str, str]:
    """Form body, query string, or a JSON object body (its keys become parameters)."""
    if request.content_type == "application/json" and request.body.present:
        try:
            data = json.loads(request.body.read_all() or b"{}")
        except (ValueError, RecursionError):  # RecursionError: nested deeper than json decodes
            raise HttpError(400, "Unable to parse the JSON body") from None
        request.form = [(str(k), str(v)) for k, v in data.items()] if isinstance(data, dict) else []
    else:
        request.load_form()
    return request.all_params()


def register(router: Router, app: App) -> None:
    store = app.store

    def listing(request: Request, projects: str | None = None) -> Response:
        wanted = None
        if projects:
            wanted = []
            for ref in projects.split(","):
                if ref.lower() == UNASSIGNED.lower():
                    continue
                proj = store.find_project(ref)
                if proj is None or not request.user.can_read(proj.id):
                    raise HttpError(403, f"The current user does not have access to the requested project: {ref}")
                wanted.append(proj.id)
        tag = request.param("tag")
        if tag is not None and not request.user.all_data_access:
            raise HttpError(403, "Only site or data administrators and reviewers can query by tag")
        rows = [s.row() for s in visible_rows(store, request.user, wanted) if tag is None or s.tag == tag]
        return table(request, rows, COLUMNS)

    def one(request: Request, project: str, ts: str, folder: str) -> Response:
        if request.method == "DELETE":
            return delete(request, project, ts, folder)
        if request.method == "POST":
            return action(request, project, ts, folder)
        fmt = (request.param("format") or "xml").lower()
        try:
            session = session_for(app, request, project, ts, folder)
        except HttpError as err:
            if err.status != 404 or fmt != "json":
                raise
            return gone_json(request, project, ts, folder)
        if fmt == "json":
            return table(request, [session.row()], COLUMNS)
        if fmt == "zip":
            return zip_folder(app, session)
        if not session.built:
            raise HttpError(404, NOT_BUILT)
        return Response(200, session_xml(session).encode(), "text/xml;charset=UTF-8")

    def delete(request: Request, project: str, ts: str, folder: str) -> Response:
        try:
            session = session_for(app, request, project, ts, folder)
        except HttpError as err:
            if err.status != 404:
                raise
            return Response(200, b"", "text/plain")  # XNAT: unknown folder in a known project is still 200
        store.remove_prearc(session)
        return Response(200, b"", "text/plain")

    def action(request: Request, project: str, ts: str, folder: str) -> Response:
        params = load_params(request)
        name = params.get("action")
        if not name:
            raise HttpError(
                400,
                "No action parameter was specified. Valid actions are: build, commit, move, reset-status, set-status.",
            )
        if name not in ("build", "commit", "move", "reset-status", "set-status"):
            raise HttpError(
                400, f"User {request.user.login} requested an unsupported action on prearchive session: {name}"
            )
        session = session_for(app, request, project, ts, folder, missing=500 if name == "build" else 404)
        uri = f"/data{session.url}"
        if name == "build":
            sessions.build(store, session, **_build_fields(params))
            return Response(200, uri.encode(), "text/uri-list")
        if name == "commit":
            return commit.commit(app, request, session, params, _build_fields(params))
        if name == "move":
            target = params.get("newProject")
            proj = store.find_project(target)
            if proj is None or not request.user.can_edit(proj.id):
                raise HttpError(403, "Unable to modify session data for destination project.")
            if store.get_prearc(proj.id, session.timestamp, session.folder) is not None:
                raise HttpError(
                    409,
                    f"A session already exists at /prearchive/projects/{proj.id}/{session.timestamp}/{session.folder}",
                )
            store.rekey_prearc(session, proj.id)
            session.status = READY if session.built else RECEIVING
            return Response(301, f"/data{session.url}".encode(), "text/uri-list")
        if name == "reset-status":
            session.status = READY if session.built else RECEIVING
            return Response(200, uri.encode(), "text/uri-list")
        status = (params.get("status") or "").upper()
        if not status or status.startswith("_") or status.startswith("QUEUED_"):
            raise HttpError(400, f"Cannot set session status to {status}")
        session.status = status
        return Response(200, uri.encode(), "text/uri-list")

    def gone_json(request: Request, project: str, ts: str, folder: str) -> Response:
        """A gone row, as JSON: XNAT 1.8.11 builds the table of rows matching it (none) -> 200 and an empty
        table; ``gone_session_json="500"`` answers as xnat-api.md 14 reports instead."""
        if app.settings.gone_session_json == "500":
            raise HttpError(
                500, f"A record with session {folder}, timestamp {ts} and project {project} could not be found."
            )
        return table(request, [], COLUMNS)

    def last_log(request: Request, project: str, ts: str, folder: str) -> Response:
        """``.../logs/last``: the session's last log entry as text (empty when it has none, or is gone)."""
        try:
            session = session_for(app, request, project, ts, folder)
        except HttpError as err:
            if err.status != 404:
                raise
            return Response(200, b"", "text/plain")
        return Response(200, (session.log[-1] if session.log else "").encode(), "text/plain")

    def scans(request: Request, project: str, ts: str, folder: str) -> Response:
        session = session_for(app, request, project, ts, folder)
        rows = [
            {"ID": s.id, "xsiType": s.xsi_type, "series_description": s.series_description}
            for s in session.content.scans.values()
        ]
        return table(request, rows, ["ID", "xsiType", "series_description"])

    def scan_resources(request: Request, project: str, ts: str, folder: str, scan: str | None = None) -> Response:
        session = session_for(app, request, project, ts, folder)
        rows = []
        if scan is not None:
            s = session.content.scans.get(scan)
            if s is None:
                raise HttpError(404, f"Unable to find scan {scan}")
            if s.files:
                rows.append(
                    {
                        "label": "DICOM",
                        "file_count": len(s.files),
                        "format": "DICOM",
                        "file_size": sum(f.size for f in s.files.values()),
                    }
                )
            res = s.resources
        else:
            res = session.content.resources
        rows += [
            {
                "label": r.label,
                "file_count": len(r.files),
                "format": r.format,
                "file_size": sum(f.size for f in r.files.values()),
            }
            for r in res.values()
        ]
        return table(request, rows, ["label", "file_count", "format", "file_size"])

    def files(request: Request, project: str, ts: str, folder: str, label: str, scan: str | None = None) -> Response:
        session = session_for(app, request, project, ts, folder)
        if scan is not None:
            s = session.content.scans.get(scan)
            if s is None:
                raise HttpError(404, f"Unable to find scan {scan}")
            found = s.files if label == "DICOM" else (s.resources[label].files if label in s.resources else None)
        else:
            found = session.content.resources[label].files if label in session.content.resources else None
        if found is None:
            raise HttpError(404, f"Unable to find resource {label}")
        with app.store.lock:  # a digest may be computed now: not while an archive moves the files
            rows = [
                {
                    "Name": f.name,
                    "Size": f.size,
                    "URI": f"/data{session.url}/scans/{scan}/resources/{label}/files/{f.name}",
                    "digest": f.digest(),
                }
                for f in found.values()
            ]
        return table(request, rows, ["Name", "Size", "URI", "digest"])

    router.add("GET", r"/(?:data|REST)/prearchive(?:/projects)?", listing)
    router.add("GET", r"/(?:data|REST)/prearchive/projects/(?P<projects>[^/]+)", listing)
    router.add("GET DELETE POST", SESSION, one)
    router.add("GET", SESSION + r"/logs/last", last_log)
    router.add("GET", SESSION + r"/scans", scans)
    router.add("GET", SESSION + r"/scans/(?P<scan>[^/]+)/resources", scan_resources)
    router.add("GET", SESSION + r"/resources", scan_resources)
    router.add("GET", SESSION + r"/scans/(?P<scan>[^/]+)/resources/(?P<label>[^/]+)/files", files)
    router.add("GET", SESSION + r"/resources/(?P<label>[^/]+)/files", files)

    from xnat_uploader.sandbox import batch

    batch.register(router, app)


def _build_fields(params: dict[str, str]) -> dict[str, str]:
    return {k.lower(): params[k] for k in ("VISIT", "PROTOCOL", "TIMEZONE", "SOURCE") if params.get(k)}


def session_xml(session: PrearcSession) -> str:
    """A minimal ``xnat:*SessionData`` document for a built prearchive session."""
    from xml.sax.saxutils import escape, quoteattr

    from xnat_uploader.sandbox.store import scan_xsi, session_xsi

    xsi = session_xsi(session.content.modality)
    element = {
        "xnat:mrSessionData": "MRSession",
        "xnat:ctSessionData": "CTSession",
        "xnat:petSessionData": "PETSession",
    }.get(xsi, "OtherDicomSession")
    scans = "".join(
        f'<xnat:scan ID={quoteattr(s.id)} UID={quoteattr(s.series_uid)} xsi:type="{scan_xsi(s.modality)}">'
        f"<xnat:series_description>{escape(s.series_description)}</xnat:series_description>"
        f'<xnat:file label="DICOM" format="DICOM" content="RAW" xsi:type="xnat:resourceCatalog"/></xnat:scan>'
        for s in session.content.scans.values()
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<xnat:{element} xmlns:xnat="http://nrg.wustl.edu/xnat" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        f"project={quoteattr(session.project)} label={quoteattr(session.name)} "
        f"UID={quoteattr(session.tag)}><xnat:subject_ID>{escape(session.subject)}</xnat:subject_ID>"
        f"<xnat:scans>{scans}</xnat:scans></xnat:{element}>"
    )


def zip_folder(app: App, session: PrearcSession) -> Response:
    """``format=zip``: the session folder as a (stored) zip, written to a temp file and streamed."""
    path = app.store.temp_path(".zip")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for file in sorted(session.content.dir.rglob("*")):
            if file.is_file():
                zf.write(file, f"{session.folder}/{file.relative_to(session.content.dir).as_posix()}")
    resp = Response(200, b"", "application/zip", file=path, temporary=True)
    resp.headers.append(("Content-Disposition", f'attachment; filename="{session.folder}.zip"'))
    return resp


class AutoBuilder:
    """XNAT's SessionXMLRebuilder: builds RECEIVING sessions idle for ``auto_build_after`` seconds
    (never those with ``prevent_auto_commit`` or ``SOURCE=uploader``), then auto-archives when the
    row or project code says so; also archives idle Direct-Archive sessions."""

    def __init__(self, app: App):
        self.app = app
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sandbox-rebuilder", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.app.settings.rebuild_tick):
            try:
                self.tick()
            except Exception:  # a failing tick must not kill the timer thread
                log.exception("sandbox auto-build tick failed")

    def tick(self) -> None:
        store, settings = self.app.store, self.app.settings
        now = time.monotonic()
        with store.lock:
            due = [
                s
                for s in store.prearchive.values()
                if s.status == RECEIVING
                and now - s.touched >= settings.auto_build_after
                and (s.direct or (s.prevent_auto_commit != "true" and s.source != "uploader"))
            ]
        for session in due:
            with store.lock:
                if session.status != RECEIVING:
                    continue
                if session.direct:
                    self._archive_direct(session)
                    continue
                session.status = BUILDING
            if settings.build_seconds:
                # Let clients watch BUILDING; a file arriving now sets RECEIVING_INTERRUPT.
                self._stop.wait(settings.build_seconds)
            with store.lock:
                if session.status == RECEIVING_INTERRUPT:
                    session.status = RECEIVING  # XNAT: back to RECEIVING, no auto-archive this time
                    continue
                if session.status != BUILDING:
                    continue  # deleted, moved or re-set meanwhile
                sessions.build(store, session)
                if session.status == READY and sessions.should_auto_archive(store, session, None):
                    # A failure leaves the row in CONFLICT/ERROR, as XNAT's queue does.
                    with contextlib.suppress(sessions.ArchiveFailure, HttpError):
                        rules = sessions.MergeRules.auto_archive(store, session)
                        sessions.archive(store, self.app.store_owner(session), session, {}, rules)

    def _archive_direct(self, session: PrearcSession) -> None:
        # XNAT's timer queues idle Direct-Archive sessions like a trigger does; here the job runs at once.
        session.status = commit.QUEUED_BUILDING
        commit.run_direct(self.app, session, self.app.store_owner(session), delay=0.0)
