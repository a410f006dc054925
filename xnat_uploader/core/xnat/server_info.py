"""What the server is: its XNAT version and the features that follow from it (``/xapi/siteConfig/buildInfo``)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from xnat_uploader.core.xnat import errors as E
from xnat_uploader.core.xnat.models import parse_json

if TYPE_CHECKING:
    from xnat_uploader.core.xnat.session import XnatSession

DIRECT_ARCHIVE_MIN = (1, 8, 3)
IGNORE_UNPARSABLE_MIN = (1, 8, 3)

_VERSION = re.compile(r"\s*v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:\.(\d+))?")


def parse_version(text: str | None) -> tuple[int, ...] | None:
    """``"1.8.10"`` -> ``(1, 8, 10)``; ``"1.9.0-SNAPSHOT"`` -> ``(1, 9, 0)``; ``"Unknown"``/empty -> ``None``.

    Pure; any thread.
    """
    if not text:
        return None
    match = _VERSION.match(text)
    if not match:
        return None
    parts = [int(p) for p in match.groups() if p is not None]
    while len(parts) < 3:
        parts.append(0)
    return tuple(parts)


def version_text(version: tuple[int, ...]) -> str:
    return ".".join(str(p) for p in version)


@dataclass(frozen=True)
class ServerInfo:
    """The server's build information. Immutable."""

    version_string: str
    version: tuple[int, ...] | None
    build_number: str = ""
    build_date: str = ""
    raw: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def at_least(self, minimum: tuple[int, ...]) -> bool:
        """True when the version is known and >= ``minimum``."""
        return self.version is not None and self.version >= minimum

    @property
    def supports_direct_archive(self) -> bool:
        """``Direct-Archive=true`` on the importer needs XNAT 1.8.3+."""
        return self.at_least(DIRECT_ARCHIVE_MIN)

    @property
    def supports_ignore_unparsable(self) -> bool:
        """``Ignore-Unparsable=true`` on DICOM-zip needs XNAT 1.8.3+."""
        return self.at_least(IGNORE_UNPARSABLE_MIN)

    def require(self, minimum: tuple[int, ...], feature: str) -> None:
        """Raise :class:`ServerTooOldError` unless the server is at least ``minimum``."""
        if not self.at_least(minimum):
            raise E.server_too_old(feature, version_text(minimum), self.version_string or None)


def parse_build_info(data: Any) -> ServerInfo:
    """Build a :class:`ServerInfo` from the buildInfo JSON (every value a string; "Unknown" when unset)."""
    if isinstance(data, str | bytes):
        data = parse_json(data)
    if not isinstance(data, dict):
        raise E.UnexpectedResponseError(
            "The server's build information is not in the expected form.", "Is this an XNAT server?"
        )
    raw = {str(k): "" if v is None else str(v) for k, v in data.items()}
    version = raw.get("version", "")
    if version.lower() == "unknown":
        version = ""
    return ServerInfo(
        version_string=version,
        version=parse_version(version),
        build_number=raw.get("buildNumber", ""),
        build_date=raw.get("buildDate", ""),
        raw=raw,
    )


def get_server_info(session: XnatSession) -> ServerInfo:
    """Ask the server for its version. Thread-safe (one GET).

    ``/xapi/siteConfig/buildInfo`` exists from XNAT 1.7; on a 404 the 1.6-era ``/data/version`` (plain text) is
    tried, as pyxnat does; if that fails too the version is reported as unknown rather than failing: the
    caller decides what to offer.
    """
    try:
        resp = session.request("GET", "/xapi/siteConfig/buildInfo", action="reading the server version")
    except E.NotFoundError:
        return _legacy_version(session)
    with resp:
        try:
            return parse_build_info(parse_json(resp.content))
        except ValueError:
            raise E.UnexpectedResponseError(
                "The server's build information is not valid JSON.",
                "Check the server address; a proxy or login portal may be answering instead of XNAT.",
                status=resp.status_code,
            ) from None


def _legacy_version(session: XnatSession) -> ServerInfo:
    try:
        with session.request("GET", "/data/version", action="reading the server version", retries=0) as resp:
            text = resp.text.strip()
    except E.XnatError:
        return ServerInfo(version_string="", version=None)
    version = parse_version(text) if len(text) < 40 and "<" not in text else None
    return ServerInfo(version_string=text if version else "", version=version)
