"""The session's lean send path over loopback: taken for imports, identical on the wire and in its errors.

Each behaviour is checked twice where it matters: once on the lean path and once with it turned off
(``session._direct = None``, the plain ``requests`` path), and the two must agree.
"""

from __future__ import annotations

import logging
import socket
import threading

import pytest

from tests.integration._client_data import LoopbackServer, chunks, make_study
from xnat_uploader.core.xnat import ConnectionOptions, ImportHandler, ImportOptions, StreamBody, XnatClient
from xnat_uploader.core.xnat import errors as E
from xnat_uploader.core.xnat.importer import import_data
from xnat_uploader.core.xnat.session import XnatSession

PASSWORD = "Very-Secret-77"
IMPORT = "/data/services/import"


class RequestsCalls:
    """Records what goes through ``requests.Session.request`` of one session (then calls it)."""

    def __init__(self, session: XnatSession) -> None:
        self.paths: list[str] = []
        real = session._http.request

        def request(method, url, *args, **kwargs):
            self.paths.append(url.split("?", 1)[0])
            return real(method, url, *args, **kwargs)

        session._http.request = request  # type: ignore[method-assign]

    def to(self, path: str) -> int:
        return sum(1 for p in self.paths if p.endswith(path))


def gradual(session: XnatSession, data: bytes, label: str = "SESS1"):
    options = ImportOptions.for_uploader(ImportHandler.GRADUAL_DICOM, "DEMO", "SUBJ1", label)
    return import_data(session, data, options)


def one_file(tmp_path, seed: int = 1) -> bytes:
    return make_study(tmp_path, seed=seed, series=1, instances=1).files[0].path.read_bytes()


def error_both_ways(make_session, send) -> tuple[E.XnatError, E.XnatError]:
    """The error ``send(session)`` raises on the lean path, and with the plain requests path."""
    errors = []
    for lean in (True, False):
        session = make_session()
        if not lean:
            session._direct = None
        else:
            assert session._direct is not None
        try:
            with pytest.raises(E.XnatError) as info:
                send(session)
            errors.append(info.value)
        finally:
            session.close()
    return errors[0], errors[1]


def same_error(lean: E.XnatError, plain: E.XnatError) -> None:
    assert type(lean) is type(plain)
    assert (lean.message, lean.hint, lean.transient, lean.status) == (
        plain.message,
        plain.hint,
        plain.transient,
        plain.status,
    )


# --- the path is taken ---------------------------------------------------------------------------------------


def test_imports_skip_requests(sandbox, tmp_path):
    with XnatSession(sandbox.url, "admin", "admin") as session:
        calls = RequestsCalls(session)
        for seed in (1, 2, 3):
            result = gradual(session, one_file(tmp_path, seed), label=f"S{seed}")
            assert result.uri
            assert result.uri.startswith("/data/prearchive/projects/DEMO/")
        assert calls.to("/data/JSESSION") == 1  # the login still goes through requests (Basic auth)
        assert calls.to(IMPORT) == 0
    imported = [r for r in sandbox.request_log if r.path == IMPORT]
    assert [r.status for r in imported] == [200, 200, 200]
    assert len(sandbox.inventory()) == 3


def test_expired_session_is_renewed_and_the_file_sent_again(sandbox, tmp_path):
    data = one_file(tmp_path)
    with XnatSession(sandbox.url, "admin", "admin") as session:
        session.login()
        calls = RequestsCalls(session)
        sandbox.expire_sessions()
        assert gradual(session, data).uri
        assert session.logins == 2
        assert calls.to(IMPORT) == 0
    statuses = [r.status for r in sandbox.request_log if r.path == IMPORT]
    assert statuses == [401, 200]


def test_one_shot_stream_after_401_says_retry_and_a_replayable_one_is_resent(sandbox, tmp_path):
    data = make_study(tmp_path, seed=5).zip_bytes()
    options = ImportOptions(project="DEMO", subject="S", session="ZIP1")
    with XnatSession(sandbox.url, "admin", "admin") as session:
        session.login()
        calls = RequestsCalls(session)
        sandbox.expire_sessions()
        with pytest.raises(E.SessionExpiredError) as info:
            import_data(session, StreamBody(chunks(data), len(data)), options)
        assert info.value.transient
        assert session.logins == 2  # renewed for the caller's retry
        sandbox.expire_sessions()
        result = import_data(session, StreamBody(lambda: chunks(data), len(data)), options)
        assert result.uri
        assert session.logins == 3
        assert calls.to(IMPORT) == 0


def test_eight_threads_share_the_pool_and_one_renewal(sandbox, tmp_path):
    files = [one_file(tmp_path, seed) for seed in range(1, 9)]
    with XnatSession(sandbox.url, "admin", "admin", ConnectionOptions(pool_size=8)) as session:
        session.login()
        sandbox.expire_sessions()
        barrier = threading.Barrier(8)
        errors: list[BaseException] = []

        def work(n: int) -> None:
            try:
                barrier.wait()
                for _ in range(3):
                    gradual(session, files[n], label=f"T{n}")
            except BaseException as exc:  # noqa: BLE001 - asserted below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
        assert session.logins == 2
    assert sum(1 for r in sandbox.request_log if r.path == IMPORT and r.status == 200) == 24


# --- on the wire ---------------------------------------------------------------------------------------------


class CaptureServer(LoopbackServer):
    """A bare HTTP/1.1 server on loopback that records each request's head and body size (keep-alive)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, list[tuple[str, str]], int]] = []
        super().__init__()

    def _handle(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as f:
            while line := f.readline():
                headers = []
                while (h := f.readline()) not in (b"\r\n", b""):
                    name, _, value = h.decode("latin-1").partition(":")
                    headers.append((name, value.strip()))
                fields = {k.lower(): v for k, v in headers}
                if fields.get("transfer-encoding", "").lower() == "chunked":
                    size = 0
                    while (n := int(f.readline().split(b";")[0], 16)) > 0:
                        size += len(f.read(n + 2)) - 2
                    f.readline()
                else:
                    size = len(f.read(int(fields.get("content-length", "0"))))
                request_line = line.decode("latin-1").strip()
                self.requests.append((request_line, headers, size))
                if "/data/redirect" in request_line:
                    conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: /data/elsewhere\r\nContent-Length: 0\r\n\r\n")
                    continue
                body = b"ABCDEFGH0123456789" if "/data/JSESSION" in request_line else b"/data/prearchive/x\r\n"
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body))


@pytest.fixture
def capture():
    server = CaptureServer()
    yield server
    server.close()


def test_the_wire_is_the_same_as_with_requests(capture, tmp_path):
    data = b"D" * 5000
    path = tmp_path / "upload.zip"
    path.write_bytes(data)
    bodies = [
        lambda: data,
        lambda: path,
        lambda: StreamBody(chunks(data), len(data)),
        lambda: StreamBody(lambda: chunks(data), len(data)),
        lambda: None,
    ]
    seen = {}
    for lean in (True, False):
        capture.requests.clear()
        with XnatSession(capture.url, "admin", "admin") as session:
            session.login()
            if not lean:
                session._direct = None
            calls = RequestsCalls(session)
            for make in bodies:
                body = make()
                session.request("POST", IMPORT, params=[("import-handler", "DICOM-zip"), ("EXPT_LABEL", "a b&c")],
                                body=body, headers={"Content-Type": "application/zip"}, retries=0).close()  # fmt: skip
            session.request("GET", "/data/projects", params={"format": "json"}).close()
            assert len(calls.paths) == (0 if lean else len(bodies) + 1)
        seen[lean] = [r for r in capture.requests if "JSESSION" not in r[0]]
    assert seen[True] == seen[False]
    for request_line, headers, size in seen[True]:
        names = [name.lower() for name, _ in headers]
        assert "transfer-encoding" not in names
        if request_line.startswith("POST"):
            assert dict((k.lower(), v) for k, v in headers)["content-length"] == str(size)
            assert size in (0, len(data))
        assert ("Cookie", "JSESSIONID=ABCDEFGH0123456789") in headers


def test_empty_stream_body_has_a_content_length_of_zero(capture):
    with XnatSession(capture.url, "admin", "admin") as session:
        session.request("POST", IMPORT, body=StreamBody(iter(()), 0), retries=0).close()
    (_, headers, size) = capture.requests[-1]
    fields = {k.lower(): v for k, v in headers}
    assert fields["content-length"] == "0"
    assert "transfer-encoding" not in fields
    assert size == 0


def test_stream_shorter_than_declared_is_refused_either_way(capture):
    def send(session: XnatSession) -> None:
        session.request("POST", IMPORT, body=StreamBody(lambda: iter([b"abc"]), 10), retries=0)

    lean, plain = error_both_ways(lambda: XnatSession(capture.url, "admin", "admin"), send)
    same_error(lean, plain)
    assert "changed while it was being sent" in lean.message


# --- errors, the same as on the requests path ----------------------------------------------------------------


def test_server_gone_after_login(sandbox_factory, tmp_path):
    data = one_file(tmp_path)

    def make() -> XnatSession:
        server = sandbox_factory()
        session = XnatSession(server.url, "admin", "admin", ConnectionOptions(connect_timeout=2))
        session.login()
        gradual(session, data)  # a kept-alive connection in the pool
        server.stop()
        return session

    lean, plain = error_both_ways(make, lambda s: gradual(s, data))
    same_error(lean, plain)
    assert isinstance(lean, E.ServerUnreachableError)


def test_connection_dropped_in_the_middle_of_the_body(sandbox, tmp_path):
    data = make_study(tmp_path, seed=7, instances=6).zip_bytes()

    def make() -> XnatSession:
        session = XnatSession(sandbox.url, "admin", "admin")
        session.login()
        sandbox.set_faults("drop_body_at=1,path=/data/services/import")
        return session

    def send(session: XnatSession) -> None:
        import_data(session, data, ImportOptions(project="DEMO", subject="S", session="DROP"))

    lean, plain = error_both_ways(make, send)
    same_error(lean, plain)
    assert isinstance(lean, E.ConnectionLostError)


def test_read_time_out(sandbox, tmp_path):
    data = one_file(tmp_path)

    def make() -> XnatSession:
        session = XnatSession(sandbox.url, "admin", "admin", ConnectionOptions(read_timeout=0.3))
        session.login()
        sandbox.set_faults("slow=1.0,path=/data/services/import")
        return session

    lean, plain = error_both_ways(make, lambda s: gradual(s, data))
    same_error(lean, plain)
    assert isinstance(lean, E.ServerTimeoutError)
    assert "did not answer within 0.3 s" in lean.message
    sandbox.set_faults(None)


def test_server_errors_map_the_same(sandbox, tmp_path):
    data = one_file(tmp_path)

    def make() -> XnatSession:
        session = XnatSession(sandbox.url, "admin", "admin")
        session.login()
        sandbox.set_faults("http500_every=1,path=/data/services/import")
        return session

    lean, plain = error_both_ways(make, lambda s: gradual(s, data))
    same_error(lean, plain)
    assert isinstance(lean, E.ServerError)
    assert lean.status == 500


def test_redirects_are_not_followed(capture):
    def fetch(session: XnatSession) -> None:
        session.request("GET", "/data/redirect")

    lean, plain = error_both_ways(lambda: XnatSession(capture.url, "admin", "admin"), fetch)
    same_error(lean, plain)
    assert isinstance(lean, E.UnexpectedResponseError)
    assert lean.status == 302
    capture.requests.clear()
    with XnatSession(capture.url, "admin", "admin") as session:
        resp = session.request("GET", "/data/redirect", expect=(302,))
        assert resp.headers["location"] == "/data/elsewhere"
    assert [r[0].split()[1] for r in capture.requests if "JSESSION" not in r[0]] == ["/data/redirect"]


# --- proxies -------------------------------------------------------------------------------------------------


def test_a_proxy_in_the_environment_keeps_requests_in_charge(sandbox, tmp_path, monkeypatch):
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    session = XnatSession(sandbox.url, "admin", "admin", ConnectionOptions(connect_timeout=2))
    assert session._direct is None
    calls = RequestsCalls(session)
    with pytest.raises(E.ServerUnreachableError):
        session.login()  # through the (dead) proxy, as before
    session._jsession = "ABCDEFGH0123456789"  # as if signed in: the import must still take the proxy
    with pytest.raises(E.ServerUnreachableError):
        gradual(session, one_file(tmp_path))
    assert calls.to(IMPORT) == 1
    session._jsession = None
    session.close()

    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with XnatSession(sandbox.url, "admin", "admin") as direct:
        assert direct._direct is not None
        assert gradual(direct, one_file(tmp_path)).uri


# --- logging -------------------------------------------------------------------------------------------------


def test_logs_hold_no_secrets_and_no_labels(sandbox_factory, tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="xnat_uploader")
    server = sandbox_factory(users={"carol": (PASSWORD, ["DEMO"])})
    data = one_file(tmp_path)
    with XnatClient(server.url, "carol", PASSWORD, ConnectionOptions(read_timeout=0.3)) as client:
        client.connect()
        jsession = client.session._jsession
        assert jsession
        gradual(client.session, data, label="PATIENT-LABEL-42")
        server.set_faults("slow=1.0,path=/data/services/import")
        with pytest.raises(E.ServerTimeoutError):
            gradual(client.session, data, label="PATIENT-LABEL-42")
        server.set_faults(None)
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("xnat_uploader"))
    assert "/data/services/import" in ours
    for secret in (PASSWORD, jsession, "PATIENT-LABEL-42"):
        assert secret not in ours


def test_closed_session_refuses_to_send(sandbox, tmp_path):
    session = XnatSession(sandbox.url, "admin", "admin")
    session.login()
    session.close()
    with pytest.raises(RuntimeError, match="closed"):
        gradual(session, one_file(tmp_path))
