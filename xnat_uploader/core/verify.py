"""Prove what arrived: compare, per series, what was sent with what the server holds for the session.

XNAT names a session's scans after the SeriesNumber, and reports file counts per scan resource; a
prearchive session must be built (READY) for its scans to be listed. So verification compares the
number of instances sent per series number with the scan's file count. A series that came up short
is re-sent whole (re-sent instances replace themselves), which is safe with XNAT's merge rules.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from xnat_uploader.core.queue.store import FileRow
from xnat_uploader.core.redact import redact_path
from xnat_uploader.core.xnat.listing import list_prearchive_scans, list_scans
from xnat_uploader.core.xnat.models import ArchiveRef, PrearchiveRef, Scan

if TYPE_CHECKING:
    from xnat_uploader.core.xnat.session import XnatSession

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SeriesCheck:
    scan_id: str  # the XNAT scan ID (the SeriesNumber), "" when the series had no number
    series_uids: tuple[str, ...]
    description: str
    expected: int
    found: int

    @property
    def ok(self) -> bool:
        return self.found >= self.expected

    @property
    def missing(self) -> int:
        return max(0, self.expected - self.found)


@dataclass
class VerifyResult:
    uri: str
    series: list[SeriesCheck] = field(default_factory=list)
    extra_scans: list[str] = field(default_factory=list)  # scans on the server we did not send (merge)

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.series)

    @property
    def expected(self) -> int:
        return sum(s.expected for s in self.series)

    @property
    def found(self) -> int:
        return sum(min(s.found, s.expected) for s in self.series)

    def missing_series_uids(self) -> set[str]:
        return {uid for s in self.series if not s.ok for uid in s.series_uids}

    def summary(self) -> str:
        bad = [s for s in self.series if not s.ok]
        if not bad:
            return f"verified: {len(self.series)}/{len(self.series)} series, {self.found} files"
        parts = ", ".join(f"scan {s.scan_id or '?'} {s.found}/{s.expected}" for s in bad)
        return f"incomplete: {len(bad)} of {len(self.series)} series short ({parts})"


def server_scans(session: XnatSession, uri: str) -> list[Scan]:
    """The scans (with file counts) of the session at ``uri``: a prearchive or an archive URI."""
    try:
        ref = PrearchiveRef.parse(uri)
    except ValueError:
        archive = ArchiveRef.parse(uri)
        return list_scans(session, archive.uri)
    return list_prearchive_scans(session, ref)


def compare(sent: Iterable[FileRow], scans: Iterable[Scan], uri: str = "") -> VerifyResult:
    """Per series number: how many instances were sent, how many files the server's scan holds."""
    expected: Counter[str] = Counter()
    uids: dict[str, set[str]] = defaultdict(set)
    for f in sent:
        key = "" if f.series_number is None else str(f.series_number)
        expected[key] += 1
        uids[key].add(f.series_uid)
    found = {s.id: s for s in scans}
    result = VerifyResult(uri)
    for key in sorted(expected, key=_scan_order):
        scan = found.get(key)
        result.series.append(
            SeriesCheck(
                scan_id=key,
                series_uids=tuple(sorted(uids[key])),
                description=scan.series_description if scan else "",
                expected=expected[key],
                found=(scan.file_count or 0) if scan else 0,
            )
        )
    result.extra_scans = sorted((k for k in found if k not in expected), key=_scan_order)
    return result


def verify(session: XnatSession, uri: str, sent: Iterable[FileRow]) -> VerifyResult:
    """Ask the server what the session holds and compare it with ``sent``."""
    result = compare(sent, server_scans(session, uri), uri)
    log.info("Verified %s: %s", redact_path(uri), result.summary())
    return result


def _scan_order(key: str) -> tuple[int, str]:
    return (int(key), "") if key.isdigit() else (1 << 30, key)
