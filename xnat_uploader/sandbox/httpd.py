"""The sandbox's HTTP layer: a keep-alive ``ThreadingHTTPServer``, request/response objects and routing.

Written on the standard library only, with what a test server needs to be faithful and fast:

* ``TCP_NODELAY`` on every accepted socket (without it small request/response pairs wait ~40 ms
  for delayed ACKs, and every upload test looks far slower than reality);
* request bodies are streamed (``Content-Length`` or chunked transfer-encoding, decoded here) and
  never buffered whole in memory; their framing is checked as Tomcat checks it (a negative, listed,
  repeated or huge ``Content-Length``, a bad chunk size: 400), never trusted;
* every response carries ``Content-Length`` so HTTP/1.1 keep-alive always works;
* error bodies look like XNAT's (:mod:`.responses`).
"""

from __future__ import annotations

import contextlib
import email.parser
import http.client
import io
import logging
import re
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterable
from email.utils import formatdate
from http import HTTPStatus
from http.client import HTTPMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, BinaryIO
from urllib.parse import parse_qsl, unquote, urlsplit

from xnat_uploader.sandbox.responses import REASONS, DropConnection, HttpError, Response

__all__ = [
    "Body", "DropConnection", "HttpError", "Request", "RequestHandler", "Response", "Router", "SandboxHTTPServer",
    "read_headers",
]  # fmt: skip

log = logging.getLogger(__name__)

CHUNK = 1 << 20  # 1 MiB reads: large enough that Python overhead per read is negligible
DRAIN_LIMIT = 4 << 20  # unread bodies up to this size are drained to keep the connection alive
# The largest request body taken (announced, or counted in a chunked one): far beyond any upload, and below
# Java's long, Tomcat's limit (a larger Content-Length is a number format error there: 400 as well).
MAX_BODY = 1 << 40
_CONTENT_LENGTH = re.compile(r"[0-9]{1,19}")  # digits only (RFC 9110 8.6): no sign, space, list or "_"
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\r\n]*)?\r?\n")  # hex size, extensions, line end


class Body:
    """A request body read incrementally: ``Content-Length`` or chunked transfer-encoding.

    ``length`` is None when the size is not known in advance (chunked). ``on_read`` lets the fault
    injector cut the connection in the middle of a body.
    """

    def __init__(self, rfile: io.BufferedIOBase, length: int | None, chunked: bool):
        self._rfile = rfile
        self.length = length
        self.chunked = chunked
        self.consumed = 0
        self._left = length if not chunked else 0  # bytes left in the whole body / current chunk
        self._done = not chunked and not length
        self.on_read: Callable[[int], None] | None = None

    @property
    def present(self) -> bool:
        """Whether the request carries a body at all (a chunked one may still turn out empty)."""
        return self.chunked or bool(self.length)

    @property
    def finished(self) -> bool:
        return self._done

    def _next_chunk(self) -> None:
        """Read the next chunk's size line (and, after the last chunk, the trailers).

        Only the grammar's chunk-size (RFC 9112 7.1): hex digits (``int`` would also take a sign, "0x", "_" or
        an empty line), optional extensions, a line end; then CRLF after each chunk's data. Anything else is a
        400 and the connection is closed: the stream cannot be resynchronised (the body stays unfinished).
        """
        line = self._rfile.readline(65537)
        if not line:
            raise ConnectionError("connection closed inside a chunked body")
        match = _CHUNK_SIZE.fullmatch(line)
        if match is None:
            raise HttpError(400, "Malformed chunked request body")
        size = int(match[1], 16)
        if self.consumed + size > MAX_BODY:
            raise HttpError(400, "Chunked request body larger than this server accepts")
        if size == 0:
            for _ in range(_MAX_HEADERS + 1):  # trailers up to the empty line
                trailer = self._rfile.readline(_MAX_LINE + 1)
                if trailer in (b"\r\n", b"\n", b""):
                    break
            else:
                raise HttpError(400, "Malformed chunked request body: too many trailer lines")
            self._done = True
        self._left = size

    def _end_of_chunk(self) -> None:
        if self._rfile.read(2) != b"\r\n":
            raise HttpError(400, "Malformed chunked request body: no CRLF after a chunk")

    def read(self, n: int = CHUNK) -> bytes:
        """Up to ``n`` bytes; ``b""`` at the end of the body."""
        if self._done:
            return b""
        if self.chunked and self._left == 0:
            self._next_chunk()
            if self._done:
                return b""
        data = self._rfile.read(min(n, self._left))
        if not data:
            raise ConnectionError("connection closed inside a request body")
        self._left -= len(data)
        self.consumed += len(data)
        if self.chunked and self._left == 0:
            self._end_of_chunk()
        elif not self.chunked and self._left == 0:
            self._done = True
        if self.on_read is not None:
            self.on_read(self.consumed)
        return data

    def readinto(self, buf: bytearray) -> int:
        """Fill ``buf`` from the body (fewer copies than :meth:`read` for big bodies); 0 at the end."""
        if self._done:
            return 0
        if self.chunked and self._left == 0:
            self._next_chunk()
            if self._done:
                return 0
        view = memoryview(buf)[: min(len(buf), self._left)]
        n = self._rfile.readinto(view)
        if not n:
            raise ConnectionError("connection closed inside a request body")
        self._left -= n
        self.consumed += n
        if self.chunked and self._left == 0:
            self._end_of_chunk()
        elif not self.chunked and self._left == 0:
            self._done = True
        if self.on_read is not None:
            self.on_read(self.consumed)
        return n

    def read_all(self, limit: int = 16 << 20) -> bytes:
        """The whole (small) body, e.g. a form; refuses bodies above ``limit`` so memory stays bounded."""
        parts, total = [], 0
        while chunk := self.read():
            total += len(chunk)
            if total > limit:
                raise HttpError(413, "Request body too large for this resource")
            parts.append(chunk)
        return b"".join(parts)

    def save(self, out: BinaryIO) -> int:
        """Stream the rest of the body into the open file ``out``; returns the number of bytes written."""
        written = 0
        buf = _buffer()
        view = memoryview(buf)
        while n := self.readinto(buf):
            out.write(view[:n])
            written += n
        return written

    def drain(self) -> None:
        while self.read():
            pass


_buffers = threading.local()
_date = (0, "")  # (second, its Date header): formatted once a second rather than for every response


def _http_date() -> str:
    global _date
    second, text = _date
    now = int(time.time())
    if now != second:
        text = formatdate(now, usegmt=True)
        _date = (now, text)
    return text


def _buffer() -> bytearray:
    """This thread's body buffer, reused: a fresh 1 MiB bytearray per request cost ~0.3 ms of CPU
    (measured on 0.5 MB uploads), as the allocator maps new pages and the kernel faults each one in."""
    buf = getattr(_buffers, "buf", None)
    if buf is None:
        buf = _buffers.buf = bytearray(CHUNK)
    return buf


_MAX_LINE = 65536  # http.client's limits on a header line and on the number of header lines
_MAX_HEADERS = 100
_VERSION = re.compile(r"HTTP/([0-9]{1,10})\.([0-9]{1,10})")
_HEADER_NAME = re.compile(rb"[\x21-\x39\x3b-\x7e]+:")  # the email parser's name characters, then ":"


def read_headers(rfile: io.BufferedIOBase) -> HTTPMessage:
    """The header block, exactly as ``http.client.parse_headers`` returns it (same limits, same errors).

    Its email parser cost ~60 us of CPU per request. Plain ``Name: value`` lines, ended by the empty
    line, are put into the message here as that parser would; a block with anything else (folded or
    nameless lines, a bare CR, end of stream) still goes through the parser itself.
    """
    lines = []
    while True:
        line = rfile.readline(_MAX_LINE + 1)
        if len(line) > _MAX_LINE:
            raise http.client.LineTooLong("header line")
        lines.append(line)
        if len(lines) > _MAX_HEADERS:
            raise http.client.HTTPException(f"got more than {_MAX_HEADERS} headers")
        if line in (b"\r\n", b"\n", b""):
            break
    if lines[-1]:
        fields = []
        for line in lines[:-1]:
            text = line[:-2] if line.endswith(b"\r\n") else line[:-1]  # every line here ends with LF
            name = _HEADER_NAME.match(text)
            if name is None or b"\r" in text:  # the email parser also ends a line at a bare CR
                break
            value = text[name.end() :].decode("iso-8859-1").lstrip(" \t")
            fields.append((text[: name.end() - 1].decode("iso-8859-1"), value))
        else:
            message = HTTPMessage()
            for key, value in fields:
                message.set_raw(key, value)
            message.set_payload("")
            return message
    return email.parser.Parser(_class=HTTPMessage).parsestr(b"".join(lines).decode("iso-8859-1"))


class Request:
    """One parsed request. ``params`` merges form fields and the query string (query wins, as in XNAT)."""

    def __init__(self, handler: BaseHTTPRequestHandler, body: Body):
        self.handler = handler
        self.method = handler.command
        parts = urlsplit(handler.path)
        self.raw_path = parts.path
        self.path = unquote(parts.path)
        self.query_string = parts.query
        self.query: list[tuple[str, str]] = parse_qsl(parts.query, keep_blank_values=True)
        self.form: list[tuple[str, str]] = []
        self.headers = handler.headers
        self.body = body
        self.user: Any = None  # set by auth
        self.session_id: str | None = None
        self.new_cookie: str | None = None
        self.state: dict[str, Any] = {}

    @property
    def content_type(self) -> str:
        return (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()

    @property
    def user_agent(self) -> str:
        return self.headers.get("User-Agent") or ""

    def load_form(self) -> None:
        """Read an ``application/x-www-form-urlencoded`` body into ``form`` (XNAT reads body then query)."""
        if self.content_type == "application/x-www-form-urlencoded" and self.body.present and not self.form:
            self.form = parse_qsl(self.body.read_all().decode("utf-8", "replace"), keep_blank_values=True)

    def _pairs(self) -> Iterable[tuple[str, str]]:
        yield from self.form
        yield from self.query

    def param(self, name: str, default: str | None = None, *, ci: bool = False) -> str | None:
        """Last value of ``name`` (form first, then query); ``ci`` matches the name case-insensitively."""
        value = default
        for key, val in self._pairs():
            if key == name or (ci and key.lower() == name.lower()):
                value = val
        return value

    def params(self, name: str) -> list[str]:
        return [val for key, val in self._pairs() if key == name]

    def all_params(self) -> dict[str, str]:
        return dict(self._pairs())

    def flag(self, name: str, default: bool = False) -> bool:
        """XNAT's generic boolean: anything but ``false``/``0`` is true (xnat-api.md 1.5)."""
        value = self.param(name)
        if value is None:
            return default
        return value.strip().lower() not in ("false", "0")

    def strict_flag(self, name: str) -> bool:
        """Java ``Boolean.parseBoolean``: only ``true`` (any case) is true (importer flags)."""
        value = self.param(name)
        return value is not None and value.strip().lower() == "true"

    def cookie(self, name: str) -> str | None:
        for header in self.headers.get_all("Cookie") or []:
            for item in header.split(";"):
                key, _, value = item.strip().partition("=")
                if key == name:
                    return value
        return None


Handler = Callable[..., Response]


class Router:
    """Routes ``(method, regex)`` to handlers; regex groups become keyword arguments.

    A path that matches some route but not its method gets 405, as Restlet answers.
    """

    def __init__(self) -> None:
        self._routes: list[tuple[frozenset[str], re.Pattern[str], Handler]] = []

    def add(self, methods: str, pattern: str, handler: Handler) -> None:
        self._routes.append((frozenset(methods.split()), re.compile(pattern + r"/?\Z"), handler))

    def resolve(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        path_matched = False
        for methods, regex, handler in self._routes:
            m = regex.match(path)
            if m is None:
                continue
            if method in methods or (method == "HEAD" and "GET" in methods):
                return handler, {k: v for k, v in m.groupdict().items() if v is not None}
            path_matched = True
        if path_matched:
            raise HttpError(405, "Method Not Allowed")
        raise HttpError(404, "The requested resource could not be found")


class SandboxHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server whose sockets have Nagle off; the app object is reachable by handlers."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: Any):
        self.app = app
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(address, RequestHandler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._conns_lock:
            self._conns.add(sock)
        return sock, addr

    def shutdown_request(self, request: Any) -> None:
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A handler thread's uncaught exception: into the log (as the app's own faults are), not onto stderr."""
        # socketserver calls this inside its own except clause, so the exception is the current one.
        log.error("sandbox connection handler failed", exc_info=True)  # noqa: LOG014

    def close_all_connections(self) -> None:
        """On stop: end idle keep-alive connections so handler threads exit at once."""
        with self._conns_lock:
            conns = list(self._conns)
        for sock in conns:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class RequestHandler(BaseHTTPRequestHandler):
    """Turns each HTTP request into a :class:`Request`, calls the app, writes the :class:`Response`."""

    protocol_version = "HTTP/1.1"
    server_version = "Apache-Coyote/1.1"  # what XNAT's Tomcat announces; no Python version leak
    sys_version = ""
    rbufsize = 256 * 1024
    server: SandboxHTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        # Request lines can carry labels routed from patient fields (names, IDs): never log them.
        return

    def parse_request(self) -> bool:
        """The request line and headers, with the answers ``BaseHTTPRequestHandler.parse_request`` gives to
        bad ones (400, 505, 431), the headers read by :func:`read_headers` instead of the email parser."""
        self.command = None  # type: ignore[assignment]  # send_error looks at it
        self.request_version = self.default_request_version
        self.close_connection = True
        self.requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = self.requestline.split()
        if not words:
            return False
        if len(words) >= 3 and not self._take_version(words[-1]):
            return False
        if len(words) not in (2, 3):
            self.send_error(HTTPStatus.BAD_REQUEST, f"Bad request syntax ({self.requestline!r})")
            return False
        if len(words) == 2:  # HTTP/0.9: GET only, and the connection ends with the answer
            self.close_connection = True
            if words[0] != "GET":
                self.send_error(HTTPStatus.BAD_REQUEST, f"Bad HTTP/0.9 request type ({words[0]!r})")
                return False
        self.command, self.path = words[0], words[1]
        if self.path.startswith("//"):  # "//host/..." would read as another host in a Location header
            self.path = "/" + self.path.lstrip("/")
        try:
            self.headers = read_headers(self.rfile)
        except http.client.LineTooLong as err:
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Line too long", str(err))
            return False
        except http.client.HTTPException as err:
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Too many headers", str(err))
            return False
        connection = self.headers.get("Connection", "").lower()
        if connection == "close":
            self.close_connection = True
        elif connection == "keep-alive" and self.protocol_version >= "HTTP/1.1":
            self.close_connection = False
        if (
            self.headers.get("Expect", "").lower() == "100-continue"
            and self.protocol_version >= "HTTP/1.1"
            and self.request_version >= "HTTP/1.1"
        ):
            return self.handle_expect_100()
        return True

    def _take_version(self, version: str) -> bool:
        """Accept ``HTTP/major.minor`` below 2.0 (keep-alive from 1.1 on); otherwise answer 400 or 505."""
        match = _VERSION.fullmatch(version)
        if match is None:
            self.send_error(HTTPStatus.BAD_REQUEST, f"Bad request version ({version!r})")
            return False
        number = int(match[1]), int(match[2])
        if number >= (2, 0):
            self.send_error(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, f"Invalid HTTP version ({version[5:]})")
            return False
        if number >= (1, 1) and self.protocol_version >= "HTTP/1.1":
            self.close_connection = False
        self.request_version = version
        return True

    def handle_one_request(self) -> None:
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if len(self.raw_requestline) > 65536:
                self.send_error(414)
                return
            if not self.raw_requestline:
                self.close_connection = True
                return
            if not self.parse_request():
                return
            self._dispatch()
            self.wfile.flush()
        except (ConnectionError, TimeoutError, OSError):
            self.close_connection = True
        except Exception:
            # A fault of this layer (the app's own are answered in App.handle): the connection ends, as a
            # server's would, without a traceback on the console. The request line is not logged (labels).
            log.exception("sandbox HTTP layer failed on a %s request", self.command or "malformed")
            self.close_connection = True

    def _framing(self) -> tuple[int | None, bool]:
        """(Content-Length, chunked) of the request, checked as Tomcat checks them; :class:`HttpError` otherwise.

        One ``Content-Length`` of plain digits up to :data:`MAX_BODY` (a negative, signed, listed, repeated or
        non-numeric one is a 400, as is one beyond Java's long in Tomcat); ``Transfer-Encoding`` only
        ``chunked`` (Tomcat answers 501 to codings it does not implement), which then decides the length
        (``Http11Processor.prepareInputFilters``).
        """
        lengths = self.headers.get_all("Content-Length") or []
        if len(lengths) > 1:
            raise HttpError(400, "More than one Content-Length header")
        length = None
        if lengths:
            text = lengths[0].strip()
            if not _CONTENT_LENGTH.fullmatch(text):
                raise HttpError(400, "Bad Content-Length")
            length = int(text)
            if length > MAX_BODY:
                raise HttpError(400, "Content-Length larger than this server accepts")
        codings = [c.strip().lower() for v in self.headers.get_all("Transfer-Encoding") or [] for c in v.split(",")]
        if codings and codings != ["chunked"]:
            raise HttpError(501, "Unsupported transfer encoding")
        if codings and lengths:
            self.close_connection = True  # Tomcat ignores the length then, and ends the connection after the answer
        return (None, True) if codings else (length or 0, False)

    def _dispatch(self) -> None:
        try:
            length, chunked = self._framing()
            body = Body(self.rfile, length, chunked)
            request = Request(self, body)
        except (HttpError, ValueError) as err:  # ValueError: a target urlsplit cannot read ("http://[")
            # The body cannot be found or skipped reliably: answer and close.
            answer = Response.error(err if isinstance(err, HttpError) else HttpError(400, "Bad request target"))
            answer.headers.append(("Connection", "close"))
            self._write(answer, head_only=self.command == "HEAD")
            return
        try:
            response = self.server.app.handle(request)
        except DropConnection:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        if not body.finished:
            # The handler answered without reading everything (e.g. a 401 before an upload).
            if body.chunked or (body.length or 0) - body.consumed > DRAIN_LIMIT:
                self.close_connection = True
                response.headers.append(("Connection", "close"))
            else:
                try:
                    body.drain()
                except HttpError:
                    self.close_connection = True
                    response.headers.append(("Connection", "close"))
        self._write(response, head_only=self.command == "HEAD")

    def _write(self, response: Response, head_only: bool = False) -> None:
        """Status line, headers and (small) body in one ``sendall``: one system call, and one place
        where a client thread in the same process can take the GIL, instead of two."""
        size = response.file.stat().st_size if response.file is not None else len(response.body)
        lines = [
            f"{self.protocol_version} {response.status} {REASONS.get(response.status, '')}",
            f"Server: {self.server_version}",
            f"Date: {_http_date()}",
            f"Content-Type: {response.content_type}",
            f"Content-Length: {size}",
        ]
        for name, value in response.headers:
            lines.append(f"{name}: {value}")
            if name.lower() == "connection" and value.lower() == "close":
                self.close_connection = True
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if head_only:
            self.wfile.write(head)
            if response.temporary and response.file is not None:
                response.file.unlink(missing_ok=True)
        elif response.file is not None:
            self.wfile.write(head)
            try:
                with open(response.file, "rb") as src:
                    shutil.copyfileobj(src, self.wfile, CHUNK)
            finally:
                if response.temporary:
                    response.file.unlink(missing_ok=True)
        else:
            self.wfile.write(head + response.body)
