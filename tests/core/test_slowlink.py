"""The benchmarks' slow-link proxy adds its round trip and holds its bandwidth cap (loose tolerances)."""

from __future__ import annotations

import contextlib
import importlib.util
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "slowlink.py"
_spec = importlib.util.spec_from_file_location("bench_slowlink", _PATH)
assert _spec is not None
assert _spec.loader is not None
slowlink = importlib.util.module_from_spec(_spec)
sys.modules["bench_slowlink"] = slowlink
_spec.loader.exec_module(slowlink)


class _CountingServer:
    """Loopback server: reads a 4-byte length, then that many bytes, answers b"ok", per message."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(10)
        with contextlib.suppress(OSError):
            conn, _ = self.sock.accept()
            conn.settimeout(10)
            with conn:
                while True:
                    head = _recv_exact(conn, 4)
                    if not head:
                        return
                    _recv_exact(conn, int.from_bytes(head, "big"))
                    conn.sendall(b"ok")

    def close(self) -> None:
        self.sock.close()


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        block = conn.recv(min(1 << 16, n - len(out)))
        if not block:
            return bytes(out)
        out += block
    return bytes(out)


def _exchange(client: socket.socket, size: int) -> float:
    started = time.perf_counter()
    client.sendall(size.to_bytes(4, "big") + b"x" * size)
    assert _recv_exact(client, 2) == b"ok"
    return time.perf_counter() - started


def test_adds_round_trip_and_caps_rate():
    server = _CountingServer()
    # 40 ms round trip, 4 Mbit/s = 500 KB/s: 200 KB take ~0.4 s on the link.
    with slowlink.SlowLink(("127.0.0.1", server.port), rtt=0.040, mbit=4) as link:
        client = socket.create_connection(("127.0.0.1", link.port), timeout=10)
        with client:
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            first = _exchange(client, 10)  # the handshake's round trip, then the message's
            ping = min(_exchange(client, 10) for _ in range(3))
            bulk = _exchange(client, 200_000)
        assert link.bytes_up >= 200_000
    server.close()
    assert 0.075 <= first < 0.5
    assert 0.038 <= ping < 0.25
    expected = 200_000 / 500_000 + 0.040
    assert 0.8 * expected <= bulk < 2.5 * expected


def test_refuses_a_non_loopback_target():
    with pytest.raises(ValueError, match="loopback"):
        slowlink.SlowLink(("192.0.2.1", 80))
