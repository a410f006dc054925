"""Series import filters on arrival: the sandbox drops the files XNAT's filters would (xnat-api.md 14).

XNAT's gradual importer (also used for each entry of a DICOM-zip) checks the site-wide filter and the
project's before storing a file; a rejected file is not stored and adds no URI to the answer, so a
request whose every file was rejected answers 200 with an empty body. The filters are the config
service's (:mod:`xnat_uploader.sandbox.config`; tests set them with
:meth:`SandboxServer.set_series_filter`); they are parsed and matched with XNAT's rules
(:mod:`xnat_uploader.core.xnat.series_filter`), with the values read from the received file itself, so
any DICOM field works. A modalityMap filter is served but not applied: its rules are JavaScript only
XNAT evaluates.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pydicom
from pydicom.multival import MultiValue

from xnat_uploader.core.xnat.series_filter import SITE, SeriesFilter, parse_filter
from xnat_uploader.sandbox.store import UNASSIGNED

if TYPE_CHECKING:
    from xnat_uploader.sandbox.app import App
    from xnat_uploader.sandbox.dicomio import DicomInfo

MAX_VALUE = 300  # XNAT reads each value with getValueAsString(charset, 300)


def active(app: App, project: str) -> list[SeriesFilter]:
    """The enabled filters that act on a file for ``project`` (the project's only once it is identified)."""
    out = []
    for key, scope in ((None, SITE), (project, project)):
        if key == UNASSIGNED:
            continue
        config = app.series_filters.get(key)
        if config is not None and config.enabled:  # type: ignore[attr-defined]
            out.append(parse_filter(config.contents, scope))  # type: ignore[attr-defined]
    return out


def keeps(app: App, project: str, info: DicomInfo, path: Path) -> bool:
    """False when the site's or the project's filter rejects the file at ``path``."""
    filters = active(app, project)
    if not filters:
        return True
    fields = sorted(frozenset().union(*(f.fields for f in filters)))
    values = read_fields(path, fields)
    return all(f.keeps(values) is not False for f in filters)


def read_fields(path: Path, fields: list[str]) -> dict[str, str | None]:
    """Each field's value as XNAT's filter sees it: text (several values joined by a backslash, at most 300
    characters), ``""`` for a present but empty one, ``None`` for an absent one."""
    ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=fields, force=True)
    out: dict[str, str | None] = {}
    for name in fields:
        if name not in ds:
            out[name] = None
            continue
        value = ds[name].value
        if value is None:
            text = ""
        elif isinstance(value, MultiValue | list | tuple):
            text = "\\".join(str(v) for v in value)
        else:
            text = str(value)
        out[name] = text.strip()[:MAX_VALUE]
    return out
