"""The lean exchange (``core/xnat/wire.py``) reads every kind of answer as ``requests`` does, over loopback.

A scripted server gives the same raw answer to the lean path (``DirectSender``) and to ``requests`` itself;
status, reason, headers, body and errors must agree, and kept-alive connections must be reused or dropped as
``http.client`` would.
"""

from __future__ import annotations

import gzip
import hashlib
import socket
import threading

import pytest
import requests
from requests.adapters import HTTPAdapter

from tests.integration._client_data import LoopbackServer
from xnat_uploader.core.xnat import StreamBody
from xnat_uploader.core.xnat.direct import DirectSender

PATH = "/data/services/import"


class ScriptServer(LoopbackServer):
    """Answers each request with the next scripted reply. A reply is raw bytes, or ``(bytes, "close")`` to close
    the connection after it, or ``(bytes, "early")`` to answer before reading the body and then close."""

    def __init__(self, replies: list) -> None:
        self.replies = list(replies)
        self.bodies: list[str] = []  # sha256 of each request body received
        super().__init__()

    def _handle(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as f:
            while f.readline():
                length = 0
                while (h := f.readline()) not in (b"\r\n", b""):
                    name, _, value = h.decode("latin-1").partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                reply = self.replies.pop(0)
                data, how = reply if isinstance(reply, tuple) else (reply, "")
                if how == "early":
                    conn.sendall(data)
                    conn.shutdown(socket.SHUT_WR)
                    return
                self.bodies.append(hashlib.sha256(f.read(length)).hexdigest())
                conn.sendall(data)
                if how == "close":
                    return


def both_ways(replies: list, body=b"x" * 1000, method: str = "POST", rounds: int = 1):
    """The answers (or the exception) of the lean path and of requests to the same scripted replies."""
    results, bodies = [], []
    for lean in (True, False):
        server = ScriptServer(replies * rounds)
        http = requests.Session()
        http.mount("http://", HTTPAdapter(pool_connections=1, pool_maxsize=4, max_retries=0))
        sender = DirectSender.for_session(http, server.url)
        assert sender is not None
        assert sender._wire
        out = []
        try:
            for _ in range(rounds):
                data = body() if callable(body) else body
                try:
                    if lean:
                        plan = sender.plan(method, PATH, [("a", "b")], data)
                        assert plan is not None
                        resp = sender.send(method, plan, data, {"Content-Type": "application/dicom"}, (5, 5))
                    else:
                        resp = http.request(method, server.url + PATH, params=[("a", "b")], data=data,
                                            headers={"Content-Type": "application/dicom"}, timeout=(5, 5),
                                            allow_redirects=False)  # fmt: skip
                    answer = (resp.status_code, resp.reason, dict(resp.headers), resp.content)
                    out.append((*answer, resp.url.replace(server.url, "")))
                except requests.RequestException as exc:
                    out.append(type(exc))
            results.append((out, server.connections))
            bodies.append(server.bodies)
        finally:
            http.close()
            server.close()
    assert bodies[0] == bodies[1]  # the server received the same bytes both ways
    return results[0], results[1]


def ok(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%b\r\n%b" % (len(body), extra, body)


def test_kept_alive_answers_reuse_one_connection():
    lean, plain = both_ways([ok(b"/data/prearchive/projects/P/1/S\r\n")], rounds=5)
    assert lean == plain
    assert lean[1] == 1
    assert lean[0][0][:2] == (200, "OK")
    assert lean[0][0][3] == b"/data/prearchive/projects/P/1/S\r\n"


def test_chunked_answer_with_extension_and_trailer():
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain;charset=UTF-8\r\n\r\n"
        b"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    lean, plain = both_ways([chunked], rounds=3)
    assert lean == plain
    assert lean[0][0][3] == b"hello, world"
    assert lean[1] == 1  # the connection survived the chunked answers


def test_connection_close_and_http_1_0_answers_open_a_new_connection():
    for reply in (
        (ok(b"done", b"Connection: close\r\n"), "close"),
        (b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nbody to the end", "close"),
        (b"HTTP/1.1 200 OK\r\n\r\nno length: read to the end", "close"),
    ):
        lean, plain = both_ways([reply], rounds=3)
        assert lean == plain
        assert lean[1] == 3


def test_gzip_body_duplicate_headers_continue_and_no_content():
    packed = gzip.compress(b"/data/prearchive/projects/P/1/S")
    replies = [
        ok(packed, b"Content-Encoding: gzip\r\n"),
        ok(b"x", b"Set-Cookie: a=1\r\nSet-Cookie: b=2\r\nX-Folded: one\r\n two\r\n"),
        b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"after continue"),
        b"HTTP/1.1 204 No Content\r\n\r\n",
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found",
    ]
    lean_all, plain_all = [], []
    for reply in replies:
        lean, plain = both_ways([reply])
        lean_all.append(lean[0][0])
        plain_all.append(plain[0][0])
    assert lean_all[0][3] == b"/data/prearchive/projects/P/1/S"
    assert lean_all[1][2]["Set-Cookie"] == "a=1, b=2"
    assert lean_all[2][:2] == (200, "OK")
    assert lean_all[3][3] == b""
    assert lean_all[4][:2] == (404, "Not Found")
    for mine, theirs in zip(lean_all, plain_all, strict=True):
        if mine[2].get("X-Folded"):
            # the email parser keeps the fold in the value; both mean "one two"
            assert " ".join(theirs[2]["X-Folded"].split()) == mine[2]["X-Folded"]
            mine = (*mine[:2], {**mine[2], "X-Folded": ""}, *mine[3:])
            theirs = (*theirs[:2], {**theirs[2], "X-Folded": ""}, *theirs[3:])
        assert mine == theirs


@pytest.mark.parametrize(
    "reply",
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", "close"),  # body cut short
        (b"", "close"),  # closed without an answer
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", "close"),  # chunk cut short
        (b"garbage\r\n\r\n", "close"),  # not HTTP
        (b"HTTP/1.1 abc OK\r\n\r\n", "close"),  # no status code
    ],
)
def test_broken_answers_raise_what_requests_raises(reply):
    lean, plain = both_ways([reply])
    assert lean[0] == plain[0]
    assert isinstance(lean[0][0], type)
    assert issubclass(lean[0][0], requests.RequestException)


def test_an_early_answer_to_a_large_body_is_read():
    body = b"z" * (16 << 20)  # far more than the socket buffers hold: the server stops reading
    early = (b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 6\r\nConnection: close\r\n\r\nsigned", "early")
    lean, plain = both_ways([early], body=body)
    assert lean[0] == plain[0]
    assert lean[0][0][:2] == (401, "Unauthorized")


def test_stream_bodies_are_sent_whole():
    """Small and large pieces (gathered into one sendmsg, which the slow reader makes send only part of)."""
    data = bytes(range(256)) * 40_000
    sizes = [30, 7000, 1, 300_000, 45, 65536, 2_000_000]
    pieces, at = [], 0
    while at < len(data):
        for size in sizes:
            pieces.append(memoryview(data)[at : at + size])
            at += size
    pieces = [p for p in pieces if len(p)]
    lean, plain = both_ways([ok(b"k")], body=lambda: StreamBody(iter(pieces), len(data)), rounds=2)
    assert lean == plain
    assert lean[0][0][3] == b"k"


def test_refused_connection_raises_what_requests_raises():
    with socket.create_server(("127.0.0.1", 0)) as s:
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    http = requests.Session()
    http.mount("http://", HTTPAdapter(max_retries=0))
    sender = DirectSender.for_session(http, url)
    assert sender is not None
    with pytest.raises(requests.ConnectionError) as lean:
        sender.send("POST", sender.plan("POST", PATH, None, b"abc"), b"abc", {}, (2, 2))
    with pytest.raises(requests.ConnectionError) as plain:
        http.post(url + PATH, data=b"abc", timeout=(2, 2))
    assert type(lean.value) is type(plain.value)


def test_gathered_writes_survive_partial_sends():
    """``sendmsg`` on a socket with a time-out may take only part of the buffers: the rest must follow, in order."""
    from xnat_uploader.core.xnat import wire

    writer, reader = socket.socketpair()
    writer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    writer.settimeout(5)  # as urllib3's sockets: non-blocking underneath, so sendmsg returns what fitted
    data = bytes(range(256)) * 4000
    pieces = [memoryview(data)[i : i + 9999] for i in range(0, len(data), 9999)]
    got = bytearray()

    def drain() -> None:
        while chunk := reader.recv(3000):
            got.extend(chunk)

    thread = threading.Thread(target=drain)
    thread.start()
    with reader:
        with writer:
            wire._send_all(writer, [b"head:", *pieces])
        thread.join()
    assert bytes(got) == b"head:" + data


def test_without_a_host_line_the_sender_falls_back_to_urlopen(monkeypatch):
    """Should a future http.client build its head differently, requests still go out (through urlopen)."""
    from xnat_uploader.core.xnat import wire

    def broken(pool):
        raise AttributeError("_buffer")

    monkeypatch.setattr(wire, "host_line", broken)
    server = ScriptServer([ok(b"fine")] * 2)
    http = requests.Session()
    http.mount("http://", HTTPAdapter(max_retries=0))
    try:
        sender = DirectSender.for_session(http, server.url)
        assert sender is not None
        for _ in range(2):
            resp = sender.send("POST", sender.plan("POST", PATH, None, b"abc"), b"abc", {}, (2, 2))
            assert (resp.status_code, resp.content) == (200, b"fine")
        assert sender._wire is False
        assert server.bodies == [hashlib.sha256(b"abc").hexdigest()] * 2
    finally:
        http.close()
        server.close()
