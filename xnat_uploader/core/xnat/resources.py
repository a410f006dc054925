"""Resources (file collections) on sessions and scans: create, upload files, list (xnat-api.md 6).

Thread-safe: each function is one request through an :class:`XnatSession`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote

from xnat_uploader.core.xnat import errors as E
from xnat_uploader.core.xnat.body import Body
from xnat_uploader.core.xnat.listing import experiment_path
from xnat_uploader.core.xnat.models import parse_json, seg

if TYPE_CHECKING:
    from xnat_uploader.core.xnat.session import XnatSession

log = logging.getLogger(__name__)


def session_path(experiment: str, project: str | None = None, subject: str | None = None) -> str:
    """REST path of a session: ``/data/projects/P/subjects/S/experiments/E`` when project and subject are
    given (``E`` may be a label), else ``/data/experiments/<ID>``."""
    if project and subject:
        return f"/data/projects/{seg(project)}/subjects/{seg(subject)}/experiments/{seg(experiment)}"
    return experiment_path(experiment)


def scan_path(session: str, scan_id: str) -> str:
    """REST path of a scan below a session path (or an experiment ID)."""
    return f"{experiment_path(session)}/scans/{seg(scan_id)}"


def _tags(tags: Iterable[str] | None) -> str | None:
    return ",".join(tags) if tags else None


def create_resource(
    session: XnatSession,
    parent: str,
    name: str,
    *,
    format: str | None = None,  # noqa: A002 - XNAT's parameter name
    content: str | None = None,
    description: str | None = None,
    tags: Iterable[str] | None = None,
) -> bool:
    """Create resource ``name`` on ``parent`` (a session or scan path). Returns False if it already existed.

    XNAT answers 409 for an existing resource (xnat-api.md 11.14); that is not an error here, since files
    can be PUT into it directly.
    """
    params = {k: v for k, v in {"format": format, "content": content, "description": description,
                                "tags": _tags(tags)}.items() if v}  # fmt: skip
    try:
        with session.request(
            "PUT",
            f"{experiment_path(parent)}/resources/{seg(name)}",
            params=params,
            expect=(200, 201),
            action="creating a resource",
            retries=0,
        ):
            return True
    except E.SessionExistsError as exc:
        if exc.status == 409:
            return False
        raise


@dataclass(frozen=True)
class FileUploadResult:
    """``duplicates``: names XNAT kept as they were because they existed and ``overwrite`` was off."""

    duplicates: tuple[str, ...] = ()


def parse_duplicates(text: str) -> tuple[str, ...]:
    """The ``{"duplicates":[...]}`` body of a file PUT that skipped existing files (else empty)."""
    text = text.strip()
    if not text.startswith("{"):
        return ()
    try:
        data = parse_json(text)
    except ValueError:
        return ()
    dups = data.get("duplicates") if isinstance(data, dict) else None
    return tuple(str(d) for d in dups) if isinstance(dups, list) else ()


def upload_file(
    session: XnatSession,
    parent: str,
    resource: str,
    name: str,
    body: Body,
    *,
    extract: bool = False,
    overwrite: bool = False,
    content_type: str = "application/octet-stream",
    format: str | None = None,  # noqa: A002 - XNAT's parameter name
    content: str | None = None,
    tags: Iterable[str] | None = None,
) -> FileUploadResult:
    """PUT one file into ``parent``'s resource ``resource`` (created by XNAT when missing).

    ``name`` may contain ``/`` for sub-folders. ``extract=True`` unpacks a zip/tar into the resource.
    Without ``overwrite`` existing files are left alone and reported in ``duplicates`` (XNAT still says
    200, xnat-api.md 11.14). The body is sent in-body with its length; ``format`` here is the file's format
    field, never ``format=json``.
    """
    params: dict[str, str] = {"inbody": "true"}
    if extract:
        params["extract"] = "true"
    if overwrite:
        params["overwrite"] = "true"
    for key, value in (("format", format), ("content", content), ("tags", _tags(tags))):
        if value:
            params[key] = value
    path = f"{experiment_path(parent)}/resources/{seg(resource)}/files/{quote(name.strip('/'), safe='/')}"
    with session.request(
        "PUT",
        path,
        params=params,
        body=body,
        headers={"Content-Type": content_type},
        expect=(200, 201),
        action="uploading a file to a resource",
        retries=0,
    ) as resp:
        duplicates = parse_duplicates(resp.text)
    if duplicates:
        log.info("Resource upload kept %d existing file(s) unchanged", len(duplicates))
    return FileUploadResult(duplicates)
