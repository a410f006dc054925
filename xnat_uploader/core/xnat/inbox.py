"""Following an inbox import: XNAT's ``DicomInboxImportRequest`` behind ``/xapi/dicom/<id>`` (xnat-api.md 3.10).

The ``inbox`` import handler only checks the request and answers a job URI; XNAT imports in the background and
reports the job's ``status`` (Queued, Trawling, Importing, Accepted, Processed, then Completed or Failed) and,
when it ends, a ``resolution`` text. :func:`follow_inbox` polls until the job ends.

Any thread may call these functions (one GET per poll on the shared session).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from xnat_uploader.core.errors import Cancelled
from xnat_uploader.core.xnat import errors as E
from xnat_uploader.core.xnat.models import parse_json

if TYPE_CHECKING:
    from xnat_uploader.core.xnat.session import XnatSession

FINAL = ("Completed", "Failed")
_JOB_URI = re.compile(r"/xapi/dicom/(\d+)/?$")
_POLL_READ_TIMEOUT = 30.0  # one status GET; short so that a stuck answer does not hold a cancel back for long


@dataclass(frozen=True)
class InboxStatus:
    """One look at an inbox import request.

    ``resolution`` is XNAT's closing message (why it failed, or what it imported; ``""`` until then) and
    ``session_path`` the folder or archive on the server.
    """

    id: int
    status: str
    resolution: str
    session_path: str

    @property
    def done(self) -> bool:
        """Whether the job has ended (Completed or Failed): its status changes no more."""
        return self.status in FINAL

    @property
    def failed(self) -> bool:
        return self.status == "Failed"

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> InboxStatus:
        """The ``DicomInboxImportRequest`` JSON of ``GET /xapi/dicom/<id>``. Raises ``ValueError`` if it is not one."""
        if not isinstance(data, Mapping) or "id" not in data or not isinstance(data.get("status"), str):
            raise ValueError("not a DICOM inbox import request")
        return cls(
            id=int(data["id"]),
            status=data["status"],
            resolution=str(data.get("resolution") or ""),
            session_path=str(data.get("sessionPath") or ""),
        )


def job_id(uri: str) -> int | None:
    """The request ID in a job URI (``/xapi/dicom/7``, perhaps after a context path or the server URL), else None."""
    match = _JOB_URI.search(uri.split("?", 1)[0])
    return int(match.group(1)) if match else None


def inbox_status(session: XnatSession, uri: str) -> InboxStatus:
    """Ask XNAT for the status of the inbox import at ``uri`` (as answered by the import service).

    Raises
    ------
    ValueError
        ``uri`` is not an inbox job URI.
    ProgressUnavailableError
        404: the server does not report inbox imports (older XNAT), or the job is not the user's.
    XnatError
        Any other failure, mapped as for every request.
    """
    number = job_id(uri)
    if number is None:
        raise ValueError(f"not an inbox import job URI: {uri!r}")
    action = f"reading the status of inbox import {number}"
    timeout = (session.options.connect_timeout, min(session.options.read_timeout, _POLL_READ_TIMEOUT))
    try:
        resp = session.request("GET", f"/xapi/dicom/{number}", action=action, project_404=False, timeout=timeout)
    except E.NotFoundError as exc:
        raise E.ProgressUnavailableError(
            f"XNAT accepted inbox import {number}, but this server does not report its progress.",
            "Look for the new session in the project's prearchive once the server has imported it.",
            status=exc.status,
            detail=exc.detail,
        ) from None
    with resp:
        try:
            return InboxStatus.parse(parse_json(resp.content))
        except ValueError:
            raise E.UnexpectedResponseError(
                f"The server's answer while {action} is not an inbox import status.",
                "Check the server address; a proxy or login page may be answering instead of XNAT.",
                status=resp.status_code,
            ) from None


def follow_inbox(
    session: XnatSession,
    uri: str,
    *,
    interval: float = 2.0,
    timeout: float | None = None,
    cancel: threading.Event | None = None,
    on_status: Callable[[InboxStatus], None] | None = None,
) -> InboxStatus:
    """Poll the inbox import at ``uri`` every ``interval`` seconds until it is Completed or Failed.

    ``on_status`` is called (on the calling thread) with the first status and then whenever it changes. Returns
    the final status: check ``failed``, this function does not raise for a failed import.

    Raises
    ------
    Cancelled
        ``cancel`` was set (noticed within one poll, at most ``interval`` seconds, or at once while waiting).
    StillRunningError
        The job had not ended after ``timeout`` seconds (it goes on on the server).
    ProgressUnavailableError
        The server does not report inbox imports (404 on the first poll).
    XnatError
        Other failures; a 404 after the job was seen once becomes :class:`NotFoundError`.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    last: InboxStatus | None = None
    while True:
        if cancel is not None and cancel.is_set():
            raise Cancelled()
        try:
            status = inbox_status(session, uri)
        except E.ProgressUnavailableError as exc:
            if last is None:
                raise
            raise E.NotFoundError(
                f"XNAT no longer knows inbox import {last.id}.",
                "Look for the new session in the project's prearchive.",
                status=exc.status,
                detail=exc.detail,
            ) from None
        if on_status is not None and (last is None or status.status != last.status):
            on_status(status)
        last = status
        if status.done:
            return status
        wait = interval
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise E.StillRunningError(
                    f"Inbox import {status.id} is still {status.status} after {timeout:g} s.",
                    "It goes on on the server; look at its status later, or wait longer.",
                )
            wait = min(wait, left)
        if cancel is not None:
            if cancel.wait(wait):
                raise Cancelled()
        else:
            time.sleep(wait)
