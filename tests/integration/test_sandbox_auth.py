"""Sandbox authentication as XNAT answers it: Basic, JSESSION cookie, logout, 401/302, idle expiry."""

from __future__ import annotations

import time

import requests

from tests.integration.sandbox_data import Api


def test_basic_auth_gets_a_session_id_and_cookie(sandbox):
    r = requests.get(sandbox.url + "/data/JSESSION", auth=("admin", "admin"), timeout=5)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain")
    assert len(r.text) == 32
    assert r.text.isalnum()
    assert not r.text.endswith("\n")
    assert r.cookies["JSESSIONID"] == r.text
    assert "SESSION_EXPIRATION_TIME" in r.headers["Set-Cookie"]
    assert int(r.headers["Content-Length"]) == 32


def test_cookie_alone_authenticates_and_delete_logs_out(sandbox):
    sid = requests.post(sandbox.url + "/data/JSESSION", auth=("admin", "admin"), timeout=5).text
    s = Api(sandbox.url, user=None)
    s.cookies.set("JSESSIONID", sid)
    assert s.get("/data/auth").text == "User 'admin' is logged in"
    assert s.get("/data/JSESSION").text == sid  # the same session, not a new one
    assert s.delete("/data/JSESSION").status_code == 200
    r = s.get("/data/projects")
    assert r.status_code == 401


def test_missing_credentials_give_401_with_challenge_and_tomcat_page(sandbox):
    r = requests.get(sandbox.url + "/data/projects", timeout=5)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Basic realm=")
    assert r.text.startswith("<!doctype html>")
    assert "HTTP Status 401" in r.text


def test_wrong_credentials_give_401_with_the_login_failure_message(sandbox):
    # XnatBasicAuthenticationFilter answers sendError(401, message) itself: no WWW-Authenticate here.
    for auth in (("admin", "wrong"), ("nobody", "admin"), ("localdb/admin", "wrong")):
        r = requests.get(sandbox.url + "/data/projects", auth=auth, timeout=5)
        assert r.status_code == 401
        assert "WWW-Authenticate" not in r.headers
        assert "Login attempt failed. Please try again." in r.text
        assert "JSESSIONID" not in r.headers.get("Set-Cookie", "")
    assert requests.get(sandbox.url + "/data/auth", auth=("localdb/admin", "admin"), timeout=5).status_code == 200


def test_browser_user_agent_is_redirected_to_the_login_page(sandbox):
    r = requests.get(
        sandbox.url + "/data/projects", headers={"User-Agent": "Mozilla/5.0"}, allow_redirects=False, timeout=5
    )
    assert r.status_code == 302
    assert "Login" in r.headers["Location"]
    r = requests.get(
        sandbox.url + "/data/projects",
        headers={"User-Agent": "Mozilla/5.0 XNATDesktopClient"},
        allow_redirects=False,
        timeout=5,
    )
    assert r.status_code == 401


def test_idle_session_expires(sandbox_factory):
    server = sandbox_factory(session_timeout=0.6)
    sid = requests.get(server.url + "/data/JSESSION", auth=("admin", "admin"), timeout=5).text
    s = Api(server.url, user=None)
    s.cookies.set("JSESSIONID", sid)
    assert s.get("/data/projects").status_code == 200
    time.sleep(0.3)
    assert s.get("/data/projects").status_code == 200  # use refreshes the idle clock
    time.sleep(0.8)
    assert s.get("/data/projects").status_code == 401


def test_expire_sessions_and_login_counter(sandbox):
    before = sandbox.stats["logins"]
    s = Api(sandbox.url)
    s.get("/data/JSESSION")
    s.auth = None
    assert s.get("/data/projects").status_code == 200
    assert sandbox.stats["logins"] == before + 1  # the cookie was reused, no second login
    assert sandbox.expire_sessions() >= 1
    assert s.get("/data/projects").status_code == 401


def test_services_auth_put_returns_a_session_and_csrf_token(sandbox):
    r = requests.put(sandbox.url + "/data/services/auth", data={"username": "admin", "password": "admin"}, timeout=5)
    assert r.status_code == 200
    assert len(r.text) == 32
    bad = requests.put(sandbox.url + "/data/services/auth", data={"username": "admin", "password": "x"}, timeout=5)
    assert bad.status_code == 401
    s = Api(sandbox.url)
    text = s.get("/data/JSESSION", params={"CSRF": "true"}).text
    sid, _, token = text.partition("; XNAT_CSRF=")
    assert len(sid) == 32
    assert len(token) == 32


def test_request_log_never_keeps_passwords(sandbox):
    requests.put(sandbox.url + "/data/services/auth?username=admin&password=admin", timeout=5)
    logged = " ".join(f"{r.path}?{r.query}" for r in sandbox.request_log)
    assert "password=***" in logged
    assert "password=admin" not in logged


def test_session_cap_refuses_logins_from_clients_that_never_reuse_the_cookie(sandbox_factory):
    server = sandbox_factory(max_sessions=3)
    statuses = [
        requests.get(server.url + "/data/projects", auth=("admin", "admin"), timeout=5).status_code for _ in range(4)
    ]
    assert statuses == [200, 200, 200, 401]


def test_csrf_token_is_required_only_for_browser_agents_on_cookie_sessions(sandbox):
    api = Api(sandbox.url)
    text = api.get("/data/JSESSION", params={"CSRF": "true"}).text
    sid, _, token = text.partition("; XNAT_CSRF=")
    browser = Api(sandbox.url, user=None)
    browser.cookies.set("JSESSIONID", sid)
    browser.headers["User-Agent"] = "Mozilla/5.0"
    r = browser.put("/data/projects/DEMO/subjects/CS1")
    assert r.status_code == 403
    assert "XNAT_CSRF" in r.text
    assert browser.put("/data/projects/DEMO/subjects/CS1", params={"XNAT_CSRF": token}).status_code == 201
    api.auth = None  # python-requests agent with the same cookie: no token needed
    assert api.put("/data/projects/DEMO/subjects/CS2").status_code == 201


def test_non_data_paths_redirect_to_the_login_page(sandbox):
    r = requests.get(sandbox.url + "/", allow_redirects=False, timeout=5)
    assert r.status_code == 302
    assert r.headers["Location"].endswith("/app/template/Login.vm")
    assert requests.get(sandbox.url + "/", auth=("admin", "admin"), timeout=5).status_code == 200
