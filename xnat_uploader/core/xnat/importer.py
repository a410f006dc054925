"""The import service, ``POST /data/services/import`` (xnat-api.md 3), for all five handlers.

:class:`ImportOptions` holds every parameter as a typed field; :func:`import_data` sends one body (bytes, a
path, a file object or a :class:`~xnat_uploader.core.xnat.session.StreamBody` with its exact length) and
returns the URIs XNAT answers with.
"""

from __future__ import annotations

import enum
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from xnat_uploader.core.dicom.values import is_valid_uid
from xnat_uploader.core.xnat import errors as E
from xnat_uploader.core.xnat.body import Body
from xnat_uploader.core.xnat.models import ArchiveRef, PrearchiveRef, parse_json, parse_uri_list, project_of_uri
from xnat_uploader.core.xnat.server_info import DIRECT_ARCHIVE_MIN, IGNORE_UNPARSABLE_MIN, ServerInfo

if TYPE_CHECKING:
    import requests

    from xnat_uploader.core.xnat.session import XnatSession

log = logging.getLogger(__name__)


class ImportHandler(str, enum.Enum):
    """``import-handler`` values (xnat-api.md 3.2)."""

    DICOM_ZIP = "DICOM-zip"
    GRADUAL_DICOM = "gradual-DICOM"
    SI = "SI"
    XAR = "XAR"
    INBOX = "inbox"


class Overwrite(str, enum.Enum):
    """``overwrite`` on the importer. Leave it ``None`` to forbid merging into an archived session.

    XNAT treats any other value (including ``none``) like ``append`` (xnat-api.md 11.18), so there is no
    NONE member on purpose.
    """

    APPEND = "append"
    DELETE = "delete"
    OVERRIDE = "override"


class ArchiveFormat(str, enum.Enum):
    """Archive type of a DICOM-zip/SI/XAR body; XNAT derives it from the Content-Type (xnat-api.md 3.1)."""

    ZIP = "application/zip"
    TAR = "application/x-tar"
    TAR_GZ = "application/x-gtar"

    @classmethod
    def for_name(cls, name: str) -> ArchiveFormat:
        """The format of a file name: ``.zip``/``.zar``, ``.tar``/``.xar``, ``.tar.gz``/``.tgz``."""
        low = name.lower()
        if low.endswith((".tar.gz", ".tgz")):
            return cls.TAR_GZ
        if low.endswith((".tar", ".xar")):
            return cls.TAR
        return cls.ZIP


def _flag(value: bool) -> str:
    return "true" if value else "false"


@dataclass(frozen=True)
class ImportOptions:
    """Every importer parameter of xnat-api.md 3.3, typed. Immutable; share it between threads.

    Project, subject and session are always sent as ``PROJECT_ID``/``SUBJECT_ID``/``EXPT_LABEL``: the only
    names every handler reads (gradual-DICOM ignores ``project``/``subject``/``session``, 11.3).
    ``commit=True`` sends ``action=commit`` (DICOM-zip builds the sessions after the upload);
    ``auto_archive`` sends ``AA``. ``extra`` passes anything else verbatim (e.g. XML-path field overrides).
    """

    handler: ImportHandler = ImportHandler.DICOM_ZIP
    project: str | None = None
    subject: str | None = None
    session: str | None = None
    dest: str | None = None
    prearc_timestamp: str | None = None
    prearc_session_folder: str | None = None
    visit: str | None = None
    subtype: str | None = None
    overwrite: Overwrite | None = None
    overwrite_files: bool = False
    commit: bool = False
    auto_archive: bool | None = None
    ignore_unparsable: bool | None = None
    direct_archive: bool = False
    rename: bool = False
    prevent_anon: bool = False
    prevent_auto_commit: bool = False
    source: str | None = None
    timezone: str | None = None
    trigger_pipelines: bool | None = None
    quarantine: bool | None = None
    src: str | None = None
    http_session_listener: str | None = None
    transfer_syntax_uid: str | None = None
    sender_id: str | None = None
    sender_ae_title: str | None = None
    inbox_path: str | None = None
    cleanup_after_import: bool | None = None
    prearchive_code: bool = False
    archive_format: ArchiveFormat | None = None
    extra: tuple[tuple[str, str], ...] = field(default=())

    @classmethod
    def for_uploader(
        cls, handler: ImportHandler, project: str, subject: str, session: str, **more: object
    ) -> ImportOptions:
        """The options the upload engine sends per batch: routed, kept out of the auto-build timer.

        ``SOURCE=uploader`` and ``prevent_auto_commit=true`` stop XNAT from building the session while
        batches still arrive; the engine commits once at the end (xnat-api.md 11.5).
        """
        return cls(
            handler=handler, project=project, subject=subject, session=session, prevent_auto_commit=True,
            source="uploader", **more,  # type: ignore[arg-type]
        )  # fmt: skip

    def validate(self, server: ServerInfo | None = None, *, has_body: bool = True) -> None:
        """Refuse combinations XNAT would reject or silently misread. Raises ``ValueError`` or
        :class:`ServerTooOldError` (when ``server`` is given and lacks a feature)."""
        handler = ImportHandler(self.handler)
        if handler is ImportHandler.INBOX:
            if not self.inbox_path or not self.project:
                raise ValueError("the inbox handler needs inbox_path (a folder on the server) and project")
            if has_body:
                raise ValueError("the inbox handler takes no upload body")
        elif not has_body and not self.src:
            raise ValueError(f"{handler.value} needs a body (or src)")
        if self.prearchive_code and self.overwrite is not None:
            raise ValueError("XNAT rejects any overwrite value together with prearchive_code=1")
        if self.direct_archive and handler not in (ImportHandler.GRADUAL_DICOM, ImportHandler.DICOM_ZIP):
            raise ValueError("Direct-Archive applies to gradual-DICOM and DICOM-zip only")
        if self.ignore_unparsable and handler is not ImportHandler.DICOM_ZIP:
            raise ValueError("Ignore-Unparsable applies to DICOM-zip only")
        if self.rename and handler not in (ImportHandler.GRADUAL_DICOM, ImportHandler.DICOM_ZIP):
            raise ValueError("rename applies to gradual-DICOM and DICOM-zip only (XNAT's DICOM file namer)")
        if server is not None:
            if self.direct_archive:
                server.require(DIRECT_ARCHIVE_MIN, "Direct archiving")
            if self.ignore_unparsable:
                server.require(IGNORE_UNPARSABLE_MIN, "Skipping non-DICOM files")

    def params(self) -> list[tuple[str, str]]:
        """The query parameters, in a stable order. Never includes ``format`` (see xnat-api.md 1.2)."""
        return list(self._params)

    @functools.cached_property
    def _params(self) -> tuple[tuple[str, str], ...]:
        # Built once per options object: a gradual upload sends the same parameters with every file.
        p: list[tuple[str, str]] = [("import-handler", ImportHandler(self.handler).value)]

        def add(name: str, value: object) -> None:
            if value is None:
                return
            p.append((name, _flag(value) if isinstance(value, bool) else str(value)))

        add("PROJECT_ID", self.project)
        add("SUBJECT_ID", self.subject)
        add("EXPT_LABEL", self.session)
        add("dest", self.dest)
        add("PREARC_TIMESTAMP", self.prearc_timestamp)
        add("PREARC_SESSION_FOLDER", self.prearc_session_folder)
        add("VISIT", self.visit)
        add("SUBTYPE", self.subtype)
        add("overwrite", self.overwrite.value if self.overwrite else None)
        if self.overwrite_files:
            add("overwrite_files", True)
        if self.commit:
            add("action", "commit")
        add("AA", self.auto_archive)
        add("Ignore-Unparsable", self.ignore_unparsable)
        if self.direct_archive:
            add("Direct-Archive", True)
        if self.rename:
            add("rename", True)
        if self.prevent_anon:
            add("prevent_anon", True)
        if self.prevent_auto_commit:
            add("prevent_auto_commit", True)
        add("SOURCE", self.source)
        add("TIMEZONE", self.timezone)
        add("triggerPipelines", self.trigger_pipelines)
        add("quarantine", self.quarantine)
        add("src", self.src)
        add("http-session-listener", self.http_session_listener)
        add("Transfer-Syntax-UID", self.transfer_syntax_uid)
        add("Sender-ID", self.sender_id)
        add("Sender-AE-Title", self.sender_ae_title)
        add("path", self.inbox_path)
        add("cleanupAfterImport", self.cleanup_after_import)
        if self.prearchive_code:
            add("prearchive_code", "1")
        p.extend((str(k), str(v)) for k, v in self.extra)
        return tuple(p)

    def content_type(self, body: Body) -> str | None:
        """The Content-Type that makes XNAT read the body as the right kind of file (xnat-api.md 11.4)."""
        handler = ImportHandler(self.handler)
        if handler is ImportHandler.INBOX or body is None:
            return None
        if handler is ImportHandler.GRADUAL_DICOM:
            return "application/dicom"
        if self.archive_format is not None:
            return ArchiveFormat(self.archive_format).value
        if isinstance(body, str | Path):
            return ArchiveFormat.for_name(str(body)).value
        name = getattr(body, "name", None)
        if isinstance(name, str):
            return ArchiveFormat.for_name(name).value
        return ArchiveFormat.ZIP.value


@dataclass(frozen=True)
class ImportResult:
    """What the importer answered: zero or more URIs (``/data/prearchive/...``, ``/data/archive/...``,
    ``/xapi/direct-archive/...``, or an inbox job ``/xapi/dicom/<id>``).

    ``strays``: where an earlier send of the same body landed while XNAT ran the session as guest (the
    Unassigned prearchive; the body was sent again after signing in). That copy stays on the server until
    someone deletes it: the caller reports it, it is never deleted silently.
    """

    uris: tuple[str, ...]
    strays: tuple[str, ...] = ()

    @property
    def uri(self) -> str | None:
        """The first URI, or ``None`` when XNAT kept nothing (every file filtered or rejected by a script)."""
        return self.uris[0] if self.uris else None

    @property
    def prearchive(self) -> list[PrearchiveRef]:
        out = []
        for uri in self.uris:
            try:
                out.append(PrearchiveRef.parse(uri))
            except ValueError:
                continue
        return out

    @property
    def archive(self) -> list[ArchiveRef]:
        out = []
        for uri in self.uris:
            try:
                out.append(ArchiveRef.parse(uri))
            except ValueError:
                continue
        return out

    @property
    def direct_archive(self) -> list[str]:
        return [u for u in self.uris if "/direct-archive/" in u]


def stored_name(sop_uid: str) -> str | None:
    """The file name to give a gradual-DICOM upload: ``<SOPInstanceUID>.dcm``, or ``None`` if the UID is not
    digits and dots (then it is never put into a URL, and XNAT names the file itself).

    XNAT stores an in-body upload under the path segment after ``/data/services/import/``, else as
    ``upload.dcm`` (``SecureResource.getFileWritersAndLoadParams``, ``RequestUtil.deriveFileName``), and locks
    the file by scan and stored name while writing it (``GradualDicomImporter.call``): two first files of a
    series sent at the same moment as ``upload.dcm`` collide ("Concurrent file sends", 400); one name per
    instance does not, and a re-sent instance replaces its own file.
    """
    if is_valid_uid(sop_uid):
        return f"{sop_uid}.dcm"
    return None


def import_data(
    session: XnatSession,
    body: Body,
    options: ImportOptions,
    *,
    server: ServerInfo | None = None,
    timeout: tuple[float, float] | None = None,
    on_stray: Callable[[tuple[str, ...]], None] | None = None,
    name: str | None = None,
) -> ImportResult:
    """Send one upload to the import service and return the URIs it answers with.

    Thread-safe; meant to be called by several upload workers at once on one session. ``body`` is bytes, a
    path, a binary file object or a ``StreamBody`` (an iterable of chunks with its exact length; a
    ``Content-Length`` is always sent, chunked uploads are refused by XNAT). With ``server`` the options are
    checked against its version first (:class:`ServerTooOldError`).

    When a project was asked for and XNAT put the data in Unassigned, either the session had become guest
    (an open site after the session expired): then it signs in again, sends the body again and names the
    first copy in ``strays``; or the project is unknown or not writable (XNAT does not fail then,
    xnat-api.md 11.3): :class:`ProjectAccessError` is raised, the Unassigned session named in its ``detail``.
    ``on_stray`` is called with the strays whenever there are some, also when sending again failed.

    ``name`` (from :func:`stored_name`) is sent as the path segment after ``/data/services/import/``: the name
    XNAT gives the stored file.
    """
    options.validate(server, has_body=body is not None)
    headers = {}
    content_type = options.content_type(body)
    if content_type:
        headers["Content-Type"] = content_type
    action = f"uploading ({ImportHandler(options.handler).value})"
    unassigned: list[str] = []

    def landed_unassigned(resp: requests.Response) -> bool:
        """What a guest's import looks like: the project was not resolved, the data went to Unassigned."""
        if not options.project or b"nassigned" not in resp.content:
            return False
        uri = _unassigned(ImportResult(tuple(parse_uri_list(resp.content))))
        if uri is not None:
            unassigned.append(uri)
        return uri is not None

    try:
        with session.request(
            "POST",
            f"/data/services/import/{name}" if name else "/data/services/import",
            params=options.params(),
            body=body,
            headers=headers,
            expect=(200,),
            action=action,
            project=options.project,
            retries=0,
            timeout=timeout,
            signed_out=landed_unassigned,
        ) as resp:
            result = ImportResult(tuple(parse_uri_list(resp.content)))
    except BaseException:
        if unassigned and on_stray is not None:  # a copy went to Unassigned before sending again failed
            on_stray(tuple(dict.fromkeys(unassigned)))
        raise
    if options.project and _unassigned(result) is not None:
        raise E.ProjectAccessError(
            f"XNAT did not accept project '{options.project}' and put the data in the Unassigned prearchive.",
            "Check the project ID (not its title) and that you may add data to it; then move or delete the "
            "session in the prearchive.",
            status=200,
            detail=" ".join(dict.fromkeys([*unassigned, *result.uris])),
        )
    if unassigned:
        strays = tuple(dict.fromkeys(unassigned))
        log.info("An upload went to the Unassigned prearchive while signed out; it was sent again signed in")
        if on_stray is not None:
            on_stray(strays)
        result = ImportResult(result.uris, strays)
    log.debug("Import (%s) accepted: %d URI(s)", ImportHandler(options.handler).value, len(result.uris))
    return result


def _unassigned(result: ImportResult) -> str | None:
    """The answer's URI when XNAT put the data into the Unassigned prearchive, else ``None``."""
    if not result.uris:
        return None
    landed = project_of_uri(result.uris[0])
    return result.uris[0] if landed is not None and landed.lower() == "unassigned" else None


def trigger_direct_archive(session: XnatSession, uri: str) -> None:
    """Ask XNAT to archive a Direct-Archive session now (``POST /xapi/direct-archive/...``, XNAT 1.8.4+)."""
    with session.request("POST", uri, expect=(200,), action="archiving a direct-archive session", retries=0):
        pass


def direct_archive_status(session: XnatSession, uri: str) -> str | None:
    """The status of a Direct-Archive session (``GET /xapi/direct-archive/...``), ``None`` once XNAT dropped it.

    XNAT keeps the row while the session waits, builds and archives (RECEIVING, QUEUED_BUILDING, BUILDING,
    QUEUED_ARCHIVING, ARCHIVING; ERROR when even moving it into the prearchive failed) and deletes it when
    the session is archived or moved into the prearchive (then 404).
    """
    try:
        with session.request("GET", uri, action="reading a direct-archive session") as resp:
            data = parse_json(resp.content)
    except E.NotFoundError:
        return None
    except ValueError:
        raise E.UnexpectedResponseError(
            "The server's answer about a direct-archive session is not JSON.",
            "Check the server address; a proxy or login page may be answering instead of XNAT.",
        ) from None
    status = data.get("status") if isinstance(data, dict) else None
    return str(status or "RECEIVING")
