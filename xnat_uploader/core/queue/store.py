"""The persistent upload queue: jobs, per-file and per-batch state, history, in one SQLite file.

Every acknowledged file or batch is committed at once (WAL, ``synchronous=NORMAL``): a process
killed at any point loses nothing that the server acknowledged and was recorded, so a restart
sends only the rest. One connection is shared behind a lock; any thread may call any method.
Several processes (the GUI and a CLI) may open the same file: SQLite's locking serialises them, and a
job is sent only by the store that claimed it (:mod:`~xnat_uploader.core.queue.claims`).
The file is owner-only (:mod:`core.private`); a full disk or a lock held too long raise a
:class:`~xnat_uploader.core.queue.guard.QueueStoreError` in plain words (:mod:`.guard`), with the queue
as it was before the failed call.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from xnat_uploader.core.private import private_dir, private_file
from xnat_uploader.core.queue.claims import BEAT_EVERY, STALE_AFTER, Claims, Owner
from xnat_uploader.core.queue.guard import GuardedConnection, QueueStoreError

# 2: files.sop_class and files.transfer_syntax (from the scan, for C-STORE)
# 3: files.state may be 'dropped' (nothing to migrate; an older program must not open such a queue)
# 4: jobs.owner_pid, owner_host, owner_token, heartbeat: who is sending the job (an older program would
#    ignore them and send a job twice: it must not open such a queue)
SCHEMA_VERSION = 4


class JobState(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    COMMITTING = "committing"
    VERIFYING = "verifying"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobState.DONE, JobState.FAILED, JobState.CANCELLED)


# Jobs in these states were interrupted (crash, quit) and resume on the next start.
RESUMABLE = (JobState.QUEUED, JobState.RUNNING, JobState.COMMITTING, JobState.VERIFYING)


class FileState(str, Enum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    REJECTED = "rejected"  # refused by the server for good (e.g. not DICOM); never re-sent
    # Accepted by the server but not stored (a series import filter or an anonymization script's reject):
    # an outcome of the upload, not an error; never re-sent.
    DROPPED = "dropped"


@dataclass(frozen=True, slots=True)
class JobSpec:
    """What to upload where. Never holds a password."""

    server_url: str
    user: str
    project: str
    subject: str
    session_label: str
    mode: str = "zip"
    study_uid: str = ""
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FileSpec:
    path: str
    size: int
    sop_uid: str = ""
    series_uid: str = ""
    member: str = ""
    series_number: int | None = None
    sop_class: str = ""  # from the scan: C-STORE needs no second look at the file
    transfer_syntax: str = ""


@dataclass(frozen=True, slots=True)
class JobRow:
    id: int
    spec: JobSpec
    state: JobState
    created: float
    updated: float
    message: str
    hint: str
    uri: str
    receipt: str
    files_total: int
    bytes_total: int
    files_sent: int
    bytes_sent: int
    owner: Owner | None = None  # the store that claimed it (alive or not), None when unclaimed


@dataclass(frozen=True, slots=True)
class FileRow:
    id: int
    job_id: int
    path: str
    member: str
    size: int
    sop_uid: str
    series_uid: str
    series_number: int | None
    state: FileState
    batch: int | None
    attempts: int
    sha256: str
    message: str
    sop_class: str = ""
    transfer_syntax: str = ""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    server_url TEXT NOT NULL, user TEXT NOT NULL, project TEXT NOT NULL, subject TEXT NOT NULL,
    session_label TEXT NOT NULL, mode TEXT NOT NULL, study_uid TEXT NOT NULL, options TEXT NOT NULL,
    state TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL,
    message TEXT NOT NULL DEFAULT '', hint TEXT NOT NULL DEFAULT '',
    uri TEXT NOT NULL DEFAULT '', receipt TEXT NOT NULL DEFAULT '',
    owner_pid INTEGER NOT NULL DEFAULT 0, owner_host TEXT NOT NULL DEFAULT '',
    owner_token TEXT NOT NULL DEFAULT '', heartbeat REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    path BLOB NOT NULL, member BLOB NOT NULL, size INTEGER NOT NULL,
    sop_uid TEXT NOT NULL, series_uid TEXT NOT NULL, series_number INTEGER,
    state TEXT NOT NULL, batch INTEGER, attempts INTEGER NOT NULL DEFAULT 0,
    sha256 TEXT NOT NULL DEFAULT '', message TEXT NOT NULL DEFAULT '',
    sop_class TEXT NOT NULL DEFAULT '', transfer_syntax TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS files_job ON files(job_id);
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    time REAL NOT NULL, event TEXT NOT NULL, detail TEXT NOT NULL
);
"""

_JOB_COLS = (
    "id, server_url, user, project, subject, session_label, mode, study_uid, options, state, created, updated, "
    "message, hint, uri, receipt"
)
_FILE_COLS = (
    "id, job_id, path, member, size, sop_uid, series_uid, series_number, state, batch, attempts, sha256, message, "
    "sop_class, transfer_syntax"
)


_MARK_SENT = (
    "UPDATE files SET state=?, sha256=CASE WHEN ?='' THEN sha256 ELSE ? END, attempts=attempts+1, message=''"
    " WHERE id=? AND job_id=?"
)
# How long a write waits for another program (a second window, a CLI) holding the queue, before
# QueueBusyError. Their transactions last milliseconds; ten seconds means something is wrong.
BUSY_TIMEOUT = 10.0
# mark_sent refreshes a job's ``updated`` time at most this often (seconds): once per file would cost
# a second row write per acknowledgement, and nothing needs it finer than this.
UPDATED_EVERY = 1.0


def _blob(path: str) -> bytes:
    # File names need not be valid text: Linux gives undecodable bytes as surrogates, which SQLite's
    # text type refuses. "surrogatepass" round-trips any Python string exactly.
    return path.encode("utf-8", "surrogatepass")


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "surrogatepass") if isinstance(value, bytes) else value


class QueueStore(Claims):
    """The queue database. Open one per process; share it between threads.

    Each open store is one :class:`Owner` of claims; ``stale_after`` and ``beat_every`` (seconds) are
    short only in tests.
    """

    def __init__(
        self, path: str | Path, *, busy_timeout: float = BUSY_TIMEOUT, stale_after: float = STALE_AFTER,
        beat_every: float = BEAT_EVERY,
    ) -> None:  # fmt: skip
        """Open (or create, owner-only) the queue at ``path``. Raises :class:`QueueStoreError` (a plain-words
        :class:`UserError`) when the file cannot be opened; so does every method later (full disk, locked)."""
        self.path = Path(path)
        self._init_claims(stale_after, beat_every)
        try:
            private_dir(self.path.parent)
            private_file(self.path)  # SQLite gives its -wal and -shm files this file's mode
        except OSError as exc:
            raise QueueStoreError(
                f"The upload queue ({self.path}) cannot be created: {exc.strerror or exc}.",
                "Free some space or check the folder's permissions, then start again.",
            ) from exc
        self._lock = threading.RLock()
        self._refreshed: dict[int, float] = {}  # job id -> time.monotonic() of mark_sent's last ``updated``
        self._db = GuardedConnection(self.path, busy_timeout=busy_timeout)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(f"the queue database {self.path.name} is from a newer xnat-uploader (v{version})")
        self._db.executescript(_SCHEMA)
        # Queues from before kept an index on (job_id, state): every acknowledgement then rewrote an index
        # page as well, nearly doubling what each mark_sent writes. files_job serves every query as well.
        self._db.execute("DROP INDEX IF EXISTS files_job_state")
        if version == 1:  # a queue from before the scan's SOP class and transfer syntax were kept
            for column in ("sop_class", "transfer_syntax"):
                self._db.execute(f"ALTER TABLE files ADD COLUMN {column} TEXT NOT NULL DEFAULT ''")
        self._add_owner_columns()
        self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        """Release every claim this store holds (its jobs may be run by anyone again) and close."""
        self._close_claims()
        with self._lock:
            self._db.close()

    def __enter__(self) -> QueueStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------------
    def _write(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, args)

    def add_job(self, spec: JobSpec, files: Iterable[FileSpec], *, claim: bool = False) -> int:
        """Store a new job and its files in one transaction. Returns the job id.

        ``claim``: the job is this store's from its creation, so no other process can start it first.
        """
        now = time.time()
        me = self.owner if claim else Owner(0, "", "")
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._db.execute(
                    "INSERT INTO jobs (server_url, user, project, subject, session_label, mode, study_uid, options,"
                    " state, created, updated, owner_pid, owner_host, owner_token, heartbeat)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        spec.server_url,
                        spec.user,
                        spec.project,
                        spec.subject,
                        spec.session_label,
                        spec.mode,
                        spec.study_uid,
                        json.dumps(spec.options, sort_keys=True),
                        JobState.QUEUED.value,
                        now,
                        now,
                        me.pid,
                        me.host,
                        me.token,
                        now if claim else 0.0,
                    ),
                )
                job_id = int(cur.lastrowid or 0)
                self._db.executemany(
                    "INSERT INTO files (job_id, path, member, size, sop_uid, series_uid, series_number, state,"
                    " sop_class, transfer_syntax) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (
                        (
                            job_id,
                            _blob(f.path),
                            _blob(f.member),
                            f.size,
                            f.sop_uid,
                            f.series_uid,
                            f.series_number,
                            FileState.PENDING.value,
                            f.sop_class,
                            f.transfer_syntax,
                        )  # fmt: skip
                        for f in files
                    ),
                )
                self._db.execute(
                    "INSERT INTO history (job_id, time, event, detail) VALUES (?,?,?,?)", (job_id, now, "added", "")
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            if claim:
                self._hold(job_id, None)
        return job_id

    def set_state(self, job_id: int, state: JobState, message: str = "", hint: str = "") -> bool:
        """Change a job's state; ``message``/``hint`` say why (shown to the user, never secrets).

        Refused (False) while another store holds the job's claim: only its owner (or anyone once
        it is released) changes it; claim a stale job first to take it over.
        """
        now = time.time()
        with self._lock:
            changed = self._db.execute(
                "UPDATE jobs SET state=?, message=?, hint=?, updated=? WHERE id=? AND owner_token IN ('', ?)",
                (state.value, message, hint, now, job_id, self.owner.token),
            ).rowcount
            if changed:
                self._db.execute(
                    "INSERT INTO history (job_id, time, event, detail) VALUES (?,?,?,?)",
                    (job_id, now, state.value, message),
                )
        return bool(changed)

    def set_uri(self, job_id: int, uri: str) -> None:
        self._write("UPDATE jobs SET uri=?, updated=? WHERE id=?", (uri, time.time(), job_id))

    def set_receipt(self, job_id: int, receipt_path: str) -> None:
        self._write("UPDATE jobs SET receipt=?, updated=? WHERE id=?", (receipt_path, time.time(), job_id))

    def log(self, job_id: int, event: str, detail: str = "") -> None:
        self._write(
            "INSERT INTO history (job_id, time, event, detail) VALUES (?,?,?,?)", (job_id, time.time(), event, detail)
        )

    def assign_batches(self, job_id: int, batches: Sequence[Sequence[int]]) -> None:
        """Record which batch each file belongs to (numbered from 0), so a restart re-sends whole batches."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "UPDATE files SET batch=? WHERE id=? AND job_id=?",
                    ((n, file_id, job_id) for n, ids in enumerate(batches) for file_id in ids),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def mark_sent(self, job_id: int, file_ids: Sequence[int], sha256: Sequence[str] | None = None) -> None:
        """Record files the server acknowledged (one transaction, committed before returning).

        A gradual upload calls this once per file, so the common case is kept cheap: one file is one
        UPDATE, which in autocommit mode is its own transaction (committed when it returns, as with
        BEGIN/COMMIT). The job's ``updated`` time is refreshed at most every
        ``UPDATED_EVERY`` seconds per job rather than on every file.
        """
        digests = list(sha256) if sha256 is not None else [""] * len(file_ids)
        rows = [(FileState.SENT.value, d, d, i, job_id) for i, d in zip(file_ids, digests, strict=True)]
        with self._lock:
            now = time.monotonic()
            refresh = now - self._refreshed.get(job_id, -math.inf) >= UPDATED_EVERY
            if len(rows) == 1 and not refresh:
                self._db.execute(_MARK_SENT, rows[0])
                return
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(_MARK_SENT, rows)
                if refresh:
                    self._db.execute("UPDATE jobs SET updated=? WHERE id=?", (time.time(), job_id))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            if refresh:
                self._refreshed[job_id] = now

    def mark_failed(self, job_id: int, file_ids: Sequence[int], message: str, permanent: bool = False) -> None:
        """Record a failed attempt; ``permanent`` files are rejected and never re-sent."""
        state = FileState.REJECTED if permanent else FileState.FAILED
        with self._lock:
            self._db.executemany(
                "UPDATE files SET state=?, attempts=attempts+1, message=? WHERE id=? AND job_id=?",
                ((state.value, message, i, job_id) for i in file_ids),
            )

    def mark_dropped(self, job_id: int, file_ids: Sequence[int], message: str) -> None:
        """Record files the server accepted but did not keep (``message`` says why, in plain words)."""
        with self._lock:
            self._db.executemany(
                "UPDATE files SET state=?, attempts=attempts+1, message=? WHERE id=? AND job_id=?",
                ((FileState.DROPPED.value, message, i, job_id) for i in file_ids),
            )

    def reset_files(self, job_id: int, file_ids: Sequence[int] | None = None) -> None:
        """Mark files pending again (``None``: every file of the job), e.g. to re-send what verify found missing."""
        with self._lock:
            if file_ids is None:
                self._db.execute(
                    "UPDATE files SET state=?, message='' WHERE job_id=?", (FileState.PENDING.value, job_id)
                )
            else:
                self._db.executemany(
                    "UPDATE files SET state=?, message='' WHERE id=? AND job_id=?",
                    ((FileState.PENDING.value, i, job_id) for i in file_ids),
                )

    def remove_job(self, job_id: int) -> bool:
        """Forget a job; refused (False) while another store holds its claim."""
        with self._lock:
            removed = self._db.execute(
                "DELETE FROM jobs WHERE id=? AND owner_token IN ('', ?)", (job_id, self.owner.token)
            ).rowcount
            self._held.pop(job_id, None)
        return bool(removed)

    # -- reading ---------------------------------------------------------------------------
    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def job(self, job_id: int) -> JobRow:
        rows = self._jobs("WHERE j.id=?", (job_id,))
        if not rows:
            raise KeyError(job_id)
        return rows[0]

    def jobs(self, states: Iterable[JobState] | None = None) -> list[JobRow]:
        """All jobs (oldest first), or those in ``states``."""
        if states is None:
            return self._jobs("", ())
        values = [s.value for s in states]
        return self._jobs(f"WHERE j.state IN ({','.join('?' * len(values))})", values)

    def jobs_changed_since(self, when: float) -> list[JobRow]:
        """Jobs added or changed (state, message, acknowledged files: see ``UPDATED_EVERY``) after ``when``
        (``time.time()``): how a window sees what another process does with the shared queue."""
        return self._jobs("WHERE j.updated > ?", (when,))

    def resumable_jobs(self) -> list[JobRow]:
        """Jobs interrupted by a crash or a quit: they should run again on start."""
        return self.jobs(RESUMABLE)

    def _jobs(self, where: str, args: Sequence[Any]) -> list[JobRow]:
        cols = ", ".join(f"j.{c.strip()}" for c in _JOB_COLS.split(","))
        rows = self._read(
            f"SELECT {cols}, COUNT(f.id), COALESCE(SUM(f.size),0),"
            f" COALESCE(SUM(f.state='sent'),0), COALESCE(SUM(CASE WHEN f.state='sent' THEN f.size ELSE 0 END),0),"
            f" j.owner_pid, j.owner_host, j.owner_token, j.heartbeat"
            f" FROM jobs j LEFT JOIN files f ON f.job_id=j.id {where} GROUP BY j.id ORDER BY j.id",
            args,
        )
        out = []
        for r in rows:
            spec = JobSpec(r[1], r[2], r[3], r[4], r[5], r[6], r[7], json.loads(r[8]))
            owner = Owner(r[20], r[21], r[22], r[23]) if r[22] else None
            out.append(
                JobRow(r[0], spec, JobState(r[9]), r[10], r[11], r[12], r[13], r[14], r[15], *r[16:20], owner=owner)
            )
        return out

    def files(self, job_id: int, states: Iterable[FileState] | None = None) -> list[FileRow]:
        """The job's files in the order they were added, optionally only those in ``states``."""
        if states is None:
            rows = self._read(f"SELECT {_FILE_COLS} FROM files WHERE job_id=? ORDER BY id", (job_id,))
        else:
            values = [s.value for s in states]
            rows = self._read(
                f"SELECT {_FILE_COLS} FROM files WHERE job_id=? AND state IN ({','.join('?' * len(values))})"
                " ORDER BY id",
                (job_id, *values),
            )
        return [
            FileRow(r[0], r[1], _text(r[2]), _text(r[3]), *r[4:8], FileState(r[8]), *r[9:])  # type: ignore[misc]
            for r in rows
        ]

    def unsent_files(self, job_id: int) -> list[FileRow]:
        """Files still to send: pending or failed (not rejected)."""
        return self.files(job_id, (FileState.PENDING, FileState.FAILED))

    def history(self, job_id: int) -> list[tuple[float, str, str]]:
        return [
            tuple(r)
            for r in self._read(  # type: ignore[misc]
                "SELECT time, event, detail FROM history WHERE job_id=? ORDER BY id", (job_id,)
            )
        ]
