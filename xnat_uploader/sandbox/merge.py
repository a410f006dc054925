"""Archiving into a session that is already in the archive: XNAT 1.8.11's merge rules, switch for switch.

XNAT's archiver (``PrearcSessionArchiver``, then ``MergeSessionsA``) runs with three switches, and every
entry point sets them its own way (:class:`MergeRules` and its constructors, one per entry point, each
naming the source it follows). What the switches decide, in XNAT's order:

* ``allowSessionMerge`` off: an existing session refuses the archive ("Session already exists, retry with
  overwrite enabled").
* Always: another modality (``preventCrossModalityMerge``, default on) or another subject refuses it.
* ``overrideExceptions`` off: another StudyInstanceUID refuses it, and so does a series (scan UID) that the
  archived session holds under another scan number.
* ``overrideExceptions`` and ``overwriteFiles`` both off (``MergeSessionsA.checkForConflict``): a file of the
  same path as one already archived ("Session already exists with matching files.", from
  ``FileUtils.FindFirstMatch``; ``.xml``/``.log`` left out), else an instance (SOP Instance UID) or file name
  the archived scan's catalog already lists ("Session already exists with the same resources.", from
  ``SessionOverwriteCheck``), refuses it. Identical bytes make no difference: XNAT compares names and UIDs.
* Otherwise the upload merges: new scans and files are added; with ``overrideExceptions`` or
  ``overwriteFiles`` a file of the same name, or another file of the same instance, is replaced
  (``MergeCatCatalog``). Nothing else in the archived session is ever deleted.

Every refusal is a conflict (``ClientException`` 409), so the prearchive row goes to CONFLICT
(``PrearcDatabase.LockAndSync``); the refusal comes before any file moves, so nothing is half merged.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from xnat_uploader.sandbox.store import Content, Experiment, PrearcSession, Resource, Scan, Store, session_xsi

if TYPE_CHECKING:
    from collections.abc import Mapping

PRE_EXISTS = "Session already exists, retry with overwrite enabled"
SUBJECT_MOD = "Invalid modification of session subject via archive process."
UID_MOD = "Invalid modification of session UID via archive process."
MODALITY_MOD = "Invalid modification of session modality via archive process.  Data may require a manual merge."
HAS_FILES = "Session already exists with matching files."
CAT_ENTRY_MATCH = "Session already exists with the same resources."
OVERWRITE_CODE = "AutoArchiveOverwrite"  # PrearchiveCode 5


class ArchiveFailure(Exception):
    """Archiving failed; ``conflict`` decides the row status (CONFLICT or ERROR)."""

    def __init__(self, message: str, conflict: bool = True):
        super().__init__(message)
        self.conflict = conflict


@dataclass(frozen=True)
class MergeRules:
    """XNAT's three archiver switches for one archive request."""

    merge: bool = False  # allowSessionMerge
    override: bool = False  # overrideExceptions
    overwrite_files: bool = False  # overwriteFiles (XNAT replaces files when this or ``override`` is on)

    @property
    def replace(self) -> bool:
        return self.override or self.overwrite_files

    @classmethod
    def commit(cls, store: Store, session: PrearcSession, params: Mapping[str, str]) -> MergeRules:
        """``action=commit``: ``PrearcSessionResource`` archives with allowSessionMerge=true and
        overrideExceptions=false, whatever ``overwrite`` says; ``overwrite_files=true`` reaches the archiver
        through the session's parameters (``PrearcSession.isOverwriteFiles``)."""
        return cls(True, False, _flag(params, "overwrite_files") or overwrite_code(store, session))

    @classmethod
    def archive_service(
        cls, store: Store, session: PrearcSession, params: Mapping[str, str], *, several: bool
    ) -> MergeRules:
        """``/data/services/archive`` (``Archiver``). One session: allowSessionMerge is always true, ``append``
        or ``delete`` set overrideExceptions, and ``overwrite_files`` is read but never passed on (only the
        project's or row's code 5 turns it on). Several sessions: ``append`` merges, ``delete`` merges and
        overrides, ``overwrite_files=true`` is passed on (``PrearcDatabase.archive`` of a list)."""
        value = (params.get("overwrite") or "").lower()
        if not several:
            return cls(True, value in ("append", "delete"), overwrite_code(store, session))
        return cls(value in ("append", "delete"), value == "delete", _flag(params, "overwrite_files"))

    @classmethod
    def importer(
        cls, store: Store, session: PrearcSession, overwrite: str | None, params: Mapping[str, str]
    ) -> MergeRules:
        """DICOM-zip's ``action=commit`` with auto-archive (``Importer.parseOverrideValue``,
        ``DicomZipImporter.archiveSession``): any ``overwrite`` merges (a row already marked auto-archive
        merges too), ``delete``/``override`` override; ``overwrite_files=true`` is passed on."""
        value = None if overwrite is None else overwrite.lower()
        merge = value is not None or session.autoarchive not in ("", "Manual")
        return cls(
            merge, value in ("delete", "override"), _flag(params, "overwrite_files") or overwrite_code(store, session)
        )

    @classmethod
    def session_importer(cls, overwrite: str | None, params: Mapping[str, str]) -> MergeRules:
        """SI (``SessionImporter``): absent ``overwrite`` does not merge, ``delete``/``override`` override."""
        value = None if overwrite is None else overwrite.lower()
        return cls(value is not None, value in ("delete", "override"), _flag(params, "overwrite_files"))

    @classmethod
    def auto_archive(cls, store: Store, session: PrearcSession) -> MergeRules:
        """The idle-session rebuilder's queued archive (``PrearchiveArchiveHandler`` without switches): it merges
        when the row is marked auto-archive."""
        return cls(session.autoarchive not in ("", "Manual"), False, overwrite_code(store, session))


def overwrite_code(store: Store, session: PrearcSession) -> bool:
    """The row's or the project's prearchive code is 5, "auto-archive, overwrite" (``isOverwriteFiles``)."""
    project = store.projects.get(session.project)
    return session.autoarchive == OVERWRITE_CODE or bool(project and project.prearchive_code == 5)


def _flag(params: Mapping[str, str], key: str) -> bool:
    return (params.get(key) or "").lower() == "true"


def merge_into(store: Store, exp: Experiment, session: PrearcSession, subject_label: str, rules: MergeRules) -> None:
    """XNAT's checks, in its order (the module's docstring), then the merge itself."""
    if not rules.merge:
        raise ArchiveFailure(PRE_EXISTS)
    if exp.xsi_type != session_xsi(session.content.modality):
        raise ArchiveFailure(MODALITY_MOD)
    subject = store.subjects.get(exp.subject_id)
    if subject is not None and subject.label != subject_label:
        # XNAT names the session's label here, not the subject's (PrearcSessionArchiver.checkForConflicts)
        raise ArchiveFailure(f"{SUBJECT_MOD}: {exp.label} Already Exists for another Subject")
    if not rules.override:
        if exp.content.study_uid and session.tag and exp.content.study_uid != session.tag:
            raise ArchiveFailure(UID_MOD)
        archived = exp.content.series_index()
        for scan in session.content.scans.values():
            match = archived.get(scan.series_uid)
            if match is not None and match.id != scan.id:
                raise ArchiveFailure(
                    f"Session already contains a scan with the same UID, but a different number ({match.id})."
                )
    if not rules.replace:
        refusal = _already_held(exp.content, session.content)
        if refusal:
            raise ArchiveFailure(refusal)
    move_content(session.content, exp.content, replace=rules.replace)


def _already_held(archived: Content, incoming: Content) -> str:
    """HAS_FILES when a file of the same path is archived, else CAT_ENTRY_MATCH when an instance (or a
    file name) is in the archived scan's catalog, else ``""``. A scan is matched by its series UID (XNAT
    matches by scan number after renumbering a scan whose number another series holds: the same)."""
    same_path = same_entry = False
    index = archived.series_index()
    for scan in incoming.scans.values():
        old = index.get(scan.series_uid)
        if old is None:
            continue
        held = {f.sop_uid for f in old.files.values() if f.sop_uid}
        for name, stored in scan.files.items():
            same_path = same_path or (name in old.files and not _skipped(name))
            same_entry = same_entry or stored.sop_uid in held
        for label, res in scan.resources.items():
            same_path = same_path or _names_meet(res, old.resources.get(label))
    for label, res in incoming.resources.items():
        same_path = same_path or _names_meet(res, archived.resources.get(label))
    return HAS_FILES if same_path else CAT_ENTRY_MATCH if same_entry else ""


def _names_meet(res: Resource, old: Resource | None) -> bool:
    return old is not None and any(n in old.files for n in res.files if not _skipped(n))


def _skipped(name: str) -> bool:
    return name.endswith((".xml", ".log"))  # FindFirstMatch's filter: session documents and logs


def move_content(src: Content, dst: Content, replace: bool) -> None:
    """Move scans (matched by series UID; a taken scan number gets ``_1``) and resources into ``dst``.

    With ``replace``, a file of the same name is overwritten and another file of the same instance is
    removed (``MergeCatCatalog`` finds the catalog entry by SOP Instance UID and drops the old file).
    """
    if not dst.study_uid:
        dst.study_uid, dst.modality, dst.scan_date = src.study_uid, src.modality, src.scan_date
    by_uid = dst.series_index()
    for scan in src.scans.values():
        target = by_uid.get(scan.series_uid)
        if target is None:
            target = _new_scan(dst, scan)
        for name, stored in scan.files.items():
            dest = dst.dir / "SCANS" / target.id / "DICOM" / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.exists() and not replace:
                stored.digest()  # left behind (deleted with the session) but still counted as a copy
                continue
            if replace:
                _drop_other_copies(target, name, stored.sop_uid)
            replaced = target.files.get(name)
            if replaced is not None:
                replaced.digest()  # overwritten below; the copy stays counted in ``instances``
            shutil.move(str(stored.path), str(dest))
            stored.path = dest
            target.files[name] = stored
        for sop, sums in scan.instances.items():
            target.instances.setdefault(sop, []).extend(sums)
        for label, res in scan.resources.items():
            target.resources[label] = _move_resource(res, dst.dir / "SCANS" / target.id / label)
    for label, res in src.resources.items():
        dst.resources[label] = _move_resource(res, dst.dir / "RESOURCES" / label)


def _new_scan(dst: Content, scan: Scan) -> Scan:
    scan_id = scan.id
    while scan_id in dst.scans:
        scan_id += "_1"  # XNAT's scan-ID correction when merging a different series with that number
    target = Scan(
        scan_id,
        scan.series_uid,
        scan.series_description,
        scan.modality,
        scan.sop_class,
        scan.xsi_type,
        dicom_resource_id=scan.dicom_resource_id,
    )
    dst.scans[scan_id] = target
    return target


def _drop_other_copies(target: Scan, name: str, sop_uid: str) -> None:
    """Remove the archived file of instance ``sop_uid`` kept under another name (it stays counted)."""
    for other, old in list(target.files.items()):
        if other != name and sop_uid and old.sop_uid == sop_uid:
            old.digest()
            old.path.unlink(missing_ok=True)
            del target.files[other]


def _move_resource(res: Resource, folder: Path) -> Resource:
    for name, stored in res.files.items():
        dest = folder / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(stored.path), str(dest))
        stored.path = dest
    return res
