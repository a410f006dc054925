"""XNAT's series import filters: read them where XNAT publishes them, and tell which series they will drop.

A file that the site-wide or the project's series import filter rejects is not stored: the import answers
200 with an empty body (xnat-api.md 14). Knowing the filter before sending lets the plan name those series.
The rules, from XNAT 1.8.11's source (``libs/dicomtools``: ``DicomFilterService``,
``RegExBasedSeriesImportFilter``; applied in ``web``'s ``GradualDicomImporter.call``):

* The filters live in the config service, tool ``seriesImportFilter``, path ``config``: site-wide at
  ``/data/config/seriesImportFilter/config``, per project at ``/data/projects/P/config/seriesImportFilter/config``
  (readable by anyone who can read the project). The row's ``status`` (``enabled``/``disabled``) decides
  whether it acts; ``contents`` is JSON, ``{"mode": "blacklist"|"whitelist"|"modalityMap", "list": "..."}``.
* ``list`` holds one regular expression per line (lines trimmed; blank lines and ``#`` comments skipped).
  A line ``[Keyword]`` or ``[gggg,eeee]`` makes the following lines test that DICOM field; before any, they
  test SeriesDescription. A pattern matches when it is *found* anywhere in the value (not a full match),
  ignoring case; ``EXISTS`` and ``!EXISTS`` test whether the field is present, and an absent field matches
  nothing else.
* whitelist: a file is kept when any pattern matches (so an empty whitelist keeps nothing); blacklist: it is
  dropped when any pattern matches. A file is kept only if the site's filter and the project's both keep it.
* modalityMap filters are JavaScript expressions XNAT evaluates; they are reported, not predicted.

The scan reads a field as ``""`` whether it is absent or empty; the prediction counts it as absent.
Pure functions apart from :func:`read_series_filters` (two GETs); any thread.
"""

from __future__ import annotations

import logging
import operator
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from xnat_uploader.core.xnat import errors as E
from xnat_uploader.core.xnat.models import parse_json, parse_result_set, seg

if TYPE_CHECKING:
    from xnat_uploader.core.dicom.records import InstanceRecord
    from xnat_uploader.core.xnat.session import XnatSession

log = logging.getLogger(__name__)

SITE = ""  # the scope of the site-wide filter
DEFAULT_FIELD = "SeriesDescription"
_TAG = re.compile(r"^\(?([0-9A-Fa-f]{4}),([0-9A-Fa-f]{4})\)?$")

# What the scan knows of each instance, by DICOM keyword (InstanceRecord's attribute).
SCAN_FIELDS = {
    "SeriesDescription": "series_description",
    "Modality": "modality",
    "ImageType": "image_type",
    "BurnedInAnnotation": "burned_in_annotation",
    "SeriesNumber": "series_number",
    "SeriesInstanceUID": "series_uid",
    "StudyDescription": "study_description",
    "StudyInstanceUID": "study_uid",
    "StudyDate": "study_date",
    "StudyTime": "study_time",
    "AccessionNumber": "accession_number",
    "SOPClassUID": "sop_class_uid",
    "SOPInstanceUID": "sop_instance_uid",
    "InstanceNumber": "instance_number",
    "PatientID": "patient_id",
    "PatientName": "patient_name",
}


@dataclass(frozen=True)
class SeriesFilter:
    """One enabled filter. ``scope`` is the project ID, or :data:`SITE`.

    ``rules`` are (DICOM keyword, patterns); ``problem`` says why its effect cannot be predicted ("" when it can).
    """

    scope: str
    mode: str
    rules: tuple[tuple[str, tuple[str, ...]], ...] = ()
    problem: str = ""

    @property
    def where(self) -> str:
        return "the site-wide series import filter" if self.scope == SITE else "the project's series import filter"

    @property
    def fields(self) -> frozenset[str]:
        return frozenset(name for name, _ in self.rules)

    def keeps(self, values: Mapping[str, str | None]) -> bool | None:
        """Whether XNAT keeps a file with these header ``values`` (keyword -> text, ``None`` for an absent field).

        ``None`` when it cannot be told: a modality map, an invalid pattern, or a field missing from ``values``
        (one the caller did not read).
        """
        if self.problem or any(name not in values for name in self.fields):
            return None
        for name, patterns in self.rules:
            value = values[name]
            if any(_matches(p, value) for p in patterns):
                return self.mode == "whitelist"
        return self.mode == "blacklist"


def _matches(pattern: str, value: str | None) -> bool:
    if pattern == "EXISTS":
        return value is not None
    if pattern == "!EXISTS":
        return value is None
    # Java's CASE_INSENSITIVE alone folds ASCII only, and its \w, \d, \s are ASCII: hence re.ASCII.
    return value is not None and re.search(pattern, value, re.IGNORECASE | re.ASCII) is not None


def parse_filter(contents: str, scope: str = SITE) -> SeriesFilter:
    """A filter from the config row's ``contents`` (JSON), as ``DicomFilterService.buildSeriesImportFilter``."""
    try:
        data = parse_json(contents) if contents.strip() else {"mode": "blacklist", "list": ""}
        while isinstance(data, dict) and isinstance(data.get("contents", data.get("content")), str):
            data = parse_json(data.get("contents", data.get("content")))  # a filter saved inside another
    except ValueError:
        return SeriesFilter(scope, "", problem="its settings are not readable")
    if not isinstance(data, dict):
        return SeriesFilter(scope, "", problem="its settings are not readable")
    mode = str(data.get("mode", ""))
    if mode == "modalityMap":
        return SeriesFilter(scope, mode, problem="it sorts series by modality with rules only XNAT can evaluate")
    if mode not in ("blacklist", "whitelist"):
        return SeriesFilter(scope, mode, problem=f"its mode '{mode}' is unknown")
    try:
        rules = parse_list(str(data.get("list") or ""))
    except ValueError as exc:
        return SeriesFilter(scope, mode, problem=str(exc))
    return SeriesFilter(scope, mode, rules)


def parse_list(text: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """``list`` -> (keyword, patterns) per field, in first-seen order (``parsePersistedFilters`` and
    ``createFilterConfiguration``). Raises ``ValueError`` for an unknown field or a pattern that does not compile."""
    # Saved by some clients with a literal backslash-n between lines instead of a newline.
    lines = text.split("\\n") if "\\n" in text else text.split("\n")
    rules: dict[str, list[str]] = {DEFAULT_FIELD: []}
    current = DEFAULT_FIELD
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = field_keyword(line[1:-1])
            rules.setdefault(current, [])
            continue
        if line not in ("EXISTS", "!EXISTS"):
            try:
                re.compile(line, re.IGNORECASE | re.ASCII)
            except re.error:
                raise ValueError(f"its pattern '{line}' is not understood here") from None
        rules[current].append(line)
    return tuple((name, tuple(patterns)) for name, patterns in rules.items() if patterns or name != DEFAULT_FIELD)


def field_keyword(name: str) -> str:
    """``SeriesDescription``, ``0008,103E`` or ``(0008,103E)`` -> the DICOM keyword (``ValueError`` if unknown)."""
    from pydicom.datadict import dictionary_has_tag, keyword_for_tag

    name = name.strip()
    match = _TAG.match(name)
    if match:
        tag = int(match.group(1) + match.group(2), 16)
        keyword = keyword_for_tag(tag) if dictionary_has_tag(tag) else ""
        if not keyword:
            raise ValueError(f"its field {name} is not a known DICOM field")
        return str(keyword)
    from pydicom.datadict import tag_for_keyword

    if tag_for_keyword(name) is None:
        raise ValueError(f"its field {name} is not a known DICOM field")
    return name


@dataclass(frozen=True)
class SeriesFilters:
    """The filters that act on uploads into one project: the site's, then the project's (enabled ones only)."""

    project: str = ""
    filters: tuple[SeriesFilter, ...] = ()

    def drops(self, values: Mapping[str, str | None]) -> SeriesFilter | None:
        """The filter that certainly drops a file with these ``values``, else ``None`` (kept, or not known)."""
        for f in self.filters:
            if f.keeps(values) is False:
                return f
        return None

    def unpredictable(self) -> list[str]:
        """Plain sentences about filters whose effect cannot be told before sending."""
        return [f"{f.where} may drop series: {f.problem}." for f in self.filters if f.problem]


@dataclass(frozen=True)
class FilteredSeries:
    """A series (or part of one) a filter will drop, for the plan's warning and the job's options."""

    series_uid: str
    number: int | None
    description: str
    files: int
    total: int
    reason: str

    @property
    def name(self) -> str:
        return series_name(self.number, self.description)

    def as_option(self) -> dict[str, object]:
        return {
            "series_uid": self.series_uid, "number": self.number, "description": self.description,
            "files": self.files, "total": self.total, "reason": self.reason,
        }  # fmt: skip


def series_name(number: int | None, description: str) -> str:
    """``series 4 "Localizer"`` as a coordinator sees it in the tree."""
    num = f"series {number}" if number is not None else "a series without number"
    return f'{num} "{description}"' if description else num


def predict(filters: SeriesFilters, records: Iterable[InstanceRecord]) -> list[FilteredSeries]:
    """Per series, the files ``filters`` will certainly drop (series in first-seen order).

    Called by the plan on every edit of the form, so each distinct combination of the fields the filters
    read is judged once (the instances of a series nearly always share it): 100,000 instances take ~50 ms.
    """
    if not filters.filters:
        return []
    fields = sorted(frozenset().union(*(f.fields for f in filters.filters)))
    known = [name for name in fields if name in SCAN_FIELDS]
    read = operator.attrgetter(*(SCAN_FIELDS[name] for name in known)) if known else (lambda rec: ())
    judged: dict[object, SeriesFilter | None] = {}
    seen: dict[str, list[Any]] = {}  # series uid -> [number, description, dropped, total, reason]
    for rec in records:
        entry = seen.get(rec.series_uid)
        if entry is None:
            entry = seen[rec.series_uid] = [rec.series_number, rec.series_description, 0, 0, ""]
        entry[3] += 1
        key = read(rec)
        if key not in judged:
            raw = (key,) if len(known) == 1 else key  # attrgetter of one field gives the value itself
            values = {name: None if v in (None, "") else str(v) for name, v in zip(known, raw, strict=True)}
            judged[key] = filters.drops(values)
        dropper = judged[key]
        if dropper is not None:
            entry[2] += 1
            entry[4] = dropper.where
    return [
        FilteredSeries(uid, number, description, dropped, total, reason)
        for uid, (number, description, dropped, total, reason) in seen.items()
        if dropped
    ]


def describe(dropped: list[FilteredSeries]) -> str:
    """A few plain sentences for the plan: which series XNAT will not keep, and why."""
    if not dropped:
        return ""
    files = sum(s.files for s in dropped)
    parts = "; ".join(s.name + ("" if s.files == s.total else f" ({s.files} of {s.total} files)") for s in dropped)
    series = "1 series" if len(dropped) == 1 else f"{len(dropped)} series"
    where = " and ".join(sorted({s.reason for s in dropped}))
    return (
        f"XNAT will not keep {series} ({files} files) of this upload: {where} (a rule on the server that says "
        f"which series it accepts) drops {parts}. They are sent, but not stored; ask the project owner if you "
        "need them."
    )


def read_series_filters(session: XnatSession, project: str) -> SeriesFilters:
    """The enabled site-wide and project filters, read from XNAT's config service.

    Missing (404, 204), unreadable (401, 403) or disabled filters are left out: the upload still works, the
    prediction is only less complete. Other failures (server down) raise as usual.
    """
    found: list[SeriesFilter] = []
    for scope, path in (
        (SITE, "/data/config/seriesImportFilter/config"),
        (project, f"/data/projects/{seg(project)}/config/seriesImportFilter/config"),
    ):
        row = _config_row(session, path)
        if row is None or str(row.get("status", "")).lower() not in ("enabled", "true"):
            continue
        found.append(parse_filter(str(row.get("contents") or ""), scope))
    return SeriesFilters(project, tuple(found))


def _config_row(session: XnatSession, path: str) -> dict[str, str] | None:
    params = {"format": "json", "accept-not-found": "true"}
    try:
        with session.request(
            "GET", path, params=params, expect=(200, 204), action="reading the series import filter", project_404=False
        ) as resp:
            if resp.status_code == 204 or not resp.content.strip():
                return None
            rows = parse_result_set(parse_json(resp.content))
    except (
        E.NotFoundError, E.PermissionDeniedError, E.AuthenticationError, E.ProjectAccessError,
        E.UnexpectedResponseError, ValueError,
    ) as exc:  # fmt: skip
        log.info("Series import filter not readable at %s: %s", path.split("/config/")[0], type(exc).__name__)
        return None
    return rows[0] if rows else None
