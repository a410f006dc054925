"""Hostile peers for the network tests: a DICOM receiver and an XNAT that lie about sizes or never finish.

Both listen on loopback and serve each connection in a thread; the tests (and ``_measure.py``, which runs
them in a child process to read its peak memory) script what they send. Our own code only.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import tracemalloc
from collections.abc import Callable, Iterable, Iterator

from xnat_uploader.core.transfer.dimse import Endpoint

IMPLICIT = "1.2.840.10008.1.2"
SESSION_ID = "0123456789ABCDEF0123456789ABCDEF"


@contextlib.contextmanager
def bounded_memory(limit: int) -> Iterator[None]:
    """Fail if the block's peak Python allocation (tracemalloc) exceeds ``limit`` bytes: for the fuzz properties,
    whose every example must stay small whatever lengths its bytes announce."""
    tracemalloc.start()
    try:
        yield
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak <= limit, f"peak allocation {peak:,} bytes, more than {limit:,}"


class _Listener:
    """A loopback listener; ``serve(conn)`` runs in a thread per connection. Connections stay open until
    :meth:`close` (a peer that stops sending without closing is what the time-outs are for)."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._conns: list[socket.socket] = []
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._serve_quietly, args=(conn,), daemon=True).start()

    def _serve_quietly(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            self.serve(conn)
        self._stop.wait(30)  # keep the connection open: the client must not rely on the peer closing it

    def serve(self, conn: socket.socket) -> None:
        raise NotImplementedError

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def close(self) -> None:
        self._stop.set()
        self._sock.close()
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.close()

    def __enter__(self):  # noqa: ANN204 - the subclass
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- DICOM -----------------------------------------------------------------------------------------------


def read_pdu(conn: socket.socket) -> tuple[int, bytes]:
    head = _recv_exact(conn, 6)
    kind, length = struct.unpack(">BxL", head)
    return kind, _recv_exact(conn, length)


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        got = conn.recv(n - len(buf))
        if not got:
            raise ConnectionError("peer closed")
        buf += got
    return buf


def item(kind: int, body: bytes) -> bytes:
    return struct.pack(">BxH", kind, len(body)) + body


def ac_pdu(contexts: Iterable[tuple[int, int, str]] = ((1, 0, IMPLICIT),), max_pdu: int = 16384) -> bytes:
    """An A-ASSOCIATE-AC accepting ``contexts`` (context ID, result, transfer syntax)."""
    fixed = struct.pack(">HH16s16s32x", 1, 0, b"XNAT".ljust(16), b"XNATUPLOAD".ljust(16))
    items = item(0x10, b"1.2.840.10008.3.1.1.1")
    for context_id, result, ts in contexts:
        items += item(0x21, bytes((context_id, 0, result, 0)) + item(0x40, ts.encode()))
    items += item(0x50, item(0x51, struct.pack(">L", max_pdu)))
    body = fixed + items
    return struct.pack(">BxL", 0x02, len(body)) + body


def pdata(context_id: int, control: int, data: bytes) -> bytes:
    """A P-DATA-TF PDU with one PDV item."""
    return struct.pack(">BxLLBB", 0x04, len(data) + 6, len(data) + 2, context_id, control) + data


def echo_rsp(msg_id: int = 1, status: int = 0) -> bytes:
    """A C-ECHO-RSP command set (implicit VR little endian)."""

    def elem(element: int, value: bytes) -> bytes:
        return struct.pack("<HHL", 0, element, len(value)) + value

    body = (
        elem(0x0002, b"1.2.840.10008.1.1\0")
        + elem(0x0100, struct.pack("<H", 0x8030))
        + elem(0x0120, struct.pack("<H", msg_id))
        + elem(0x0800, struct.pack("<H", 0x0101))
        + elem(0x0900, struct.pack("<H", status))
    )
    return elem(0x0000, struct.pack("<L", len(body))) + body


class FakeReceiver(_Listener):
    """A "DICOM receiver": reads the A-ASSOCIATE-RQ, then ``script(conn)`` sends whatever it likes."""

    def __init__(self, script: Callable[[socket.socket, FakeReceiver], None]) -> None:
        self.script = script
        super().__init__()

    def serve(self, conn: socket.socket) -> None:
        read_pdu(conn)
        self.script(conn, self)

    def endpoint(self, timeout: float = 5.0) -> Endpoint:
        return Endpoint("127.0.0.1", self.port, "XNAT", connect_timeout=timeout, acse_timeout=timeout,
                        dimse_timeout=timeout)  # fmt: skip


# --- HTTP ------------------------------------------------------------------------------------------------

Answer = bytes | Iterable[bytes]


class FakeXnat(_Listener):
    """An "XNAT": signs anyone in (``POST /data/JSESSION``), then answers every other request with
    ``answer(method, path)``: raw bytes (status line, headers, body) or an iterable of them sent one after the
    other (a generator that never ends is an endless answer)."""

    def __init__(self, answer: Callable[[str, str], Answer]) -> None:
        self.answer = answer
        self.requests: list[tuple[str, str]] = []
        super().__init__()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def serve(self, conn: socket.socket) -> None:
        with conn.makefile("rb") as f:
            while line := f.readline():
                method, path = line.decode("latin-1").split()[:2]
                length = 0
                while (h := f.readline()) not in (b"\r\n", b""):
                    name, _, value = h.decode("latin-1").partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                f.read(length)
                self.requests.append((method, path))
                if path.startswith("/data/JSESSION"):
                    conn.sendall(response(200, SESSION_ID.encode()))
                    continue
                reply = self.answer(method, path)
                for piece in [reply] if isinstance(reply, bytes) else reply:
                    if self.stopped:
                        return
                    conn.sendall(piece)


def response(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
    """A complete answer with a Content-Length (unless ``headers`` bring their own framing)."""
    fields = {"Content-Type": "text/plain", **(headers or {})}
    if "Content-Length" not in fields and "Transfer-Encoding" not in fields:
        fields["Content-Length"] = str(len(body))
    head = f"HTTP/1.1 {status} X\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items()) + "\r\n"
    return head.encode("latin-1") + body


def endless_chunks(piece: int = 1 << 20) -> Iterable[bytes]:
    """A chunked 200 that never ends (a chunk of ``piece`` bytes after another)."""
    yield b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunk = f"{piece:x}\r\n".encode() + b" " * piece + b"\r\n"
    while True:
        yield chunk
