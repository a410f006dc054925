"""The session's lean send path (:mod:`xnat_uploader.core.xnat.direct`) without a network: what it would send
and how it maps urllib3's exceptions, each checked against what ``requests`` itself does with the same input."""

from __future__ import annotations

import io

import pytest
import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection
from urllib3.exceptions import (
    ClosedPoolError,
    ConnectTimeoutError,
    DecodeError,
    InvalidHeader,
    LocationParseError,
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ProxyError,
    ReadTimeoutError,
    ResponseError,
    SSLError,
)

from xnat_uploader.core.xnat import errors as E
from xnat_uploader.core.xnat.body import StreamBody
from xnat_uploader.core.xnat.direct import DirectSender, requests_error
from xnat_uploader.core.xnat.importer import ImportHandler, ImportOptions
from xnat_uploader.core.xnat.session import XnatSession
from xnat_uploader.core.xnat.transport import ConnectionOptions, transport_error

GRADUAL = ImportOptions.for_uploader(ImportHandler.GRADUAL_DICOM, "DEMO", "SUBJ 1", "S/1&2", visit="v=1~x")


def sender(url: str = "http://127.0.0.1:8080") -> DirectSender:
    session = XnatSession(url, "u", "p")
    assert session._direct is not None
    return session._direct


def requests_target(session: XnatSession, method: str, path: str, params) -> str:
    prepared = session._http.prepare_request(requests.Request(method, session.url_for(path), params=params))
    return prepared.path_url


@pytest.mark.parametrize(
    ("url", "path", "params"),
    [
        ("http://127.0.0.1:8080", "/data/services/import", GRADUAL.params()),
        ("https://XNAT.example.org/xnat/", "/data/services/import", GRADUAL.params()),
        ("https://xnat.example.org/xnat", "data/projects", [("format", "json")]),
        ("http://127.0.0.1:8080", "/data/projects", {"format": "json", "columns": "ID,name", "skip": None}),
        ("http://127.0.0.1:8080", "/data/projects", {"a": ["1", "2"], "b": 3}),
        ("http://127.0.0.1:8080", "/data/prearchive/projects/P/20240501_101112345/S1", [("action", "commit")]),
        ("http://127.0.0.1:8080", "/data/x", [("label", "é ü/?#%")]),
        ("http://127.0.0.1:8080", "/xapi/siteConfig/buildInfo", None),
        ("http://127.0.0.1:8080", "/xapi/siteConfig/buildInfo", []),
        ("http://127.0.0.1:8080", "/", None),
    ],
)
def test_request_target_is_what_requests_sends(url, path, params):
    session = XnatSession(url, "u", "p")
    direct = session._direct
    assert direct is not None
    for _ in range(2):  # the second time from the remembered targets
        plan = direct.plan("POST", path, params, b"x")
        assert plan is not None
        assert plan[0] == requests_target(session, "POST", path, params)


@pytest.mark.parametrize(
    "path",
    ["http://other.example.org/data/x", "/data/a b", "/data/../x", "/data/./x", "/data//x", "/data/x?format=json",
     "/data/%41", "/data/é", "/data/.hidden"],
)  # fmt: skip
def test_paths_requests_would_rewrite_go_through_requests(path):
    assert sender().plan("GET", path, None, None) is None


def test_query_given_as_a_string_goes_through_requests():
    assert sender().plan("GET", "/data/projects", "format=json", None) is None  # type: ignore[arg-type]


def test_content_length_of_each_body(tmp_path):
    direct = sender()
    path = tmp_path / "f.bin"
    path.write_bytes(b"y" * 1000)
    assert direct.plan("POST", "/x", None, b"x" * 10) == ("/x", 10)
    assert direct.plan("POST", "/x", None, None) == ("/x", 0)  # requests sends Content-Length: 0 too
    assert direct.plan("POST", "/x", None, b"") == ("/x", 0)
    assert direct.plan("GET", "/x", None, None) == ("/x", None)  # and none for a GET
    assert direct.plan("PUT", "/x", None, StreamBody(iter([b"abc"]), 3)) == ("/x", 3)
    assert direct.plan("PUT", "/x", None, StreamBody(iter([]), 0)) == ("/x", 0)  # never chunked
    with open(path, "rb") as fh:
        assert direct.plan("POST", "/x", None, fh) == ("/x", 1000)
        fh.seek(400)
        assert direct.plan("POST", "/x", None, fh) == ("/x", 600)  # what is left, as requests' super_len says


def test_bodies_of_unknown_length_go_through_requests():
    class Reader:
        def read(self, n: int = -1) -> bytes:
            return b""

    assert sender().plan("POST", "/x", None, Reader()) is None
    assert sender().plan("POST", "/x", None, {"form": "field"}) is None


def test_no_sender_when_a_proxy_applies(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert XnatSession("https://xnat.example.org", "u", "p")._direct is None
    monkeypatch.setenv("NO_PROXY", "xnat.example.org")
    assert XnatSession("https://xnat.example.org", "u", "p")._direct is not None


# --- exceptions: the oracle is requests itself, fed the same urllib3 exception -------------------------------


class _RaisingPool:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def urlopen(self, *args, **kwargs):
        raise self.exc


def _what_requests_raises(exc: Exception) -> Exception:
    adapter = HTTPAdapter(max_retries=0)
    adapter.get_connection_with_tls_context = lambda *a, **k: _RaisingPool(exc)  # type: ignore[method-assign]
    prepared = requests.Request("POST", "http://127.0.0.1:8080/data/services/import", data=b"x").prepare()
    try:
        adapter.send(prepared, timeout=(1, 1))
    except Exception as raised:  # noqa: BLE001 - the oracle's answer, whatever it is
        return raised
    raise AssertionError("requests did not raise")


def _what_requests_raises_reading(exc: Exception) -> Exception:
    class Raw:
        def stream(self, *args, **kwargs):
            raise exc
            yield b""  # a generator, as urllib3's

    resp = requests.Response()
    resp.status_code = 200
    resp.raw = Raw()
    try:
        resp.content  # noqa: B018
    except Exception as raised:  # noqa: BLE001
        return raised
    raise AssertionError("requests did not raise")


_POOL = urllib3.HTTPConnectionPool("127.0.0.1", 8080)
_CONN = HTTPConnection("127.0.0.1", 8080)
_URL = "/data/services/import"
SENDING = [
    MaxRetryError(_POOL, _URL, NewConnectionError(_CONN, "Failed to establish a new connection: [Errno 111] refused")),
    MaxRetryError(_POOL, _URL, NameResolutionError("xnat.invalid", _CONN, OSError("Name or service not known"))),
    MaxRetryError(_POOL, _URL, ConnectTimeoutError(_CONN, "Connection to 127.0.0.1 timed out. (connect timeout=1)")),
    MaxRetryError(_POOL, _URL, SSLError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")),
    MaxRetryError(_POOL, _URL, SSLError("[SSL: WRONG_VERSION_NUMBER] wrong version number")),
    MaxRetryError(_POOL, _URL, ProxyError("Unable to connect to proxy", OSError("refused"))),
    MaxRetryError(_POOL, _URL, ResponseError("too many 500 error responses")),
    ProtocolError("Connection aborted.", ConnectionResetError(104, "Connection reset by peer")),
    ProtocolError("Connection aborted.", BrokenPipeError(32, "Broken pipe")),
    ReadTimeoutError(_POOL, _URL, "Read timed out. (read timeout=0.3)"),
    SSLError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"),
    ClosedPoolError(_POOL, "Pool is closed."),
    InvalidHeader("bad header"),
    ConnectionResetError(104, "Connection reset by peer"),
    LocationParseError("bad location"),
]
READING = [
    ProtocolError("Connection broken: IncompleteRead(5 bytes read, 10 more expected)"),
    DecodeError("Received response with content-encoding: gzip, but failed to decode it."),
    ReadTimeoutError(_POOL, _URL, "Read timed out."),
    SSLError("EOF occurred in violation of protocol"),
]


@pytest.mark.parametrize("exc", SENDING, ids=lambda e: f"{type(e).__name__}")
def test_send_errors_are_what_requests_raises(exc):
    expected = _what_requests_raises(exc)
    got = requests_error(exc)
    assert type(got) is type(expected)
    assert str(got) == str(expected)


@pytest.mark.parametrize("exc", READING, ids=lambda e: f"{type(e).__name__}")
def test_body_errors_are_what_requests_raises(exc):
    expected = _what_requests_raises_reading(exc)
    got = requests_error(exc, reading=True)
    assert type(got) is type(expected)
    assert str(got) == str(expected)


@pytest.mark.parametrize(
    ("exc", "error", "words"),
    [
        (SENDING[0], E.ServerUnreachableError, "cannot be reached"),
        (SENDING[1], E.ServerUnreachableError, "cannot be reached"),
        (SENDING[2], E.ServerUnreachableError, "within 4 s"),
        (SENDING[3], E.TlsError, "certificate is not trusted"),
        (SENDING[4], E.TlsError, "does not answer secure"),
        (SENDING[7], E.ConnectionLostError, "connection to the server broke"),
        (SENDING[9], E.ServerTimeoutError, "did not answer within 9 s"),
        (READING[0], E.ConnectionLostError, "answer was arriving"),
    ],
)
def test_the_user_sees_the_same_error_either_way(exc, error, words):
    options = ConnectionOptions(connect_timeout=4, read_timeout=9)
    reading = exc in READING
    ours = transport_error(requests_error(exc, reading=reading), options, "uploading")  # type: ignore[arg-type]
    oracle = _what_requests_raises_reading(exc) if reading else _what_requests_raises(exc)
    theirs = transport_error(oracle, options, "uploading")  # type: ignore[arg-type]
    assert type(ours) is type(theirs) is error
    assert (ours.message, ours.hint, ours.detail) == (theirs.message, theirs.hint, theirs.detail)
    assert words in ours.message


def test_unmapped_errors_pass_through():
    exc = RuntimeError("not urllib3's")
    assert requests_error(exc) is exc
    assert requests_error(exc, reading=True) is exc


def test_sender_reads_the_body_like_requests():
    """On the ``urlopen`` path, ``Response.content`` equals what requests reads, gzip decoding included.

    (The lean exchange is checked against requests itself over loopback in tests/integration/test_client_wire.py.)
    """
    import gzip

    direct = sender()
    direct._wire = False
    body = gzip.compress(b"/data/prearchive/projects/P/20240501_101112345/S\r\n")

    class Pool:
        pool = object()

        def urlopen(self, method, url, **kwargs):
            self.kwargs = kwargs
            headers = {"Content-Type": "text/uri-list", "Content-Encoding": "gzip", "Content-Length": str(len(body))}
            return urllib3.HTTPResponse(
                body=io.BytesIO(body), headers=headers, status=200, preload_content=False, decode_content=False
            )

    pool = Pool()
    direct._pool = (direct._http.verify, direct._http.cert, pool)  # type: ignore[assignment]
    resp = direct.send("POST", ("/data/services/import", 3), b"abc", {"Cookie": "JSESSIONID=X"}, (1.0, 2.0))
    assert resp.content == b"/data/prearchive/projects/P/20240501_101112345/S\r\n"
    assert resp.headers["content-type"] == "text/uri-list"
    assert resp.encoding == "ISO-8859-1"  # requests' default for text/* without a charset
    assert resp.url == "http://127.0.0.1:8080/data/services/import"
    sent = pool.kwargs
    assert sent["headers"]["Content-Length"] == "3"
    assert sent["headers"]["Cookie"] == "JSESSIONID=X"
    assert sent["chunked"] is False
    assert sent["redirect"] is False
    assert (sent["timeout"].connect_timeout, sent["timeout"].read_timeout) == (1.0, 2.0)
