"""The sandbox's data: projects, subjects, experiments, prearchive sessions, files on disk, inventory.

Metadata lives in memory behind one lock; every received file is stored on disk under ``data_dir``
in XNAT's own layout:

* prearchive: ``prearchive/<project>/<timestamp>/<folder>/SCANS/<scan>/DICOM/<file>``
* archive:    ``archive/<project>/arc001/<label>/SCANS/<scan>/DICOM/<file>`` and ``.../RESOURCES/<name>/``
* inbox:      ``inbox/<project>/...`` (server-side folders for the inbox import handler)
* cache:      ``cache/`` (request bodies while they are being imported)

Each session keeps, per series, the SOPInstanceUIDs received with the stored file of every copy, so
tests can prove exactly what arrived (a duplicate shows as two copies of one SOP UID). A file's
SHA-256 is computed when first asked for (listings, the inventory, a re-sent instance's name), not on receipt.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import itertools
import os
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from xnat_uploader.sandbox.dicomio import DicomInfo

UNASSIGNED = "Unassigned"

# Prearchive statuses (xnat-api.md 4.2) that the sandbox produces.
RECEIVING = "RECEIVING"
RECEIVING_INTERRUPT = "RECEIVING_INTERRUPT"
BUILDING = "BUILDING"
READY = "READY"
ARCHIVING = "ARCHIVING"
CONFLICT = "CONFLICT"
ERROR = "ERROR"
MOVING = "MOVING"
DELETING = "DELETING"
QUEUED_BUILDING = "QUEUED_BUILDING"

CODE_NAMES = {0: "Manual", 4: "AutoArchive", 5: "AutoArchiveOverwrite"}


def now_sql() -> str:
    """Java ``Timestamp.toString()`` style: ``2024-05-01 10:11:12.345``."""
    return _dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def new_timestamp() -> str:
    """XNAT's prearchive timestamp ``yyyyMMdd_HHmmssSSS`` (server local time, 18 characters)."""
    return _dt.datetime.now().strftime("%Y%m%d_%H%M%S%f")[:-3]


@dataclass
class StoredFile:
    name: str
    path: Path
    size: int
    sha256: str = ""  # hex; "" until :meth:`digest` first computes it
    sop_uid: str = ""
    series_uid: str = ""

    def digest(self) -> str:
        """The file's SHA-256 hex, computed on first use and kept (state.json keeps it too).

        Hashing every received file cost ~0.3 ms of CPU per 0.5 MB upload, while only listings
        and tests ever read the digest. Code that overwrites or drops a file whose
        copy is still counted (``Scan.instances``) calls this first, while the bytes are there.
        """
        if not self.sha256:
            self.sha256 = sha256_file(self.path)
        return self.sha256


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as src:
        while data := src.read(1 << 20):
            digest.update(data)
    return digest.hexdigest()


@dataclass
class Resource:
    """A catalog resource: files by relative name."""

    label: str
    id: int
    format: str = ""
    content: str = ""
    description: str = ""
    tags: str = ""
    files: dict[str, StoredFile] = field(default_factory=dict)


@dataclass
class Scan:
    id: str
    series_uid: str
    series_description: str = ""
    modality: str = ""
    sop_class: str = ""
    xsi_type: str = "xnat:otherDicomScanData"
    files: dict[str, StoredFile] = field(default_factory=dict)
    # sop_uid -> the stored file of every copy received (two entries = received twice); a copy
    # overwritten or left behind keeps its file object, with its digest computed beforehand
    instances: dict[str, list[StoredFile]] = field(default_factory=dict)
    resources: dict[str, Resource] = field(default_factory=dict)
    dicom_resource_id: int = 0  # xnat_abstractresource_id of the scan's DICOM resource

    def dicom_resource(self) -> Resource | None:
        """The scan's DICOM files seen as its ``DICOM`` resource (None while it has no files)."""
        return Resource("DICOM", self.dicom_resource_id, "DICOM", "RAW", files=self.files) if self.files else None


@dataclass
class Content:
    """Scans and resources of a session, shared by prearchive rows and archived experiments."""

    dir: Path
    study_uid: str = ""
    modality: str = ""
    scan_date: str = ""
    patient_name: str = ""
    patient_id: str = ""
    scans: dict[str, Scan] = field(default_factory=dict)
    resources: dict[str, Resource] = field(default_factory=dict)

    def series_index(self) -> dict[str, Scan]:
        return {scan.series_uid: scan for scan in self.scans.values()}

    def file_count(self) -> int:
        return sum(len(s.files) for s in self.scans.values())


@dataclass
class Project:
    id: str
    name: str = ""
    description: str = ""
    secondary_id: str = ""
    pi_firstname: str = ""
    pi_lastname: str = ""
    prearchive_code: int = 0
    aliases: list[str] = field(default_factory=list)
    insert_date: str = field(default_factory=now_sql)
    resources: dict[str, Resource] = field(default_factory=dict)
    accessibility: str = "private"  # "public": anyone (guests on an open site too) may read it


@dataclass
class Subject:
    id: str
    project: str
    label: str
    insert_date: str = field(default_factory=now_sql)
    insert_user: str = ""
    resources: dict[str, Resource] = field(default_factory=dict)


@dataclass
class Experiment:
    id: str
    project: str
    subject_id: str
    label: str
    xsi_type: str
    content: Content
    date: str = ""
    insert_date: str = field(default_factory=now_sql)
    insert_user: str = ""


@dataclass
class PrearcSession:
    """One prearchive row (xnat-api.md 4.1) plus its content."""

    project: str
    timestamp: str
    folder: str
    name: str
    subject: str
    tag: str
    content: Content
    status: str = RECEIVING
    uploaded: str = field(default_factory=now_sql)
    lastmod: str = field(default_factory=now_sql)
    scan_time: str = ""
    autoarchive: str = ""
    prevent_anon: str = ""
    prevent_auto_commit: str = ""
    source: str = ""
    visit: str = ""
    protocol: str = ""
    timezone: str = ""
    touched: float = 0.0  # monotonic time of the last file, for the auto-build timer
    built: bool = False
    direct: bool = False  # a Direct-Archive session: not listed in the prearchive
    owner: str = ""  # login of the uploader; the background archiver acts as this user
    log: list[str] = field(default_factory=list)  # XNAT's per-session log entries (why a build/archive failed)

    @property
    def url(self) -> str:
        return f"/prearchive/projects/{self.project}/{self.timestamp}/{self.folder}"

    def row(self) -> dict[str, str]:
        """The listing row, every value a string, columns in XNAT's order."""
        return {
            "project": self.project,
            "timestamp": self.timestamp,
            "lastmod": self.lastmod,
            "uploaded": self.uploaded,
            "scan_date": self.content.scan_date,
            "scan_time": self.scan_time,
            "subject": self.subject,
            "folderName": self.folder,
            "name": self.name,
            "tag": self.tag,
            "status": self.status,
            "url": self.url,
            "autoarchive": self.autoarchive,
            "prevent_anon": self.prevent_anon,
            "prevent_auto_commit": self.prevent_auto_commit,
            "SOURCE": self.source,
            "VISIT": self.visit,
            "PROTOCOL": self.protocol,
            "TIMEZONE": self.timezone,
        }


def scan_xsi(modality: str) -> str:
    return {"MR": "xnat:mrScanData", "CT": "xnat:ctScanData", "PT": "xnat:petScanData"}.get(
        modality, "xnat:otherDicomScanData"
    )


def session_xsi(modality: str) -> str:
    return {"MR": "xnat:mrSessionData", "CT": "xnat:ctSessionData", "PT": "xnat:petSessionData"}.get(
        modality, "xnat:otherDicomSessionData"
    )


class Store:
    """All sandbox state. Callers hold ``lock`` while they read or change metadata."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.lock = threading.RLock()
        self.projects: dict[str, Project] = {}
        self.subjects: dict[str, Subject] = {}
        self.experiments: dict[str, Experiment] = {}
        self.prearchive: dict[tuple[str, str, str], PrearcSession] = {}
        self._counters = {"subject": 0, "experiment": 0, "resource": 0}
        self._cache = data_dir / "cache"
        self._temp_names = itertools.count(1)  # next() on a count is atomic under the GIL
        for sub in ("prearchive", "archive", "inbox", "cache"):
            (data_dir / sub).mkdir(parents=True, exist_ok=True)
        for leftover in (data_dir / "cache").iterdir():  # half-received bodies of an earlier run
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)

    # -- ids and temp files -------------------------------------------------------------------
    def next_id(self, kind: str) -> int:
        with self.lock:
            self._counters[kind] = self._counters.get(kind, 0) + 1
            return self._counters[kind]

    def temp_file(self, suffix: str = "") -> tuple[Path, BinaryIO]:
        """A new file in the cache folder, open for writing; the caller closes it.

        A counter names it (cheaper than ``mkstemp``'s random names) and exclusive creation still makes
        it ours alone. Write through this very file object: reopening the empty file with ``"wb"``
        truncates it, and on ext4 (``auto_da_alloc``) closing a truncated-then-written file starts its
        writeback at once (~0.13 ms of waiting per 0.5 MB file, measured).
        """
        while True:
            path = self._cache / f"tmp{next(self._temp_names)}{suffix}"
            try:
                return path, open(path, "xb", opener=_private)  # noqa: SIM115 - the caller closes it
            except FileExistsError:
                continue

    def temp_path(self, suffix: str = "") -> Path:
        """A new empty file in the cache folder, for code that opens it itself."""
        path, f = self.temp_file(suffix)
        f.close()
        return path

    def temp_dir(self) -> Path:
        return Path(tempfile.mkdtemp(dir=self.data_dir / "cache"))

    # -- projects -----------------------------------------------------------------------------
    def add_project(self, project_id: str, **fields: object) -> Project:
        with self.lock:
            project = self.projects.get(project_id)
            if project is not None:  # e.g. loaded from state.json: keep its data, apply the new settings
                for key, value in fields.items():
                    setattr(project, key, value)
                return project
            project = Project(project_id, name=str(fields.pop("name", project_id)), **fields)  # type: ignore[arg-type]
            self.projects[project_id] = project
            (self.data_dir / "archive" / project_id / "arc001").mkdir(parents=True, exist_ok=True)
            (self.data_dir / "inbox" / project_id).mkdir(parents=True, exist_ok=True)
            return project

    def is_public(self, project_id: str) -> bool:
        """Whether anyone may read the project (its accessibility is "public")."""
        project = self.projects.get(project_id)
        return project is not None and project.accessibility == "public"

    def find_project(self, id_or_alias: str | None) -> Project | None:
        """By ID or alias, case-insensitively as XNAT's lookup does."""
        if not id_or_alias:
            return None
        with self.lock:
            if id_or_alias in self.projects:
                return self.projects[id_or_alias]
            low = id_or_alias.lower()
            for project in self.projects.values():
                if project.id.lower() == low or low in (a.lower() for a in project.aliases):
                    return project
        return None

    # -- subjects and experiments -------------------------------------------------------------
    def find_subject(self, project: str, ref: str) -> Subject | None:
        with self.lock:
            subject = self.subjects.get(ref)
            if subject is not None and subject.project == project:
                return subject
            for subject in self.subjects.values():
                if subject.project == project and subject.label == ref:
                    return subject
        return None

    def get_or_create_subject(self, project: str, label: str, user: str = "") -> tuple[Subject, bool]:
        with self.lock:
            subject = self.find_subject(project, label)
            if subject is not None:
                return subject, False
            subject = Subject(f"XNAT_S{self.next_id('subject'):05d}", project, label, insert_user=user)
            self.subjects[subject.id] = subject
            return subject, True

    def find_experiment(self, project: str | None, ref: str) -> Experiment | None:
        with self.lock:
            exp = self.experiments.get(ref)
            if exp is not None and (project is None or exp.project == project):
                return exp
            if project is None:
                return None
            for exp in self.experiments.values():
                if exp.project == project and exp.label == ref:
                    return exp
        return None

    def new_experiment(self, project: str, subject: Subject, label: str, xsi_type: str, user: str) -> Experiment:
        with self.lock:
            exp_id = f"XNAT_E{self.next_id('experiment'):05d}"
            folder = self.data_dir / "archive" / project / "arc001" / dirname(label)
            n = 1
            while folder.exists():  # two labels that clean to the same folder name
                n += 1
                folder = folder.with_name(f"{dirname(label)}_{n}")
            folder.mkdir(parents=True, exist_ok=True)
            exp = Experiment(exp_id, project, subject.id, label, xsi_type, Content(folder), insert_user=user)
            self.experiments[exp_id] = exp
            return exp

    def remove_experiment(self, exp: Experiment) -> None:
        with self.lock:
            self.experiments.pop(exp.id, None)
        shutil.rmtree(exp.content.dir, ignore_errors=True)

    # -- prearchive ---------------------------------------------------------------------------
    def prearc_dir(self, project: str, timestamp: str, folder: str) -> Path:
        return self.data_dir / "prearchive" / dirname(project) / dirname(timestamp) / dirname(folder)

    def get_prearc(self, project: str, timestamp: str, folder: str) -> PrearcSession | None:
        with self.lock:
            session = self.prearchive.get((project, timestamp, folder))
            if session is None and project.lower() == UNASSIGNED.lower():
                session = self.prearchive.get((UNASSIGNED, timestamp, folder))
            return session

    def add_prearc(self, session: PrearcSession) -> None:
        with self.lock:
            self.prearchive[(session.project, session.timestamp, session.folder)] = session

    def remove_prearc(self, session: PrearcSession, delete_files: bool = True) -> None:
        with self.lock:
            self.prearchive.pop((session.project, session.timestamp, session.folder), None)
        if delete_files:
            shutil.rmtree(session.content.dir, ignore_errors=True)
            _prune_empty(session.content.dir.parent)

    def rekey_prearc(self, session: PrearcSession, project: str) -> None:
        """Move a row (and its folder) to another project, as the prearchive ``move`` does."""
        with self.lock:
            self.prearchive.pop((session.project, session.timestamp, session.folder), None)
            target = self.prearc_dir(project, session.timestamp, session.folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            old = session.content.dir
            shutil.move(str(old), str(target))
            _prune_empty(old.parent)
            _repath(session.content, old, target)
            session.project = project
            self.prearchive[(project, session.timestamp, session.folder)] = session

    # -- storing DICOM ------------------------------------------------------------------------
    def lock_name(self, content: Content, info: DicomInfo, name: str) -> str:
        """The stored name a file is locked by while it is written (see :meth:`add_dicom`): the uploaded
        name, unless another instance holds it (then a name of the instance's own, ``<SOP UID>-*``)."""
        with self.lock:
            safe = _safe_name(name) or f"{info.sop_uid}.dcm"
            scan = content.series_index().get(info.series_uid)
            existing = scan.files.get(safe) if scan is not None else None
            return safe if existing is None or existing.sop_uid == info.sop_uid else f"{info.sop_uid}-*"

    def add_dicom(self, content: Content, info: DicomInfo, source: Path, name: str, size: int) -> StoredFile:
        """Move an already written file into ``content``'s scan folder and record it.

        The scan ID is the SeriesNumber (XNAT's default), made unique when two series share it.
        A file name already used by a different instance gets a generated name, as XNAT does.
        """
        with self.lock:
            scan = content.series_index().get(info.series_uid)
            if scan is None:
                scan_id = info.series_number or "1"
                base, n = scan_id, 1
                while scan_id in content.scans:
                    n += 1
                    scan_id = f"{base}-{n}"
                scan = Scan(
                    scan_id,
                    info.series_uid,
                    info.series_description,
                    info.modality,
                    info.sop_class,
                    scan_xsi(info.modality or content.modality),
                    dicom_resource_id=self.next_id("resource"),
                )
                content.scans[scan_id] = scan
            if not content.study_uid:
                content.study_uid = info.study_uid
            if not content.modality and info.modality:
                content.modality = info.modality
            if not content.scan_date and info.study_date:
                content.scan_date = info.scan_date_sql
            safe = _safe_name(name) or f"{info.sop_uid}.dcm"
            existing = scan.files.get(safe)
            sha256 = ""
            if existing is not None and existing.sop_uid != info.sop_uid:
                safe, sha256 = _generated_name(scan, info.sop_uid, source)
            replaced = scan.files.get(safe)
            if replaced is not None:
                replaced.digest()  # its bytes are about to be overwritten; the copy stays counted
            target = content.dir / "SCANS" / scan.id / "DICOM" / safe
            if not target.parent.is_dir():  # one stat: mkdir(exist_ok) on an existing folder raises inside
                target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, target)
            stored = StoredFile(safe, target, size, sha256, info.sop_uid, info.series_uid)
            scan.files[safe] = stored
            scan.instances.setdefault(info.sop_uid, []).append(stored)
            return stored

    # -- inventory ----------------------------------------------------------------------------
    def inventory(self) -> dict[str, dict]:
        """Per session: project, subject, label, where, ``series`` {series_uid: {sop_uid: sha256}}
        and ``counts`` {series_uid: {sop_uid: copies received}}; keys are ``where:project/label``."""
        out: dict[str, dict] = {}
        with self.lock:
            for session in self.prearchive.values():
                where = "direct-archive" if session.direct else "prearchive"
                key = f"{where}:{session.project}/{session.timestamp}/{session.folder}"
                out[key] = _inventory_entry(session.content, session.project, session.subject, session.name, where)
                out[key].update(status=session.status, timestamp=session.timestamp, folder=session.folder)
            for exp in self.experiments.values():
                subject = self.subjects.get(exp.subject_id)
                entry = _inventory_entry(
                    exp.content, exp.project, subject.label if subject else "", exp.label, "archive"
                )
                entry["id"] = exp.id
                out[f"archive:{exp.project}/{exp.label}"] = entry
        return out


def _inventory_entry(content: Content, project: str, subject: str, label: str, where: str) -> dict:
    series: dict[str, dict[str, str]] = {}
    counts: dict[str, dict[str, int]] = {}
    for scan in content.scans.values():
        series[scan.series_uid] = {sop: copies[-1].digest() for sop, copies in scan.instances.items()}
        counts[scan.series_uid] = {sop: len(copies) for sop, copies in scan.instances.items()}
    return {
        "project": project,
        "subject": subject,
        "label": label,
        "where": where,
        "study_uid": content.study_uid,
        "series": series,
        "counts": counts,
        "files": content.file_count(),
        "resources": {name: sorted(r.files) for name, r in content.resources.items()},
    }


def _generated_name(scan: Scan, sop_uid: str, source: Path) -> tuple[str, str]:
    """The name for a file whose uploaded name another instance holds: ``<SOP UID>-<n>.dcm``, and
    its SHA-256 if that had to be computed (else ``""``).

    One generated file per distinct content of an instance: a copy with the bytes of an earlier
    generated copy takes its name (and replaces it), any other the next free number. So only a
    re-send of an instance is hashed. The name used to carry the content's hash instead, which cost
    ~0.3 ms of CPU per 0.5 MB file, and every gradual upload without a file name in the URL comes
    here (they are all called ``upload.dcm``, after the Content-Type).
    """
    prefix = f"{sop_uid}-"
    earlier = [c for c in scan.instances.get(sop_uid, ()) if c.name.startswith(prefix) and scan.files.get(c.name) is c]
    sha256 = sha256_file(source) if earlier else ""
    for copy in earlier:
        if copy.digest() == sha256:
            return copy.name, sha256
    n = 1
    while f"{prefix}{n}.dcm" in scan.files:
        n += 1
    return f"{prefix}{n}.dcm", sha256


def _private(path: str, flags: int) -> int:
    """``open`` with mode 0600, as ``mkstemp`` creates files: received data is for this user only."""
    return os.open(path, flags, 0o600)


def dirname(label: str) -> str:
    """A folder name for a label, parameter or URL segment that can never leave its parent folder."""
    cleaned = re.sub(r"[^A-Za-z0-9_.\-]", "_", label).lstrip(".")
    return cleaned or "_"


def _safe_name(name: str) -> str:
    """The last path component, without anything that could escape the scan folder."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    return "" if base in ("", ".", "..") else base


def _prune_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):
        folder.rmdir()  # only succeeds when empty: drop the timestamp folder once its last session is gone


def _repath(content: Content, old: Path, new: Path) -> None:
    content.dir = new
    resources = list(content.resources.values())
    for scan in content.scans.values():
        resources.extend(scan.resources.values())
        for stored in scan.files.values():
            stored.path = new / stored.path.relative_to(old)
    for res in resources:
        for stored in res.files.values():
            stored.path = new / stored.path.relative_to(old)
