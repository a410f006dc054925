"""Two copies of the program on one queue: a job is sent by one of them only (its claim in the queue database).

Real processes against the sandbox over loopback, as a user runs them: an upload, and ``upload --resume``
started in another terminal while it runs; an upload killed mid-way and resumed; a claim left by a copy on
another machine that shares the data folder.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from xnat_uploader.core.dicom.index import build_index
from xnat_uploader.core.dicom.scan import scan_paths
from xnat_uploader.core.plan import Target, enqueue, plan_jobs
from xnat_uploader.core.queue.store import QueueStore
from xnat_uploader.core.xnat.transport import normalize_url
from xnat_uploader.sandbox.server import SandboxServer
from xnat_uploader.sandbox.synthetic import write_corpus

FILES = 8  # one session: two series of four


def _env(tmp_path):
    return dict(os.environ, XNAT_UPLOADER_CONFIG_DIR=str(tmp_path / "app"), XNAT_PASS="admin")


def _cmd(server, *args):
    return [sys.executable, "-m", "xnat_uploader", "upload", "--url", server.url, "--user", "admin", *args]


def _resume(server, tmp_path):
    return subprocess.run(_cmd(server, "--resume"), capture_output=True, text=True, env=_env(tmp_path), timeout=60)


def _db(tmp_path):
    return tmp_path / "app" / "data" / "queue.sqlite3"


def _query(tmp_path, sql):
    path = _db(tmp_path)
    if not path.exists():
        return []
    db = sqlite3.connect(path)
    try:
        return db.execute(sql).fetchall()
    except sqlite3.OperationalError:  # not created yet
        return []
    finally:
        db.close()


def _sent(tmp_path):
    return {sop for (sop,) in _query(tmp_path, "SELECT sop_uid FROM files WHERE state='sent'")}


def _wait_for(predicate, proc, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _copies(server):
    """SOP instance UID -> how many copies the sandbox holds, over every session."""
    copies: dict[str, int] = {}
    for entry in server.inventory().values():
        for series in entry["counts"].values():
            for sop, n in series.items():
                copies[sop] = copies.get(sop, 0) + n
    return copies


def _commits(server):
    return [r for r in server.request_log if r.method == "POST" and "action=commit" in r.query]


@pytest.fixture
def server(tmp_path_factory):
    """A sandbox over loopback (admin/admin, project DEMO); faults set per test."""
    started = SandboxServer(data_dir=tmp_path_factory.mktemp("sandbox")).start()
    yield started
    started.stop()


@pytest.fixture
def session_folder(tmp_path):
    write_corpus(tmp_path / "src", patients=1, studies_per_patient=1, series_per_study=2, instances_per_series=4)
    return tmp_path / "src"


def _start_upload(server, folder, tmp_path):
    """A gradual upload of the session, one file at a time, each held by the server (slow)."""
    cmd = _cmd(server, str(folder), "-P", "DEMO", "--mode", "gradual", "--workers", "1")
    return subprocess.Popen(cmd, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_resume_started_during_an_upload_skips_its_job_and_every_file_arrives_once(server, session_folder, tmp_path):
    # A second a file: the first upload is still at work whenever the second process looks (it is sped up below).
    server.set_faults("slow=1.0,path=/data/services/import")
    first = _start_upload(server, session_folder, tmp_path)
    try:
        _wait_for(lambda: len(_sent(tmp_path)) >= 1, first)
        second = _resume(server, tmp_path)
        assert second.returncode == 0, second.stderr
        (job_id,) = [j for (j,) in _query(tmp_path, "SELECT id FROM jobs")]
        assert (
            f"Job {job_id} (project DEMO) is being sent by another copy of xnat-uploader (pid {first.pid}); skipped."
            in second.stderr
        )
        assert "Resuming" not in second.stderr
        assert "SYN" not in second.stderr  # neither the subject nor the session label (patient IDs)
        server.set_faults(None)  # let the first finish now
        out, err = first.communicate(timeout=60)
        assert first.returncode == 0, err
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    copies = _copies(server)
    assert len(copies) == FILES
    assert set(copies.values()) == {1}, "a file was sent twice"
    assert len(_commits(server)) == 1
    assert server.action_count("commit") == 1
    assert _query(tmp_path, "SELECT state, owner_token FROM jobs") == [("done", "")]  # released when done


def _killed_upload(server, folder, tmp_path):
    """An upload killed (SIGKILL, as a crash) after two acknowledged files: its claim stays in the queue."""
    proc = _start_upload(server, folder, tmp_path)
    try:
        _wait_for(lambda: len(_sent(tmp_path)) >= 2, proc)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
    ((job_id, pid, token),) = _query(tmp_path, "SELECT id, owner_pid, owner_token FROM jobs")
    assert (pid, bool(token)) == (proc.pid, True)  # the crashed process still holds it
    return job_id


def test_resume_takes_over_the_job_of_a_crashed_upload(server, session_folder, tmp_path):
    server.set_faults("slow=0.3,path=/data/services/import")
    _killed_upload(server, session_folder, tmp_path)
    acknowledged = _sent(tmp_path)
    server.set_faults(None)
    out = _resume(server, tmp_path)
    assert out.returncode == 0, out.stderr
    assert "Resuming 1 unfinished upload(s)." in out.stderr
    assert "skipped" not in out.stderr
    copies = _copies(server)
    assert len(copies) == FILES
    assert all(copies[sop] == 1 for sop in acknowledged), "an acknowledged file was sent again"
    assert len(_commits(server)) == 1
    assert _query(tmp_path, "SELECT state, owner_token FROM jobs") == [("done", "")]


def _queued_job(server, folder, tmp_path):
    """The session queued as ``upload`` would queue it (nothing sent yet)."""
    result = scan_paths([folder], workers=1)
    (planned,) = plan_jobs(build_index(result.instances), Target(project="DEMO", mode="gradual")).jobs
    with QueueStore(_db(tmp_path)) as store:
        return enqueue(store, planned, server_url=normalize_url(server.url), user="admin", mode="gradual",
                       options={"workers": 1})  # fmt: skip


def _claim_from(tmp_path, job_id, host, heartbeat):
    db = sqlite3.connect(_db(tmp_path))
    db.execute(
        "UPDATE jobs SET owner_pid=4242, owner_host=?, owner_token='far', heartbeat=? WHERE id=?",
        (host, heartbeat, job_id),
    )
    db.commit()
    db.close()


def test_a_claim_from_another_machine_is_respected_while_its_heartbeat_is_fresh(server, session_folder, tmp_path):
    """A data folder on a shared drive: the owner's process cannot be checked from here, its heartbeat can."""
    job_id = _queued_job(server, session_folder, tmp_path)
    _claim_from(tmp_path, job_id, "lab-pc-2", time.time())
    fresh = _resume(server, tmp_path)
    assert fresh.returncode == 0, fresh.stderr
    assert (
        f"Job {job_id} (project DEMO) is being sent by another copy of xnat-uploader (pid 4242 on lab-pc-2); skipped."
        in fresh.stderr
    )
    assert server.inventory() == {}  # nothing sent
    assert _query(tmp_path, "SELECT state, owner_host FROM jobs") == [("queued", "lab-pc-2")]

    _claim_from(tmp_path, job_id, "lab-pc-2", time.time() - 3600)  # silent for an hour: that copy is gone
    stale = _resume(server, tmp_path)
    assert stale.returncode == 0, stale.stderr
    assert "Resuming 1 unfinished upload(s)." in stale.stderr
    copies = _copies(server)
    assert len(copies) == FILES
    assert set(copies.values()) == {1}
    assert len(_commits(server)) == 1
    assert _query(tmp_path, "SELECT state, owner_token FROM jobs") == [("done", "")]
