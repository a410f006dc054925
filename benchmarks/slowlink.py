"""An emulated slow network link on loopback: a TCP proxy that adds latency and caps bandwidth.

    python benchmarks/slowlink.py --target 127.0.0.1:8080            # 40 ms round trip, 200 Mbit/s
    python benchmarks/slowlink.py --target 127.0.0.1:8080 --rtt-ms 80 --mbit 50 --seconds 600
    python benchmarks/slowlink.py [--quick]                           # self-check: what the proxy adds

For benchmarks where the kernel's ``netem`` is not available. Loopback only: it listens on
127.0.0.1 and forwards to a loopback address. In code::

    with SlowLink(("127.0.0.1", server_port), rtt=0.040, mbit=200) as link:
        requests.get(f"http://127.0.0.1:{link.port}/...")

The model, per direction of the link (client->server and server->client are independent, as on a
full-duplex line): every chunk read from one side is serialized at the link's rate behind the
chunks already on the link (all connections share that rate, as they share a real bottleneck),
then delivered half a round trip later. A new connection waits one round trip before its first
bytes move (the TCP handshake). At most ``buffer_seconds`` of backlog may wait on the link before
the proxy stops reading, so a sender feels the cap (no unbounded buffering in the proxy).
Sockets on both sides have TCP_NODELAY set, so the proxy adds no Nagle delay of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import socket
import sys
import threading
import time
from collections import deque

CHUNK = 64 << 10


def _check_loopback(host: str) -> None:
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"slowlink forwards to loopback addresses only, not {host!r}")


class _Line:
    """One direction of the link: a serialization clock shared by every connection."""

    def __init__(self, rate: float, delay: float) -> None:
        self.rate = rate  # bytes per second
        self.delay = delay  # one-way propagation, seconds
        self.free_at = 0.0  # when the last scheduled byte has left

    def schedule(self, n: int, now: float) -> tuple[float, float]:
        """Put ``n`` bytes on the line; returns (when they have left, when they arrive)."""
        start = max(now, self.free_at)
        self.free_at = start + n / self.rate
        return self.free_at, self.free_at + self.delay


class SlowLink:
    """A proxy on ``127.0.0.1:port`` to ``target`` with added latency and a bandwidth cap.

    ``rtt`` is the round trip added (seconds), ``mbit`` the rate of each direction (Mbit/s).
    ``max_seconds`` bounds the proxy's life; ``idle_seconds`` closes a connection silent that long.
    """

    def __init__(
        self,
        target: tuple[str, int],
        *,
        rtt: float = 0.040,
        mbit: float = 200.0,
        port: int = 0,
        buffer_seconds: float = 0.05,
        max_seconds: float = 3600.0,
        idle_seconds: float = 600.0,
    ) -> None:
        _check_loopback(target[0])
        if rtt < 0 or mbit <= 0:
            raise ValueError("rtt must be >= 0 and mbit > 0")
        self.target = target
        self.rtt = rtt
        self.mbit = mbit
        self.port = port
        self.buffer_seconds = buffer_seconds
        self.max_seconds = max_seconds
        self.idle_seconds = idle_seconds
        self.bytes_up = 0  # client -> server
        self.bytes_down = 0  # server -> client
        self.connections = 0
        self._up = _Line(mbit * 1e6 / 8, rtt / 2)
        self._down = _Line(mbit * 1e6 / 8, rtt / 2)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None

    # -- life cycle -------------------------------------------------------------------------------
    def start(self) -> SlowLink:
        self._thread = threading.Thread(target=self._run, name="slowlink", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("slowlink did not start within 10 s")
        if self._error is not None:
            raise RuntimeError(f"slowlink failed to start: {self._error}") from self._error
        return self

    def stop(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop ended by itself (max_seconds)
                loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> SlowLink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:  # noqa: BLE001 - reported to start() or ends the thread quietly
            self._error = exc
            self._ready.set()
        finally:
            loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        tasks: set[asyncio.Task] = set()

        def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.ensure_future(self._connection(reader, writer))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        server = await asyncio.start_server(on_connect, "127.0.0.1", self.port)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.max_seconds)
        finally:
            server.close()
            for task in list(tasks):
                task.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=5)
            await server.wait_closed()

    # -- one connection ---------------------------------------------------------------------------
    async def _connection(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        _nodelay(c_writer)
        s_writer = None
        pumps: list[asyncio.Task] = []
        try:
            await asyncio.sleep(self.rtt)  # the handshake's round trip
            s_reader, s_writer = await asyncio.wait_for(asyncio.open_connection(*self.target), 30)
            _nodelay(s_writer)
            pumps = [
                asyncio.ensure_future(self._pump(c_reader, s_writer, self._up, "up")),
                asyncio.ensure_future(self._pump(s_reader, c_writer, self._down, "down")),
            ]
            await asyncio.wait(pumps, return_when=asyncio.FIRST_EXCEPTION)
        except (OSError, asyncio.TimeoutError):
            pass
        finally:
            for task in pumps:
                if not task.done():
                    task.cancel()
                elif not task.cancelled():
                    task.exception()  # retrieved: a reset connection is normal here
            for w in (c_writer, s_writer):
                if w is not None:
                    w.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: _Line, way: str) -> None:
        """Read from one side, hold each chunk as the link would, write it to the other side."""
        queue: deque[tuple[float, bytes]] = deque()
        wake = asyncio.Event()
        done = False

        async def deliver() -> None:
            loop = asyncio.get_running_loop()
            while True:
                if not queue:
                    if done:
                        break
                    wake.clear()
                    await wake.wait()
                    continue
                arrive, data = queue[0]
                wait = arrive - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                queue.popleft()
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():
                with contextlib.suppress(OSError):
                    writer.write_eof()

        sender = asyncio.ensure_future(deliver())
        loop = asyncio.get_running_loop()
        try:
            while True:
                read = asyncio.ensure_future(reader.read(CHUNK))
                finished, _ = await asyncio.wait({read, sender}, timeout=self.idle_seconds,
                                                 return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
                if read not in finished:
                    read.cancel()
                    if sender in finished:  # the other side broke: stop reading
                        sender.result()
                        return
                    raise asyncio.TimeoutError(f"slowlink: {way} idle for {self.idle_seconds} s")
                data = read.result()
                if not data:
                    break
                if way == "up":
                    self.bytes_up += len(data)
                else:
                    self.bytes_down += len(data)
                now = loop.time()
                left, arrive = line.schedule(len(data), now)
                queue.append((arrive, data))
                wake.set()
                backlog = left - now - self.buffer_seconds
                if backlog > 0:  # the link's buffer is full: stop reading until it drains
                    await asyncio.sleep(backlog)
        except BaseException:
            sender.cancel()
            raise
        done = True
        wake.set()
        await sender


def _nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _sink(sock: socket.socket) -> None:
    """Self-check server: per message (4-byte length, then the bytes) answer b"ok"."""
    with contextlib.suppress(OSError):
        conn, _ = sock.accept()
        with conn:
            while True:
                head = _recv(conn, 4)
                if len(head) < 4:
                    return
                _recv(conn, int.from_bytes(head, "big"))
                conn.sendall(b"ok")


def _recv(conn: socket.socket, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        block = conn.recv(min(1 << 20, n - len(out)))
        if not block:
            break
        out += block
    return bytes(out)


def self_check(rtt: float, mbit: float, megabytes: float) -> int:
    """Measure the proxy itself on loopback: the round trip it adds and the rate it lets through."""
    sock = socket.create_server(("127.0.0.1", 0))
    sock.settimeout(60)
    threading.Thread(target=_sink, args=(sock,), daemon=True).start()
    with SlowLink(sock.getsockname()[:2], rtt=rtt, mbit=mbit, max_seconds=120) as link:
        client = socket.create_connection(("127.0.0.1", link.port), timeout=60)
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def exchange(size: int) -> float:
            started = time.perf_counter()
            client.sendall(size.to_bytes(4, "big") + bytes(size))
            if _recv(client, 2) != b"ok":
                raise RuntimeError("the self-check server did not answer")
            return time.perf_counter() - started

        with client:
            first = exchange(1)
            pings = sorted(exchange(1) for _ in range(10))
            size = int(megabytes * 1e6)
            bulk = exchange(size)
    sock.close()
    rate = size / max(bulk - pings[0], 1e-9) * 8 / 1e6
    print(f"slowlink self-check: configured {rtt * 1000:g} ms RTT, {mbit:g} Mbit/s")
    print(f"  first exchange (handshake + round trip): {first * 1000:.1f} ms (expected ~{2 * rtt * 1000:g})")
    print(f"  round trip, median of 10: {pings[5] * 1000:.1f} ms (min {pings[0] * 1000:.1f})")
    print(f"  {megabytes:g} MB one way: {bulk:.2f} s = {rate:.0f} Mbit/s ({rate / mbit:.0%} of the cap)")
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", metavar="HOST:PORT", help="a loopback address to forward to (none: self-check)")
    parser.add_argument("--port", type=int, default=0, help="port to listen on, 127.0.0.1 (default: any free)")
    parser.add_argument("--rtt-ms", type=float, default=40.0, help="added round trip, ms (default 40)")
    parser.add_argument("--mbit", type=float, default=200.0, help="rate of each direction, Mbit/s (default 200)")
    parser.add_argument("--seconds", type=float, default=3600.0, help="stop after this long (default 3600)")
    parser.add_argument("--quick", action="store_true", help="self-check with 5 MB instead of 25 MB")
    args = parser.parse_args(argv)
    if not args.target:
        return self_check(args.rtt_ms / 1000, args.mbit, 5 if args.quick else 25)
    host, _, port = args.target.rpartition(":")
    link = SlowLink((host, int(port)), rtt=args.rtt_ms / 1000, mbit=args.mbit, port=args.port,
                    max_seconds=args.seconds).start()  # fmt: skip
    print(f"slowlink on {link.address} -> {args.target}: +{args.rtt_ms:g} ms RTT, {args.mbit:g} Mbit/s", flush=True)
    try:
        deadline = time.monotonic() + args.seconds
        while time.monotonic() < deadline and link._thread is not None and link._thread.is_alive():
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        link.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
