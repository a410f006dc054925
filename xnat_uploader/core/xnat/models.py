"""Plain data returned by the client, and the parsers of XNAT's bodies (tables, uri-lists).

Everything here is immutable or pure, so any thread may use it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from xnat_uploader.core.xnat import errors as E


def seg(value: str) -> str:
    """One URL path segment, escaped (labels may hold spaces or slashes)."""
    return quote(str(value), safe="")


# --- tables -------------------------------------------------------------------------------------------


def parse_json(content: str | bytes) -> Any:
    """A server's JSON answer decoded (UTF-8/16/32 told apart as ``requests``' ``json()`` does); ``ValueError``
    for anything else, including what ``json`` gives up on with other errors: nesting deeper than Python's
    recursion limit (``RecursionError``), or a number of more than 4,300 digits."""
    try:
        return json.loads(content)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def parse_result_set(data: Any) -> list[dict[str, str]]:
    """Rows of an XNAT JSON table (``{"ResultSet":{"Result":[...]}}``), every value as a string.

    XNAT already sends strings (null as ``""``); other types are converted the same way so that callers
    never have to care. Raises :class:`UnexpectedResponseError` for anything that is not such a table.
    """
    if isinstance(data, str | bytes):
        try:
            data = parse_json(data)
        except ValueError:
            raise E.UnexpectedResponseError(
                "The server's answer is not the JSON table XNAT sends.",
                "Check the server address; a proxy or login page may be answering.",
            ) from None
    try:
        rows = data["ResultSet"]["Result"]
    except (KeyError, TypeError):
        raise E.UnexpectedResponseError(
            "The server's answer is not the JSON table XNAT sends.",
            "Check the server address; a proxy or login page may be answering.",
        ) from None
    if not isinstance(rows, list):
        raise E.UnexpectedResponseError("The server's table has no rows list.", "Is this an XNAT server?")
    try:
        return [{str(k): _cell(v) for k, v in row.items()} for row in rows if isinstance(row, Mapping)]
    except RecursionError:  # a cell nested as deep as the JSON decoder allows: not an XNAT table
        raise E.UnexpectedResponseError(
            "The server's table has cells nested too deeply.", "Is this an XNAT server?"
        ) from None


def total_records(data: Mapping[str, Any]) -> int | None:
    """``totalRecords`` of a table when the listing carries it (a string in XNAT), else ``None``."""
    try:
        return int(data["ResultSet"]["totalRecords"])
    except (KeyError, TypeError, ValueError):
        return None


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _get(row: Mapping[str, str], *names: str) -> str:
    """First present column among ``names``, case-insensitive (XNAT mixes ``ID``/``id``)."""
    for name in names:
        if name in row:
            return row[name]
    lowered = {k.lower(): v for k, v in row.items()}
    for name in names:
        if name.lower() in lowered:
            return lowered[name.lower()]
    return ""


def _int(text: str) -> int | None:
    try:
        return int(float(text))
    except (TypeError, ValueError):
        return None


# --- uri-lists ----------------------------------------------------------------------------------------


def parse_uri_list(text: str | bytes) -> list[str]:
    """URIs of a ``text/uri-list`` answer: CRLF (or LF) separated, trailing terminator, maybe empty.

    Comment lines (``#``) are skipped as RFC 2483 says. Order is kept, duplicates dropped.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return list(dict.fromkeys(line for line in map(str.strip, text.splitlines()) if line and line[0] != "#"))


# --- references ---------------------------------------------------------------------------------------

_PREARC = re.compile(r"/prearchive/projects/([^/]+)/([^/]+)/([^/]+)/?")
_ARCHIVE = re.compile(r"/projects/([^/]+)/subjects/([^/]+)/experiments/([^/]+)/?")


def _path_from(uri: str, marker: str) -> str:
    """The part of ``uri`` from ``marker`` on: drops scheme/host, context path, ``/data``, query."""
    path = re.sub(r"^https?://[^/]+", "", uri.strip()).split("?", 1)[0].split("#", 1)[0]
    idx = path.find(marker)
    return path[idx:] if idx >= 0 else ""


@dataclass(frozen=True)
class PrearchiveRef:
    """One prearchive session: project (or ``Unassigned``), timestamp folder and session folder."""

    project: str
    timestamp: str
    folder: str

    @property
    def path(self) -> str:
        """``/prearchive/projects/P/TS/FOLDER`` (the form XNAT's ``src`` parameters and listings use)."""
        return f"/prearchive/projects/{seg(self.project)}/{seg(self.timestamp)}/{seg(self.folder)}"

    @property
    def uri(self) -> str:
        """The REST URI, ``/data/prearchive/projects/P/TS/FOLDER``."""
        return "/data" + self.path

    @classmethod
    def parse(cls, uri: str) -> PrearchiveRef:
        """Parse a prearchive URI (with or without ``/data``, or a full URL). Raises ``ValueError``."""
        match = _PREARC.fullmatch(_path_from(uri, "/prearchive/projects/"))
        if not match:
            raise ValueError(f"not a prearchive session URI: {uri!r}")
        project, timestamp, folder = (unquote(g) for g in match.groups())
        return cls(project, timestamp, folder)

    def __str__(self) -> str:
        return self.path


@dataclass(frozen=True)
class ArchiveRef:
    """An archived session as returned by commit/archive: ``/data/archive/projects/P/subjects/S/experiments/E``."""

    project: str
    subject: str
    experiment: str

    @property
    def uri(self) -> str:
        p, s, e = seg(self.project), seg(self.subject), seg(self.experiment)
        return f"/data/archive/projects/{p}/subjects/{s}/experiments/{e}"

    @classmethod
    def parse(cls, uri: str) -> ArchiveRef:
        match = _ARCHIVE.fullmatch(_path_from(uri, "/projects/"))
        if not match:
            raise ValueError(f"not an archive session URI: {uri!r}")
        project, subject, experiment = (unquote(g) for g in match.groups())
        return cls(project, subject, experiment)


def project_of_uri(uri: str) -> str | None:
    """The project segment of an importer answer (prearchive, archive or direct-archive URI)."""
    for pattern in (r"/prearchive/projects/([^/]+)", r"/projects/([^/]+)", r"/direct-archive/([^/]+)"):
        match = re.search(pattern, uri)
        if match:
            return unquote(match.group(1))
    return None


# --- rows ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Project:
    id: str
    secondary_id: str = ""
    name: str = ""
    description: str = ""

    @classmethod
    def from_row(cls, row: Mapping[str, str]) -> Project:
        return cls(
            id=_get(row, "ID", "id"),
            secondary_id=_get(row, "secondary_ID", "secondary_id"),
            name=_get(row, "name"),
            description=_get(row, "description"),
        )


@dataclass(frozen=True)
class Subject:
    id: str
    label: str
    project: str
    uri: str = ""

    @classmethod
    def from_row(cls, row: Mapping[str, str]) -> Subject:
        return cls(_get(row, "ID"), _get(row, "label"), _get(row, "project"), _get(row, "URI"))


@dataclass(frozen=True)
class Experiment:
    id: str
    label: str
    project: str
    date: str = ""
    xsi_type: str = ""
    uri: str = ""

    @classmethod
    def from_row(cls, row: Mapping[str, str]) -> Experiment:
        return cls(
            _get(row, "ID"), _get(row, "label"), _get(row, "project"), _get(row, "date"), _get(row, "xsiType"),
            _get(row, "URI"),
        )  # fmt: skip


@dataclass(frozen=True)
class Scan:
    """A scan of an archived (or prearchived) session; ``file_count`` summed over its resources when asked."""

    id: str
    type: str = ""
    series_description: str = ""
    xsi_type: str = ""
    quality: str = ""
    uri: str = ""
    file_count: int | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, str]) -> Scan:
        return cls(
            id=_get(row, "ID"),
            type=_get(row, "type"),
            series_description=_get(row, "series_description"),
            xsi_type=_get(row, "xsiType"),
            quality=_get(row, "quality"),
            uri=_get(row, "URI"),
        )


@dataclass(frozen=True)
class ResourceInfo:
    """A resource (file collection) row: label, file count and size when the listing has them."""

    label: str
    file_count: int | None = None
    file_size: int | None = None
    format: str = ""
    id: str = ""

    @classmethod
    def from_row(cls, row: Mapping[str, str]) -> ResourceInfo:
        return cls(
            label=_get(row, "label"),
            file_count=_int(_get(row, "file_count")),
            file_size=_int(_get(row, "file_size")),
            format=_get(row, "format"),
            id=_get(row, "xnat_abstractresource_id"),
        )


@dataclass(frozen=True)
class RemoteFile:
    name: str
    size: int | None = None
    uri: str = ""
    digest: str = ""

    @classmethod
    def from_row(cls, row: Mapping[str, str]) -> RemoteFile:
        return cls(_get(row, "Name"), _int(_get(row, "Size")), _get(row, "URI"), _get(row, "digest"))


LOCKED_PREFIX = "_"


@dataclass(frozen=True)
class PrearchiveSession:
    """A row of the prearchive listing (xnat-api.md 4.1). ``study_uid`` is XNAT's ``tag`` column."""

    project: str
    timestamp: str
    folder: str
    name: str
    subject: str
    study_uid: str
    status: str
    url: str
    uploaded: str = ""
    lastmod: str = ""
    scan_date: str = ""
    autoarchive: str = ""
    prevent_anon: bool = False
    prevent_auto_commit: bool = False
    source: str = ""
    visit: str = ""
    protocol: str = ""
    timezone: str = ""

    @property
    def ref(self) -> PrearchiveRef:
        return PrearchiveRef(self.project, self.timestamp, self.folder)

    @property
    def uri(self) -> str:
        return self.ref.uri

    @property
    def locked(self) -> bool:
        """In-process statuses start with ``_``: actions that respect locks fail with 409 then."""
        return self.status.startswith(LOCKED_PREFIX)

    @classmethod
    def from_row(cls, row: Mapping[str, str]) -> PrearchiveSession:
        return cls(
            project=_get(row, "project"),
            timestamp=_get(row, "timestamp"),
            folder=_get(row, "folderName"),
            name=_get(row, "name"),
            subject=_get(row, "subject"),
            study_uid=_get(row, "tag"),
            status=_get(row, "status"),
            url=_get(row, "url"),
            uploaded=_get(row, "uploaded"),
            lastmod=_get(row, "lastmod"),
            scan_date=_get(row, "scan_date"),
            autoarchive=_get(row, "autoarchive"),
            prevent_anon=_get(row, "prevent_anon").lower() == "true",
            prevent_auto_commit=_get(row, "prevent_auto_commit").lower() == "true",
            source=_get(row, "SOURCE"),
            visit=_get(row, "VISIT"),
            protocol=_get(row, "PROTOCOL"),
            timezone=_get(row, "TIMEZONE"),
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form (for ``--json`` output)."""
        from dataclasses import asdict

        return {**asdict(self), "uri": self.uri}
