"""The client's connection against the sandbox over loopback: login, re-login, time-outs, faults, secrets."""

from __future__ import annotations

import logging
import socket
import threading
import time

import pytest

from xnat_uploader.core.xnat import ConnectionOptions, XnatClient
from xnat_uploader.core.xnat import errors as E

PASSWORD = "Very-Secret-77"


def logins(server) -> int:
    """Successful ``/data/JSESSION`` logins the server saw."""
    return sum(
        1 for r in server.request_log if r.path == "/data/JSESSION" and r.method in ("GET", "POST") and r.status == 200
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_connect_reads_version_and_logout_ends_the_session(sandbox):
    client = XnatClient(sandbox.url, "admin", "admin")
    info = client.connect()
    assert info.version_string == "1.8.10"
    assert info.supports_direct_archive
    assert client.session.logged_in
    assert logins(sandbox) == 1
    client.projects()
    client.close()
    assert not client.session.logged_in
    assert any(r.method == "DELETE" and r.path == "/data/JSESSION" and r.status == 200 for r in sandbox.request_log)
    # After login every request carried the cookie, not Basic auth: still one login.
    assert logins(sandbox) == 1


def test_requests_reuse_one_login(sandbox):
    with XnatClient(sandbox.url, "admin", "admin") as client:
        for _ in range(5):
            client.projects()
        client.prearchive()
        assert client.session.logins == 1
    assert logins(sandbox) == 1


def test_wrong_password_is_a_plain_permanent_error_without_secrets(sandbox, caplog):
    caplog.set_level(logging.DEBUG)
    client = XnatClient(sandbox.url, "admin", PASSWORD)
    with pytest.raises(E.AuthenticationError) as info:
        client.connect()
    exc = info.value
    assert exc.status == 401
    assert not exc.transient
    assert "password" in exc.message.lower()
    for text in (str(exc), repr(exc), exc.detail, repr(client), caplog.text):
        assert PASSWORD not in text
    client.close()


def test_session_id_never_in_logs_or_reprs(sandbox, caplog):
    caplog.set_level(logging.DEBUG)
    sandbox.add_user("carol", PASSWORD, projects=["DEMO"])
    client = XnatClient(sandbox.url, "carol", PASSWORD)
    client.connect()
    jsession = client.session._jsession
    assert jsession
    with pytest.raises(E.XnatError) as info:
        client.subjects("NOPE")
    client.close()
    for text in (str(info.value), repr(info.value), repr(client), caplog.text):
        assert PASSWORD not in text
        assert jsession not in text


def test_unreachable_server():
    client = XnatClient(f"http://127.0.0.1:{free_port()}", "admin", "admin", ConnectionOptions(connect_timeout=2))
    with pytest.raises(E.ServerUnreachableError) as info:
        client.connect()
    assert info.value.transient
    assert "cannot be reached" in info.value.message
    client.close()


def test_wrong_context_path_is_not_xnat(sandbox):
    with pytest.raises(E.UnexpectedResponseError, match="does not look like an XNAT"):
        XnatClient(sandbox.url + "/nowhere", "admin", "admin").connect()


def test_https_to_a_plain_http_port(sandbox):
    # Speaking TLS to the sandbox's plain HTTP port fails the handshake: a TLS error that says so.
    url = sandbox.url.replace("http://", "https://")
    with pytest.raises(E.TlsError, match="does not answer secure"):
        XnatClient(url, "admin", "admin", ConnectionOptions(connect_timeout=2, read_timeout=2)).connect()


def test_browser_like_agent_is_never_sent(sandbox):
    client = XnatClient(sandbox.url, "admin", "admin")
    assert "Mozilla" not in client.session._http.headers["User-Agent"]
    assert client.session._http.headers["User-Agent"].startswith("xnat-uploader/")
    client.close()


def test_server_too_old_for_direct_archive(sandbox_factory):
    server = sandbox_factory(version="1.8.2")
    with XnatClient(server.url, "admin", "admin") as client:
        info = client.connect()
        assert info.version == (1, 8, 2)
        assert not info.supports_direct_archive


def test_expired_session_re_logs_in_once_for_eight_threads(sandbox_factory):
    server = sandbox_factory(session_timeout=1.0)
    client = XnatClient(server.url, "admin", "admin", ConnectionOptions(pool_size=8))
    client.connect()
    assert logins(server) == 1

    time.sleep(1.3)  # idle longer than the server's session time-out: the cookie is now dead
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def work():
        try:
            barrier.wait()
            client.projects()
            client.prearchive()
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert any(r.status == 401 for r in server.request_log)
    assert logins(server) == 2  # the first login plus exactly one renewal
    assert client.session.logins == 2
    client.close()


def test_sessions_expiring_after_n_requests_are_renewed(sandbox):
    with XnatClient(sandbox.url, "admin", "admin") as client:
        client.connect()
        sandbox.set_faults("expire_after=3")
        for _ in range(10):
            assert client.projects()
        assert client.session.logins >= 3
        assert logins(sandbox) == client.session.logins


def test_get_survives_500s_by_retrying(sandbox):
    with XnatClient(sandbox.url, "admin", "admin", ConnectionOptions(retry_backoff=0.01)) as client:
        client.connect()
        sandbox.set_faults("http500_every=2,path=/data/projects")
        for _ in range(4):
            assert [p.id for p in client.projects()] == ["DEMO"]
        assert any(r.status == 500 for r in sandbox.request_log)


def test_persistent_500_is_a_transient_server_error(sandbox):
    with XnatClient(sandbox.url, "admin", "admin", ConnectionOptions(retry_backoff=0.01, get_retries=1)) as client:
        client.connect()
        sandbox.set_faults("http500_every=1,path=/data/projects")
        with pytest.raises(E.ServerError) as info:
            client.projects()
        assert info.value.transient
        assert info.value.status == 500
        assert "usually temporary" in info.value.hint


def test_slow_answer_hits_the_read_timeout_with_a_clear_error(sandbox):
    options = ConnectionOptions(read_timeout=0.3, get_retries=0)
    with XnatClient(sandbox.url, "admin", "admin", options) as client:
        client.connect()
        sandbox.set_faults("slow=1.5,path=/data/projects")
        with pytest.raises(E.ServerTimeoutError) as info:
            client.projects()
        assert info.value.transient
        assert "did not answer within 0.3 s" in info.value.message
        sandbox.set_faults(None)


def test_keepalive_holds_an_idle_session(sandbox_factory):
    server = sandbox_factory(session_timeout=1.0)
    with XnatClient(server.url, "admin", "admin") as client:
        client.connect()
        for _ in range(4):
            time.sleep(0.5)
            client.keepalive()  # what the upload engine calls while a long transfer runs
        client.projects()
        assert client.session.logins == 1
        assert not any(r.status == 401 for r in server.request_log)
