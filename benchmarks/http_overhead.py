"""Client CPU of one import POST: our ``XnatSession`` import path against plain ``requests``.

    python benchmarks/http_overhead.py --quick          # 300 POSTs per row, one round (a few seconds)
    python benchmarks/http_overhead.py                  # 1,000 POSTs per row, three rounds interleaved, medians
    python benchmarks/http_overhead.py --threads 8      # the same from 8 threads at once (as the gradual upload)

What it measures: client CPU milliseconds (user+sys of this process, ``time.process_time``) per
``POST /data/services/import`` of a 520 KB body, over keep-alive, against a minimal HTTP server in a child
process (its CPU is not counted). Rows:

- ``requests``: a plain ``requests.Session`` (``trust_env`` off) posting the same URL, parameters, headers
  and body: the baseline of the ratios.
- ``urllib3``: ``HTTPConnectionPool.urlopen`` directly (no retries, body preloaded): the floor under any
  pure-Python client built on ``requests``' pool.
- ``ours-via-requests``: ``import_data(XnatSession, bytes, ImportOptions(gradual-DICOM ...))``, the call the
  gradual transfer makes per file (parameters, the request, parsing the answer), with the session's lean
  send path turned off: every request through ``requests.Session.request``, as before that path existed.
- ``ours``: the same call as the session makes it now (straight to ``requests``' urllib3 pool).

Target: ``ours`` <= ~0.3 ms of client CPU per request. The machine is shared and noisy, so compare
ratios within one run; each row is timed in rounds that interleave the rows, and the median is shown.
"""

from __future__ import annotations

import argparse
import multiprocessing
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

if TYPE_CHECKING:
    from xnat_uploader.core.xnat.importer import ImportOptions

BODY_SIZE = 520 * 1024
JSESSION = "0F3A2B4C5D6E7F8091A2B3C4D5E6F7C91"
URI = b"/data/prearchive/projects/BENCH/20240501_101112345/S1\r\n"
# Roughly what Tomcat/XNAT sends with an import answer.
_HEADERS = (
    "Date: Mon, 23 Nov 2026 18:00:00 GMT\r\n"
    "Server: Apache-Coyote/1.1\r\n"
    "Cache-Control: no-cache, no-store, max-age=0, must-revalidate\r\n"
    "Pragma: no-cache\r\n"
    "Expires: 0\r\n"
    "X-Content-Type-Options: nosniff\r\n"
)


# --- the server (child process) ---------------------------------------------------------------------


def _answer(method: str, path: str) -> bytes:
    if path.startswith("/data/JSESSION"):
        body, ctype = (b"" if method == "DELETE" else JSESSION.encode()), "text/plain"
    else:
        body, ctype = URI, "text/uri-list"
    head = f"HTTP/1.1 200 OK\r\n{_HEADERS}Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


def _handle(conn: socket.socket) -> None:
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sink = bytearray(1 << 20)
    view = memoryview(sink)
    buf = b""
    with conn:
        while True:
            while b"\r\n\r\n" not in buf:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
            head, _, buf = buf.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
                elif name.strip().lower() == "transfer-encoding":
                    conn.sendall(b"HTTP/1.1 411 Length Required\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    return
            left = length - len(buf)
            buf = buf[length:] if left <= 0 else b""
            while left > 0:
                n = conn.recv_into(view, min(left, len(sink)))
                if not n:
                    return
                left -= n
            conn.sendall(_answer(method, path))


def _serve(port_out: multiprocessing.connection.Connection) -> None:
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    port_out.send(listener.getsockname()[1])
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=_handle, args=(conn,), daemon=True).start()


# --- the clients -----------------------------------------------------------------------------------


def _options() -> ImportOptions:
    """What the gradual transfer sends per file."""
    from xnat_uploader.core.xnat.importer import ImportHandler, ImportOptions

    return ImportOptions.for_uploader(ImportHandler.GRADUAL_DICOM, "BENCH", "SUBJ", "S1")


def _params() -> list[tuple[str, str]]:
    return _options().params()


def make_requests(url: str, payload: bytes) -> tuple[Callable[[], None], Callable[[], None]]:
    import requests

    s = requests.Session()
    s.trust_env = False
    adapter = requests.adapters.HTTPAdapter(pool_maxsize=10, max_retries=0)
    s.mount("http://", adapter)
    headers = {"Content-Type": "application/dicom", "Cookie": f"JSESSIONID={JSESSION}"}
    params = _params()

    def one() -> None:
        r = s.post(url + "/data/services/import", params=params, data=payload, headers=headers, timeout=(10, 120))
        assert r.status_code == 200, r.status_code
        assert r.content == URI

    return one, s.close


def make_urllib3(url: str, payload: bytes) -> tuple[Callable[[], None], Callable[[], None]]:
    from urllib.parse import urlencode

    import urllib3

    host, port = url.split("//", 1)[1].split(":")
    pool = urllib3.HTTPConnectionPool(host, int(port), maxsize=10)
    target = "/data/services/import?" + urlencode(_params())
    headers = {
        "User-Agent": "bench",
        "Accept": "*/*",
        "Content-Type": "application/dicom",
        "Cookie": f"JSESSIONID={JSESSION}",
    }
    timeout = urllib3.Timeout(connect=10, read=120)

    def one() -> None:
        r = pool.urlopen("POST", target, body=payload, headers=headers, retries=False, redirect=False, timeout=timeout)
        assert r.status == 200, r.status
        assert r.data == URI

    return one, pool.close


def make_ours(url: str, payload: bytes, lean: bool = True) -> tuple[Callable[[], None], Callable[[], None]]:
    from xnat_uploader.core.xnat.importer import import_data
    from xnat_uploader.core.xnat.session import ConnectionOptions, XnatSession

    session = XnatSession(url, "bench", "bench", ConnectionOptions(pool_size=8))
    session.login()
    if not lean:
        session._direct = None  # every request through requests.Session.request, as before the lean path
    options = _options()

    def one() -> None:
        result = import_data(session, payload, options)
        assert result.uri == URI.decode().strip(), result

    return one, session.close


MAKERS: dict[str, Callable[[str, bytes], tuple[Callable[[], None], Callable[[], None]]]] = {
    "requests": make_requests,
    "urllib3": make_urllib3,
    "ours-via-requests": lambda url, payload: make_ours(url, payload, lean=False),
    "ours": make_ours,
}


def measure(one: Callable[[], None], n: int, threads: int) -> float:
    """Client CPU milliseconds per request over ``n`` requests (after a short warm-up)."""
    for _ in range(20):
        one()
    if threads <= 1:
        start = time.process_time()
        for _ in range(n):
            one()
        return (time.process_time() - start) * 1000 / n
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda _: one(), range(threads * 2)))
        start = time.process_time()
        list(pool.map(lambda _: one(), range(n)))
        return (time.process_time() - start) * 1000 / n


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="300 requests per row, one round")
    parser.add_argument("-n", type=int, help="requests per row and round (default 1,000; 300 with --quick)")
    parser.add_argument("--rounds", type=int, help="rounds, interleaving the rows (default 3; 1 with --quick)")
    parser.add_argument("--threads", type=int, default=1, help="client threads sending at once (default 1)")
    parser.add_argument("--only", help="comma-separated rows: " + ",".join(MAKERS))
    args = parser.parse_args(argv)
    n = args.n or (300 if args.quick else 1000)
    rounds = args.rounds or (1 if args.quick else 3)
    rows = args.only.split(",") if args.only else list(MAKERS)

    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    server = ctx.Process(target=_serve, args=(send,), daemon=True)
    server.start()
    try:
        url = f"http://127.0.0.1:{receive.recv()}"
        payload = bytes(range(256)) * (BODY_SIZE // 256)
        clients = {row: MAKERS[row](url, payload) for row in rows}
        results: dict[str, list[float]] = {row: [] for row in rows}
        for r in range(rounds):
            order = rows[r % len(rows) :] + rows[: r % len(rows)]
            for row in order:
                results[row].append(measure(clients[row][0], n, args.threads))
        for _, close in clients.values():
            close()
    finally:
        server.terminate()
        server.join(5)

    print(f"{n} POSTs of {BODY_SIZE // 1024} KB per row and round, {rounds} round(s), {args.threads} thread(s)")
    print(f"{'row':<18} {'client CPU ms/request (median)':>31} {'vs requests':>12}   all rounds")
    base = statistics.median(results["requests"]) if "requests" in results else None
    for row in rows:
        med = statistics.median(results[row])
        ratio = f"{med / base:.2f}x" if base else "-"
        spread = " ".join(f"{v:.3f}" for v in results[row])
        print(f"{row:<18} {med:>31.3f} {ratio:>12}   {spread}")
    if "ours" in results and args.threads == 1:
        verdict = "meets" if statistics.median(results["ours"]) <= 0.3 else "MISSES"
        print(f"target: ours <= 0.3 ms/request: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
