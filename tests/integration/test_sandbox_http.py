"""The sandbox's HTTP layer: keep-alive with Nagle off, Content-Length everywhere, the command line."""

from __future__ import annotations

import http.client
import signal
import socket
import subprocess
import sys
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
