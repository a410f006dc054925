"""The sandbox under crafted requests: bad framing answers 400 (never a crashed handler), bodies stay bounded in
memory, and its administrator password never has to be on the command line.

Raw requests over real loopback sockets to a running sandbox; multipart limits on the parser itself (with
tracemalloc for its peak memory); the password paths through the real ``xnat-uploader sandbox`` command.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import socket
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from xnat_uploader.commands import sandbox as sandbox_command
from xnat_uploader.sandbox import multipart
from xnat_uploader.sandbox.httpd import MAX_BODY, Body, HttpError
from xnat_uploader.sandbox.server import SandboxServer

ADMIN = "Authorization: Basic YWRtaW46YWRtaW4=\r\n"  # admin:admin
IMPORT = "POST /data/services/import?import-handler=DICOM-zip&PROJECT_ID=DEMO HTTP/1.1\r\nHost: x\r\n" + ADMIN


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> Iterator[SandboxServer]:
    """One sandbox for the module (admin/admin, project DEMO): the crafted requests change nothing in it."""
    with SandboxServer(tmp_path_factory.mktemp("sandbox")) as server:
        yield server


def raw(server, request: bytes, timeout: float = 3.0) -> tuple[bytes, float]:
    """Send ``request`` on a new connection, close our side, and read the answer until the server closes."""
    started = time.monotonic()
    with socket.create_connection((server.host, server.port), timeout=timeout) as conn:
        conn.sendall(request)
        conn.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    return answer, time.monotonic() - started


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


@pytest.fixture
def layer_failures() -> Iterator[list[logging.LogRecord]]:
    """Records of the sandbox's "handler failed" logs (a crash in the HTTP layer or a handler) during a test."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.ERROR:
                records.append(record)

    keep = Keep()
    logger = logging.getLogger("xnat_uploader.sandbox")
    logger.addHandler(keep)
    yield records
    logger.removeHandler(keep)


BAD_LENGTHS = [
    ("Content-Length: -5\r\n", "Bad Content-Length"),
    ("Content-Length: abc\r\n", "Bad Content-Length"),
    ("Content-Length: +5\r\n", "Bad Content-Length"),
    ("Content-Length: 1_0\r\n", "Bad Content-Length"),
    ("Content-Length: 0x10\r\n", "Bad Content-Length"),
    ("Content-Length: 5, 6\r\n", "Bad Content-Length"),
    ("Content-Length: \xb2\r\n", "Bad Content-Length"),  # "²": a digit to str.isdigit, not to HTTP
    ("Content-Length: 5\r\nContent-Length: 6\r\n", "More than one Content-Length header"),
    ("Content-Length: 5\r\nContent-Length: 5\r\n", "More than one Content-Length header"),
    ("Content-Length: 99999999999999999999\r\n", "Bad Content-Length"),
    (f"Content-Length: {MAX_BODY + 1}\r\n", "Content-Length larger than this server accepts"),
]


@pytest.mark.parametrize(("header", "message"), BAD_LENGTHS)
def test_bad_content_length_is_a_400_and_the_server_serves_on(sandbox, layer_failures, header, message) -> None:
    request = IMPORT + "Content-Type: application/zip\r\n" + header + "\r\nhello"
    answer, seconds = raw(sandbox, request.encode("latin-1"))
    assert status_of(answer) == 400, answer[:200]
    assert f"<h3>{message}</h3>".encode() in answer
    assert b"Connection: close" in answer
    assert seconds < 1.0
    assert not layer_failures
    assert requests.get(sandbox.url + "/data/projects", auth=("admin", "admin"), timeout=5).status_code == 200


BAD_CHUNKS = [
    b"-5\r\nhello\r\n0\r\n\r\n",  # int("-5", 16) is -5: read(-5) read to the end of the stream
    b"0x5\r\nhello\r\n0\r\n\r\n",
    b"+5\r\nhello\r\n0\r\n\r\n",
    b"5_0\r\nhello\r\n0\r\n\r\n",
    b"\r\nhello\r\n0\r\n\r\n",  # an empty size line was read as the last chunk
    b"zz\r\nhello\r\n0\r\n\r\n",
    b"5\r\nhelloXX0\r\n\r\n",  # no CRLF after the chunk's data
    b"ffffffffffffffff\r\nhello",  # beyond MAX_BODY
    b"5\r\nhello\r\n0\r\n" + b"X-Trailer: 1\r\n" * 200 + b"\r\n",
]


@pytest.mark.parametrize("chunks", BAD_CHUNKS)
def test_bad_chunked_bodies_are_a_400(sandbox, layer_failures, chunks: bytes) -> None:
    head = IMPORT + "Content-Type: application/zip\r\nTransfer-Encoding: chunked\r\n\r\n"
    answer, seconds = raw(sandbox, head.encode() + chunks)
    assert status_of(answer) == 400, answer[:300]
    assert b"Malformed chunked request body" in answer or b"larger than this server accepts" in answer
    assert seconds < 1.0
    assert not layer_failures


@pytest.mark.parametrize("coding", ["gzip", "gzip, chunked", "chunked, gzip", "identity"])
def test_transfer_codings_tomcat_does_not_implement_are_501(sandbox, layer_failures, coding: str) -> None:
    head = IMPORT + f"Content-Type: application/zip\r\nTransfer-Encoding: {coding}\r\nContent-Length: 5\r\n\r\n"
    answer, _ = raw(sandbox, head.encode() + b"hello")
    assert status_of(answer) == 501
    assert answer.startswith(b"HTTP/1.1 501 Not Implemented\r\n")
    assert not layer_failures


def test_a_length_beside_chunked_is_ignored_and_the_connection_ends(sandbox) -> None:
    head = IMPORT + "Content-Type: application/zip\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"
    with socket.create_connection((sandbox.host, sandbox.port), timeout=3) as conn:  # our side stays open
        conn.sendall(head.encode() + b"5\r\nhello\r\n0\r\n\r\n")
        answer = b""
        while chunk := conn.recv(65536):  # ends only because the server closes
            answer += chunk
    assert b"<h3>Archive file is corrupt or not a valid archive file type.</h3>" in answer  # all 5 bytes read


@pytest.mark.parametrize("target", ["http://[", "http://[::1/x"])
def test_a_target_urlsplit_cannot_read_is_a_400(sandbox, layer_failures, target: str) -> None:
    answer, seconds = raw(sandbox, f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert status_of(answer) == 400, answer[:200]
    assert seconds < 1.0
    assert not layer_failures


def test_good_framing_still_works(sandbox) -> None:
    body = b"src=/nowhere&newProject=DEMO"
    move = IMPORT.replace("import?import-handler=DICOM-zip&PROJECT_ID=DEMO", "prearchive/move")
    form = f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n\r\n"
    answer, _ = raw(sandbox, (move + form).encode() + body)
    assert b"<h3>Invalid src URI (/nowhere)</h3>" in answer  # the form was read whole
    chunked = IMPORT + "Content-Type: application/zip\r\nTransfer-Encoding: chunked\r\n\r\n"
    answer, _ = raw(sandbox, chunked.encode() + b"2;ext=1\r\nhe\r\n3\r\nllo\r\n0\r\nX-T: 1\r\n\r\n")
    assert b"<h3>Archive file is corrupt or not a valid archive file type.</h3>" in answer  # "hello": no zip


# --- multipart: bounded whatever the body ------------------------------------------------------------------


class _Generated(Body):
    """A body of ``size`` bytes produced as it is read (``first`` then ``fill``), never held whole."""

    def __init__(self, first: bytes, fill: bytes, size: int) -> None:
        super().__init__(io.BytesIO(), size, False)
        self._first, self._fill, self._size = first, fill, size

    def read(self, n: int = 1 << 20) -> bytes:
        if self.consumed >= self._size:
            return b""
        piece = self._first[self.consumed : self.consumed + n] if self.consumed < len(self._first) else b""
        piece += self._fill * ((n - len(piece)) // len(self._fill))
        piece = piece[: self._size - self.consumed]
        self.consumed += len(piece)
        return piece

    def drain(self) -> None:
        self.consumed = self._size


def _peak_of_parse(body: Body) -> tuple[int, str, float]:
    tracemalloc.start()
    started = time.monotonic()
    try:
        multipart.parse(body, "multipart/form-data; boundary=XyZ", lambda: io.BytesIO())
        outcome = "parsed"
    except HttpError as err:
        outcome = f"{err.status} {err.message}"
    seconds = time.monotonic() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak, outcome, seconds


def test_a_preamble_without_a_boundary_is_skipped_in_bounded_memory() -> None:
    peak, outcome, seconds = _peak_of_parse(_Generated(b"", b"x" * 4096, 64 << 20))
    assert outcome == "400 Malformed multipart body"
    assert peak < 8 << 20, peak  # was the whole 64 MB preamble, copied once per MB read
    assert seconds < 5


def test_part_headers_without_an_end_stop_at_commons_fileuploads_limit() -> None:
    peak, outcome, seconds = _peak_of_parse(_Generated(b"--XyZ\r\nContent-Disposition: x", b"y" * 4096, 64 << 20))
    assert outcome == f"400 Malformed multipart headers: more than {multipart.MAX_PART_HEADERS} bytes"
    assert peak < 8 << 20, peak
    assert seconds < 1


def test_a_form_field_is_held_up_to_its_limit_only() -> None:
    head = b'--XyZ\r\nContent-Disposition: form-data; name="f"\r\n\r\n'
    peak, outcome, _ = _peak_of_parse(_Generated(head, b"v" * 4096, 64 << 20))
    assert outcome == "413 Request body too large for this resource"
    assert peak < multipart.MAX_FIELD + (8 << 20), peak


def test_a_body_of_many_tiny_parts_is_refused() -> None:
    part = b'--XyZ\r\nContent-Disposition: form-data; name="f"\r\n\r\nv\r\n'
    data = part * (multipart.MAX_PARTS + 1) + b"--XyZ--\r\n"
    body = Body(io.BytesIO(data), len(data), False)
    with pytest.raises(HttpError, match="more than 10000 parts"):
        multipart.parse(body, "multipart/form-data; boundary=XyZ", lambda: io.BytesIO())


# --- the administrator password -----------------------------------------------------------------------------


def _sandbox_command(tmp_path: Path, *extra: str, stdin: str | None = None, env: dict[str, str] | None = None):
    proc = subprocess.Popen(
        [sys.executable, "-m", "xnat_uploader", "sandbox", "--port", "0", "--data", str(tmp_path / "data"), *extra],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    if stdin is not None:
        proc.stdin.write(stdin)
    proc.stdin.close()
    return proc


def _serves_with(proc: subprocess.Popen, password: str) -> tuple[int, int, str]:
    """(status signed in with ``password``, status with admin/admin, the command line ``ps`` shows)."""
    try:
        line = proc.stdout.readline()
        assert "XNAT sandbox ready at" in line, proc.stderr.read() if proc.poll() is not None else line
        url = line.split(" at ", 1)[1].split()[0]
        good = requests.get(url + "/data/projects", auth=("admin", password), timeout=5).status_code
        default = requests.get(url + "/data/projects", auth=("admin", "admin"), timeout=5).status_code
        cmdline = Path(f"/proc/{proc.pid}/cmdline")  # what ps shows (Linux; elsewhere nothing to check)
        shown = cmdline.read_bytes().replace(b"\0", b" ").decode() if cmdline.exists() else ""
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        out, err = proc.stdout.read(), proc.stderr.read()
        proc.stdout.close()
        proc.stderr.close()
    assert password not in out + err
    return good, default, shown


def test_password_from_standard_input_is_not_on_the_command_line(tmp_path) -> None:
    proc = _sandbox_command(tmp_path, "--password-stdin", stdin="Sekr1t from stdin\nignored\n")
    good, default, shown = _serves_with(proc, "Sekr1t from stdin")
    assert (good, default) == (200, 401)
    assert "Sekr1t" not in shown


def test_password_from_the_environment(tmp_path) -> None:
    proc = _sandbox_command(tmp_path, env={sandbox_command.PASSWORD_ENV: "Env-Sekr1t"})
    good, default, shown = _serves_with(proc, "Env-Sekr1t")
    assert (good, default) == (200, 401)
    assert "Env-Sekr1t" not in shown


def _args(**values) -> argparse.Namespace:
    return argparse.Namespace(**{"password": None, "password_stdin": False, **values})


def test_password_sources_and_their_order(monkeypatch, capsys) -> None:
    monkeypatch.delenv(sandbox_command.PASSWORD_ENV, raising=False)
    assert sandbox_command.admin_password(_args()) == "admin"
    monkeypatch.setenv(sandbox_command.PASSWORD_ENV, "from-env")
    assert sandbox_command.admin_password(_args()) == "from-env"
    assert sandbox_command.admin_password(_args(password="from-flag")) == "from-flag"
    assert "--password is visible to other users" in capsys.readouterr().err
    monkeypatch.setattr(sys, "stdin", io.StringIO("from-stdin\r\n"))
    assert sandbox_command.admin_password(_args(password_stdin=True)) == "from-stdin"
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    with pytest.raises(ValueError, match="no password on the first line"):
        sandbox_command.admin_password(_args(password_stdin=True))
    with pytest.raises(ValueError, match="not both"):
        sandbox_command.admin_password(_args(password_stdin=True, password="x"))


def test_password_flag_is_marked_unsafe_in_the_help(capsys) -> None:
    parser = argparse.ArgumentParser()
    sandbox_command.register(parser.add_subparsers())
    with pytest.raises(SystemExit):
        parser.parse_args(["sandbox", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--password PW UNSAFE: other users of this computer see it in the process list (ps)" in text
    assert "--password-stdin read the administrator password from the first line of standard input" in text
