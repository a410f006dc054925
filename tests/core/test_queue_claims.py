"""One owner per job: claims in the queue database, raced by several connections, taken over when stale."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from xnat_uploader.core.queue.claims import JobOwnedElsewhere, Owner, pid_running
from xnat_uploader.core.queue.store import SCHEMA_VERSION, FileSpec, JobSpec, JobState, QueueStore


def _spec(label="S1_MR1"):
    return JobSpec("http://127.0.0.1:1", "alice", "DEMO", "S1", label, "gradual", "1.2.3", {})


def _files(n=2):
    return [FileSpec(f"/data/IM{i}", 100, f"1.2.3.{i}", "1.2.3.9") for i in range(n)]


def _dead_pid() -> int:
    """The id of a process that has ended and been reaped (ids are not reused that fast)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _set_claim(path, job_id, **columns):
    db = sqlite3.connect(path)
    try:
        sets = ", ".join(f"{name}=?" for name in columns)
        db.execute(f"UPDATE jobs SET {sets} WHERE id=?", (*columns.values(), job_id))
        db.commit()
    finally:
        db.close()


def test_connections_racing_for_a_job_let_exactly_one_win(tmp_path):
    path = tmp_path / "q.db"
    with QueueStore(path) as setup:
        jobs = [setup.add_job(_spec(f"S{i}"), _files()) for i in range(25)]
    stores = [QueueStore(path) for _ in range(4)]
    try:
        for job_id in jobs:
            start = threading.Barrier(len(stores))
            answers: dict[int, Owner | None] = {}

            def race(n, job_id=job_id, start=start, answers=answers):
                start.wait()
                answers[n] = stores[n].claim(job_id)

            threads = [threading.Thread(target=race, args=(n,)) for n in range(len(stores))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            winners = [n for n, other in answers.items() if other is None]
            assert len(winners) == 1, f"job {job_id}: {len(winners)} winners"
            winner = stores[winners[0]]
            assert {other.token for other in answers.values() if other is not None} == {winner.owner.token}
            assert winner.holds(job_id)
            assert winner.job(job_id).owner.token == winner.owner.token
    finally:
        for store in stores:
            store.close()


def test_a_claim_is_kept_until_released_then_anyone_may_take_it(tmp_path):
    path = tmp_path / "q.db"
    with QueueStore(path) as first, QueueStore(path) as second:
        job_id = first.add_job(_spec(), _files())
        assert first.claim(job_id) is None
        assert first.claim(job_id) is None  # claiming again is harmless
        other = second.claim(job_id)
        assert other is not None
        assert (other.pid, other.token) == (os.getpid(), first.owner.token)  # two stores in one process: two owners
        assert second.owned_elsewhere(second.job(job_id)) == second.job(job_id).owner
        assert first.owned_elsewhere(first.job(job_id)) is None  # our own
        # Only the owner changes it while it holds it.
        assert not second.set_state(job_id, JobState.PAUSED, "Paused.")
        assert not second.remove_job(job_id)
        assert first.job(job_id).state is JobState.QUEUED
        assert [e for _, e, _ in first.history(job_id)] == ["added"]
        second.release(job_id)  # not its claim: nothing happens
        assert second.claim(job_id) is not None
        first.release(job_id)
        assert first.job(job_id).owner is None
        assert second.claim(job_id) is None
        assert second.set_state(job_id, JobState.RUNNING)
        assert first.claim(job_id) is not None


def test_a_job_claimed_when_added_is_never_anyone_elses(tmp_path):
    path = tmp_path / "q.db"
    with QueueStore(path) as first, QueueStore(path) as second:
        job_id = first.add_job(_spec(), _files(), claim=True)
        assert first.holds(job_id)
        assert second.claim(job_id).token == first.owner.token
        unclaimed = first.add_job(_spec("S2"), _files())
        assert first.job(unclaimed).owner is None


def test_closing_a_store_releases_its_claims(tmp_path):
    path = tmp_path / "q.db"
    with QueueStore(path) as other:
        first = QueueStore(path)
        jobs = [first.add_job(_spec(f"S{i}"), _files(), claim=True) for i in range(3)]
        assert all(other.claim(j) is not None for j in jobs)
        first.close()
        assert all(other.job(j).owner is None for j in jobs)
        assert all(other.claim(j) is None for j in jobs)


def test_a_claim_whose_heartbeat_stopped_is_taken_over_and_its_owner_told(tmp_path):
    path = tmp_path / "q.db"
    lost = []
    with QueueStore(path, beat_every=3600) as first, QueueStore(path, stale_after=60) as second:  # first: no beat
        job_id = first.add_job(_spec(), _files())
        assert first.claim(job_id, on_lost=lost.append) is None
        # Its owner froze (a laptop asleep, a stopped process): its heartbeat is two minutes old.
        _set_claim(path, job_id, heartbeat=time.time() - 120)
        assert second.owned_elsewhere(second.job(job_id)) is None
        assert second.claim(job_id) is None
        assert second.job(job_id).owner.token == second.owner.token
        # When the frozen owner wakes, its next heartbeat finds the claim gone and stops its run.
        assert first.beat() == [job_id]
        assert lost == [job_id]
        assert not first.holds(job_id)
        assert not first.set_state(job_id, JobState.PAUSED, "Paused.")
        assert second.job(job_id).owner.token == second.owner.token


def test_a_claim_whose_process_is_gone_from_this_host_is_taken_over_at_once(tmp_path):
    path = tmp_path / "q.db"
    with QueueStore(path) as store:
        crashed = store.add_job(_spec("A"), _files())
        elsewhere = store.add_job(_spec("B"), _files())
        now = time.time()
        _set_claim(path, crashed, owner_pid=_dead_pid(), owner_host=store.owner.host, owner_token="dead", heartbeat=now)
        # The same pid on another machine sharing the folder says nothing about that machine: its heartbeat does.
        _set_claim(path, elsewhere, owner_pid=_dead_pid(), owner_host="another-host", owner_token="far", heartbeat=now)
        assert store.claim(crashed) is None
        other = store.claim(elsewhere)
        assert other is not None
        assert other.host == "another-host"
        error = JobOwnedElsewhere(elsewhere, "DEMO", other)
        assert f"Job {elsewhere} (project DEMO)" in error.message
        assert f"pid {other.pid} on another-host" in error.message
        assert "S1" not in str(error)  # names the job by number and project only


def test_the_heartbeat_is_refreshed_while_a_claim_is_held(tmp_path):
    path = tmp_path / "q.db"
    with QueueStore(path, beat_every=0.02) as store:
        job_id = store.add_job(_spec(), _files(), claim=True)
        first = store.job(job_id).owner.heartbeat
        deadline = time.monotonic() + 5
        while store.job(job_id).owner.heartbeat <= first:
            assert time.monotonic() < deadline, "the heartbeat was not refreshed"
            time.sleep(0.01)
        store.release(job_id)
        assert store.beat() == []  # nothing held: nothing written


def test_a_version_3_queue_gets_owners_in_place(tmp_path):
    path = tmp_path / "q.db"
    with QueueStore(path) as store:
        job_id = store.add_job(_spec(), _files())
    db = sqlite3.connect(path)
    for column in ("owner_pid", "owner_host", "owner_token", "heartbeat"):
        db.execute(f"ALTER TABLE jobs DROP COLUMN {column}")
    db.execute("PRAGMA user_version=3")
    db.commit()
    db.close()
    with QueueStore(path) as store, QueueStore(path) as other:  # a second opening finds it upgraded
        assert store.job(job_id).owner is None
        assert store.claim(job_id) is None
        assert other.claim(job_id) is not None
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
    db.close()


@pytest.mark.skipif(sys.platform == "win32", reason="zombies are a POSIX notion")
def test_pid_running_knows_live_dead_and_unreaped_processes():
    assert pid_running(os.getpid())
    assert not pid_running(_dead_pid())
    assert not pid_running(0)
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert pid_running(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        if sys.platform.startswith("linux"):  # /proc tells a zombie apart; elsewhere its parent reaps it first
            deadline = time.monotonic() + 5
            while pid_running(proc.pid):  # killed, not yet reaped: a zombie is not a live owner
                assert time.monotonic() < deadline
                time.sleep(0.01)
    finally:
        proc.kill()
        proc.wait()
