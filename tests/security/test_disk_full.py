"""A full disk and a locked queue are user errors in plain words; the queue is never lost or half-written.

The disk is a real one that fills up: a tiny tmpfs mounted for the test. Where mounting is not allowed (not
root), the same tests run on an ordinary folder with SQLite's ``PRAGMA max_page_count`` capping the queue (SQLite
then answers "database or disk is full" exactly as on a full disk), ``/dev/full`` as the log file, and a receipt
folder that cannot be made. The locked queue is a second connection holding SQLite's write lock.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from xnat_uploader import cli
from xnat_uploader import log as app_log
from xnat_uploader.commands import upload as upload_command
from xnat_uploader.core.dicom.index import build_index
from xnat_uploader.core.dicom.scan import scan_paths
from xnat_uploader.core.plan import Target, enqueue, plan_jobs
from xnat_uploader.core.queue.guard import QueueBusyError, QueueFullError
from xnat_uploader.core.queue.runner import run_job
from xnat_uploader.core.queue.store import FileSpec, JobSpec, JobState, QueueStore
from xnat_uploader.core.xnat.session import ConnectionOptions, XnatSession
from xnat_uploader.sandbox.synthetic import write_corpus


@dataclass
class TinyDisk:
    """``folder`` on a 1 MiB tmpfs (``mounted``), else an ordinary folder whose queue ``cap()`` fills."""

    folder: Path
    mounted: bool

    def fill(self, store: QueueStore | None = None) -> None:
        if self.mounted:
            assert _write_until_refused(self.folder / "filler") == errno.ENOSPC
        else:
            assert store is not None, "without a mount only a queue can be filled"
            pages = store._db.execute("PRAGMA page_count").fetchone()[0]
            store._db.execute(f"PRAGMA max_page_count={pages}")  # not one page more: as full as a disk

    def free(self, store: QueueStore | None = None) -> None:
        if self.mounted:
            (self.folder / "filler").unlink()
        elif store is not None:
            store._db.execute("PRAGMA max_page_count=1073741823")


def _write_until_refused(path: Path) -> int | None:
    """Append zeros to ``path`` until the disk refuses (the last write is short, the next one fails); the errno."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        while True:
            try:
                os.write(fd, b"\0" * 65536)
            except OSError as exc:
                return exc.errno
    finally:
        os.close(fd)


@pytest.fixture
def disk(tmp_path) -> Iterator[TinyDisk]:
    folder = tmp_path / "disk"
    folder.mkdir()
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(folder)],
                           capture_output=True, check=False)  # fmt: skip
    yield TinyDisk(folder, mount.returncode == 0)
    if mount.returncode == 0:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def _spec(label: str) -> JobSpec:
    return JobSpec("https://xnat.example.org", "alice", "P", "S", label, "zip", "1.2.3", {})


def _files(n: int, prefix: str) -> list[FileSpec]:
    return [FileSpec(f"/scans/{prefix}/IM{i:05d}", 1000 + i, f"1.2.3.{i}", "1.2.3.9", series_number=1)
            for i in range(n)]  # fmt: skip


def _intact(path: Path) -> tuple[str, list[str], int]:
    """What another program reading the file sees: integrity, job labels, file rows."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return (db.execute("PRAGMA integrity_check").fetchone()[0],
                [r[0] for r in db.execute("SELECT session_label FROM jobs ORDER BY id")],
                db.execute("SELECT COUNT(*) FROM files").fetchone()[0])  # fmt: skip
    finally:
        db.close()


def test_a_full_disk_refuses_a_job_in_plain_words_and_the_queue_stays_whole(disk):
    path = disk.folder / "queue.sqlite3"
    with QueueStore(path) as store:
        first = store.add_job(_spec("E1"), _files(40, "a"))
        disk.fill(store)
        # 300 files fit SQLite's page cache: on the tmpfs the failure comes at COMMIT, which SQLite has rolled
        # back itself (the cause once hid behind "cannot rollback - no transaction is active")
        with pytest.raises(QueueFullError) as info:
            store.add_job(_spec("E2"), _files(300, "b"))
        assert info.value.message == f"The disk holding the upload queue is full ({disk.folder})."
        assert info.value.hint == "Free some space, then retry: nothing in the queue was lost."
        assert "rollback" not in str(info.value.__cause__)
        assert [j.spec.session_label for j in store.jobs()] == ["E1"]
        assert _intact(path) == ("ok", ["E1"], 40)

        disk.free(store)  # space again: the same call works, and nothing of the first attempt is left over
        second = store.add_job(_spec("E2"), _files(300, "b"))
        store.mark_sent(first, [f.id for f in store.files(first)][:10])
        assert [(j.spec.session_label, j.files_total, j.files_sent) for j in store.jobs()] == [
            ("E1", 40, 10),
            ("E2", 300, 0),
        ]
        assert second == first + 1
    assert _intact(path) == ("ok", ["E1", "E2"], 340)


def test_a_locked_queue_waits_then_says_who_holds_it(tmp_path):
    path = tmp_path / "queue.sqlite3"
    with QueueStore(path, busy_timeout=0.3) as store:
        first = store.add_job(_spec("E1"), _files(5, "a"))
        other = sqlite3.connect(path, isolation_level=None)  # another program, in the middle of a write
        other.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        with pytest.raises(QueueBusyError) as info:
            store.add_job(_spec("E2"), _files(5, "b"))
        waited = time.monotonic() - started
        assert 0.25 <= waited < 3, waited  # the busy time-out first, then the error
        assert info.value.message.startswith("Another program holds the upload queue")
        assert "another xnat-uploader window or command" in info.value.hint.lower()
        with pytest.raises(QueueBusyError):
            store.set_state(first, JobState.RUNNING)
        assert [(j.spec.session_label, j.state) for j in store.jobs()] == [("E1", JobState.QUEUED)]  # reads go on
        other.execute("ROLLBACK")
        other.close()
        store.add_job(_spec("E2"), _files(5, "b"))
        assert [j.spec.session_label for j in store.jobs()] == ["E1", "E2"]
    assert _intact(path) == ("ok", ["E1", "E2"], 10)


def test_a_full_disk_at_the_end_keeps_a_delivered_upload(sandbox, disk, tmp_path):
    """The receipt cannot be written: the job is still done and verified, and says what is missing."""
    write_corpus(tmp_path / "src", patients=1, series_per_study=2, instances_per_series=3)
    result = scan_paths([tmp_path / "src"])
    plan = plan_jobs(build_index(result.instances, result.rejected), Target(project="DEMO"))
    if disk.mounted:
        receipts = disk.folder / "receipts"
        receipts.mkdir()
        disk.fill()
    else:
        (tmp_path / "a-file").write_text("")
        receipts = tmp_path / "a-file" / "receipts"  # cannot be made: the write fails as on a full disk
    with QueueStore(tmp_path / "queue.sqlite3") as store:
        job_id = enqueue(store, plan.jobs[0], server_url=sandbox.url, user="admin", mode="zip", options={})
        session = XnatSession(sandbox.url, "admin", "admin", ConnectionOptions())
        try:
            assert run_job(store, job_id, session, receipts_dir=receipts) is JobState.DONE
        finally:
            session.close()
        job = store.job(job_id)
    assert job.message.startswith("verified: 2/2 series, 6 files; the receipt could not be written")
    assert ("is full" in job.message) is disk.mounted
    assert job.receipt == ""
    assert len(sandbox.inventory()) == 1
    assert not list(receipts.glob("*")) if disk.mounted else not receipts.exists()  # no half-written receipt


def test_a_full_disk_under_the_log_is_said_once_and_logging_resumes(disk, capsys):
    target = disk.folder / "xnat-uploader.log" if disk.mounted else Path("/dev/full")
    handler = app_log.PrivateLogFileHandler(str(target), encoding="utf-8")
    logger = logging.getLogger("tests.security.full_log")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("before")
        if disk.mounted:
            disk.fill()
        for n in range(200):
            logger.warning("line %d that finds no room", n)  # never raises, never a traceback per line
        err = capsys.readouterr().err
        assert err.count("The disk holding the log") == 1, err
        assert "is full: log lines are left out until there is free space again" in err
        assert "Traceback" not in err
        if disk.mounted:
            disk.free()
            logger.warning("after")
            handler.flush()
            text = target.read_text(encoding="utf-8")
            assert text.splitlines()[0].endswith("before")
            assert text.rstrip().endswith("after")
    finally:
        logger.removeHandler(handler)
        handler.close()


def test_the_command_line_says_the_queue_disk_is_full_and_a_retry_works(sandbox, disk, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XNAT_UPLOADER_CONFIG_DIR", str(disk.folder / "app"))
    monkeypatch.setenv("XNAT_PASS", "admin")
    write_corpus(tmp_path / "first", patients=1, series_per_study=1, instances_per_series=3, seed=1)
    # enough files that recording the job needs new pages of the queue, whatever room the first one left
    write_corpus(tmp_path / "second", patients=1, series_per_study=2, instances_per_series=80, seed=2, rows=8,
                 columns=8)  # fmt: skip
    args = ["upload", "--url", sandbox.url, "--user", "admin", "-P", "DEMO"]
    assert cli.main([*args, str(tmp_path / "first")]) == 0
    capsys.readouterr()

    opened: list[QueueStore] = []
    if not disk.mounted:  # the queue the command opens is capped as soon as it is open

        def capped(path, **kw):
            store = QueueStore(path, **kw)
            disk.fill(store)
            opened.append(store)
            return store

        monkeypatch.setattr(upload_command, "QueueStore", capped)
    else:
        disk.fill()
    assert cli.main([*args, str(tmp_path / "second")]) == 1
    err = capsys.readouterr().err
    assert "Upload failed: The disk holding the upload queue is full" in err, err
    assert "Free some space, then retry" in err
    assert "Traceback" not in err
    assert "rollback" not in err
    assert len(sandbox.inventory()) == 1  # nothing was sent for the second folder

    disk.free()
    monkeypatch.undo()
    monkeypatch.setenv("XNAT_UPLOADER_CONFIG_DIR", str(disk.folder / "app"))
    monkeypatch.setenv("XNAT_PASS", "admin")
    assert cli.main([*args, str(tmp_path / "second")]) == 0, capsys.readouterr().err
    assert len(sandbox.inventory()) == 2
    queue = disk.folder / "app" / "data" / "queue.sqlite3"
    assert _intact(queue)[0] == "ok"
    assert len(_intact(queue)[1]) == 2
