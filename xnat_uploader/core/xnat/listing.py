"""Listings: projects the user may upload to, subjects, experiments, scans (with file counts), prearchive.

Every function does one or a few GETs through an :class:`XnatSession` and is thread-safe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from xnat_uploader.core.xnat import errors as E
from xnat_uploader.core.xnat.models import (
    Experiment,
    PrearchiveRef,
    PrearchiveSession,
    Project,
    RemoteFile,
    ResourceInfo,
    Scan,
    Subject,
    parse_result_set,
    seg,
)

if TYPE_CHECKING:
    from xnat_uploader.core.xnat.session import XnatSession

UNASSIGNED = "Unassigned"


def get_table(
    session: XnatSession, path: str, params: dict[str, Any] | None = None, *, action: str, project: str | None = None
) -> list[dict[str, str]]:
    """GET a JSON table and return its rows. ``format=json`` is always sent (xnat-api.md 1.2)."""
    query = {**(params or {}), "format": "json"}
    with session.request("GET", path, params=query, action=action, project=project) as resp:
        try:
            data = resp.json()
        except ValueError:
            raise E.UnexpectedResponseError(
                f"The server's answer while {action} is not JSON.",
                "Check the server address; a proxy or login page may be answering instead of XNAT.",
                status=resp.status_code,
            ) from None
    return parse_result_set(data)


def list_projects(session: XnatSession, permission: str = "edit") -> list[Project]:
    """Projects where the user may create subjects/sessions (``permission="edit"``), sorted by ID.

    Uses ``/data/projects?permissions=edit&dataType=xnat:subjectData`` (xnat-api.md 5): its columns are
    lower-case ``id``/``secondary_id`` and admins see every project. ``permission="read"`` lists what the
    user can see instead.
    """
    if permission not in ("read", "edit", "create", "delete", "active"):
        raise ValueError(f"unknown permission {permission!r}")
    rows = get_table(
        session,
        "/data/projects",
        {"permissions": permission, "dataType": "xnat:subjectData"},
        action="listing projects",
    )
    projects = [Project.from_row(r) for r in rows]
    return sorted((p for p in projects if p.id), key=lambda p: p.id.lower())


def list_subjects(session: XnatSession, project: str) -> list[Subject]:
    """Subjects of ``project``. 404 means the project is unknown or hidden: :class:`ProjectAccessError`."""
    rows = get_table(session, f"/data/projects/{seg(project)}/subjects", action="listing subjects", project=project)
    return [Subject.from_row(r) for r in rows]


def list_experiments(session: XnatSession, project: str, subject: str | None = None) -> list[Experiment]:
    """Experiments (sessions) of a project, or of one subject (ID or label) in it."""
    path = f"/data/projects/{seg(project)}"
    if subject is not None:
        path += f"/subjects/{seg(subject)}"
    rows = get_table(session, path + "/experiments", action="listing sessions", project=project)
    return [Experiment.from_row(r) for r in rows]


def experiment_path(experiment: str) -> str:
    """``/data/experiments/<ID>`` for an accession ID; a path starting with ``/data`` is kept as is."""
    if experiment.startswith("/data/") or experiment.startswith("/REST/"):
        return experiment.rstrip("/")
    return f"/data/experiments/{seg(experiment)}"


def list_resources(session: XnatSession, parent_path: str) -> list[ResourceInfo]:
    """Resources of an object (session, scan...) with ``file_count`` and ``file_size`` when listed."""
    rows = get_table(session, parent_path.rstrip("/") + "/resources", action="listing resources")
    return [ResourceInfo.from_row(r) for r in rows]


def list_files(session: XnatSession, resource_path: str) -> list[RemoteFile]:
    """Files of one resource (``.../resources/NAME``): name, size, URI, digest."""
    rows = get_table(session, resource_path.rstrip("/") + "/files", action="listing files")
    return [RemoteFile.from_row(r) for r in rows]


def list_scans(session: XnatSession, experiment: str, *, file_counts: bool = True) -> list[Scan]:
    """Scans of an archived session (accession ID or ``/data/...`` path), with file counts by default.

    The file count of a scan is the sum of its resources' ``file_count`` (one extra GET per scan); when a
    server lists resources without counts, the files of each resource are counted instead.
    """
    base = experiment_path(experiment)
    scans = [Scan.from_row(r) for r in get_table(session, base + "/scans", action="listing scans")]
    if not file_counts:
        return scans
    out = []
    for scan in scans:
        scan_path = f"{base}/scans/{seg(scan.id)}"
        total = 0
        for resource in list_resources(session, scan_path):
            if resource.file_count is not None:
                total += resource.file_count
            else:
                total += len(list_files(session, f"{scan_path}/resources/{seg(resource.label)}"))
        out.append(_with_count(scan, total))
    return out


def _with_count(scan: Scan, count: int) -> Scan:
    from dataclasses import replace

    return replace(scan, file_count=count)


def list_prearchive(session: XnatSession, project: str | None = None) -> list[PrearchiveSession]:
    """Prearchive sessions of every project the user can edit, or of one project.

    Admins get Unassigned rows in every listing (xnat-api.md 11.8): with ``project`` given they are filtered
    out, so only that project's rows return (``project="Unassigned"`` lists those).
    """
    path = "/data/prearchive/projects"
    if project is not None:
        path += f"/{seg(project)}"
    rows = get_table(session, path, action="listing the prearchive", project=project)
    sessions = [PrearchiveSession.from_row(r) for r in rows]
    if project is not None:
        if project.lower() == UNASSIGNED.lower():  # XNAT matches Unassigned case-insensitively
            sessions = [s for s in sessions if s.project.lower() == UNASSIGNED.lower()]
        else:
            sessions = [s for s in sessions if s.project == project]
    return sessions


def get_prearchive_session(session: XnatSession, ref: PrearchiveRef) -> PrearchiveSession:
    """One prearchive row (``GET <session>?format=json``). Raises :class:`NotFoundError` when gone."""
    rows = get_table(session, ref.uri, action="reading a prearchive session")
    if not rows:
        raise E.NotFoundError("The prearchive session no longer exists.", "Refresh the prearchive list.")
    return PrearchiveSession.from_row(rows[0])


def list_prearchive_scans(session: XnatSession, ref: PrearchiveRef, *, file_counts: bool = True) -> list[Scan]:
    """Scans of a prearchive session (``ID``, ``xsiType``, ``series_description``), with file counts.

    Counts come from ``/scans/{id}/resources`` (columns ``label``, ``file_count``, ``file_size``). The
    session must be built (READY): XNAT reads these from the session document.
    """
    rows = get_table(session, ref.uri + "/scans", action="listing prearchive scans", project=ref.project)
    scans = [Scan.from_row(r) for r in rows]
    if not file_counts:
        return scans
    out = []
    for scan in scans:
        resources = list_resources(session, f"{ref.uri}/scans/{seg(scan.id)}")
        out.append(_with_count(scan, sum(r.file_count or 0 for r in resources)))
    return out


@dataclass(frozen=True)
class DicomReceiver:
    """One of the server's DICOM C-STORE receivers (``/xapi/dicomscp``); the host is the server's own."""

    ae_title: str
    port: int
    enabled: bool


def list_dicom_receivers(session: XnatSession) -> list[DicomReceiver]:
    """The server's DICOM receivers, enabled ones first (xnat-api.md 9). Any signed-in user may list them."""
    with session.request("GET", "/xapi/dicomscp", action="listing DICOM receivers") as resp:
        try:
            rows = resp.json()
        except ValueError:
            rows = []
    out = []
    for row in rows if isinstance(rows, list) else []:
        try:
            out.append(DicomReceiver(str(row["aeTitle"]), int(row["port"]), bool(row.get("enabled", True))))
        except (KeyError, TypeError, ValueError):
            continue  # an entry without a usable AE title or port cannot be sent to
    return sorted(out, key=lambda r: not r.enabled)
