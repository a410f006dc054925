"""A streaming ``multipart/form-data`` reader: file parts go straight to disk, fields to memory.

The stdlib's ``cgi`` module is deprecated (removed in 3.13) and ``email`` parses whole messages in
memory, so this reads the body in blocks and scans for the boundary itself.

Memory and disk stay bounded whatever the body: the preamble before the first boundary is skipped as it
streams, a part's header block may not exceed :data:`MAX_PART_HEADERS` (commons-fileupload's limit, which
XNAT's upload parsing uses), a form field :data:`MAX_FIELD` (a file part has no limit: it is on disk), and
a body :data:`MAX_PARTS` parts.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from xnat_uploader.sandbox.httpd import Body, HttpError

_DISPOSITION = re.compile(r'(\w+)\*?="?([^";]*)"?')
MAX_PART_HEADERS = 10240  # commons-fileupload's HEADER_PART_SIZE_MAX
MAX_FIELD = 16 << 20  # the same limit as a form body (Body.read_all)
MAX_PARTS = 10000  # each file part is a temporary file: a body of tiny parts must not fill the disk's inodes


@dataclass
class Part:
    name: str
    filename: str | None
    content_type: str
    value: str = ""  # for form fields
    path: Path | None = None  # for file parts
    size: int = 0


def boundary_of(content_type_header: str) -> bytes:
    m = re.search(r'boundary="?([^";]+)"?', content_type_header)
    if not m:
        raise HttpError(400, "Multipart request without a boundary")
    return m.group(1).encode("latin-1")


def parse(body: Body, content_type_header: str, new_file: Callable[[], BinaryIO], block: int = 1 << 20) -> list[Part]:
    """Read every part of ``body``; file parts are written to the files ``new_file`` opens."""
    delim = b"\r\n--" + boundary_of(content_type_header)
    buf = b"\r\n" + body.read(block)  # the leading CRLF lets the first boundary match like the others
    parts: list[Part] = []
    start = buf.find(delim)
    while start < 0:
        more = body.read(block)
        if not more:
            raise HttpError(400, "Malformed multipart body")
        buf = buf[-len(delim) :] + more  # the preamble is skipped: only a boundary's possible start is kept
        start = buf.find(delim)
    buf = buf[start + len(delim) :]
    while True:
        while len(buf) < 2:
            more = body.read(block)
            if not more:
                return parts
            buf += more
        if buf.startswith(b"--"):
            body.drain()
            return parts
        while (end := buf.find(b"\r\n\r\n", 0, MAX_PART_HEADERS + 4)) < 0:
            if len(buf) > MAX_PART_HEADERS + 4:
                raise HttpError(400, f"Malformed multipart headers: more than {MAX_PART_HEADERS} bytes")
            more = body.read(block)
            if not more:
                raise HttpError(400, "Malformed multipart headers")
            buf += more
        head, buf = buf[:end], buf[end + 4 :]
        if len(parts) >= MAX_PARTS:
            raise HttpError(400, f"Multipart body with more than {MAX_PARTS} parts")
        part = _part_from_headers(head.decode("utf-8", "replace"))
        out = None
        chunks: list[bytes] = []
        if part.filename is not None:
            out = new_file()  # closed below after the part is complete
            part.path = Path(out.name)
        try:
            while True:
                idx = buf.find(delim)
                if idx >= 0:
                    data, buf = buf[:idx], buf[idx + len(delim) :]
                    _emit(data, out, chunks, part)
                    break
                keep = len(delim)  # the tail may hold the start of the delimiter
                data, buf = buf[:-keep], buf[-keep:]
                _emit(data, out, chunks, part)
                more = body.read(block)
                if not more:
                    raise HttpError(400, "Malformed multipart body: no closing boundary")
                buf += more
        finally:
            if out is not None:
                out.close()
        if out is None:
            part.value = b"".join(chunks).decode("utf-8", "replace")
        parts.append(part)


def _emit(data: bytes, out, chunks: list[bytes], part: Part) -> None:  # type: ignore[no-untyped-def]
    part.size += len(data)
    if out is not None:
        out.write(data)
    elif part.size > MAX_FIELD:
        raise HttpError(413, "Request body too large for this resource")
    else:
        chunks.append(data)


def _part_from_headers(text: str) -> Part:
    name, filename, ctype = "", None, "text/plain"
    for line in text.split("\r\n"):
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "content-disposition":
            attrs = dict((k.lower(), v) for k, v in _DISPOSITION.findall(value))
            name = attrs.get("name", "")
            filename = attrs.get("filename")
        elif key == "content-type":
            ctype = value.strip()
    return Part(name, filename, ctype)
