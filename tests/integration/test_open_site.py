"""Open XNAT sites and expired passwords, against the sandbox over loopback.

On an open site (``requireLogin=false``) an ended session is served as XNAT's guest instead of 401: the
client must notice (a who-am-I check, a 403, an import landing in Unassigned, a new server session), sign in
again once for all threads, send again, and report the copies that landed in Unassigned. An expired password
must stop everything with one plain message, without hammering the login.
"""

from __future__ import annotations

import io
import json
import time

import pytest

from xnat_uploader import cli
from xnat_uploader.core.dicom.index import build_index
from xnat_uploader.core.dicom.scan import scan_paths
from xnat_uploader.core.plan import Target, enqueue, plan_jobs
from xnat_uploader.core.queue import runner
from xnat_uploader.core.queue.runner import run_job
from xnat_uploader.core.queue.store import FileState, JobState, QueueStore
from xnat_uploader.core.transfer.base import RetryPolicy
from xnat_uploader.core.transfer.dicom_zip import DicomZipTransport, ZipSettings
from xnat_uploader.core.xnat import ConnectionOptions, ImportHandler, ImportOptions, PrearchiveRef, XnatClient
from xnat_uploader.core.xnat import errors as E
from xnat_uploader.core.xnat.keepalive import KeepAlive
from xnat_uploader.core.xnat.session import XnatSession
from xnat_uploader.sandbox.synthetic import write_corpus

PASSWORD = "Open-Site-Pw-31"
FAST_RETRY = RetryPolicy(attempts=6, base=0.01, cap=0.05)
TRANSPORTS = {**runner.TRANSPORTS, "zip": lambda: DicomZipTransport(ZipSettings(batch_files=4))}


def expired_message(server) -> str:
    return (
        f"The password of alice on {server.url} has expired; change it on the XNAT web site, then sign in here again."
    )


def logins(server, status: int = 200) -> int:
    """``POST /data/JSESSION`` answers with ``status`` in the sandbox's request log."""
    return sum(1 for r in server.request_log if (r.method, r.path, r.status) == ("POST", "/data/JSESSION", status))


def open_site(sandbox_factory, **options):
    return sandbox_factory(require_login=False, users={"alice": (PASSWORD, ["DEMO"])}, **options)


def session_of(server, **options) -> XnatSession:
    return XnatSession(server.url, "alice", PASSWORD, ConnectionOptions(pool_size=8, **options))


@pytest.fixture
def corpus(tmp_path):
    """One study: 3 series of 12 files."""
    files = write_corpus(
        tmp_path / "src", patients=1, studies_per_patient=1, series_per_study=3, instances_per_series=12
    )
    return tmp_path / "src", {f.sop_instance_uid for f in files}


def queue_job(store, server, folder, mode) -> int:
    result = scan_paths([folder])
    plan = plan_jobs(build_index(result.instances, result.rejected), Target(project="DEMO"))
    (job,) = plan.jobs
    return enqueue(store, job, server_url=server.url, user="alice", mode=mode, options={"workers": 4})


def sessions_in(server, project: str) -> dict[str, dict]:
    """Inventory entries of ``project``'s prearchive/archive sessions, keyed by the session's URI path."""
    out = {}
    for entry in server.inventory().values():
        if entry["project"] == project:
            where = entry["where"]
            key = (
                f"/data/prearchive/projects/{project}/{entry['timestamp']}/{entry['folder']}"
                if where != "archive"
                else ""
            )
            out[key or entry["label"]] = entry
    return out


def copies(entries) -> dict[str, int]:
    """SOP Instance UID -> copies received, over the given inventory entries."""
    out: dict[str, int] = {}
    for entry in entries:
        for per_sop in entry["counts"].values():
            for sop, n in per_sop.items():
                out[sop] = out.get(sop, 0) + n
    return out


# --- the keepalive ------------------------------------------------------------------------------------


def test_keepalive_notices_guest_while_the_job_is_idle_and_signs_in_again(sandbox_factory):
    server = open_site(sandbox_factory)
    session = session_of(server)
    session.login()
    assert session.whoami() == "alice"
    with KeepAlive(session, interval=0.05) as keepalive:
        server.expire_sessions()  # the idle time-out passed: XNAT now answers this session as guest
        deadline = time.monotonic() + 5
        while keepalive.renewals == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert keepalive.renewals == 1
    assert session.whoami() == "alice"
    assert logins(server) == 2
    # It asked the XAPI "who am I" (guest: 401), not buildInfo, which is open to guests as well.
    asked = [r for r in server.request_log if r.path == "/xapi/users/username"]
    assert any(r.status == 401 for r in asked)
    assert not any(r.path == "/xapi/siteConfig/buildInfo" for r in server.request_log)
    session.close()


def test_keepalive_keeps_a_signed_in_session_without_new_logins(sandbox_factory):
    server = open_site(sandbox_factory, session_timeout=0.6)
    session = session_of(server)
    session.login()
    with KeepAlive(session, interval=0.1) as keepalive:
        time.sleep(1.5)  # more than twice the idle time-out
    assert keepalive.checks >= 5
    assert keepalive.renewals == 0
    assert session.whoami() == "alice"
    assert logins(server) == 1
    session.close()


def test_keepalive_interval_follows_a_shorter_server_time_out(sandbox_factory):
    server = open_site(sandbox_factory, session_timeout=60)
    session = session_of(server, keepalive_interval=180)
    session.login()
    assert session.idle_timeout == 60  # from XNAT's SESSION_EXPIRATION_TIME cookie
    assert KeepAlive(session).interval == 20
    session.close()


def test_keepalive_stops_at_an_expired_password_without_asking_again(sandbox_factory):
    server = open_site(sandbox_factory)
    session = session_of(server)
    session.login()
    server.expire_password("alice")
    server.expire_sessions()
    with KeepAlive(session, interval=0.05) as keepalive:
        deadline = time.monotonic() + 5
        while keepalive.error is None and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)  # several more intervals: no more sign-in attempts
    assert isinstance(keepalive.error, E.PasswordExpiredError)
    assert logins(server, 302) == 1
    with pytest.raises(E.PasswordExpiredError):  # the job's next request gets the same answer, unasked
        session.request("GET", "/data/projects")
    assert logins(server, 302) == 1
    session.close()


# --- guest answers while requests run -----------------------------------------------------------------


def test_a_write_refused_as_guest_signs_in_again_and_succeeds(sandbox_factory, tmp_path):
    server = open_site(sandbox_factory)
    files = write_corpus(tmp_path / "s", patients=1, series_per_study=1, instances_per_series=2)
    with XnatClient(server.url, "alice", PASSWORD) as client:
        client.connect()
        opts = ImportOptions.for_uploader(ImportHandler.GRADUAL_DICOM, "DEMO", "S1", "E1")
        result = client.import_data(files[0].path.read_bytes(), opts)
        assert result.strays == ()
        server.expire_sessions()
        ref = PrearchiveRef.parse(result.uri)
        client.commit(ref)  # the guest gets 403; the client asks, signs in again and sends it again
        assert client.session.logins == 2
        assert [r.status for r in server.request_log if r.query.startswith("action=commit")] == [403, 200]
        server.expire_sessions()
        assert [p.id for p in client.projects()] == ["DEMO"]  # a GET answered as guest is asked again too


def test_a_403_for_a_signed_in_user_stays_a_permission_error(sandbox_factory):
    server = open_site(sandbox_factory)
    server.add_project("OTHER", accessibility="public")  # alice may read it, not write
    with XnatClient(server.url, "alice", PASSWORD) as client:
        client.connect()
        with pytest.raises(E.PermissionDeniedError):
            client.session.request("PUT", "/data/projects/OTHER/subjects/S9", expect=(200, 201), action="adding")
        assert client.session.logins == 1


# --- whole uploads on an open site whose sessions keep ending -----------------------------------------


@pytest.mark.parametrize("mode", ["gradual", "zip"])
def test_upload_on_an_open_site_with_expiring_sessions_ends_done_and_reports_strays(
    sandbox_factory, corpus, tmp_path, mode
):
    folder, sop_uids = corpus
    server = open_site(sandbox_factory, faults="expire_after=9")
    with QueueStore(tmp_path / "q.db") as store:
        job_id = queue_job(store, server, folder, mode)
        state = run_job(
            store, job_id, session_of(server), receipts_dir=tmp_path / "r", retry=FAST_RETRY, transports=TRANSPORTS
        )
        job = store.job(job_id)
        assert state is JobState.DONE, job.message
        assert job.message.startswith("verified: 3/3 series")
        assert len(store.files(job_id, [FileState.SENT])) == len(sop_uids)
        receipt = json.loads(next((tmp_path / "r").glob(f"job-{job_id}-*.json")).read_text())
    # In the chosen project: every instance exactly once.
    demo = copies(sessions_in(server, "DEMO").values())
    assert demo == dict.fromkeys(sop_uids, 1)
    # Whatever landed in Unassigned while the session was guest is named in the receipt and the message.
    unassigned = sessions_in(server, "Unassigned")
    assert unassigned, "the test should have made XNAT answer some uploads as guest"
    reported = {s["uri"]: s["files"] for s in receipt["strays"]}
    assert set(reported) == set(unassigned)
    assert sum(reported.values()) == sum(copies(unassigned.values()).values())
    assert "Unassigned prearchive" in job.message
    assert logins(server) >= 2
    assert {r.user for r in server.request_log} >= {"guest", "alice"}


# --- expired passwords ----------------------------------------------------------------------------------


def test_login_command_says_the_password_expired(sandbox_factory, monkeypatch, capsys):
    server = sandbox_factory(users={"alice": (PASSWORD, ["DEMO"])})
    server.expire_password("alice")
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    code = cli.main(["login", "--url", server.url, "--user", "alice", "--password-stdin"])
    err = capsys.readouterr().err
    assert code == 1
    assert f"Sign-in failed: {expired_message(server)}" in err
    assert PASSWORD not in err
    assert logins(server, 302) == 1


def test_client_login_with_an_expired_password_is_its_own_error(sandbox_factory):
    server = sandbox_factory(users={"alice": (PASSWORD, ["DEMO"])})
    server.expire_password("alice")
    client = XnatClient(server.url, "alice", PASSWORD)
    with pytest.raises(E.PasswordExpiredError) as info:
        client.connect()
    assert info.value.message == expired_message(server)
    assert not info.value.transient
    assert info.value.status == 302
    client.close()


@pytest.mark.parametrize("require_login", [True, False])
def test_password_expiring_mid_upload_fails_the_job_once_and_it_resumes_after_signing_in(
    sandbox_factory, corpus, tmp_path, require_login
):
    folder, sop_uids = corpus
    server = sandbox_factory(require_login=require_login, users={"alice": (PASSWORD, ["DEMO"])})
    with QueueStore(tmp_path / "q.db") as store:
        job_id = queue_job(store, server, folder, "gradual")
        session = session_of(server)
        session.login()
        server.expire_password("alice")  # the running session goes on working, as in XNAT...
        server.set_faults("expire_after=12")  # ...until it ends: the next sign-in meets the expired password
        state = run_job(store, job_id, session, receipts_dir=tmp_path / "r", retry=FAST_RETRY)
        job = store.job(job_id)
        assert state is JobState.FAILED
        assert job.message == expired_message(server)
        assert "Retry" in job.hint
        assert logins(server, 302) == 1  # one refused sign-in for all workers, never retried
        sent_before = {f.sop_uid for f in store.files(job_id, [FileState.SENT])}
        assert 0 < len(sent_before) < len(sop_uids)
        session.close()

        # The user changes the password on the web site and signs in again (a new login): the job resumes.
        server.expire_password("alice", expired=False)
        server.set_faults(None)
        state = run_job(store, job_id, session_of(server), receipts_dir=tmp_path / "r", retry=FAST_RETRY)
        job = store.job(job_id)
        assert state is JobState.DONE, job.message
        assert job.message.startswith("verified: 3/3 series")
        receipt = json.loads(next((tmp_path / "r").glob(f"job-{job_id}-*.json")).read_text())
    assert copies(sessions_in(server, "DEMO").values()) == dict.fromkeys(sop_uids, 1)
    # On an open site the last uploads before the refused sign-in were answered as guest: reported, not lost.
    unassigned = sessions_in(server, "Unassigned")
    assert bool(unassigned) == (not require_login)
    assert set(unassigned) == {s["uri"] for s in receipt.get("strays", [])}
