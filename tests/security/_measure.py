"""Run one hostile-peer case and report what the client did, how long it took and how much memory it took.

``python -m tests.security._measure CASE [ROUTE]`` prints one JSON line: the error's type and message, the
seconds the call took and the process's peak resident memory before and after it (:func:`peak_kb`). Run
in a child process so the peak belongs to this case alone (``test_network_caps.py`` does that).

Cases: ``echo-ac-4gb`` (a receiver answers the association request with a 6-byte header announcing a 4 GB
PDU), ``echo-answer-4gb`` (the same as the answer to C-ECHO), ``http-length-10gb`` (a listing announced as
10 GB), ``http-endless-chunked`` (a chunked listing that never ends), ``http-gzip-bomb`` (a listing of 0.3 MB
that inflates to 320 MB), ``http-error-endless`` (a 500 page that never ends). ROUTE picks the client's send
path for the HTTP cases: ``wire`` (the lean path), ``requests`` (a form) or ``urlopen`` (a file body).
"""

from __future__ import annotations

import gzip
import json
import resource
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from tests.security._network_fakes import (
    FakeReceiver,
    FakeXnat,
    ac_pdu,
    endless_chunks,
    read_pdu,
    response,
)
from xnat_uploader.core.transfer import dimse
from xnat_uploader.core.xnat.session import XnatSession

HUGE_PDU = b"\xff\xff\xff\xff"


def _ac_then_huge(conn, receiver) -> None:
    conn.sendall(b"\x02\x00" + HUGE_PDU)


def _answer_huge(conn, receiver) -> None:
    conn.sendall(ac_pdu())
    read_pdu(conn)  # the C-ECHO-RQ
    conn.sendall(b"\x04\x00" + HUGE_PDU)


_BOMB: list[bytes] = []


def _gzip_bomb() -> bytes:
    """320 MB of zeros as 320 gzip members of 1 MB each (~0.3 MB; a gzip stream may hold several members)."""
    if not _BOMB:
        _BOMB.append(gzip.compress(bytes(1 << 20), compresslevel=9) * 320)
    return _BOMB[0]


def _http_answer(case: str):  # noqa: ANN202 - the fake's callable
    def answer(method: str, path: str) -> bytes | Iterable[bytes]:
        if case == "http-length-10gb":
            return [b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 10737418240\r\n\r\n",
                    b"{" * 65536]  # fmt: skip
        if case == "http-endless-chunked":
            return endless_chunks()
        if case == "http-gzip-bomb":
            return response(200, _gzip_bomb(), {"Content-Type": "application/json", "Content-Encoding": "gzip"})
        if case == "http-error-endless":
            head = b"HTTP/1.1 500 Server Error\r\nContent-Type: text/html\r\nContent-Length: 10737418240\r\n\r\n"
            return _endless(head + b"<html><body><h3>Disk quota exceeded</h3>")
        raise ValueError(case)

    return answer


def _endless(first: bytes) -> Iterable[bytes]:
    yield first
    while True:
        yield b"<p>" + b"x" * 65536 + b"</p>"


def _http(case: str, route: str) -> None:
    with FakeXnat(_http_answer(case)) as server, XnatSession(server.url, "user", "secret") as session:
        if route == "wire":
            session.request("GET", "/data/projects", params={"format": "json"}, action="listing projects")
        elif route == "requests":
            session.request("POST", "/data/projects", form={"format": "json"}, action="listing projects")
        else:
            with tempfile.TemporaryDirectory() as folder:
                body = Path(folder) / "body.bin"
                body.write_bytes(b"x" * 100)
                session.request("POST", "/data/projects", body=body, action="listing projects")


def peak_kb() -> int:
    """This process's peak resident memory (KB): ``VmHWM`` on Linux, which belongs to the process's own memory
    map; ``ru_maxrss`` keeps the parent's high-water mark across ``exec`` (a child of a large pytest process
    would report the parent's peak), so it is only the fallback elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def run(case: str, route: str = "wire") -> dict:
    """Run ``case``; the outcome as plain data (``error`` is the exception's type name, or ``None``)."""
    if case == "http-gzip-bomb":
        _gzip_bomb()  # made before the measurement
    before = peak_kb()
    started = time.monotonic()
    error, message, detail = None, "", ""
    try:
        if case.startswith("echo"):
            script = _ac_then_huge if case == "echo-ac-4gb" else _answer_huge
            with FakeReceiver(script) as receiver:
                dimse.echo(receiver.endpoint(timeout=30))
        else:
            _http(case, route)
    except Exception as exc:  # noqa: BLE001 - reported, the test judges it
        error, message, detail = type(exc).__name__, str(exc), getattr(exc, "detail", "")
    seconds = time.monotonic() - started
    peak = peak_kb()
    return {"error": error, "message": message, "detail": detail, "seconds": round(seconds, 3),
            "rss_before_kb": before, "rss_peak_kb": peak}  # fmt: skip


if __name__ == "__main__":
    print(json.dumps(run(*sys.argv[1:])))
