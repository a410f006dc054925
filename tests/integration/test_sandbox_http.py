"""The sandbox's HTTP layer: keep-alive with Nagle off, Content-Length everywhere, the command line."""

from __future__ import annotations

import http.client
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from tests.integration.sandbox_data import Api, study, zip_of


def test_small_requests_on_one_keep_alive_connection_are_fast(sandbox, tmp_path):
    api = Api(sandbox.url)
    api.get("/data/JSESSION")
    dcm = study(tmp_path, seed=61, series=1, instances=1)[0].path
    t = time.monotonic()
    for _ in range(100):
        assert api.import_dicom(dcm, PROJECT_ID="DEMO").status_code == 200
    # With Nagle on, each request/response pair can wait ~40 ms for a delayed ACK (4 s here).
    assert time.monotonic() - t < 3
    conns = list(sandbox._httpd._conns)
    assert conns
    assert all(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for s in conns)


def test_every_response_has_a_content_length_and_keeps_the_connection(sandbox):
    host, port = sandbox.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    headers = {"Authorization": "Basic YWRtaW46YWRtaW4="}  # admin:admin
    for method, path in [
        ("GET", "/data/projects"),
        ("GET", "/nope"),
        ("GET", "/data/services/import"),
        ("HEAD", "/data/projects"),
        ("DELETE", "/data/JSESSION"),
    ]:
        conn.request(method, path, headers=headers)
        r = conn.getresponse()
        body = r.read()
        assert r.getheader("Content-Length") is not None, (method, path)
        if method != "HEAD":
            assert int(r.getheader("Content-Length")) == len(body)
    assert conn.sock is not None  # still the same open connection
    conn.close()


def test_unread_upload_before_401_does_not_break_the_connection(sandbox, tmp_path):
    data = zip_of(study(tmp_path, seed=62))
    api = Api(sandbox.url, user=None)
    assert api.import_zip(data, PROJECT_ID="DEMO").status_code == 401
    api.auth = ("admin", "admin")
    assert api.import_zip(data, PROJECT_ID="DEMO").status_code == 200


def test_command_line_serves_until_interrupted(tmp_path):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "xnat_uploader",
            "sandbox",
            "--port",
            "0",
            "--data",
            str(tmp_path / "data"),
            "--user",
            "boss",
            "--password",
            "Sekr1tPass",
            "--project",
            "P1",
            "--project",
            "P2",
            "--faults",
            "slow=0.01",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert "XNAT sandbox ready at http://127.0.0.1:" in line
        assert "user boss" in line
        url = line.split(" at ", 1)[1].split()[0]
        assert [p["ID"] for p in Api(url, "boss", "Sekr1tPass").rows("/data/projects")] == ["P1", "P2"]
        assert (tmp_path / "data" / "prearchive").is_dir()
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "Sekr1tPass" not in out + err


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_command_line_saves_its_state_on_sigterm_even_when_sigint_is_ignored(tmp_path):
    # A shell's background job ignores SIGINT; SIGTERM must still stop the server cleanly, with its state saved.
    data = zip_of(study(tmp_path, seed=63))
    proc = subprocess.Popen(
        [sys.executable, "-m", "xnat_uploader", "sandbox", "--port", "0", "--data", str(tmp_path / "data")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),  # noqa: PLW1509 - test only
    )
    try:
        url = proc.stdout.readline().split(" at ", 1)[1].split()[0]
        assert Api(url).import_zip(data, PROJECT_ID="DEMO").status_code == 200
        proc.send_signal(signal.SIGINT)  # ignored, as in a background job
        time.sleep(0.5)
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "Stopped." in out
    from xnat_uploader.sandbox.server import SandboxServer

    restored = SandboxServer(tmp_path / "data", projects=("DEMO",))
    assert sum(len(e["series"]) for e in restored.inventory().values()) > 0


def test_command_line_rejects_a_bad_fault_spec():
    proc = subprocess.run(
        [sys.executable, "-m", "xnat_uploader", "sandbox", "--faults", "explode=1"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert "unknown fault item" in proc.stdout


def test_a_restarted_server_on_the_same_folder_keeps_its_data(tmp_path):
    from xnat_uploader.sandbox.server import SandboxServer

    files = study(tmp_path, seed=63)
    with SandboxServer(tmp_path / "data") as server:
        server.add_project("AUTO", prearchive_code=4)
        api = Api(server.url)
        api.import_zip(zip_of(files), PROJECT_ID="DEMO", SUBJECT_ID="S", EXPT_LABEL="ARCH", action="commit", AA="true")
        api.import_zip(zip_of(files), PROJECT_ID="DEMO", SUBJECT_ID="S", EXPT_LABEL="PRE")
        api.put(
            "/data/projects/DEMO/subjects/S/experiments/ARCH/resources/R/files/a.txt",
            data=b"a",
            headers={"Content-Type": "text/plain"},
        )
        before = server.inventory()
    with SandboxServer(tmp_path / "data") as again:
        assert again.restored
        assert again.inventory() == before
        api = Api(again.url)
        assert api.get("/data/projects/AUTO/prearchive_code").text == "4"
        assert api.get("/data/projects/DEMO/subjects/S/experiments/ARCH/resources/R/files/a.txt").content == b"a"
        assert [r["name"] for r in api.rows("/data/prearchive")] == ["PRE"]
        new = api.put("/data/projects/DEMO/subjects/S2/experiments/NEXT").text
        assert new == "XNAT_E00002"  # ID counters continue


HEADER_BLOCKS = [
    b"Host: x\r\nContent-Type: application/dicom\r\nContent-Length: 12\r\n\r\n",
    b"Host: x\nX-Empty:\nX-Spaces: \t a b \t\n\n",  # LF only, empty value, inner and trailing blanks
    b"Cookie: a=1\r\nCookie: b=2\r\ncookie: c=3\r\n\r\n",  # repeated names
    b"X-Latin: caf\xe9\r\n\r\n",
    b"\r\n",
    b"X-Folded: one\r\n two\r\n\tthree\r\nY: 1\r\n\r\n",  # continuation lines
    b" Leading: continuation\r\nY: 1\r\n\r\n",
    b"No colon here\r\nY: 1\r\n\r\n",  # the email parser stops at it: Y is lost
    b"Bad Name: v\r\nY: 1\r\n\r\n",
    b": no name\r\nY: 1\r\n\r\n",
    b"X: a\rY: b\r\n\r\n",  # a bare CR ends a line for the email parser
    b"X: a\r\r\n\r\n",
    b"From someone\r\nY: 1\r\n\r\n",
    b"Y: 1\r\nFrom someone\r\n\r\n",
    b"Y: 1\r\nZ: 2",  # the stream ends inside the block
    b"Y: 1\r\n",
    b"",
]


@pytest.mark.parametrize("block", HEADER_BLOCKS)
def test_header_reading_gives_http_clients_message(block):
    """The sandbox's own header reader returns what ``http.client.parse_headers`` (email parser) does."""
    import io

    from xnat_uploader.sandbox.httpd import read_headers

    ours, theirs = read_headers(io.BytesIO(block)), http.client.parse_headers(io.BytesIO(block))
    assert type(ours) is type(theirs)
    assert ours.items() == theirs.items()
    assert ours.get_payload() == theirs.get_payload()
    assert ours.get_unixfrom() == theirs.get_unixfrom()
    assert [type(d) for d in ours.defects] == [type(d) for d in theirs.defects]
    assert ours.get_all("cookie") == theirs.get_all("cookie")


@pytest.mark.parametrize(
    "block", [b"X-Long: " + b"a" * 70000 + b"\r\n\r\n", b"".join(b"X-%d: 1\r\n" % i for i in range(101)) + b"\r\n"]
)
def test_header_limits_answer_431_as_before(sandbox, block):
    host, port = sandbox.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"GET /data/projects HTTP/1.1\r\n" + block)
        assert sock.makefile("rb").readline().split()[1] == b"431"


def test_a_malformed_header_line_ends_the_headers_as_before(sandbox):
    """Lines after one the email parser cannot read are dropped (here: the credentials), no 400."""
    host, port = sandbox.url.removeprefix("http://").split(":")
    auth = b"Authorization: Basic YWRtaW46YWRtaW4=\r\n"  # admin:admin
    for odd, status in [(b"", b"200"), (b"No colon here\r\n", b"401")]:
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(b"GET /data/projects HTTP/1.1\r\nHost: x\r\n" + odd + auth + b"Connection: close\r\n\r\n")
            assert sock.makefile("rb").readline().split()[1] == status


def _first_answer(url: str, request: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(request)
        return sock.makefile("rb").read()


@pytest.mark.parametrize(
    "line",
    [
        b"GET /data/version HTTP/1.1",
        b"GET /data/version HTTP/1.0",
        b"GET /data/version HTTP/2.0",
        b"GET /data/version HTTX/1.1",
        b"GET /data/version HTTP/1.x",
        b"GET /data/version HTTP/1",
        b"GET /data/version HTTP/1.1.1",
        b"GET a b HTTP/1.1",
        b"POST /data/version",
        b"",
    ],
)
def test_request_lines_are_answered_as_the_standard_library_does(sandbox, line):
    """Bad request lines get the standard library's answer, byte for byte; good ones reach the application."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Plain(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 - the standard library's name
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return

    plain = ThreadingHTTPServer(("127.0.0.1", 0), Plain)
    threading.Thread(target=plain.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    try:
        request = line + b"\r\nHost: x\r\nConnection: close\r\n\r\n"
        theirs = _first_answer(f"http://127.0.0.1:{plain.server_address[1]}", request)
        ours = _first_answer(sandbox.url, request)
    finally:
        plain.shutdown()
        plain.server_close()
    if theirs.startswith(b"HTTP/1.") and theirs.split()[1] == b"200":
        assert ours.split()[1] == b"401"  # accepted: the application asks for a login
    else:
        assert ours.split(b"\r\n")[0] == theirs.split(b"\r\n")[0]
        assert ours.split(b"\r\n\r\n", 1)[-1] == theirs.split(b"\r\n\r\n", 1)[-1]
