"""Archive listings and single objects: projects, subjects, experiments, scans (xnat-api.md section 5).

Every archive route answers under ``/data/...`` and ``/data/archive/...`` (and ``/REST``), as
XNAT's ``attachArchiveURI`` does. Objects a user may not read are reported as 404, like XNAT.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xnat_uploader.sandbox import xmldoc
from xnat_uploader.sandbox.httpd import HttpError, Request, Response, Router
from xnat_uploader.sandbox.store import Experiment, Project, Subject
from xnat_uploader.sandbox.tables import table

if TYPE_CHECKING:
    from xnat_uploader.sandbox.app import App

ROOT = r"/(?:data|REST)(?:/archive)?"
PERMISSION_ACTIONS = ("read", "edit", "create", "delete", "activate")  # SecurityManager's action names


UID_PATH = "xnat:imageSessionData/UID"


def project_for(app: App, request: Request, ref: str) -> Project:
    """The project by ID or alias, or 404 when unknown *or not readable* (XNAT hides it)."""
    project = app.store.find_project(ref)
    if project is None or not request.user.can_read(project.id):
        raise HttpError(404, f"Unable to identify project {ref}")
    return project


def subject_for(app: App, request: Request, project: Project, ref: str) -> Subject:
    subject = app.store.find_subject(project.id, ref)
    if subject is None:
        raise HttpError(404, f"Unable to identify subject {ref}")
    return subject


def experiment_for(app: App, request: Request, ref: str, project: Project | None = None) -> Experiment:
    exp = app.store.find_experiment(project.id if project else None, ref)
    if exp is None or not request.user.can_read(exp.project):
        raise HttpError(404, f"Unable to find experiment {ref}")
    return exp


def experiment_row(app: App, exp: Experiment) -> dict[str, object]:
    subject = app.store.subjects.get(exp.subject_id)
    return {
        "ID": exp.id,
        "project": exp.project,
        "date": exp.date,
        "xsiType": exp.xsi_type,
        "label": exp.label,
        "insert_date": exp.insert_date,
        "subject_ID": exp.subject_id,
        "subject_label": subject.label if subject else "",
        "URI": f"/data/experiments/{exp.id}",
    }


def register(router: Router, app: App) -> None:
    store = app.store

    def projects(request: Request) -> Response:
        user = request.user
        action = request.param("permissions")
        with store.lock:
            visible = [p for p in store.projects.values() if user.can_read(p.id)]
        if action is not None:
            # The permission-filtered variant: raw SQL column names (lower-case), no totalRecords.
            if action not in PERMISSION_ACTIONS:
                # The handler throws a plain Exception, which the resource turns into a bare 500.
                raise HttpError(500, "Internal Server Error")
            allowed = [p for p in visible if action == "read" or user.can_edit(p.id)]
            # PermissionsProjectHandler: exactly these two columns, sorted by secondary_id.
            rows = sorted(
                ({"id": p.id, "secondary_id": p.secondary_id or p.id} for p in allowed), key=lambda r: r["secondary_id"]
            )
            return table(request, rows, ["id", "secondary_id"])
        restrict = request.param("restrict")
        if restrict in ("edit", "delete"):
            visible = [p for p in visible if user.can_edit(p.id)]
        rows = [
            {
                "ID": p.id,
                "secondary_ID": p.secondary_id or p.id,
                "name": p.name,
                "description": p.description,
                "pi_firstname": p.pi_firstname,
                "pi_lastname": p.pi_lastname,
                "URI": f"/data/projects/{p.id}",
            }
            for p in visible
        ]
        cols = ["ID", "secondary_ID", "name", "description", "pi_firstname", "pi_lastname", "URI"]
        return table(request, rows, cols, total=True, selectable=True)

    def project(request: Request, project: str, rest: str | None = None) -> Response:
        proj = project_for(app, request, project)
        if rest == "prearchive_code":
            return Response.text(str(proj.prearchive_code))
        if rest:
            raise HttpError(404, f"Unknown project property {rest}")
        return xmldoc.object_response(request, xmldoc.project_doc(proj))

    def subjects(request: Request, project: str) -> Response:
        proj = project_for(app, request, project)
        with store.lock:
            rows = [
                {
                    "ID": s.id,
                    "project": s.project,
                    "label": s.label,
                    "insert_date": s.insert_date,
                    "insert_user": s.insert_user,
                    "URI": f"/data/subjects/{s.id}",
                }
                for s in store.subjects.values()
                if s.project == proj.id
            ]
        return table(
            request, rows, ["ID", "project", "label", "insert_date", "insert_user", "URI"], total=True, selectable=True
        )

    def subject(request: Request, project: str, subject: str) -> Response:
        proj = project_for(app, request, project)
        if request.method == "PUT":
            if not request.user.can_edit(proj.id):
                raise HttpError(
                    403, f"Specified user account has insufficient privileges for subjects in the {proj.id} project."
                )
            subj, created = store.get_or_create_subject(proj.id, subject, request.user.login)
            return Response(201 if created else 200, subj.id.encode(), "text/plain;charset=UTF-8")
        subj = subject_for(app, request, proj, subject)
        with store.lock:
            exps = [e for e in store.experiments.values() if e.subject_id == subj.id]
        return xmldoc.object_response(request, xmldoc.subject_doc(subj, exps))

    def new_experiment(request: Request, project: str, subject: str, exp: str) -> Response:
        """``PUT .../subjects/S/experiments/E?xsiType=...``: 201 with the new ID, 200 when it exists."""
        proj = project_for(app, request, project)
        if not request.user.can_edit(proj.id):
            raise HttpError(
                403, f"Specified user account has insufficient privileges for experiments in the {proj.id} project."
            )
        existing = store.find_experiment(proj.id, exp)
        if existing is not None:
            return Response(200, existing.id.encode(), "text/plain;charset=UTF-8")
        subj, _ = store.get_or_create_subject(proj.id, subject, request.user.login)
        xsi = request.param("xsiType") or "xnat:mrSessionData"
        created = store.new_experiment(proj.id, subj, exp, xsi, request.user.login)
        return Response(201, created.id.encode(), "text/plain;charset=UTF-8")

    def subject_by_id(request: Request, subject: str) -> Response:
        subj = store.subjects.get(subject)
        if subj is None or not request.user.can_read(subj.project):
            raise HttpError(404, f"Unable to identify subject {subject}")
        with store.lock:
            exps = [e for e in store.experiments.values() if e.subject_id == subj.id]
        return xmldoc.object_response(request, xmldoc.subject_doc(subj, exps))

    def experiments(request: Request, project: str | None = None, subject: str | None = None) -> Response:
        with store.lock:
            if project is None:
                exps = [e for e in store.experiments.values() if request.user.can_read(e.project)]
            else:
                proj = project_for(app, request, project)
                subj = subject_for(app, request, proj, subject) if subject else None
                exps = [
                    e
                    for e in store.experiments.values()
                    if e.project == proj.id and (subj is None or e.subject_id == subj.id)
                ]
            # XNAT's listings take XML paths as filters and columns (QueryOrganizerResource): the session's
            # StudyInstanceUID is xnat:imageSessionData/UID.
            uid_keys = [k for k, _ in request.query if k.lower() == UID_PATH.lower()]
            if uid_keys:
                exps = [e for e in exps if e.content.study_uid == request.param(uid_keys[0])]
            rows = [experiment_row(app, e) for e in exps]
        for col in (request.param("columns") or "").split(","):
            if col.lower() == UID_PATH.lower():
                for row, exp in zip(rows, exps, strict=True):
                    row[col] = exp.content.study_uid
        return table(
            request,
            rows,
            ["ID", "project", "date", "xsiType", "label", "insert_date", "URI"],
            total=True,
            selectable=True,
        )

    def experiment(request: Request, exp: str, project: str | None = None, subject: str | None = None) -> Response:
        proj = project_for(app, request, project) if project else None
        found = experiment_for(app, request, exp, proj)
        if request.method == "DELETE":
            if not request.user.can_edit(found.project):
                raise HttpError(403, "User account doesn't have permission to delete this session.")
            store.remove_experiment(found)
            return Response(200, b"", "text/plain")
        subj = store.subjects.get(found.subject_id)
        return xmldoc.object_response(request, xmldoc.experiment_doc(found, subj))

    def scans(request: Request, exp: str, project: str | None = None, subject: str | None = None) -> Response:
        proj = project_for(app, request, project) if project else None
        found = experiment_for(app, request, exp, proj)
        with store.lock:
            rows = [
                {
                    "xnat_imagescandata_id": str(n),
                    "ID": s.id,
                    "type": s.series_description,
                    "quality": "usable",
                    "xsiType": s.xsi_type,
                    "note": "",
                    "series_description": s.series_description,
                    "URI": f"/data/experiments/{found.id}/scans/{s.id}",
                }
                for n, s in enumerate(found.content.scans.values(), start=1)
            ]
        cols = ["xnat_imagescandata_id", "ID", "type", "quality", "xsiType", "note", "series_description", "URI"]
        return table(request, rows, cols, total=True, selectable=True)

    def scan(request: Request, exp: str, scan: str, project: str | None = None, subject: str | None = None) -> Response:
        proj = project_for(app, request, project) if project else None
        found = experiment_for(app, request, exp, proj)
        s = found.content.scans.get(scan)
        if s is None:
            raise HttpError(404, f"Unable to find scan {scan}")
        return xmldoc.object_response(request, xmldoc.scan_doc(found, s))

    p = ROOT + r"/projects/(?P<project>[^/]+)"
    e_in_p = p + r"(?:/subjects/(?P<subject>[^/]+))?/experiments/(?P<exp>[^/]+)"
    e_top = ROOT + r"/experiments/(?P<exp>[^/]+)"
    router.add("GET", ROOT + r"/projects", projects)
    router.add("GET", p + r"(?:/(?P<rest>prearchive_code))?", project)
    router.add("GET", p + r"/subjects", subjects)
    router.add("GET PUT", p + r"/subjects/(?P<subject>[^/]+)", subject)
    router.add("GET", ROOT + r"/subjects/(?P<subject>[^/]+)", subject_by_id)
    router.add("PUT", p + r"/subjects/(?P<subject>[^/]+)/experiments/(?P<exp>[^/]+)", new_experiment)
    router.add("GET", p + r"(?:/subjects/(?P<subject>[^/]+))?/experiments", experiments)
    router.add("GET", ROOT + r"/experiments", experiments)
    for base in (e_in_p, e_top):
        router.add("GET DELETE", base, experiment)
        router.add("GET", base + r"/scans", scans)
        router.add("GET", base + r"/scans/(?P<scan>[^/]+)", scan)
