"""The queue database: jobs and per-file state survive restarts and a killed process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from xnat_uploader.core.queue.store import FileSpec, FileState, JobSpec, JobState, QueueStore


def _spec(label="S1_MR1"):
    return JobSpec("http://127.0.0.1:1", "alice", "DEMO", "S1", label, "gradual", "1.2.3", {"workers": 4})


def _files(n):
    return [FileSpec(f"/data/IM{i}", 1000 + i, f"1.2.3.{i}", "1.2.3.9") for i in range(n)]


def test_job_round_trip_and_counts(tmp_path):
    with QueueStore(tmp_path / "queue.db") as store:
        job_id = store.add_job(_spec(), _files(10))
        job = store.job(job_id)
        assert job.state is JobState.QUEUED
        assert job.spec.options == {"workers": 4}
        assert (job.files_total, job.bytes_total, job.files_sent, job.bytes_sent) == (10, 10045, 0, 0)
        ids = [f.id for f in store.files(job_id)]
        store.mark_sent(job_id, ids[:3], ["a" * 64, "b" * 64, "c" * 64])
        store.mark_failed(job_id, ids[3:4], "HTTP 503")
        store.mark_failed(job_id, ids[4:5], "not DICOM", permanent=True)
        job = store.job(job_id)
        assert (job.files_sent, job.bytes_sent) == (3, 1000 + 1001 + 1002)
        unsent = store.unsent_files(job_id)
        assert [f.id for f in unsent] == [ids[3], *ids[5:]]
        assert unsent[0].state is FileState.FAILED
        assert unsent[0].message == "HTTP 503"
        assert store.files(job_id, [FileState.SENT])[1].sha256 == "b" * 64


def test_state_history_and_resume_after_reopen(tmp_path):
    path = tmp_path / "queue.db"
    with QueueStore(path) as store:
        a = store.add_job(_spec("A"), _files(2))
        b = store.add_job(_spec("B"), _files(2))
        c = store.add_job(_spec("C"), _files(2))
        store.set_state(a, JobState.RUNNING)
        store.set_state(b, JobState.DONE)
        store.set_state(c, JobState.FAILED, "Project not found", "Check the project ID.")
        store.set_uri(a, "/data/prearchive/projects/DEMO/20240101_000000000/A")
    with QueueStore(path) as store:
        assert [j.id for j in store.resumable_jobs()] == [a]
        failed = store.job(c)
        assert (failed.message, failed.hint) == ("Project not found", "Check the project ID.")
        assert store.job(a).uri.endswith("/A")
        assert [e for _, e, _ in store.history(c)] == ["added", "failed"]
        store.remove_job(b)
        with pytest.raises(KeyError):
            store.job(b)
        assert store.files(b) == []


def test_batches_and_reset(tmp_path):
    with QueueStore(tmp_path / "q.db") as store:
        job_id = store.add_job(_spec(), _files(5))
        ids = [f.id for f in store.files(job_id)]
        store.assign_batches(job_id, [ids[:2], ids[2:]])
        assert [f.batch for f in store.files(job_id)] == [0, 0, 1, 1, 1]
        store.mark_sent(job_id, ids)
        store.reset_files(job_id, ids[:1])
        assert [f.id for f in store.unsent_files(job_id)] == ids[:1]
        store.reset_files(job_id)
        assert len(store.unsent_files(job_id)) == 5


def test_many_threads_marking_at_once(tmp_path):
    with QueueStore(tmp_path / "q.db") as store:
        job_id = store.add_job(_spec(), _files(400))
        ids = [f.id for f in store.files(job_id)]

        def worker(part):
            for i in part:
                store.mark_sent(job_id, [i])

        threads = [threading.Thread(target=worker, args=(ids[k::8],)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert store.job(job_id).files_sent == 400


def test_a_killed_process_loses_no_recorded_acknowledgement(tmp_path):
    """A child marks files sent one at a time and reports each; we SIGKILL it mid-way."""
    path = tmp_path / "q.db"
    with QueueStore(path) as store:
        job_id = store.add_job(_spec(), _files(5000))
    child = textwrap.dedent(
        f"""
        import sys
        from xnat_uploader.core.queue.store import QueueStore
        store = QueueStore({str(path)!r})
        for f in store.unsent_files({job_id}):
            store.mark_sent({job_id}, [f.id])
            print(str(f.id).ljust(4096), flush=True)  # big lines fill the pipe: the child waits for us
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
    acknowledged = [int(proc.stdout.readline()) for _ in range(200)]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with QueueStore(path) as store:
        sent = {f.id for f in store.files(job_id, [FileState.SENT])}
        assert set(acknowledged) <= sent
        assert len(sent) < 1000  # it really was interrupted (the full pipe held it back)
        assert len(store.unsent_files(job_id)) == 5000 - len(sent)


def test_refuses_a_database_from_a_newer_version(tmp_path):
    import sqlite3

    path = tmp_path / "q.db"
    QueueStore(path).close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version=99")
    db.close()
    with pytest.raises(RuntimeError, match="newer"):
        QueueStore(path)


def test_file_names_that_are_not_valid_text_round_trip(tmp_path):
    odd = os.fsdecode(b"/data/IM_\xff\xfe.dcm")  # undecodable bytes become surrogates on Linux
    with QueueStore(tmp_path / "q.db") as store:
        job_id = store.add_job(_spec(), [FileSpec(odd, 1, member="sub/\u540d\u524d.dcm")])
        row = store.files(job_id)[0]
    assert row.path == odd
    assert row.member == "sub/\u540d\u524d.dcm"


def test_a_version_1_queue_is_upgraded_in_place(tmp_path):
    """A queue written before files kept their SOP class and transfer syntax still resumes, and takes new jobs."""
    import sqlite3

    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE jobs (id INTEGER PRIMARY KEY AUTOINCREMENT, server_url TEXT NOT NULL, user TEXT NOT NULL,
            project TEXT NOT NULL, subject TEXT NOT NULL, session_label TEXT NOT NULL, mode TEXT NOT NULL,
            study_uid TEXT NOT NULL, options TEXT NOT NULL, state TEXT NOT NULL, created REAL NOT NULL,
            updated REAL NOT NULL, message TEXT NOT NULL DEFAULT '', hint TEXT NOT NULL DEFAULT '',
            uri TEXT NOT NULL DEFAULT '', receipt TEXT NOT NULL DEFAULT '');
        CREATE TABLE files (id INTEGER PRIMARY KEY AUTOINCREMENT, job_id INTEGER NOT NULL, path BLOB NOT NULL,
            member BLOB NOT NULL, size INTEGER NOT NULL, sop_uid TEXT NOT NULL, series_uid TEXT NOT NULL,
            series_number INTEGER, state TEXT NOT NULL, batch INTEGER, attempts INTEGER NOT NULL DEFAULT 0,
            sha256 TEXT NOT NULL DEFAULT '', message TEXT NOT NULL DEFAULT '');
        INSERT INTO jobs (server_url, user, project, subject, session_label, mode, study_uid, options, state,
            created, updated) VALUES ('http://x', 'u', 'P', 'S', 'S_MR1', 'cstore', '1.2', '{}', 'running', 1, 1);
        INSERT INTO files (job_id, path, member, size, sop_uid, series_uid, state)
            VALUES (1, X'2F612F62', X'', 10, '1.2.3', '1.2.9', 'pending');
        PRAGMA user_version=1;
        """
    )
    db.close()
    with QueueStore(path) as store:
        (old,) = store.files(1)
        assert (old.path, old.sop_class, old.transfer_syntax, old.state) == ("/a/b", "", "", FileState.PENDING)
        new = store.add_job(_spec(), [FileSpec("/c/d", 5, "1.2.4", "1.2.9", sop_class="1.2.840.10008.5.1.4.1.1.4",
                                               transfer_syntax="1.2.840.10008.1.2.1")])  # fmt: skip
        (row,) = store.files(new)
        assert (row.sop_class, row.transfer_syntax) == ("1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.1.2.1")
    with QueueStore(path) as store:  # opening again changes nothing
        assert [f.sop_uid for f in store.files(1)] == ["1.2.3"]


def test_one_acknowledged_file_is_committed_when_mark_sent_returns(tmp_path):
    """One file takes the single-statement path: another connection must see it at once."""
    import sqlite3

    path = tmp_path / "q.db"
    with QueueStore(path) as store:
        job_id = store.add_job(_spec(), _files(3))
        ids = [f.id for f in store.files(job_id)]
        store.mark_sent(job_id, ids[:1], ["a" * 64])  # refreshes ``updated``: a transaction
        store.mark_sent(job_id, ids[1:2], ["b" * 64])  # within the second: one UPDATE on its own
        other = sqlite3.connect(path)
        try:
            rows = other.execute("SELECT id, state, sha256, attempts FROM files WHERE job_id=? ORDER BY id", (job_id,))
            assert rows.fetchall() == [
                (ids[0], "sent", "a" * 64, 1),
                (ids[1], "sent", "b" * 64, 1),
                (ids[2], "pending", "", 0),
            ]
        finally:
            other.close()


def test_mark_sent_refreshes_the_job_time_at_most_every_so_often(tmp_path, monkeypatch):
    from xnat_uploader.core.queue import store as store_module

    monkeypatch.setattr(store_module, "UPDATED_EVERY", 0.2)
    with QueueStore(tmp_path / "q.db") as store:
        job_id = store.add_job(_spec(), _files(4))
        ids = [f.id for f in store.files(job_id)]
        added = store.job(job_id).updated
        time.sleep(0.01)
        store.mark_sent(job_id, ids[:1])  # the first acknowledgement of a job always refreshes it
        first = store.job(job_id).updated
        assert first > added
        store.mark_sent(job_id, ids[1:2])  # too soon: the file is recorded, the job time is not
        assert store.job(job_id).updated == first
        assert store.job(job_id).files_sent == 2
        time.sleep(0.25)
        store.mark_sent(job_id, ids[2:3])  # a while later it is refreshed again
        assert store.job(job_id).updated > first
        assert store.job(job_id).files_sent == 3


def test_the_old_state_index_is_replaced_on_open(tmp_path):
    """Indexing the state made every acknowledgement write an index page too; the job id alone is enough."""
    import sqlite3

    path = tmp_path / "q.db"
    with QueueStore(path) as store:
        job_id = store.add_job(_spec(), _files(3))
    db = sqlite3.connect(path)
    db.execute("CREATE INDEX files_job_state ON files(job_id, state)")  # as queues from before had it
    db.close()
    with QueueStore(path) as store:
        indexes = {r[0] for r in store._read("SELECT name FROM sqlite_master WHERE type='index' AND tbl_name='files'")}
        assert indexes == {"files_job"}
        plan = store._read("EXPLAIN QUERY PLAN SELECT id FROM files WHERE job_id=? AND state='pending'", (job_id,))
        assert "files_job" in str(plan)
        assert len(store.unsent_files(job_id)) == 3


def test_dropped_files_are_kept_apart_and_a_version_2_queue_upgrades(tmp_path):
    """Files the server accepted but did not keep are never unsent again; a v2 queue opens as the current version,
    its files unchanged."""
    import sqlite3

    from xnat_uploader.core.queue.store import SCHEMA_VERSION

    path = tmp_path / "q.db"
    with QueueStore(path) as store:
        job_id = store.add_job(_spec(), _files(3))
        ids = [f.id for f in store.files(job_id)]
        store.mark_dropped(job_id, ids[:1], "dropped by the server (series import filter or anonymization script)")
        store.mark_failed(job_id, ids[1:2], "unable to read DICOM object 1.2.dcm")
        assert [f.id for f in store.unsent_files(job_id)] == ids[1:]
        (dropped,) = store.files(job_id, [FileState.DROPPED])
        assert dropped.id == ids[0]
        assert "series import filter" in dropped.message
        assert store.job(job_id).files_sent == 0
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version=2")
    db.close()
    with QueueStore(path) as store:
        assert [f.state for f in store.files(job_id)] == [FileState.DROPPED, FileState.FAILED, FileState.PENDING]
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 3
    db.close()
