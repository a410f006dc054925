"""The lean send path of :class:`~xnat_uploader.core.xnat.session.XnatSession`: straight to ``requests``' pool.

Why: ``requests.Session.request`` spends ~0.25 ms of CPU per request on preparing it (URL parsing, merging
headers, cookies and settings, hooks) and on building the response, as much again as urllib3 itself; the
gradual upload sends one POST per DICOM file, so that was about a third of its client CPU.
:class:`DirectSender` hands the request to the urllib3 connection pool that the session's ``HTTPAdapter``
manages, so TLS settings, the CA bundle and the pool size are exactly the session's, with the adapter's
own retry policy (no retries) and no redirects. The request itself and its answer then go through
:mod:`.wire` (another ~0.3 ms less than urllib3's ``urlopen``) for bytes and stream bodies; file bodies, and
an adapter with a retry policy other than ``requests``' default, go through ``urlopen``.

What goes out and what comes back must be what ``requests`` would have done: the request target,
headers and Content-Length are built by ``requests``' rules (the tests compare both paths on the wire),
urllib3's exceptions become the ``requests`` exceptions ``HTTPAdapter.send`` and ``Response.content``
raise (:func:`requests_error`), and the answer is a ``requests.Response`` with status, headers, encoding,
URL and body filled in as ``requests`` fills them. So the session maps both paths with the same
:func:`~xnat_uploader.core.xnat.transport.transport_error`. Anything that could differ goes through
``requests`` instead: a proxy for the server, a path ``requests`` would quote or normalise, a query
already in the path, a form, a body of unknown length.

Imported by the session only (it loads ``requests`` and ``urllib3``). Thread-safe: urllib3's pools are.
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from requests.models import RequestEncodingMixin
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers, requote_uri, select_proxy, super_len
from urllib3.exceptions import (
    ClosedPoolError,
    ConnectTimeoutError,
    DecodeError,
    HTTPError,
    InvalidHeader,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    ResponseError,
)
from urllib3.exceptions import ProxyError as Urllib3ProxyError
from urllib3.exceptions import SSLError as Urllib3SSLError

from xnat_uploader.core.xnat import wire
from xnat_uploader.core.xnat.answer import PIECE, AnswerLimit, announced_length, check_announced, gather
from xnat_uploader.core.xnat.body import StreamBody

# A path that urllib3's URL parsing and requests' re-quoting leave as it is: segments of unreserved
# characters, none empty and none starting with a dot (so no "." or ".." segments to resolve).
_PLAIN_PATH = re.compile(r"(?:/[A-Za-z0-9_~-][A-Za-z0-9_.~-]*)*/?")
_MAX_TARGETS = 256  # remembered request targets (the cache is emptied when full)
_NO_BODY_METHODS = ("GET", "HEAD")  # requests sends no Content-Length for these when there is no body
_POOL_METHODS = ("_get_conn", "_put_conn", "_validate_conn", "_raise_timeout")  # urllib3's, used by .wire
DEFAULT_LIMIT = AnswerLimit()


def requests_error(exc: Exception, *, reading: bool = False) -> Exception:
    """The exception ``requests`` raises for urllib3's ``exc`` (``exc`` itself when ``requests`` lets it through).

    Sending (``reading=False``) mirrors the ``except`` clauses of ``requests.adapters.HTTPAdapter.send``,
    in their order; reading the body (``reading=True``) those of ``requests.Response.iter_content``. Pure.
    """
    if reading:
        if isinstance(exc, ProtocolError):
            return requests.exceptions.ChunkedEncodingError(exc)
        if isinstance(exc, DecodeError):
            return requests.exceptions.ContentDecodingError(exc)
        if isinstance(exc, ReadTimeoutError):
            return requests.exceptions.ConnectionError(exc)
        if isinstance(exc, Urllib3SSLError):
            return requests.exceptions.SSLError(exc)
        return exc
    if isinstance(exc, ProtocolError | OSError):
        return requests.exceptions.ConnectionError(exc)
    if isinstance(exc, MaxRetryError):
        reason = exc.reason
        if isinstance(reason, ConnectTimeoutError) and not isinstance(reason, NewConnectionError):
            return requests.exceptions.ConnectTimeout(exc)
        if isinstance(reason, ResponseError):
            return requests.exceptions.RetryError(exc)
        if isinstance(reason, Urllib3ProxyError):
            return requests.exceptions.ProxyError(exc)
        if isinstance(reason, Urllib3SSLError):
            return requests.exceptions.SSLError(exc)
        return requests.exceptions.ConnectionError(exc)
    if isinstance(exc, ClosedPoolError):
        return requests.exceptions.ConnectionError(exc)
    if isinstance(exc, Urllib3ProxyError):
        return requests.exceptions.ProxyError(exc)
    if isinstance(exc, Urllib3SSLError):
        return requests.exceptions.SSLError(exc)
    if isinstance(exc, ReadTimeoutError):
        return requests.exceptions.ReadTimeout(exc)
    if isinstance(exc, InvalidHeader):
        return requests.exceptions.InvalidHeader(exc)
    return exc


@contextlib.contextmanager
def requests_errors(*, reading: bool = False) -> Iterator[None]:
    """Inside the block, urllib3's and the socket's errors become what ``requests`` raises (:func:`requests_error`)."""
    try:
        yield
    except (HTTPError, OSError) as exc:
        mapped = requests_error(exc, reading=reading)
        if mapped is exc:
            raise
        raise mapped from exc


def read_limited(resp: requests.Response, limit: AnswerLimit) -> None:
    """Read the body of ``resp`` (sent with ``stream=True``, or by urllib3 without preloading) into its
    ``content`` as ``Response.content`` would, but never more than ``limit`` allows for its status (see
    :mod:`.answer`): a longer one is refused (:class:`AnswerTooLarge`) or cut, and its connection closed."""
    raw = resp.raw
    most, cut = limit.for_status(resp.status_code)
    complete = False
    try:
        check_announced(announced_length(resp.headers.get("Content-Length")), most, cut)
        with requests_errors(reading=True):
            content, complete = gather(raw.stream(PIECE, decode_content=True), most, cut)
    finally:
        if not complete:
            resp.close()  # the rest of the answer is still on the connection: close it, never reuse it
    resp._content = content
    resp._content_consumed = True


def _content_length(method: str, data: Any) -> int | None | bool:
    """The Content-Length to send with ``data`` (``None``: none, as requests does for a GET without a body),
    or ``False`` when the body has no known length and must go through ``requests``.

    Every body here has a known length (xnat-api.md 3.1): bytes, a :class:`StreamBody` (its declared length,
    even 0: never chunked) or a file whose size ``requests``' own ``super_len`` finds.
    """
    if data is None or (isinstance(data, bytes) and not data):
        return None if method in _NO_BODY_METHODS else 0
    if isinstance(data, bytes):
        return len(data)
    if isinstance(data, StreamBody):
        return data.length
    if hasattr(data, "read"):
        return super_len(data) or False
    return False


def _string_pairs(params: object) -> bool:
    """Whether ``params`` is a list or tuple of ``(str, str)`` pairs: what our callers pass."""
    return isinstance(params, list | tuple) and all(
        type(pair) is tuple and len(pair) == 2 and type(pair[0]) is str and type(pair[1]) is str for pair in params
    )


class DirectSender:
    """Sends requests for one server through the pool ``requests`` would use, without ``requests``' per-request
    work. Build it with :meth:`for_session` (``None`` when the server must be reached through ``requests``).

    Thread-safe. The pool is looked up once and again only when it was closed (the adapter closes pools it
    drops) or the session's TLS settings changed.
    """

    def __init__(self, http: requests.Session, adapter: HTTPAdapter, base_url: str) -> None:
        self._http = http
        self._adapter = adapter
        # The request requests' adapter would pick the pool for (scheme, host with IDNA applied, port).
        self._anchor = requests.PreparedRequest()
        self._anchor.prepare_url(base_url, None)
        parts = urlsplit(self._anchor.url)
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._base_path = parts.path.rstrip("/")
        self._pool: tuple[Any, Any, urllib3.HTTPConnectionPool] | None = None
        self._targets: dict[tuple[str, tuple[tuple[str, str], ...]], str | None] = {}
        self._timeout: tuple[tuple[float, float] | float | None, urllib3.Timeout | None] = (None, None)
        # The lean exchange of .wire needs urllib3's pool methods and requests' no-retry policy (the only one
        # it mirrors); otherwise urlopen does the work.
        retries = adapter.max_retries
        self._wire = (
            getattr(retries, "total", None) == 0
            and retries.read is False
            and all(hasattr(urllib3.HTTPConnectionPool, name) for name in _POOL_METHODS)
        )
        self._hosts: dict[int, tuple[urllib3.HTTPConnectionPool, bytes]] = {}  # pool id -> (pool, Host line)

    @classmethod
    def for_session(cls, http: requests.Session, base_url: str) -> DirectSender | None:
        """A sender for ``base_url``, or ``None`` when a proxy applies to it (proxies are ``requests``' job) or
        the adapter is not one whose pool can be reached (``requests`` older than 2.32.2)."""
        if select_proxy(base_url, http.proxies):
            return None
        adapter = http.get_adapter(base_url)
        if type(adapter) is not HTTPAdapter or not hasattr(adapter, "get_connection_with_tls_context"):
            return None
        return cls(http, adapter, base_url)

    def plan(
        self, method: str, path: str, params: Mapping[str, Any] | Sequence[tuple[str, Any]] | None, data: Any
    ) -> tuple[str, int | None] | None:
        """The request target (path and query) and Content-Length ``requests`` would send for this request, or
        ``None`` when it must go through ``requests`` (see the module docstring). Any thread."""
        length = _content_length(method, data)
        if length is False:
            return None
        if params is not None and not _string_pairs(params):
            target = self._target(path, params)  # a dict, say: not worth remembering
        else:
            # Every file of a gradual upload has the same path and parameters: remember the target (~10 us).
            key = (path, tuple(params or ()))
            target = self._targets.get(key, "")
            if target == "":
                if len(self._targets) >= _MAX_TARGETS:
                    self._targets.clear()
                target = self._targets[key] = self._target(path, params)
        return None if target is None else (target, length)

    def _target(self, path: str, params: Mapping[str, Any] | Sequence[tuple[str, Any]] | None) -> str | None:
        if not path.startswith("/"):
            path = "/" + path
        full = self._base_path + path
        if not _PLAIN_PATH.fullmatch(full):
            return None
        if params:
            if not isinstance(params, Mapping | list | tuple):
                return None
            # urlencode gives what requests' own encoder gives for string pairs, without its ~20 us of checks.
            query = urlencode(params) if _string_pairs(params) else RequestEncodingMixin._encode_params(params)
            if query:
                full = f"{full}?{query}"
        return requote_uri(full)  # what requests does to the whole URL; a no-op for a plain path

    def _connection_pool(self) -> urllib3.HTTPConnectionPool:
        verify, cert = self._http.verify, self._http.cert
        cached = self._pool
        if cached is not None and cached[0] is verify and cached[1] is cert and cached[2].pool is not None:
            return cached[2]
        pool = self._adapter.get_connection_with_tls_context(self._anchor, verify, None, cert)
        self._pool = (verify, cert, pool)
        return pool

    def send(
        self,
        method: str,
        plan: tuple[str, int | None],
        body: Any,
        headers: Mapping[str, str],
        timeout: tuple[float, float] | float,
        limit: AnswerLimit = DEFAULT_LIMIT,
    ) -> requests.Response:
        """Send one request as :meth:`plan` planned it and return the answer with its body read. Raises what
        ``requests`` would raise (``requests.RequestException``; ``ValueError`` from a :class:`StreamBody`
        whose length was wrong), and :class:`AnswerTooLarge` for an answer over ``limit``. Any thread."""
        target, length = plan
        # requests' merge (a CaseInsensitiveDict's store): the request's headers win, None removes a header.
        merged = {name.lower(): (name, value) for name, value in self._http.headers.items()}
        for name, value in headers.items():
            merged[name.lower()] = (name, value)
        if length is not None:
            merged["content-length"] = ("Content-Length", str(length))
        send_headers = {name: value for name, value in merged.values() if value is not None}
        last_timeout = self._timeout  # one read: another thread may replace it (urlopen clones the Timeout)
        if last_timeout[0] != timeout:
            connect, read = timeout if isinstance(timeout, tuple) else (timeout, timeout)
            last_timeout = self._timeout = (timeout, urllib3.Timeout(connect=connect, read=read))
        pool = self._connection_pool()
        data = body if length else None  # requests sends no body for an empty one (and never reads it)
        if self._wire and (data is None or isinstance(data, bytes | StreamBody)):
            host = self._host_line(pool)
            if host is not None:
                return self._send_on_wire(pool, host, method, target, data, send_headers, last_timeout[1], limit)
        with requests_errors():
            raw = pool.urlopen(
                method,
                target,
                body=data,
                headers=send_headers,
                redirect=False,
                assert_same_host=False,
                preload_content=False,
                decode_content=False,
                retries=self._adapter.max_retries,
                timeout=last_timeout[1],
                chunked=False,
            )
        resp = self._response(raw.status, raw.reason, raw.headers, target)
        resp.raw = raw
        read_limited(resp, limit)
        return resp

    def _host_line(self, pool: urllib3.HTTPConnectionPool) -> bytes | None:
        """The pool's ``Host`` header line, built once by ``http.client``; ``None`` (and no lean exchange from
        then on) if a future ``http.client`` no longer builds it the way :func:`wire.host_line` reads it."""
        known = self._hosts.get(id(pool))
        if known is not None and known[0] is pool:
            return known[1]
        try:
            line = wire.host_line(pool)
        except (AttributeError, TypeError, ValueError):
            self._wire = False
            return None
        self._hosts[id(pool)] = (pool, line)
        return line

    def _send_on_wire(
        self, pool: urllib3.HTTPConnectionPool, host: bytes, method: str, target: str,
        data: bytes | StreamBody | None, headers: dict[str, str], timeout: urllib3.Timeout, limit: AnswerLimit,
    ) -> requests.Response:  # fmt: skip
        """:meth:`send` through :mod:`.wire`: the same request and answer without ``http.client``'s per-request work."""
        head = wire.request_head(method, target, host, headers)
        with requests_errors():
            reply = wire.exchange(pool, method, target, head, data, timeout, self._adapter.max_retries)
        resp = self._response(reply.status, reply.reason, reply.headers, target)
        with requests_errors(reading=True):
            content = reply.read(*limit.for_status(reply.status))
        resp.raw = io.BytesIO(content)
        resp._content = content
        resp._content_consumed = True
        return resp

    def _response(self, status: int, reason: str | None, headers: Mapping[str, str], target: str) -> requests.Response:
        """A ``requests.Response`` filled in as ``HTTPAdapter.build_response`` does (the caller adds the body)."""
        resp = requests.Response()
        resp.status_code = status
        resp.headers = CaseInsensitiveDict(headers)
        resp.encoding = get_encoding_from_headers(resp.headers)
        resp.reason = reason
        resp.url = self._origin + target
        return resp
