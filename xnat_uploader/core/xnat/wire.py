"""One HTTP/1.1 request and its answer on a connection of urllib3's pool, without ``http.client``'s machinery.

Why: per request, urllib3 and ``http.client`` spend ~0.3 ms of CPU around the socket calls: building the head
through ``putheader``, parsing the answer's headers with the ``email`` package, and two response wrappers. A
gradual upload sends one POST per DICOM file, so on a 2-core machine that was a third of its client CPU.

What stays urllib3's: the pool (connections are taken and given back with its own ``_get_conn``/``_put_conn``),
connecting, TLS and its checks (``_validate_conn``), time-outs, and the retry decision (``Retry.increment``, so
with ``requests``' ``Retry(0, read=False)`` the same exceptions come out). What is done here follows
``HTTPConnectionPool._make_request`` and ``urlopen``, ``HTTPConnection.request`` and ``http.client``'s
``HTTPResponse.begin``/``read`` step by step: the same bytes on the wire, the same exceptions for the same
faults, and the connection closed on any error or when the server ends it (``Connection: close``, HTTP/1.0,
a body delimited by the end of the connection). The tests compare both paths on the wire and on every fault.

Used by :mod:`xnat_uploader.core.xnat.direct` only, for bodies that are bytes or iterables of chunks.
"""

from __future__ import annotations

import errno
import io
import re
import socket
from collections.abc import Iterable, Iterator, Mapping
from http.client import (
    BadStatusLine,
    HTTPException,
    IncompleteRead,
    LineTooLong,
    RemoteDisconnected,
    UnknownProtocol,
)
from ssl import CertificateError
from ssl import SSLError as BaseSSLError
from typing import Any

import urllib3
from urllib3 import HTTPHeaderDict
from urllib3.exceptions import NewConnectionError, ProtocolError, ReadTimeoutError, SSLError
from urllib3.exceptions import TimeoutError as Urllib3Timeout
from urllib3.util import Timeout

from xnat_uploader.core.xnat import answer

_MAX_LINE = 65536  # http.client's limits
_MAX_HEADERS = 100
_RECV = 65536
_GATHER = 64 << 10  # pieces are gathered into one sendmsg until this many bytes
# http.client's rules for what may be sent (putrequest/putheader): a header injection is refused the same way.
_LEGAL_NAME = re.compile(rb"[^:\s][^:\r\n]*").fullmatch
_ILLEGAL_VALUE = re.compile(rb"\n(?![ \t])|\r(?![ \t\n])").search
_BAD_PATH = re.compile("[\x00-\x20\x7f]").search
_BAD_METHOD = re.compile("[\x00-\x1f]").search


def host_line(pool: urllib3.HTTPConnectionPool) -> bytes:
    """The ``Host`` header line ``http.client`` writes for this pool's connections (built by its own code)."""
    conn = pool.ConnectionCls(host=pool.host, port=pool.port)
    conn.putrequest("GET", "/", skip_accept_encoding=True)
    lines = [line for line in conn._buffer if line.lower().startswith(b"host:")]
    if len(lines) != 1:
        raise ValueError("no Host header")
    return lines[0]


def request_head(method: str, target: str, host: bytes, headers: Mapping[str, str]) -> bytes:
    """The request line and headers as urllib3's ``HTTPConnection.request`` writes them for a body of known length.

    The caller's headers carry Content-Length whenever there is a body (and ``requests``' defaults always
    carry User-Agent and Accept-Encoding). Raises ``ValueError`` for what ``http.client`` refuses.
    """
    if _BAD_METHOD(method):
        raise ValueError(f"Method cannot contain non-token characters {method!r}")
    if _BAD_PATH(target):
        raise ValueError(f"URL can't contain control characters. {target!r}")
    keys = {name.lower() for name in headers}
    lines = [f"{method} {target} HTTP/1.1".encode("ascii")]
    if "host" not in keys:
        lines.append(host)
    if "accept-encoding" not in keys:
        lines.append(b"Accept-Encoding: identity")
    if "user-agent" not in keys:
        lines.append(b"User-Agent: python-urllib3/" + urllib3.__version__.encode("ascii"))
    for name, value in headers.items():
        raw_name = name.encode("ascii")
        if not _LEGAL_NAME(raw_name):
            raise ValueError(f"Invalid header name {raw_name!r}")
        raw_value = value.encode("latin-1") if isinstance(value, str) else str(value).encode("ascii")
        if _ILLEGAL_VALUE(raw_value):
            raise ValueError(f"Invalid header value {raw_value!r}")
        lines.append(raw_name + b": " + raw_value)
    lines += [b"", b""]
    return b"\r\n".join(lines)


class _Reader:
    """Lines and byte counts from a socket, through one buffer (an answer's head is usually one ``recv``)."""

    def __init__(self, sock: socket.socket, method: str) -> None:
        self.sock = sock
        self.method = method
        self.buf = b""

    def _fill(self) -> bool:
        chunk = self.sock.recv(_RECV)
        self.buf += chunk
        return bool(chunk)

    def line(self, what: str) -> bytes:
        """The next line with its end, or what is left at the end of the stream; ``LineTooLong`` past 64 KiB."""
        while True:
            end = self.buf.find(b"\n")
            if end >= 0:
                line, self.buf = self.buf[: end + 1], self.buf[end + 1 :]
                if len(line) > _MAX_LINE:
                    raise LineTooLong(what)
                return line
            if len(self.buf) > _MAX_LINE:
                raise LineTooLong(what)
            if not self._fill():
                line, self.buf = self.buf, b""
                return line

    def exactly(self, n: int) -> bytes:
        """``n`` bytes; ``IncompleteRead`` if the stream ends first."""
        parts, have = [self.buf[:n]], min(len(self.buf), n)
        self.buf = self.buf[n:]
        while have < n:
            chunk = self.sock.recv(min(n - have, 1 << 20))
            if not chunk:
                raise IncompleteRead(b"".join(parts), n - have)
            parts.append(chunk)
            have += len(chunk)
        return b"".join(parts) if len(parts) > 1 else parts[0]

    def pieces(self) -> Iterator[bytes]:
        """What is left on the connection up to its end, in pieces of at most :data:`answer.PIECE` bytes."""
        if self.buf:
            piece, self.buf = self.buf, b""
            yield piece
        while chunk := self.sock.recv(answer.PIECE):
            yield chunk

    def header_lines(self) -> list[bytes]:
        """Header lines up to the empty one (``http.client._read_headers``)."""
        lines: list[bytes] = []
        while True:
            line = self.line("header line")
            if line in (b"\r\n", b"\n", b""):
                return lines
            lines.append(line)
            if len(lines) > _MAX_HEADERS:
                raise HTTPException(f"got more than {_MAX_HEADERS} headers")


def _status(reader: _Reader) -> tuple[str, int, str]:
    """``http.client.HTTPResponse._read_status``."""
    line = str(reader.line("status line"), "iso-8859-1")
    if not line:
        raise RemoteDisconnected("Remote end closed connection without response")
    try:
        version, code, reason = line.split(None, 2)
    except ValueError:
        try:
            version, code = line.split(None, 1)
            reason = ""
        except ValueError:
            version, code, reason = "", "", ""
    if not version.startswith("HTTP/"):
        raise BadStatusLine(line)
    try:
        status = int(code)
    except ValueError:
        raise BadStatusLine(line) from None
    if status < 100 or status > 999:
        raise BadStatusLine(line)
    return version, status, reason


def _headers(lines: list[bytes]) -> HTTPHeaderDict:
    """Name and value of each line as the ``email`` parser splits them; a folded line continues the previous value."""
    headers = HTTPHeaderDict()
    name = value = ""
    for raw in lines:
        text = raw.decode("iso-8859-1").rstrip("\r\n")
        if text[:1] in (" ", "\t") and name:
            value = f"{value} {text.strip()}"
            continue
        if name:
            headers.add(name, value)
            name = ""
        colon = text.find(":")
        if colon <= 0:
            continue  # not a header: the email parser records a defect and goes on
        name, value = text[:colon], text[colon + 1 :].lstrip(" \t")
    if name:
        headers.add(name, value)
    return headers


def _first(headers: HTTPHeaderDict, name: str) -> str | None:
    values = headers.getlist(name)
    return values[0] if values else None


class Reply:
    """The status and headers of an answer; :meth:`read` reads its body and gives the connection back."""

    def __init__(
        self, pool: urllib3.HTTPConnectionPool, conn: Any, reader: _Reader, version: str, status: int, reason: str,
        headers: HTTPHeaderDict,
    ) -> None:  # fmt: skip
        self._pool, self._conn, self._reader = pool, conn, reader
        self.status, self.reason, self.headers = status, reason.strip(), headers
        encoding = _first(headers, "transfer-encoding")
        self._chunked = bool(encoding) and encoding.lower() == "chunked"  # type: ignore[union-attr]
        self._will_close = _will_close(version, headers)
        self._length: int | None = None
        length = _first(headers, "content-length")
        if length and not self._chunked:
            try:
                self._length = int(length)
            except ValueError:
                self._length = None
            else:
                self._length = None if self._length < 0 else self._length
        if status in (204, 304) or 100 <= status < 200 or reader.method == "HEAD":
            self._length = 0
        if not self._will_close and not self._chunked and self._length is None:
            self._will_close = True  # the body ends with the connection

    def read(self, limit: int = answer.MAX_ANSWER, cut: bool = False) -> bytes:
        """The whole body, decoded as urllib3 decodes it. Raises what urllib3's ``HTTPResponse.read`` raises.

        At most ``limit`` bytes (before and after decoding) are read: beyond them :class:`answer.AnswerTooLarge`,
        or with ``cut`` the first ``limit`` bytes (and the connection is closed).
        """
        clean = False
        try:
            try:
                body, complete = self._body(limit, cut)
            except TimeoutError as exc:
                raise ReadTimeoutError(self._pool, None, "Read timed out.") from exc  # type: ignore[arg-type]
            except BaseSSLError as exc:
                raise SSLError(exc) from exc
            except (HTTPException, OSError) as exc:  # IncompleteRead included
                raise ProtocolError(f"Connection broken: {exc!r}", exc) from exc
            if self._reader.buf or not complete:
                self._will_close = True  # more than the answer arrived: the connection's state is unknown
            clean = True
        finally:
            if not clean or self._will_close:
                self._conn.close()
            self._pool._put_conn(self._conn)
            self._conn = None
        coding = _first(self.headers, "content-encoding")
        if body and coding and coding.strip().lower() != "identity":
            decoded = urllib3.HTTPResponse(
                body=io.BytesIO(body), headers=self.headers, status=self.status, preload_content=False,
                decode_content=True,
            )  # fmt: skip
            # In pieces: a few KB of gzip can stand for gigabytes (urllib3 bounds each piece it decodes).
            try:
                body = answer.gather(decoded.stream(answer.PIECE, decode_content=True), limit, cut)[0]
            except urllib3.exceptions.DecodeError:
                if not cut:
                    raise
                body = b""  # the start of an error page that does not decode: its status says enough
        return body

    def _body(self, limit: int, cut: bool) -> tuple[bytes, bool]:
        """The raw body up to ``limit`` bytes, and whether it ended within them (see :meth:`read`)."""
        reader = self._reader
        if self._chunked:
            return answer.gather(self._chunks(), limit, cut)
        if self._length is not None:
            answer.check_announced(self._length, limit, cut)  # before a byte of it is read
            if self._length > limit:
                return reader.exactly(limit), False
            return (reader.exactly(self._length) if self._length else b""), True
        return answer.gather(reader.pieces(), limit, cut)

    def _chunks(self) -> Iterator[bytes]:
        """The pieces of a chunked body (``http.client``'s ``_read_chunked``), never a whole chunk at once:
        a chunk's size is the server's word."""
        reader = self._reader
        while True:
            line = reader.line("chunk size")
            size_text = line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise IncompleteRead(b"") from None
            if size < 0:
                raise IncompleteRead(b"")
            if size == 0:
                reader.header_lines()  # trailers, discarded as http.client does
                return
            while size:
                piece = reader.exactly(min(size, answer.PIECE))
                size -= len(piece)
                yield piece
            reader.exactly(2)  # the CRLF after the chunk


def _will_close(version: str, headers: HTTPHeaderDict) -> bool:
    """``http.client.HTTPResponse._check_close``."""
    connection = _first(headers, "connection")
    if version.startswith("HTTP/1.") and version not in ("HTTP/1.0",):
        return bool(connection) and "close" in connection.lower()  # type: ignore[union-attr]
    if _first(headers, "keep-alive"):
        return False
    if connection and "keep-alive" in connection.lower():
        return False
    proxy = _first(headers, "proxy-connection")
    return not (proxy and "keep-alive" in proxy.lower())


def exchange(
    pool: urllib3.HTTPConnectionPool,
    method: str,
    target: str,
    head: bytes,
    body: bytes | Iterable[bytes | memoryview] | None,
    timeout: Timeout,
    retries: urllib3.Retry,
) -> Reply:
    """Send ``head`` and ``body`` on a connection of ``pool`` and read the answer's status and headers.

    Raises what ``pool.urlopen(..., retries=retries, preload_content=False)`` raises for the same fault (through
    ``retries.increment``); the connection is then closed. Otherwise call :meth:`Reply.read` next.
    """
    conn = pool._get_conn(timeout=None)
    clean = False
    try:
        try:
            reply = _request(pool, conn, method, target, head, body, timeout)
        except (Urllib3Timeout, HTTPException, OSError, ProtocolError, BaseSSLError, SSLError, CertificateError) as exc:
            error: Exception = SSLError(exc) if isinstance(exc, BaseSSLError | CertificateError) else exc
            if isinstance(error, OSError | HTTPException):
                error = ProtocolError("Connection aborted.", error)
            retries.increment(method, target, error=error, _pool=pool, _stacktrace=exc.__traceback__)
            raise error from exc  # only reached with retries left, which the caller never allows
        clean = True
        return reply
    finally:
        if not clean:
            conn.close()
            pool._put_conn(None)


def _send_body(sock: socket.socket, head: bytes, body: bytes | Iterable[bytes | memoryview] | None) -> None:
    """Send the head and the body's pieces; on a plain socket, small pieces go out with the next one.

    With TCP_NODELAY (urllib3's default) every ``sendall`` of a few bytes (the head, a zip entry's header) is
    a packet of its own and a wake-up of the receiver; gathering writes (``sendmsg``) send them with the next
    piece without copying it. TLS sockets have no ``sendmsg``: there each piece goes by ``sendall``.
    """
    if type(sock) is not socket.socket:
        sock.sendall(head)
        for piece in (body,) if isinstance(body, bytes) else body or ():
            if piece:
                sock.sendall(piece)
        return
    pending: list[bytes | memoryview] = [head]
    size = len(head)
    for piece in (body,) if isinstance(body, bytes) else body or ():
        if piece:
            pending.append(piece)
            size += len(piece)
            if size >= _GATHER:
                _send_all(sock, pending)
                pending, size = [], 0
    if pending:
        _send_all(sock, pending)


def _send_all(sock: socket.socket, pieces: list[bytes | memoryview]) -> None:
    """``sendall`` for several buffers at once (``sendmsg`` may send part of them)."""
    if len(pieces) == 1:
        sock.sendall(pieces[0])
        return
    views = [memoryview(piece) for piece in pieces]
    while views:
        sent = sock.sendmsg(views)
        while views and sent >= len(views[0]):
            sent -= len(views[0])
            views.pop(0)
        if sent:
            views[0] = views[0][sent:]


def _request(
    pool: urllib3.HTTPConnectionPool, conn: Any, method: str, target: str, head: bytes,
    body: bytes | Iterable[bytes | memoryview] | None, timeout: Timeout,
) -> Reply:  # fmt: skip
    """``_make_request``: connect (TLS checked by the pool), send, read the status and headers."""
    conn.timeout = Timeout.resolve_default_timeout(timeout.connect_timeout)
    try:
        try:
            pool._validate_conn(conn)  # an HTTPS pool connects here and checks the certificate
        except (TimeoutError, BaseSSLError) as exc:
            pool._raise_timeout(err=exc, url=target, timeout_value=conn.timeout)
            raise
    except (OSError, NewConnectionError, Urllib3Timeout, BaseSSLError, CertificateError, SSLError) as exc:
        if isinstance(exc, BaseSSLError | CertificateError):
            raise SSLError(exc) from exc
        raise
    if conn.sock is None:
        conn.connect()  # plain HTTP: http.client connects when it first sends
    sock = conn.sock
    sock.settimeout(conn.timeout)
    try:
        _send_body(sock, head, body)
    except BrokenPipeError:
        pass  # the server answered early (a 401, say) and stopped reading: read that answer
    except OSError as exc:
        if exc.errno not in (errno.EPROTOTYPE, errno.ECONNRESET):
            raise
    read_timeout = timeout.read_timeout
    if read_timeout == 0:
        raise ReadTimeoutError(pool, target, f"Read timed out. (read timeout={read_timeout})")
    conn.timeout = read_timeout
    reader = _Reader(sock, method)
    try:
        sock.settimeout(Timeout.resolve_default_timeout(read_timeout))
        while True:
            version, status, reason = _status(reader)
            if status != 100:
                break
            reader.header_lines()  # "100 Continue": skip it
        if not version.startswith("HTTP/1.") and version != "HTTP/0.9":
            raise UnknownProtocol(version)
        headers = _headers(reader.header_lines())
    except (BaseSSLError, OSError) as exc:
        pool._raise_timeout(err=exc, url=target, timeout_value=read_timeout)
        raise
    return Reply(pool, conn, reader, version, status, reason, headers)
