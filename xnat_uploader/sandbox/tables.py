"""XNAT's table representations (xnat-api.md 1.3): JSON ``ResultSet``, XML, CSV, with ``sortBy``.

Every cell becomes a string (None -> ``""``, booleans -> ``true``/``false``), as XFTTable does.
``totalRecords`` is added only for the listings where XNAT has it, after ``Result`` with XNAT's
``, "totalRecords": "N"`` spacing.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from xml.sax.saxutils import escape

from xnat_uploader.sandbox.httpd import HttpError, Request, Response


def cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def table(
    request: Request,
    rows: Sequence[dict[str, object]],
    columns: Sequence[str] | None = None,
    *,
    total: bool = False,
    default: str = "json",
    title: str = "",
    selectable: bool = False,
) -> Response:
    """Render ``rows`` in the requested ``format`` (json by default for listing resources).

    ``selectable``: the listing honours ``columns=a,b`` (XNAT's search-based listings of projects,
    subjects, experiments and scans do; resource, file and prearchive listings ignore it, and
    xnatpy relies on that for resources).
    """
    columns = list(columns or (rows[0].keys() if rows else []))
    wanted = request.param("columns") if selectable else None
    if wanted:
        extra = [c for c in wanted.split(",") if c and c not in columns]
        columns = [c for c in wanted.split(",") if c] + (["URI"] if "URI" in columns and "URI" not in extra else [])
        columns = list(dict.fromkeys(columns))
    data = [{c: cell(r.get(c)) for c in columns} for r in rows]
    sort_by = request.param("sortBy")
    if sort_by:
        keys = [k for k in sort_by.split(",") if k]
        data.sort(
            key=lambda r: tuple(r.get(k, "") for k in keys),
            reverse=(request.param("sortOrder") or "").upper() == "DESC",
        )
    fmt = (request.param("format") or default).lower()
    if fmt == "json":
        body = '{"ResultSet":{"Result":' + json.dumps(data, separators=(",", ":"))
        if total:
            body += f', "totalRecords": "{len(data)}"'
        if title:
            body += f', "title": {json.dumps(title)}'
        return Response(200, (body + "}}").encode(), "application/json;charset=UTF-8")
    if fmt == "xml":
        return Response(200, xml_table(data, columns, title).encode(), "text/xml;charset=UTF-8")
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        for r in data:
            writer.writerow([r[c] for c in columns])
        return Response(200, out.getvalue().encode(), "text/csv;charset=UTF-8")
    if fmt == "html":
        head = "".join(f"<th>{escape(c)}</th>" for c in columns)
        body_rows = "".join("<tr>" + "".join(f"<td>{escape(r[c])}</td>" for c in columns) + "</tr>" for r in data)
        page = f"<html><body><table><tr>{head}</tr>{body_rows}</table></body></html>"
        return Response(200, page.encode(), "text/html;charset=UTF-8")
    raise HttpError(415, f"Unsupported format {fmt}")


def xml_table(data: Sequence[dict[str, str]], columns: Sequence[str], title: str = "") -> str:
    title_attr = f' title="{escape(title)}"' if title else ""
    cols = "".join(f"<column>{escape(c)}</column>" for c in columns)
    rows = "".join(
        "<row>" + "".join(f"<cell>{escape(r[c].replace(chr(10), ' '))}</cell>" for c in columns) + "</row>\n"
        for r in data
    )
    return (
        f'<ResultSet totalRecords="{len(data)}"><results{title_attr}><columns>{cols}</columns>\n'
        f"<rows>{rows}</rows></results></ResultSet>"
    )


def uri_list(uris: Sequence[str], request: Request | None = None) -> Response:
    """The importer's answer: ``text/uri-list``, every URI CRLF-terminated; ``format=txt`` with one
    URI gives it bare as ``text/plain`` (xnat-api.md 3.4)."""
    fmt = (request.param("format") or "").lower() if request is not None else ""
    if fmt == "txt" and len(uris) == 1:
        return Response(200, uris[0].encode(), "text/plain;charset=UTF-8")
    body = "".join(f"{u}\r\n" for u in uris)
    return Response(200, body.encode(), "text/plain;charset=UTF-8" if fmt == "txt" else "text/uri-list")
