"""``XnatClient``: one object per server bundling the session and every operation the app uses.

The functions in the sibling modules take an :class:`XnatSession`; this class only saves passing it around
and caches the server info. Thread-safe like the session: share one client between upload workers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from xnat_uploader.core.secret import Secret
from xnat_uploader.core.xnat import importer, inbox, listing, prearchive, resources, settle
from xnat_uploader.core.xnat.body import Body
from xnat_uploader.core.xnat.importer import ImportOptions, ImportResult
from xnat_uploader.core.xnat.inbox import InboxStatus
from xnat_uploader.core.xnat.models import (
    Experiment,
    PrearchiveRef,
    PrearchiveSession,
    Project,
    RemoteFile,
    ResourceInfo,
    Scan,
    Subject,
    seg,
)
from xnat_uploader.core.xnat.prearchive import ActionResult, ArchiveOverwrite
from xnat_uploader.core.xnat.resources import FileUploadResult
from xnat_uploader.core.xnat.server_info import ServerInfo, get_server_info
from xnat_uploader.core.xnat.session import ConnectionOptions, XnatSession


class XnatClient:
    """The XNAT API as the app uses it. Thread-safe.

    >>> client = XnatClient("https://xnat.example.org", "jdoe", Secret("..."))  # doctest: +SKIP
    >>> client.connect()  # login + server version; raises a typed XnatError  # doctest: +SKIP
    """

    def __init__(self, url: str, user: str, password: str | Secret, options: ConnectionOptions | None = None) -> None:
        self.session = XnatSession(url, user, password, options)
        self._info: ServerInfo | None = None
        self._info_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"XnatClient({self.session!r})"

    @property
    def url(self) -> str:
        return self.session.base_url

    @property
    def user(self) -> str:
        return self.session.user

    # --- connection -----------------------------------------------------------------------------------

    def connect(self) -> ServerInfo:
        """Log in and read the server version. Raises :class:`XnatError` subclasses with user messages."""
        self.session.login()
        return self.server_info(refresh=True)

    def server_info(self, refresh: bool = False) -> ServerInfo:
        """The server's version info (cached after the first call)."""
        with self._info_lock:
            if self._info is None or refresh:
                self._info = get_server_info(self.session)
            return self._info

    def keepalive(self) -> bool:
        """Touch the server session so it does not idle out, and sign in again if XNAT answers it as guest
        (open sites, :mod:`.keepalive`). True if it had to sign in again."""
        return self.session.ensure_signed_in()

    def trigger_direct_archive(self, uri: str) -> None:
        """Archive a Direct-Archive session now instead of waiting for XNAT's background task (1.8.4+)."""
        importer.trigger_direct_archive(self.session, uri)

    def close(self) -> None:
        """Log out (``DELETE /data/JSESSION``) and release connections."""
        self.session.close()

    def __enter__(self) -> XnatClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- listings -------------------------------------------------------------------------------------

    def projects(self, permission: str = "edit") -> list[Project]:
        return listing.list_projects(self.session, permission)

    def subjects(self, project: str) -> list[Subject]:
        return listing.list_subjects(self.session, project)

    def experiments(self, project: str, subject: str | None = None) -> list[Experiment]:
        return listing.list_experiments(self.session, project, subject)

    def scans(self, experiment: str, *, file_counts: bool = True) -> list[Scan]:
        return listing.list_scans(self.session, experiment, file_counts=file_counts)

    def resources(self, parent: str) -> list[ResourceInfo]:
        return listing.list_resources(self.session, listing.experiment_path(parent))

    def files(self, parent: str, resource: str) -> list[RemoteFile]:
        return listing.list_files(self.session, f"{listing.experiment_path(parent)}/resources/{seg(resource)}")

    def prearchive(self, project: str | None = None) -> list[PrearchiveSession]:
        return listing.list_prearchive(self.session, project)

    def prearchive_session(self, ref: PrearchiveRef) -> PrearchiveSession:
        return listing.get_prearchive_session(self.session, ref)

    def prearchive_scans(self, ref: PrearchiveRef, *, file_counts: bool = True) -> list[Scan]:
        return listing.list_prearchive_scans(self.session, ref, file_counts=file_counts)

    # --- import ---------------------------------------------------------------------------------------

    def import_data(self, body: Body, options: ImportOptions, *, check_version: bool = True, **kw: Any) -> ImportResult:
        """:func:`importer.import_data`; checks version-bound options against the server first."""
        needs_version = options.direct_archive or bool(options.ignore_unparsable)
        server = self.server_info() if (check_version and needs_version) else None
        return importer.import_data(self.session, body, options, server=server, **kw)

    def inbox_status(self, uri: str) -> InboxStatus:
        """:func:`inbox.inbox_status`: one look at an inbox import job (``/xapi/dicom/<id>``)."""
        return inbox.inbox_status(self.session, uri)

    def follow_inbox(self, uri: str, **kw: Any) -> InboxStatus:
        """:func:`inbox.follow_inbox`: poll an inbox import job until it is Completed or Failed."""
        return inbox.follow_inbox(self.session, uri, **kw)

    # --- prearchive -----------------------------------------------------------------------------------

    def build(self, ref: PrearchiveRef) -> PrearchiveRef:
        return prearchive.build(self.session, ref)

    def commit(self, ref: PrearchiveRef, **kw: Any) -> ActionResult:
        return prearchive.commit(self.session, ref, **kw)

    def move(self, ref: PrearchiveRef, new_project: str) -> PrearchiveRef:
        return prearchive.move(self.session, ref, new_project)

    def delete(self, ref: PrearchiveRef) -> None:
        prearchive.delete(self.session, ref)

    def archive(
        self,
        ref: PrearchiveRef,
        *,
        subject: str | None = None,
        label: str | None = None,
        overwrite: ArchiveOverwrite | None = None,
        extra: Mapping[str, str] | None = None,
        cancel: threading.Event | None = None,
        on_wait: Callable[[str], None] | None = None,
    ) -> ActionResult:
        """Archive one session (``/data/services/archive``): one request with the long commit time-out; when
        its answer is lost, XNAT is watched until it is clear what it did (:mod:`.settle`)."""

        def send() -> ActionResult:
            return prearchive.archive(self.session, ref, subject=subject, label=label, overwrite=overwrite, extra=extra)

        return settle.archive_settled(
            self.session, ref, send, subject=subject, label=label, cancel=cancel, on_wait=on_wait
        )

    def rebuild(self, refs: PrearchiveRef | Iterable[PrearchiveRef]) -> list[PrearchiveSession]:
        return prearchive.rebuild(self.session, refs)

    # --- resources ------------------------------------------------------------------------------------

    def create_resource(self, parent: str, name: str, **kw: Any) -> bool:
        return resources.create_resource(self.session, parent, name, **kw)

    def upload_file(self, parent: str, resource: str, name: str, body: Body, **kw: Any) -> FileUploadResult:
        return resources.upload_file(self.session, parent, resource, name, body, **kw)
