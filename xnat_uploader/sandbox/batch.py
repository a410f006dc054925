"""Prearchive batch services: ``/data/services/prearchive/{move,delete,rebuild}`` (xnat-api.md 4.5).

XNAT queues these jobs and answers at once with the rows' table showing the queued status
(``QUEUED_MOVING`` ...); its default format is XML. The sandbox answers with the same table, then
runs the job right away, so a following listing already shows the result.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xnat_uploader.sandbox import sessions
from xnat_uploader.sandbox.httpd import HttpError, Request, Response, Router
from xnat_uploader.sandbox.store import READY, RECEIVING, UNASSIGNED, PrearcSession

if TYPE_CHECKING:
    from xnat_uploader.sandbox.app import App


def register(router: Router, app: App) -> None:
    from xnat_uploader.sandbox.prearchive import COLUMNS, load_params, parse_src
    from xnat_uploader.sandbox.tables import table

    store = app.store

    def sources(request: Request, verb: str) -> list[PrearcSession]:
        srcs = request.params("src")
        if not srcs:
            raise HttpError(400, "You must specify at least one src parameter.")
        found, denied, unknown_projects = [], [], []
        for src in srcs:
            project, ts, folder = parse_src(src)
            if project.lower() != UNASSIGNED.lower():
                proj = store.find_project(project)
                if proj is None:
                    unknown_projects.append(project)
                    continue
                if not request.user.can_edit(proj.id):
                    denied.append(proj.id)
                    continue
                project = proj.id
            elif not request.user.all_data_access:
                denied.append(UNASSIGNED)
                continue
            session = store.get_prearc(project, ts, folder)
            if session is None or session.direct:
                if verb == "delete":
                    raise HttpError(500, f"Unable to delete prearchive session {src}: it does not exist.")
                raise HttpError(
                    404, f"No prearchive resource with session {ts}/{folder} exists in the project {project}"
                )
            found.append(session)
        if unknown_projects:
            raise HttpError(404, f"One or more specified projects does not exist: {', '.join(unknown_projects)}")
        if denied:
            raise HttpError(
                403,
                f"Invalid permissions for user {request.user.login} to delete prearchive "
                f"sessions in one or more projects: {', '.join(sorted(set(denied)))}",
            )
        return found

    def queued_table(request: Request, rows: list[PrearcSession], status: str) -> Response:
        data = []
        for s in rows:
            row = s.row()
            row["status"] = status
            data.append(row)
        return table(request, data, COLUMNS, default="xml")

    def move(request: Request) -> Response:
        params = load_params(request)
        rows = sources(request, "move")
        target = store.find_project(params.get("newProject"))
        if target is None:
            raise HttpError(404, f"One or more specified projects does not exist: {params.get('newProject')}")
        if not request.user.can_edit(target.id):
            raise HttpError(
                403, f"Invalid permissions for user {request.user.login} to move prearchive sessions into {target.id}"
            )
        for s in rows:
            if store.get_prearc(target.id, s.timestamp, s.folder) is not None and s.project != target.id:
                raise HttpError(
                    409, f"A session already exists at /prearchive/projects/{target.id}/{s.timestamp}/{s.folder}"
                )
        response = queued_table(request, rows, "QUEUED_MOVING")
        for s in rows:
            if s.project != target.id:
                store.rekey_prearc(s, target.id)
            s.status = READY if s.built else RECEIVING
        return response

    def delete(request: Request) -> Response:
        load_params(request)
        rows = sources(request, "delete")
        response = queued_table(request, rows, "QUEUED_DELETING")
        for s in rows:
            store.remove_prearc(s)
        return response

    def rebuild(request: Request) -> Response:
        load_params(request)
        rows = sources(request, "rebuild")
        response = queued_table(request, rows, "QUEUED_BUILDING")
        for s in rows:
            sessions.build(store, s)  # auto-archive is blocked for batch rebuilds, as in XNAT
        return response

    router.add("POST", r"/(?:data|REST)/services/prearchive/move", move)
    router.add("POST", r"/(?:data|REST)/services/prearchive/delete", delete)
    router.add("POST", r"/(?:data|REST)/services/prearchive/rebuild", rebuild)
