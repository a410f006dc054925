"""The queue database's failures in a coordinator's words: a full disk, another program holding the file.

SQLite reports both as ``sqlite3.OperationalError`` deep inside a transaction; worse, when a COMMIT fails on a
full disk SQLite has already rolled the transaction back, so the store's own ``ROLLBACK`` then raised "cannot
rollback - no transaction is active" and buried the cause. :class:`GuardedConnection` wraps the store's
connection: every statement's failure becomes a :class:`QueueStoreError` naming the cause and what to do, and a
``ROLLBACK`` with nothing left to roll back (or that fails itself) is skipped, so the first error is the one
raised. SQLite keeps each transaction whole, so after such an error the queue holds exactly what it held before
the failed statement: nothing is lost or half-written, and the same call works once space is free.

Thread use is the store's: one connection behind its lock.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from xnat_uploader.core.errors import UserError

NEARLY_FULL = 64 * 1024  # bytes: less than a few database pages and the 32 KiB shared-memory block


class QueueStoreError(UserError):
    """The upload queue's file cannot be read or written. The queue is as it was before the failed call."""


class QueueFullError(QueueStoreError):
    """The disk (or the user's quota) holding the queue is full."""


class QueueBusyError(QueueStoreError):
    """Another program kept the queue locked for longer than the busy time-out."""


def _code(exc: sqlite3.Error) -> str:
    return str(getattr(exc, "sqlite_errorname", "") or "")  # Python 3.11+; the message otherwise


def _no_room(folder: Path) -> bool:
    """Whether the disk under ``folder`` is (nearly) full. SQLite reports a full disk as an I/O error when the
    shared-memory file (``-shm``) cannot grow: that error alone does not say why."""
    try:
        return shutil.disk_usage(folder).free < NEARLY_FULL
    except OSError:
        return False


def translate(exc: sqlite3.Error, path: Path) -> QueueStoreError | None:
    """The plain-words error for ``exc`` on the queue at ``path``, or ``None`` for a programming error."""
    text = str(exc).lower()
    code = _code(exc)
    folder = path.parent
    io_error = code.startswith(("SQLITE_IOERR", "SQLITE_CANTOPEN")) or "disk i/o error" in text
    if code.startswith("SQLITE_FULL") or "database or disk is full" in text or (io_error and _no_room(folder)):
        return QueueFullError(
            f"The disk holding the upload queue is full ({folder}).",
            "Free some space, then retry: nothing in the queue was lost.",
        )
    if code.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "database is locked" in text:
        return QueueBusyError(
            f"Another program holds the upload queue ({path}) and did not let go in time.",
            "Another xnat-uploader window or command may be saving to it: wait for it, or close it, then retry.",
        )
    if code.startswith("SQLITE_READONLY") or "readonly database" in text:
        return QueueStoreError(
            f"The upload queue ({path}) cannot be written: the file or its folder is read-only.",
            "Check the folder's permissions (it must belong to you), then retry.",
        )
    if code.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or "malformed" in text or "not a database" in text:
        return QueueStoreError(
            f"The upload queue file is damaged ({path}).",
            "Move the file away (the uploads in it are lost to the queue, not on the server), then start again.",
        )
    if io_error or "unable to open" in text:
        return QueueStoreError(
            f"The upload queue ({path}) could not be read or written: the disk reported an error.",
            "Check that the disk is connected and healthy, then retry.",
        )
    return None


class GuardedConnection:
    """A ``sqlite3.Connection`` (autocommit, explicit BEGIN) whose failures are :class:`QueueStoreError`."""

    def __init__(self, path: Path, *, busy_timeout: float) -> None:
        self.path = path
        with self._plain():
            # ``timeout`` is SQLite's busy wait: a writer elsewhere (the GUI beside a CLI) gets that long to finish
            # before "database is locked".
            self._db = sqlite3.connect(path, check_same_thread=False, timeout=busy_timeout, isolation_level=None)

    @contextlib.contextmanager
    def _plain(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            error = translate(exc, self.path)
            if error is None:
                raise
            raise error from exc

    @property
    def in_transaction(self) -> bool:
        return self._db.in_transaction

    def execute(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
        if sql.strip().upper() == "ROLLBACK":
            return self._rollback()
        with self._plain():
            return self._db.execute(sql, args)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> sqlite3.Cursor:
        with self._plain():
            return self._db.executemany(sql, rows)

    def executescript(self, script: str) -> sqlite3.Cursor:
        with self._plain():
            return self._db.executescript(script)

    def _rollback(self) -> sqlite3.Cursor:
        """Undo the open transaction, if SQLite has not already (it has after a full disk at COMMIT). Called while
        another error is on its way up: that one says what happened, so a failing rollback is not raised."""
        cursor = self._db.cursor()
        if self._db.in_transaction:
            with contextlib.suppress(sqlite3.Error):  # connection or disk gone: SQLite ignores the open WAL frames
                cursor.execute("ROLLBACK")
        return cursor

    def close(self) -> None:
        self._db.close()
