"""Prearchive actions (xnat-api.md 4.4, 4.5): build, commit, move, delete, archive, batch rebuild/move/delete.

Every function is one request through an :class:`XnatSession` and is thread-safe. XNAT answers several
of them with 301/303 carrying the result in the body or ``Location``; those are successes, not redirects
to follow (xnat-api.md 11.2). A 404 here means the session is gone, not a missing project: XNAT names
unknown projects in its message, which the error mapping reads.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from xnat_uploader.core.xnat import errors as E
from xnat_uploader.core.xnat.models import (
    ArchiveRef,
    PrearchiveRef,
    PrearchiveSession,
    parse_json,
    parse_result_set,
    parse_uri_list,
)

if TYPE_CHECKING:
    import requests

    from xnat_uploader.core.xnat.session import XnatSession

log = logging.getLogger(__name__)


class ArchiveOverwrite(str, enum.Enum):
    """``overwrite`` on ``/data/services/archive``. For one session (all this client sends) XNAT merges into an
    existing session whatever it says; either value lets the merge overwrite files and instances the archived
    session already holds (absent, XNAT refuses those), and neither deletes anything
    (``Archiver.finishSingleSessionArchive``: it becomes overrideExceptions; allowDataDeletion is unused there)."""

    APPEND = "append"
    DELETE = "delete"


@dataclass(frozen=True)
class ActionResult:
    """Outcome of commit/archive/move: where the session is now, and whether it reached the archive."""

    uri: str
    archived: bool

    @property
    def archive_ref(self) -> ArchiveRef | None:
        try:
            return ArchiveRef.parse(self.uri)
        except ValueError:
            return None

    @property
    def prearchive_ref(self) -> PrearchiveRef | None:
        try:
            return PrearchiveRef.parse(self.uri)
        except ValueError:
            return None


def _body_uri(resp: requests.Response) -> str:
    uris = parse_uri_list(resp.text)
    if not uris:
        raise E.UnexpectedResponseError(
            "XNAT answered without saying where the session is now.",
            "Refresh the prearchive to see its state.",
            status=resp.status_code,
        )
    return uris[0]


def _refs(refs: PrearchiveRef | Iterable[PrearchiveRef]) -> list[PrearchiveRef]:
    return [refs] if isinstance(refs, PrearchiveRef) else list(refs)


def build(session: XnatSession, ref: PrearchiveRef, *, extra: Mapping[str, str] | None = None) -> PrearchiveRef:
    """Build the session document now (``action=build``): status becomes READY. Returns the session."""
    params = {"action": "build", **(extra or {})}
    with session.request("POST", ref.uri, params=params, action="building a prearchive session", retries=0):
        pass
    return ref


def commit(
    session: XnatSession,
    ref: PrearchiveRef,
    *,
    auto_archive: bool | None = None,
    source: str | None = "uploader",
    extra: Mapping[str, str] | None = None,
) -> ActionResult:
    """Close an upload: build the session and, when the project or ``auto_archive`` says so, archive it.

    200 means it stays in the prearchive (READY); 301 means it was archived, the body naming the archive
    URI. Archive failures (e.g. the session already exists) raise :class:`SessionExistsError` or
    :class:`ArchiveFailedError`; the row is then ERROR/CONFLICT on the server.

    One request with the long commit time-out, never re-sent: when its answer is lost, :mod:`.settle`
    finds out what XNAT did.
    """
    params: dict[str, str] = {"action": "commit"}
    if source:
        params["SOURCE"] = source
    if auto_archive is not None:
        params["AA"] = "true" if auto_archive else "false"
    params.update(extra or {})
    with session.request(
        "POST",
        ref.uri,
        params=params,
        expect=(200, 301),
        action="committing a prearchive session",
        retries=0,
        timeout=session.options.commit_timeouts,  # XNAT builds and archives inside this request
    ) as resp:
        uri = _body_uri(resp)
        archived = resp.status_code == 301
    log.info("Committed a prearchive session in %s: %s", ref.project, "archived" if archived else "ready")
    return ActionResult(uri, archived)


def move(session: XnatSession, ref: PrearchiveRef, new_project: str) -> PrearchiveRef:
    """Move one session to another project's prearchive (``action=move``; XNAT answers 301 + new URI)."""
    with session.request(
        "POST",
        ref.uri,
        params={"action": "move", "newProject": new_project},
        expect=(200, 301),
        action=f"moving a prearchive session to {new_project}",
        project=new_project,
        project_404=False,
        retries=0,
    ) as resp:
        uri = _body_uri(resp)
    try:
        return PrearchiveRef.parse(uri)
    except ValueError:
        return PrearchiveRef(new_project, ref.timestamp, ref.folder)


def delete(session: XnatSession, ref: PrearchiveRef) -> None:
    """Delete one prearchive session (row and files). XNAT answers 200 even for an unknown folder."""
    with session.request("DELETE", ref.uri, action="deleting a prearchive session", retries=0):
        pass


def archive(
    session: XnatSession,
    ref: PrearchiveRef,
    *,
    subject: str | None = None,
    label: str | None = None,
    overwrite: ArchiveOverwrite | None = None,
    extra: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
) -> ActionResult:
    """Archive one prearchive session through ``POST /data/services/archive``.

    ``subject``/``label`` rename on the way (``dest`` does not, xnat-api.md 11.10). XNAT answers 200 with
    the archive URI, or 303 with it in ``Location`` when the project auto-archives. Failures (images the
    archived session already holds without ``overwrite``, another study under that label, an Unassigned
    source...) raise typed errors. No ``overwrite_files``: XNAT reads it here but passes it on only when
    several sessions are archived at once. One request with the long commit time-out;
    :func:`.settle.archive_settled` adds what to do when its answer is lost.
    """
    form: list[tuple[str, str]] = [("src", ref.path)]
    if overwrite is not None:
        form.append(("overwrite", ArchiveOverwrite(overwrite).value))
    if subject:
        form.append(("subject", subject))
    if label:
        form.append(("session", label))
    if extra:
        form.extend(extra.items() if isinstance(extra, Mapping) else extra)
    with session.request(
        "POST",
        "/data/services/archive",
        form=form,
        expect=(200, 301, 302, 303),
        action="archiving a prearchive session",
        retries=0,
        timeout=session.options.commit_timeouts,  # synchronous like a commit (xnat-api.md 14)
    ) as resp:
        if resp.status_code in (301, 302, 303):
            location = resp.headers.get("Location", "")
            uri = location or _body_uri(resp)
        else:
            uri = _body_uri(resp)
    if uri.startswith(("http://", "https://")):
        ref_ = _safe_archive_ref(uri)
        uri = ref_.uri if ref_ else uri
    log.info("Archived a prearchive session of %s", ref.project)
    return ActionResult(uri, True)


def _safe_archive_ref(uri: str) -> ArchiveRef | None:
    try:
        return ArchiveRef.parse(uri)
    except ValueError:
        return None


def _batch(
    session: XnatSession, service: str, refs: list[PrearchiveRef], more: list[tuple[str, str]], action: str
) -> list[PrearchiveSession]:
    if not refs:
        return []
    form = [("src", r.path) for r in refs] + more
    with session.request(
        "POST",
        f"/data/services/prearchive/{service}",
        params={"format": "json"},
        form=form,
        action=action,
        retries=0,
    ) as resp:
        try:
            rows = parse_result_set(parse_json(resp.content))
        except ValueError:
            rows = []
    return [PrearchiveSession.from_row(r) for r in rows]


def rebuild(
    session: XnatSession, refs: PrearchiveRef | Iterable[PrearchiveRef], *, override_lock: bool = False
) -> list[PrearchiveSession]:
    """Queue a rebuild (``/data/services/prearchive/rebuild``; never auto-archives). Returns the rows."""
    more = [("overrideLock", "true")] if override_lock else []
    return _batch(session, "rebuild", _refs(refs), more, "rebuilding prearchive sessions")


def move_many(
    session: XnatSession, refs: PrearchiveRef | Iterable[PrearchiveRef], new_project: str
) -> list[PrearchiveSession]:
    """Queue moves of several sessions to ``new_project``. Returns the rows (QUEUED_MOVING)."""
    return _batch(
        session, "move", _refs(refs), [("newProject", new_project)], f"moving prearchive sessions to {new_project}"
    )


def delete_many(session: XnatSession, refs: PrearchiveRef | Iterable[PrearchiveRef]) -> list[PrearchiveSession]:
    """Queue deletion of several sessions. Returns the rows (QUEUED_DELETING)."""
    return _batch(session, "delete", _refs(refs), [], "deleting prearchive sessions")
