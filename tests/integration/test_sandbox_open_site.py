"""The sandbox as an open XNAT site (``requireLogin=false``) and with an expired password, as XNAT answers."""

from __future__ import annotations

import requests

from tests.integration.sandbox_data import Api, study

CHANGE_PAGE = "/app/template/XDATScreen_UpdateUser.vm"


def _open(sandbox_factory, **options):
    server = sandbox_factory(require_login=False, projects=("DEMO",), **options)
    server.add_project("OPEN", accessibility="public")
    return server


def test_closed_site_is_the_default(sandbox):
    assert sandbox.settings.require_login
    assert requests.get(sandbox.url + "/data/projects", timeout=5).status_code == 401


def test_open_site_serves_requests_without_a_session_as_guest(sandbox_factory):
    server = _open(sandbox_factory)
    guest = Api(server.url, user=None)
    r = guest.get("/data/auth")
    assert (r.status_code, r.text) == (200, "User 'guest' is logged in")  # /data/auth cannot tell
    assert "JSESSIONID=" in r.headers["Set-Cookie"]  # XNAT opens a server session for the guest
    assert [row["ID"] for row in guest.rows("/data/projects")] == ["OPEN"]  # public only
    assert guest.get("/data/projects/DEMO/subjects").status_code == 404  # private: hidden
    assert guest.get("/data/projects/OPEN/subjects").status_code == 200
    # The XAPI "who am I" call is for signed-in users only, even on an open site.
    r = guest.get("/xapi/users/username")
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Basic realm=")
    assert guest.get("/xapi/users/profile").status_code == 401
    assert Api(server.url).get("/xapi/users/username").text == "admin"
    assert server.stats["logins"] == 1  # guest sessions are not logins
    assert {r.user for r in server.request_log if r.path == "/data/auth"} == {"guest"}


def test_guest_cannot_write_and_its_imports_land_in_unassigned(sandbox_factory, tmp_path):
    server = _open(sandbox_factory)
    guest = Api(server.url, user=None)
    assert guest.put("/data/projects/OPEN/subjects/S1").status_code == 403  # public is read-only
    files = study(tmp_path, series=1, instances=2)
    r = guest.import_dicom(files[0].path, PROJECT_ID="DEMO", SUBJECT_ID="S", EXPT_LABEL="E")
    assert r.status_code == 200
    assert "/prearchive/projects/Unassigned/" in r.text  # the project is not resolved for the guest
    ts, folder = r.text.strip().split("/")[-2:]
    commit = guest.post(f"/data/prearchive/projects/Unassigned/{ts}/{folder}", params={"action": "commit"})
    assert commit.status_code == 403
    signed_in = Api(server.url).import_dicom(files[1].path, PROJECT_ID="DEMO", SUBJECT_ID="S", EXPT_LABEL="E")
    assert "/prearchive/projects/DEMO/" in signed_in.text


def test_an_expired_session_turns_into_guest_not_401(sandbox_factory):
    server = _open(sandbox_factory, faults="expire_after=2")
    sid = requests.post(server.url + "/data/JSESSION", auth=("admin", "admin"), timeout=5).text
    api = Api(server.url, user=None)
    api.cookies.set("JSESSIONID", sid)
    assert api.get("/data/auth").text == "User 'admin' is logged in"
    r = api.get("/data/auth")  # the third use of the session: it is gone
    assert (r.status_code, r.text) == (200, "User 'guest' is logged in")
    assert sid not in r.headers["Set-Cookie"]
    assert api.get("/xapi/users/username", cookies={"JSESSIONID": sid}).status_code == 401


def test_expired_password_redirects_every_login_to_the_change_page(sandbox_factory):
    server = sandbox_factory(users={"alice": ("pw", ["DEMO"])})
    old = requests.post(server.url + "/data/JSESSION", auth=("alice", "pw"), timeout=5).text
    server.expire_password("alice")
    for agent in ("xnat-uploader/1", "Mozilla/5.0"):  # whatever the User-Agent
        r = requests.post(
            server.url + "/data/JSESSION",
            auth=("alice", "pw"),
            headers={"User-Agent": agent},
            allow_redirects=False,
            timeout=5,
        )
        assert r.status_code == 302
        assert r.headers["Location"] == server.url + CHANGE_PAGE
    r = Api(server.url, "alice", "pw").get("/data/projects", allow_redirects=False)
    assert (r.status_code, r.headers["Location"]) == (302, server.url + CHANGE_PAGE)
    assert "password has expired" in requests.get(r.headers["Location"], timeout=5).text  # an open page
    # XNAT decides once per server session: one opened before the password expired goes on working.
    api = Api(server.url, user=None)
    api.cookies.set("JSESSIONID", old)
    assert api.get("/data/auth").text == "User 'alice' is logged in"
    assert Api(server.url, "alice", "wrong").get("/data/projects").status_code == 401  # a wrong password stays 401
    server.expire_password("alice", expired=False)
    assert Api(server.url, "alice", "pw").get("/data/projects").status_code == 200
