"""Who is sending a job: one owner per job, so two copies of the program on one queue never send it twice.

Several processes may open the same queue (the GUI, a command-line upload, an ``upload --resume``). Each
open :class:`~xnat_uploader.core.queue.store.QueueStore` is one :class:`Owner` (process id, host name and a
random token, so two stores in one process are two owners too). A job is run only by the owner that
claimed it; the claim is one conditional UPDATE in the queue database (see ``QueueStore.claim``), so of
two processes racing for a job exactly one wins.

A claim carries a heartbeat time that its owner refreshes every few seconds while it holds any job
(:class:`Heartbeat`). A claim is stale, and may be taken over, when its heartbeat is older than
``stale_after`` or when its owner's process is gone from this host. A killed process is noticed at once
on its own host; one on another machine sharing the folder after ``stale_after``.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from xnat_uploader.core.errors import UserError

if TYPE_CHECKING:
    from xnat_uploader.core.queue.store import JobRow

log = logging.getLogger(__name__)

# A live owner refreshes its heartbeat this often (seconds) ...
BEAT_EVERY = 5.0
# ... and a claim whose heartbeat is older than this is stale (its owner hung, or gone on another host).
STALE_AFTER = 60.0


@dataclass(frozen=True, slots=True)
class Owner:
    """One open queue store of one process: the holder of claims."""

    pid: int
    host: str
    token: str
    heartbeat: float = 0.0  # time.time() of the last sign of life (0 for ourselves: not needed)

    @classmethod
    def this_process(cls) -> Owner:
        return cls(os.getpid(), socket.gethostname(), secrets.token_hex(8))

    def describe(self) -> str:
        """``pid 123`` or ``pid 123 on other-host`` (a host name is not a patient's data)."""
        return f"pid {self.pid}" if self.host == socket.gethostname() else f"pid {self.pid} on {self.host}"


def is_alive(owner: Owner, *, now: float, stale_after: float) -> bool:
    """Whether ``owner`` may still be sending: a fresh heartbeat and, on this host, its process still there."""
    if owner.heartbeat < now - stale_after:
        return False
    return owner.host != socket.gethostname() or pid_running(owner.pid)


def pid_running(pid: int) -> bool:
    """Whether a process with this id runs on this machine (a zombie, killed but not yet reaped, does not)."""
    if pid <= 0:
        return False
    if sys.platform == "win32":
        return _windows_pid_running(pid)
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, under another user
    try:  # Linux: a killed child its parent has not reaped yet still answers signal 0
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[-1].split()[:1] != [b"Z"]
    except OSError:
        return True  # no /proc (macOS): signal 0 answered


def _windows_pid_running(pid: int) -> bool:
    # os.kill on Windows terminates the process whatever the signal: ask the kernel instead.
    import ctypes

    kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
    handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not handle:
        return bool(kernel32.GetLastError() == 5)  # access denied: it exists
    try:
        code = ctypes.c_ulong()
        if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
            return True
        return code.value == 259  # STILL_ACTIVE
    finally:
        kernel32.CloseHandle(handle)


class JobOwnedElsewhere(UserError):
    """A job another live copy of the program is sending: this one leaves it alone.

    The message names the job by its number and project only (labels may be patient IDs).
    """

    def __init__(self, job_id: int, project: str, owner: Owner) -> None:
        self.summary = f"Job {job_id} (project {project}) is being sent by another copy of xnat-uploader" + (
            f" ({owner.describe()})"
        )
        super().__init__(f"{self.summary}.", "It continues there; this copy leaves it alone.")
        self.job_id = job_id
        self.owner = owner


class Heartbeat:
    """A small daemon thread that calls ``beat`` every ``every`` seconds until stopped.

    ``beat`` refreshes the heartbeat of every claim its owner holds (one UPDATE) and tells which claims
    were lost (taken over while this process was frozen or asleep longer than the stale time).
    """

    def __init__(self, beat: Callable[[], object], every: float) -> None:
        self._beat = beat
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="queue-heartbeat", daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self._every):
            try:
                self._beat()
            except Exception:  # noqa: BLE001 - a missed beat is retried; the thread must not die
                log.warning("Could not refresh the queue's heartbeat", exc_info=True)


_OWNER_COLUMNS = (
    ("owner_pid", "INTEGER NOT NULL DEFAULT 0"),
    ("owner_host", "TEXT NOT NULL DEFAULT ''"),
    ("owner_token", "TEXT NOT NULL DEFAULT ''"),
    ("heartbeat", "REAL NOT NULL DEFAULT 0"),
)
_CLAIM = "UPDATE jobs SET owner_pid=?, owner_host=?, owner_token=?, heartbeat=? WHERE id=?"
_UNCLAIM = "owner_pid=0, owner_host='', owner_token='', heartbeat=0"

LostFn = Callable[[int], None]


class Claims:
    """The owner half of :class:`~xnat_uploader.core.queue.store.QueueStore` (its base class): claiming,
    releasing and heartbeats, over the store's connection and lock. Any thread may call any method."""

    _db: sqlite3.Connection
    _lock: threading.RLock

    def _init_claims(self, stale_after: float, beat_every: float) -> None:
        self.owner = Owner.this_process()
        self.stale_after = stale_after
        self._beat_every = beat_every
        self._held: dict[int, LostFn | None] = {}  # claimed job -> told if the claim is lost
        self._heartbeat: Heartbeat | None = None

    def _add_owner_columns(self) -> None:
        """A queue from before owners (version < 4) gets the owner columns, unclaimed; once, even if two
        processes open it at the same moment (the check is inside the write transaction)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            have = {row[1] for row in self._db.execute("PRAGMA table_info(jobs)")}
            for name, decl in _OWNER_COLUMNS:
                if name not in have:
                    self._db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {decl}")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def _close_claims(self) -> None:
        """Stop the heartbeat and release every claim this store holds (its jobs are anyone's again)."""
        with self._lock:
            heartbeat, self._heartbeat = self._heartbeat, None
        if heartbeat is not None:
            heartbeat.stop()
        with self._lock:
            if not self._held:  # nothing claimed (or closed already): nothing to write
                return
            try:
                self._db.execute(f"UPDATE jobs SET {_UNCLAIM} WHERE owner_token=?", (self.owner.token,))
            except (sqlite3.Error, UserError) as exc:  # closing anyway (disk full, locked): the claims go stale
                log.warning("Could not release the queue's claims: %s", exc)
            self._held.clear()

    def claim(self, job_id: int, on_lost: Callable[[int], None] | None = None) -> Owner | None:
        """Make this store the job's owner unless another live one holds it. None: ours now (or already);
        else the live owner, who keeps it. Raises ``KeyError`` for a job that is not there.

        Atomic across processes: one conditional UPDATE takes a job that is unclaimed, ours or stale by its
        heartbeat; one whose owner's process is gone from this host is taken with a second UPDATE on
        condition that the dead owner still holds it. ``on_lost(job_id)`` is called (from the heartbeat
        thread) if another store takes the claim over while we hold it.
        """
        me = self.owner
        while True:  # the claim changed hands between our statements (another process moved on): look again
            now = time.time()
            with self._lock:
                won = self._db.execute(
                    _CLAIM + " AND (owner_token IN ('', ?) OR heartbeat < ?)",
                    (me.pid, me.host, me.token, now, job_id, me.token, now - self.stale_after),
                ).rowcount
                if won:
                    self._hold(job_id, on_lost)
                    return None
                other = self._owner(job_id)
                if other is None or is_alive(other, now=now, stale_after=self.stale_after):
                    if other is not None:
                        return other
                    continue  # released between the two statements
                won = self._db.execute(
                    _CLAIM + " AND owner_token=?", (me.pid, me.host, me.token, now, job_id, other.token)
                ).rowcount
                if won:
                    log.info("Job %d: took over from a stopped copy (%s)", job_id, other.describe())
                    self._hold(job_id, on_lost)
                    return None

    def release(self, job_id: int) -> None:
        """Give up the claim (the job stopped: done, failed, paused or cancelled). A claim not ours is left."""
        with self._lock:
            self._db.execute(f"UPDATE jobs SET {_UNCLAIM} WHERE id=? AND owner_token=?", (job_id, self.owner.token))
            self._held.pop(job_id, None)

    def holds(self, job_id: int) -> bool:
        """Whether this store holds the job's claim (as far as its last heartbeat knows)."""
        with self._lock:
            return job_id in self._held

    def owned_elsewhere(self, job: JobRow) -> Owner | None:
        """The live owner of ``job`` if it is another store (another process, or another copy in this one)."""
        owner = job.owner
        if owner is None or owner.token == self.owner.token:
            return None
        return owner if is_alive(owner, now=time.time(), stale_after=self.stale_after) else None

    def beat(self) -> list[int]:
        """Refresh the heartbeat of every claim we hold; returns the jobs whose claims were taken over.

        Called every ``beat_every`` seconds by the heartbeat thread; their ``on_lost`` callbacks are called.
        """
        with self._lock:
            if not self._held:
                return []
            self._db.execute("UPDATE jobs SET heartbeat=? WHERE owner_token=?", (time.time(), self.owner.token))
            ours = {r[0] for r in self._db.execute("SELECT id FROM jobs WHERE owner_token=?", (self.owner.token,))}
            lost = {job_id: self._held.pop(job_id) for job_id in list(self._held) if job_id not in ours}
        for job_id, on_lost in lost.items():
            log.warning("Job %d was taken over by another copy of the program", job_id)
            if on_lost is not None:
                on_lost(job_id)
        return sorted(lost)

    def _hold(self, job_id: int, on_lost: Callable[[int], None] | None) -> None:
        # Under self._lock. A claim made again keeps the callback it had unless a new one is given.
        if on_lost is not None or job_id not in self._held:
            self._held[job_id] = on_lost
        if self._heartbeat is None:
            self._heartbeat = Heartbeat(self.beat, self._beat_every).start()

    def _owner(self, job_id: int) -> Owner | None:
        with self._lock:
            row = self._db.execute(
                "SELECT owner_pid, owner_host, owner_token, heartbeat FROM jobs WHERE id=?", (job_id,)
            ).fetchone()
        if row is None:
            raise KeyError(job_id)
        pid, host, token, heartbeat = row
        return Owner(pid, host, token, heartbeat) if token else None
