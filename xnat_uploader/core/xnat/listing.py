"""Listings: projects the user may upload to, subjects, experiments, scans (with file counts), prearchive.

Every function does one or a few GETs through an :class:`XnatSession` and is thread-safe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from xnat_uploader.core.xnat import errors as E
from xnat_uploader.core.xnat.models import (
    ArchiveRef,
    Experiment,
    PrearchiveRef,
    PrearchiveSession,
    Project,
    RemoteFile,
    ResourceInfo,
    Scan,
    Subject,
    parse_json,
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
            data = parse_json(resp.content)
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
    """One prearchive row (``GET <session>?format=json``). Raises :class:`NotFoundError` when gone.

    XNAT answers a gone row with an empty table (1.8.11's ``PrearcSessionResource``) and, by some accounts,
    with a 500 (xnat-api.md 14); a 500 is therefore checked against the project's listing before it counts
    as a server fault.
    """
    try:
        rows = get_table(session, ref.uri, action="reading a prearchive session")
    except E.ServerError as exc:
        if exc.status != 500 or any(s.ref == ref for s in list_prearchive(session, ref.project)):
            raise
        rows = []
    if not rows:
        raise E.NotFoundError("The prearchive session no longer exists.", "Refresh the prearchive list.")
    return PrearchiveSession.from_row(rows[0])


def last_log(session: XnatSession, ref: PrearchiveRef) -> str:
    """XNAT's last log entry of a prearchive session (``.../logs/last``), in a line; ``""`` when there is none.

    XNAT writes the reason of a failed build or archive there (and "Attempt to direct-archive failed" with
    the exception for a Direct-Archive moved into the prearchive). Best effort: errors give ``""``.
    """
    try:
        with session.request("GET", ref.uri + "/logs/last", action="reading a prearchive session's log") as resp:
            text = resp.text
    except E.XnatError:
        return ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return ""
    first = lines[0]
    if len(lines) > 1 and not first.endswith((".", ":")) and not lines[1].startswith("at "):
        first = f"{first}: {lines[1].split(': ', 1)[-1]}"  # "Attempt ... failed" + the exception's message
    return first[:300]


ARCHIVE_UID = "xnat:imageSessionData/UID"


def find_archived(
    session: XnatSession, project: str, label: str, subject: str, study_uid: str = ""
) -> ArchiveRef | None:
    """The archived session with ``label`` in ``project``, else the one with StudyInstanceUID ``study_uid``.

    The label comes from the project's experiment listing (default columns, every XNAT); the UID from the
    same listing filtered on ``xnat:imageSessionData/UID`` with that column asked for (xnat-api.md 5: the
    listings take XML paths as filters and columns). A row counts only when it carries the UID: a server
    that ignores the filter cannot make an unrelated session match. ``subject`` names the subject in the
    returned reference (the listing has no subject label).
    """
    for exp in list_experiments(session, project):
        if exp.label == label:
            return ArchiveRef(project, subject, exp.label)
    if not study_uid:
        return None
    try:
        rows = get_table(
            session, f"/data/projects/{seg(project)}/experiments",
            {ARCHIVE_UID: study_uid, "columns": f"ID,label,{ARCHIVE_UID}"},
            action="looking for the session in the archive", project=project,
        )  # fmt: skip
    except E.XnatError:
        return None  # a server without these columns: the label was the only way
    for row in rows:
        uid = next((v for k, v in row.items() if k.lower() == ARCHIVE_UID.lower()), "")
        if uid == study_uid and row.get("label"):
            return ArchiveRef(project, subject, row["label"])
    return None


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
            rows = parse_json(resp.content)
        except ValueError:
            rows = []
    out = []
    for row in rows if isinstance(rows, list) else []:
        try:
            out.append(DicomReceiver(str(row["aeTitle"]), int(row["port"]), bool(row.get("enabled", True))))
        except (KeyError, TypeError, ValueError):
            continue  # an entry without a usable AE title or port cannot be sent to
    return sorted(out, key=lambda r: not r.enabled)
