"""The five import handlers: gradual-DICOM, DICOM-zip, SI, XAR and inbox (xnat-api.md 3.6-3.12).

Each returns the list of URIs the import service answers with. Messages and status codes are
XNAT's; where the sandbox simplifies, the docstring says so.
"""

from __future__ import annotations

import io
import mmap
import os
import re
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from xnat_uploader.sandbox import filters, sessions
from xnat_uploader.sandbox.dicomio import DicomInfo, NotDicom, read_header
from xnat_uploader.sandbox.httpd import HttpError, Request
from xnat_uploader.sandbox.sessions import ArchiveFailure, MergeRules, Target
from xnat_uploader.sandbox.store import UNASSIGNED, PrearcSession, Store

if TYPE_CHECKING:
    from xnat_uploader.sandbox.app import App
    from xnat_uploader.sandbox.importer import Upload

_DEST_PATTERNS = [
    (
        "prearchive",
        re.compile(r"/prearchive(?:/projects/(?P<project>[^/]+)(?:/(?P<ts>[^/]+)(?:/(?P<folder>[^/]+))?)?)?"),
    ),
    (
        "archive",
        re.compile(
            r"/archive(?:/projects/(?P<project>[^/]+)(?:/subjects/(?P<subject>[^/]+))?"
            r"(?:/experiments/(?P<expt>[^/]+))?)?"
        ),
    ),
]


def parse_dest(dest: str) -> tuple[str, dict[str, str]]:
    """``dest`` -> (``prearchive``|``archive``, parts); a ``/data`` or ``/REST`` prefix is allowed."""
    path = dest.strip().rstrip("/")
    for prefix in ("/data", "/REST"):
        if path.startswith(prefix + "/"):
            path = path[len(prefix) :]
    for kind, pattern in _DEST_PATTERNS:
        m = pattern.fullmatch(path)
        if m:
            return kind, {k: v for k, v in m.groupdict().items() if v}
    raise HttpError(400, "Parameter dest format error")


def archive_kind(name: str) -> str | None:
    """Archive type from the file name, as XNAT's Format does (lower-case exact suffix)."""
    if name.endswith((".zip", ".zar")):
        return "zip"
    if name.endswith((".tar", ".xar")):
        return "tar"
    if name.endswith((".tgz", ".tar.gz")):
        return "tgz"
    return None


def iter_entries(store: Store, path: Path, kind: str, prefix: str = "") -> Iterator[tuple[str, Path, int]]:
    """Every file in an archive, recursing into nested archives: (entry name, temp path, size).

    The caller owns (moves or deletes) each yielded temp file.
    """
    if kind == "zip":
        try:
            archive = zipfile.ZipFile(path)
        except zipfile.BadZipFile:
            raise HttpError(400, "Archive file is corrupt or not a valid archive file type.") from None
        with archive, open(path, "rb") as raw, mmap.mmap(raw.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            for info in archive.infolist():
                if info.is_dir():
                    continue
                if info.compress_type == zipfile.ZIP_STORED and not info.flag_bits & 0x1:
                    yield from _stored_entry(store, prefix + info.filename, raw.fileno(), mm, info)
                else:
                    yield from _entry(store, prefix + info.filename, lambda i=info: archive.open(i))
    else:
        try:
            archive_t = tarfile.open(path, "r:gz" if kind == "tgz" else "r:")  # noqa: SIM115 - closed below
        except tarfile.TarError:
            raise HttpError(400, "Archive file is corrupt or not a valid archive file type.") from None
        with archive_t:
            for member in archive_t:
                if not member.isfile():
                    continue
                yield from _entry(store, prefix + member.name, lambda m=member: archive_t.extractfile(m))


def _stored_entry(
    store: Store, name: str, fd: int, mm: mmap.mmap, info: zipfile.ZipInfo
) -> Iterator[tuple[str, Path, int]]:
    """A stored (uncompressed) zip entry: CRC-checked in place and copied by the kernel, no Python buffers.

    The data starts after the local header (30 bytes + name + extra, whose lengths may differ from
    the central directory's, so they are read from the local header itself).
    """
    name_len, extra_len = struct.unpack_from("<HH", mm, info.header_offset + 26)
    start = info.header_offset + 30 + name_len + extra_len
    size = info.file_size
    data = memoryview(mm)[start : start + size]
    try:
        if zlib.crc32(data) != info.CRC:
            raise HttpError(400, "Archive file is corrupt or not a valid archive file type.")
    finally:
        data.release()
    if archive_kind(name.lower()):
        yield from _entry(store, name, lambda: io.BytesIO(mm[start : start + size]))
        return
    temp, out = store.temp_file()
    with out:
        offset, left = start, size
        while left:
            n = os.copy_file_range(fd, out.fileno(), left, offset)
            if n <= 0:
                raise OSError("copy_file_range stopped early")
            offset += n
            left -= n
    yield name, temp, size


def _entry(store: Store, name: str, opener) -> Iterator[tuple[str, Path, int]]:  # type: ignore[no-untyped-def]
    temp, out = store.temp_file()
    with out, opener() as src:
        size = sessions.save_stream(src.read, out)
    nested = archive_kind(name.lower())
    if nested:
        try:
            yield from iter_entries(store, temp, nested, prefix=name + "/")
        finally:
            temp.unlink(missing_ok=True)
        return
    yield name, temp, size


def target_from(request: Request, gradual: bool) -> Target:
    """Parameters -> :class:`Target`. gradual-DICOM reads only the upper-case names (and dest's project);
    the other handlers also accept ``project``/``subject``/``session``."""
    p = request.param
    target = Target(
        project=p("PROJECT_ID"),
        subject=p("SUBJECT_ID"),
        label=p("EXPT_LABEL"),
        timestamp=p("PREARC_TIMESTAMP"),
        folder=p("PREARC_SESSION_FOLDER"),
        visit=p("VISIT") or "",
        protocol=p("SUBTYPE") or p("PROTOCOL") or "",
        timezone=p("TIMEZONE") or "",
        source=p("SOURCE") or "",
        prevent_anon=request.strict_flag("prevent_anon"),
        prevent_auto_commit=request.strict_flag("prevent_auto_commit"),
        direct_archive=request.strict_flag("Direct-Archive"),
        rename=request.strict_flag("rename"),
    )
    if not gradual:
        target.project = target.project or p("project")
        target.subject = target.subject or p("subject")
        target.label = target.label or p("session")
    dest = p("dest")
    if dest:
        kind, parts = parse_dest(dest)
        target.project = target.project or parts.get("project")
        if not gradual:
            target.subject = parts.get("subject") or target.subject
            target.label = parts.get("expt") or target.label
            target.timestamp = parts.get("ts") or target.timestamp
            target.folder = parts.get("folder") or target.folder
    return target


def run(app: App, request: Request, name: str, upload: Upload | None) -> list[str]:
    """Dispatch to a handler. On a server older than 1.8.3 (``version`` setting) the 1.8.3 parameters
    ``Ignore-Unparsable`` and ``Direct-Archive`` are unknown, so they are ignored as XNAT would."""
    if app.settings.version_tuple < (1, 8, 3):
        newer = ("Ignore-Unparsable", "Direct-Archive")
        request.query = [(k, v) for k, v in request.query if k not in newer]
        request.form = [(k, v) for k, v in request.form if k not in newer]
    if name == "gradual-DICOM":
        assert upload is not None
        return gradual(app, request, upload)
    if name == "DICOM-zip":
        assert upload is not None
        return dicom_zip(app, request, upload)
    if name == "SI":
        assert upload is not None
        return session_importer(app, request, upload)
    if name == "XAR":
        assert upload is not None
        from xnat_uploader.sandbox.xar import xar_import

        return xar_import(app, request, upload)
    return inbox(app, request)


def gradual(app: App, request: Request, upload: Upload) -> list[str]:
    """One DICOM object; any failure is XNAT's 400 ``unable to read DICOM object <name>``. A file the series
    import filters reject is not stored: no URI, so 200 with an empty body."""
    target = target_from(request, gradual=True)

    def screen(project: str, info: DicomInfo, path: Path) -> bool:
        if app.faults.refuse_gradual(info.sop_uid):  # a server-side failure, answered as XNAT does
            raise HttpError(400, f"unable to read DICOM object {upload.name}")
        return filters.keeps(app, project, info, path)

    try:
        session = sessions.receive(
            app.store, request.user, target, upload.path, upload.name, upload.size,
            screen=screen, hold=app.settings.store_seconds,
        )  # fmt: skip
    except NotDicom as err:
        raise HttpError(400, str(err)) from None
    return [] if session is None else [sessions.receiver_uri(session)]


def dicom_zip(app: App, request: Request, upload: Upload) -> list[str]:
    """Each entry imported as gradual-DICOM would (series import filters included: rejected entries add
    nothing, so an archive of only those answers 200 with an empty body); then ``action=commit`` builds
    (and AA archives)."""
    kind = archive_kind(upload.name)
    if kind is None:
        fmt = upload.name.rsplit(".", 1)[-1].upper() if "." in upload.name else "UNKNOWN"
        raise HttpError(400, f"Unsupported format {fmt if fmt in ('DCM', 'GZIP', 'XML') else 'UNKNOWN'}")
    target = target_from(request, gradual=False)
    action = request.param("action")
    aa = request.param("AA") or request.param("auto-archive")
    dest = request.param("dest")
    if dest:
        action = "commit"
        aa = "true" if parse_dest(dest)[0] == "archive" else "false"
    ignore = (
        request.strict_flag("Ignore-Unparsable")
        if request.param("Ignore-Unparsable") is not None
        else (action == "commit")
    )
    touched: list[PrearcSession] = []
    last_error: str | None = None

    def screen(project: str, info: DicomInfo, path: Path) -> bool:
        return filters.keeps(app, project, info, path)

    for entry, temp, size in iter_entries(app.store, upload.path, kind):
        try:
            session = sessions.receive(
                app.store, request.user, target, temp, entry.rsplit("/", 1)[-1], size,
                screen=screen, hold=app.settings.store_seconds,
            )  # fmt: skip
        except NotDicom as err:
            last_error = str(err).replace(entry.rsplit("/", 1)[-1], entry, 1)
            if not ignore:
                raise HttpError(400, last_error) from None
            continue
        finally:
            temp.unlink(missing_ok=True)
        if session is not None and session not in touched:
            touched.append(session)
    if not touched and last_error:  # DicomZipImporter: no URI at all, and an unparsable entry was skipped
        raise HttpError(400, last_error)
    if action != "commit":
        return [sessions.receiver_uri(s) for s in touched]
    uris = []
    for session in touched:
        if session.direct:
            uris.append(sessions.receiver_uri(session))
            continue
        sessions.build(app.store, session)
        if aa is not None and aa.lower() == "true" and session.project != UNASSIGNED:
            rules = MergeRules.importer(app.store, session, request.param("overwrite"), request.all_params())
            try:
                exp = sessions.archive(app.store, request.user, session, {}, rules)
            except (ArchiveFailure, HttpError):
                raise HttpError(400, "unable to archive for the Prearchive session") from None
            uris.append(sessions.archive_uri(app.store, exp))
        else:
            uris.append(sessions.receiver_uri(session))
    return uris


def session_importer(app: App, request: Request, upload: Upload) -> list[str]:
    """SI: unpack a zip/tar of one session, build it at once (SOURCE=SessionImporter), archive it
    inline when the project code, ``AA=true`` or an ``/archive`` dest says so (conflicts -> 409)."""
    kind = archive_kind(upload.name) or "zip"
    target = target_from(request, gradual=False)
    target.label = target.label or request.param("label")
    dest = request.param("dest")
    dest_kind, dest_parts = parse_dest(dest) if dest else ("", {})
    if dest_kind == "prearchive":
        if (dest_parts.get("ts") or dest_parts.get("folder")) and not dest_parts.get("project"):
            raise HttpError(
                400,
                "User must specify project portion of prearchive path /prearchive/projects/PROJECT/TIMESTAMP/FOLDER",
            )
        if dest_parts.get("folder") and not dest_parts.get("ts"):
            raise HttpError(400, "User must specify timestamp portion of prearchive path")
    entries: list[tuple[str, Path, int]] = []
    studies: dict[str, list[tuple[str, Path, int]]] = {}
    try:
        for entry in iter_entries(app.store, upload.path, kind):
            entries.append(entry)
            try:
                info = read_header(entry[1], entry[0])
            except NotDicom:
                continue  # SI quietly leaves non-DICOM files out of the session
            studies.setdefault(info.study_uid, []).append(entry)
        if not studies:
            raise HttpError(400, "Upload did not include parsable files for session generation.")
        if len(studies) > 1 and dest_kind != "prearchive":
            raise HttpError(400, "Upload included files for multiple imaging sessions.")
        target.source = "SessionImporter"
        target.prevent_auto_commit = True
        touched: list[PrearcSession] = []
        for files in studies.values():
            for name, temp, size in files:
                session = sessions.receive(app.store, request.user, target, temp, name.rsplit("/", 1)[-1], size)
                if session not in touched:
                    touched.append(session)
    finally:
        for _, temp, _ in entries:
            temp.unlink(missing_ok=True)
    aa = request.param("AA") or request.param("auto-archive")
    uris = []
    for session in touched:
        sessions.build(app.store, session)
        project = app.store.projects.get(session.project)
        auto = session.project != UNASSIGNED and (
            (project is not None and project.prearchive_code >= 4)
            or session.autoarchive in ("AutoArchive", "AutoArchiveOverwrite")
            or dest_kind == "archive"
            or (aa or "").lower() == "true"
        )
        if not auto:
            uris.append(sessions.receiver_uri(session))
            continue
        try:
            rules = MergeRules.session_importer(request.param("overwrite"), request.all_params())
            exp = sessions.archive(app.store, request.user, session, {}, rules)
        except ArchiveFailure as failure:
            raise HttpError(409 if failure.conflict else 500, str(failure)) from None
        uris.append(sessions.archive_uri(app.store, exp))
    return uris


def inbox(app: App, request: Request) -> list[str]:
    """A folder (or archive) below ``<data>/inbox/<project>/``: checked now, imported in the background.

    Answers the job URI ``/xapi/dicom/<id>``; see :mod:`xnat_uploader.sandbox.inbox`.
    """
    return [app.inbox.submit(request)]
