"""Receiving DICOM into prearchive sessions, building them, archiving them: the sandbox's core rules.

Free of HTTP: the import handlers, the prearchive resource, the archive service and the background
rebuilder all call these functions. Rules follow xnat-api.md 3.6 (gradual find-or-create), 3.12
(Direct-Archive), 4.2 (statuses) and 4.5 (archiving, with XNAT's merge checks from its source).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from xnat_uploader.sandbox.dicomio import DicomInfo, NotDicom, read_header
from xnat_uploader.sandbox.httpd import HttpError
from xnat_uploader.sandbox.merge import ArchiveFailure, MergeRules, merge_into, move_content
from xnat_uploader.sandbox.store import (
    ARCHIVING,
    BUILDING,
    CODE_NAMES,
    CONFLICT,
    ERROR,
    READY,
    RECEIVING,
    RECEIVING_INTERRUPT,
    UNASSIGNED,
    Content,
    Experiment,
    PrearcSession,
    Store,
    new_timestamp,
    now_sql,
    session_xsi,
)

if TYPE_CHECKING:
    from xnat_uploader.sandbox.auth import User

_inflight: set[tuple[str, str]] = set()
_inflight_lock = threading.Lock()


@dataclass
class Target:
    """What the request says about where data goes (gradual-DICOM names; DICOM-zip maps onto them)."""

    project: str | None = None
    subject: str | None = None
    label: str | None = None
    timestamp: str | None = None
    folder: str | None = None
    visit: str = ""
    protocol: str = ""
    timezone: str = ""
    source: str = ""
    prevent_anon: bool = False
    prevent_auto_commit: bool = False
    direct_archive: bool = False
    rename: bool = False


def save_stream(read: Callable[[int], bytes], out: BinaryIO, chunk: int = 1 << 20) -> int:
    """Write a stream to the open file ``out``; returns its size. Not hashed: stored files compute
    their SHA-256 when first asked (:meth:`StoredFile.digest`)."""
    size = 0
    while data := read(chunk):
        out.write(data)
        size += len(data)
    return size


def resolve_project(store: Store, user: User, ref: str | None, info: DicomInfo | None) -> str:
    """The named project if the user may create data in it, else DICOM routing, else Unassigned."""
    project = store.find_project(ref)
    if project is not None and user.can_edit(project.id):
        return project.id
    if info is not None:
        candidates = [info.assignment("Project"), info.study_description, info.accession]
        for candidate in candidates:
            routed = store.find_project(candidate)
            if routed is not None and user.can_edit(routed.id):
                return routed.id
    return UNASSIGNED


Screen = Callable[[str, DicomInfo, Path], bool]


def receive(
    store: Store, user: User, target: Target, path: Path, name: str, size: int,
    *, screen: Screen | None = None, hold: float = 0.0,
) -> PrearcSession | None:  # fmt: skip
    """One DICOM object into its prearchive (or direct-archive) session: gradual-DICOM's rules.

    Raises :class:`NotDicom` for unreadable input and ``HttpError(400)`` for a concurrent send of
    the same stored file. The file at ``path`` is moved into the session. ``screen(project, info,
    path)`` runs once the project is known (series import filters; it may raise an ``HttpError``):
    False drops the file, and ``None`` is returned. ``hold`` is how long storing takes (seconds).

    XNAT locks each file by session, scan and stored name while writing it (and running the site's
    anonymization script), and refuses a second request for the same lock with "Concurrent file
    sends" (GradualDicomImporter): two files uploaded under one name at the same moment collide,
    whatever instances they hold.
    """
    info = read_header(path, name)
    if screen is not None and not screen(resolve_project(store, user, target.project, info), info, path):
        return None
    with store.lock:
        session = _find_or_create(store, user, target, info)
        stored_name = f"{info.sop_uid}.dcm" if target.rename else name
        lock = store.lock_name(session.content, info, stored_name)
    key = (session.project, session.timestamp, session.folder, info.series_number, info.series_uid, lock)
    with _inflight_lock:
        if key in _inflight:
            raise HttpError(400, "Concurrent file sends of the same data is not supported.")
        _inflight.add(key)
    try:
        if hold:
            time.sleep(hold)
        with store.lock:
            store.add_dicom(session.content, info, path, stored_name, size)
            session.touched = time.monotonic()
            session.lastmod = now_sql()
            return session
    finally:
        with _inflight_lock:
            _inflight.discard(key)


def _find_or_create(store: Store, user: User, target: Target, info: DicomInfo) -> PrearcSession:
    project = resolve_project(store, user, target.project, info)
    # XNAT keeps labels to letters, digits, "_" and "-" (a PatientName "DOE^JANE" becomes "DOE_JANE").
    label = clean_label(target.label or info.assignment("Session") or info.patient_id or "dicom_upload")
    subject = clean_label(target.subject or info.assignment("Subject") or info.patient_name or "")
    direct = target.direct_archive and project != UNASSIGNED
    explicit = target.timestamp is not None
    if explicit:
        folder = target.folder or label
        existing = store.get_prearc(project, target.timestamp or "", folder)
        if existing is not None:
            if existing.tag and info.study_uid and existing.tag != info.study_uid:
                raise HttpError(
                    400,
                    f"The session {existing.url} has a different StudyInstanceUID "
                    f"({existing.tag}); files of study {info.study_uid} cannot be merged into it.",
                )
            return _reopen(existing)
    else:
        for row in store.prearchive.values():
            if row.project == project and row.tag == info.study_uid and row.name == label and row.direct == direct:
                return _reopen(row)
    timestamp = target.timestamp or new_timestamp()
    folder = target.folder or label
    base, n = folder, 0
    while store.get_prearc(project, timestamp, folder) is not None:
        n += 1
        folder = f"{base}_{n}"
    aa = info.assignment("AA")
    proj = store.projects.get(project)
    if aa is not None:
        autoarchive = "AutoArchive" if aa.lower() == "true" else "Manual"
    else:
        autoarchive = CODE_NAMES.get(proj.prearchive_code, "Manual") if proj else ""
    session = PrearcSession(
        project=project,
        timestamp=timestamp,
        folder=folder,
        name=label,
        subject=subject,
        tag=info.study_uid,
        content=Content(store.prearc_dir(project, timestamp, folder)),
        status=RECEIVING,
        autoarchive=autoarchive,
        prevent_anon=_tf(target.prevent_anon),
        prevent_auto_commit=_tf(target.prevent_auto_commit),
        source=target.source,
        visit=target.visit,
        protocol=target.protocol,
        timezone=target.timezone,
        direct=direct,
        owner=user.login,
    )
    session.content.dir.mkdir(parents=True, exist_ok=True)
    session.touched = time.monotonic()
    store.add_prearc(session)
    return session


def clean_label(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9_\-]", "_", value.strip())


def _reopen(session: PrearcSession) -> PrearcSession:
    # Per XNAT's source every status counts as interruptable, so even READY/ERROR rows re-open;
    # a running build is told by RECEIVING_INTERRUPT and puts the row back to RECEIVING itself.
    interrupted = session.status in (BUILDING, RECEIVING_INTERRUPT)
    session.status = RECEIVING_INTERRUPT if interrupted else RECEIVING
    session.built = False
    return session


def _tf(value: bool) -> str:
    return "true" if value else "false"


def receiver_uri(session: PrearcSession) -> str:
    """The importer's answer for a session: prearchive URI, or the direct-archive XAPI URI."""
    if session.direct:
        return f"/xapi/direct-archive/{session.project}/{session.tag}/{session.name}"
    return f"/data{session.url}"


# -- build ----------------------------------------------------------------------------------------
def build(store: Store, session: PrearcSession, **fields: str) -> None:
    """Build the session document: BUILDING -> READY (or ERROR when there is nothing to build)."""
    with store.lock:
        session.status = BUILDING
        for attr in ("visit", "protocol", "timezone", "source"):
            if fields.get(attr):
                setattr(session, attr, fields[attr])
        if session.content.file_count() == 0:
            session.status = ERROR
            return
        session.built = True
        session.status = READY
        session.lastmod = now_sql()


def should_auto_archive(store: Store, session: PrearcSession, aa: str | None) -> bool:
    """xnat-api.md 4.4 commit order: Unassigned never; row code 4/5; the AA param; project code >= 4."""
    if session.project == UNASSIGNED:
        return False
    if session.autoarchive in ("AutoArchive", "AutoArchiveOverwrite"):
        return True
    if aa is not None:
        return aa.lower() == "true"
    project = store.projects.get(session.project)
    return bool(project and project.prearchive_code >= 4)


# -- archive --------------------------------------------------------------------------------------
def archive(store: Store, user: User, session: PrearcSession, params: dict[str, str], rules: MergeRules) -> Experiment:
    """Move a prearchive session into the archive, applying XNAT's label/subject precedence and, into an
    existing session, its merge rules (``rules``: :mod:`.merge`). On failure the row goes to CONFLICT or ERROR
    and :class:`ArchiveFailure` is raised."""
    if session.project == UNASSIGNED:
        raise HttpError(400, "Cannot archive sessions from the Unassigned folder.")
    if not user.can_edit(session.project):
        raise HttpError(
            403, f"Specified user account has insufficient privileges for experiments in the {session.project} project."
        )
    with store.lock:
        if not session.built:
            build(store, session)
        if session.status == ERROR and session.content.file_count() == 0:
            raise ArchiveFailure("Unable to build the session: it holds no files.", conflict=False)
        xsi = session_xsi(session.content.modality)
        label = (
            params.get("session")
            or params.get(f"{xsi}/label")
            or params.get("EXPT_LABEL")
            or params.get("label")
            or session.name
            or session.folder
        )
        subject_label = params.get("subject") or params.get("SUBJECT_ID") or session.subject or "unknown"
        session.status = ARCHIVING
        try:
            exp = store.find_experiment(session.project, label)
            if exp is not None:
                merge_into(store, exp, session, subject_label, rules)
            else:
                subject, _ = store.get_or_create_subject(session.project, subject_label, user.login)
                exp = store.new_experiment(session.project, subject, label, xsi, user.login)
                exp.date = session.content.scan_date[:10]
                move_content(session.content, exp.content, replace=False)
        except ArchiveFailure as failure:
            session.status = CONFLICT if failure.conflict else ERROR
            session.log.append(str(failure))  # PrearcUtils.log: what the Prearchive page's "logs" show
            raise
        store.remove_prearc(session)
        return exp


def archive_uri(store: Store, exp: Experiment) -> str:
    subject = store.subjects.get(exp.subject_id)
    return f"/data/archive/projects/{exp.project}/subjects/{subject.label if subject else ''}/experiments/{exp.label}"


__all__ = [
    "NotDicom",
    "ArchiveFailure",
    "MergeRules",
    "Target",
    "receive",
    "build",
    "archive",
    "archive_uri",
    "save_stream",
]
