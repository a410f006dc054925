"""What every transport shares: the progress event, the meter that throttles it, retries, file access.

A transport sends a job's unsent files and records each acknowledgement in the queue store as it
arrives; it does not commit or verify (the runner does that, the same for every transport).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol, TypeVar

from xnat_uploader.core import strays
from xnat_uploader.core.dicom.archives import open_member
from xnat_uploader.core.errors import Cancelled
from xnat_uploader.core.queue.store import FileRow, JobRow, QueueStore
from xnat_uploader.core.upload_choices import XnatParams
from xnat_uploader.core.xnat.errors import XnatError
from xnat_uploader.core.xnat.importer import ImportHandler, ImportOptions
from xnat_uploader.core.xnat.server_info import ServerInfo

if TYPE_CHECKING:
    from xnat_uploader.core.xnat.session import XnatSession

log = logging.getLogger(__name__)
T = TypeVar("T")
Item = TypeVar("Item")


@dataclass(slots=True, frozen=True)
class TransferProgress:
    """A snapshot of one job's transfer. Plain data: safe to hand to any thread or signal."""

    job_id: int
    phase: str  # "sending", "retrying", "committing", "archiving" (XNAT at work), "verifying", "attaching", "done"
    bytes_done: int
    bytes_total: int
    files_done: int
    files_total: int
    elapsed: float
    rate: float  # bytes per second over the last few seconds
    message: str = ""

    @property
    def fraction(self) -> float:
        return self.bytes_done / self.bytes_total if self.bytes_total else 1.0

    @property
    def eta(self) -> float | None:
        """Seconds left at the current rate, or ``None`` when unknown."""
        if self.rate <= 0 or self.bytes_total <= self.bytes_done:
            return None if self.bytes_total > self.bytes_done else 0.0
        return (self.bytes_total - self.bytes_done) / self.rate


ProgressFn = Callable[[TransferProgress], None]


class ProgressMeter:
    """Counts bytes and files from many sending threads; reports at most every ``interval`` seconds.

    ``add_bytes`` follows bytes handed to the socket (they may be sent again after a failure, so
    ``undo_bytes`` takes back a failed attempt's bytes). Thread-safe.
    """

    def __init__(
        self, job_id: int, bytes_total: int, files_total: int, report: ProgressFn | None, *,
        bytes_done: int = 0, files_done: int = 0, interval: float = 0.2,
    ) -> None:  # fmt: skip
        self.job_id = job_id
        self.bytes_total = bytes_total
        self.files_total = files_total
        self.bytes_done = bytes_done
        self.files_done = files_done
        self.phase = "sending"
        self.message = ""
        self._report = report
        self._interval = interval
        self._lock = threading.Lock()
        self._start = time.monotonic()
        self._last = 0.0
        self._window: list[tuple[float, int]] = [(self._start, bytes_done)]

    def add_bytes(self, n: int) -> None:
        with self._lock:
            self.bytes_done += n
        self._maybe_report()

    def add(self, n_bytes: int, n_files: int) -> None:
        """``add_bytes`` and ``add_files`` in one step: one lock and one clock read per acknowledged file."""
        with self._lock:
            self.bytes_done += n_bytes
            self.files_done += n_files
        self._maybe_report()

    def undo_bytes(self, n: int) -> None:
        with self._lock:
            self.bytes_done -= n
        self._maybe_report(force=True)

    def add_files(self, n: int = 1) -> None:
        with self._lock:
            self.files_done += n
        self._maybe_report()

    def set_phase(self, phase: str, message: str = "") -> None:
        with self._lock:
            self.phase, self.message = phase, message
        self._maybe_report(force=True)

    def snapshot(self) -> TransferProgress:
        with self._lock:
            now = time.monotonic()
            self._window.append((now, self.bytes_done))
            while len(self._window) > 2 and now - self._window[0][0] > 5.0:
                self._window.pop(0)
            t0, b0 = self._window[0]
            rate = (self.bytes_done - b0) / (now - t0) if now > t0 else 0.0
            return TransferProgress(
                self.job_id, self.phase, self.bytes_done, self.bytes_total, self.files_done, self.files_total,
                now - self._start, max(rate, 0.0), self.message,
            )  # fmt: skip

    def _maybe_report(self, force: bool = False) -> None:
        if self._report is None:
            return
        now = time.monotonic()
        if not force and now - self._last < self._interval:
            return
        self._last = now
        self._report(self.snapshot())

    def finish(self) -> None:
        self._maybe_report(force=True)


@dataclass
class TransferContext:
    """Everything a transport needs for one run of one job. Built on the runner's thread."""

    session: XnatSession
    store: QueueStore
    job: JobRow
    cancel: threading.Event
    meter: ProgressMeter
    server: ServerInfo | None = None
    workers: int = 4
    retry: RetryPolicy = field(default_factory=lambda: RetryPolicy())

    def check_cancel(self) -> None:
        if self.cancel.is_set():
            raise Cancelled()


@dataclass(frozen=True)
class SendResult:
    """Where the data went: the session URI the server answered with (prearchive or direct-archive)."""

    uri: str
    files_sent: int


class Transport(Protocol):
    name: str

    def send(self, ctx: TransferContext, files: list[FileRow]) -> SendResult: ...


@dataclass(frozen=True)
class RetryPolicy:
    """Transient failures (connection lost, 5xx, 429, session expiry) are retried with backoff and jitter."""

    attempts: int = 6
    base: float = 0.5
    cap: float = 30.0

    def delay(self, attempt: int) -> float:
        return min(self.cap, self.base * (2**attempt)) * random.uniform(0.5, 1.5)  # noqa: S311 - jitter only

    def run(
        self,
        fn: Callable[[], T],
        cancel: threading.Event | AnyEvent,
        on_retry: Callable[[XnatError], None] | None = None,
    ) -> T:
        """Call ``fn`` until it succeeds, a permanent error occurs, or attempts run out."""
        for attempt in range(self.attempts):
            if cancel.is_set():
                raise Cancelled()
            try:
                return fn()
            except XnatError as exc:
                if not exc.transient or attempt == self.attempts - 1:
                    raise
                # A 429/503 with Retry-After says how long to wait; otherwise back off with jitter.
                wait = min(float(exc.retry_after), self.cap * 4) if exc.retry_after else self.delay(attempt)
                log.warning("Transient failure (%s); retry %d in %.1f s", type(exc).__name__, attempt + 1, wait)
                if on_retry is not None:
                    on_retry(exc)
                if cancel.wait(wait):
                    raise Cancelled() from exc
        raise AssertionError("unreachable")


class AnyEvent:
    """Set when any of its events is set: a job's cancel plus a local "stop the other batches"."""

    def __init__(self, *events: threading.Event) -> None:
        self.events = events

    def is_set(self) -> bool:
        return any(e.is_set() for e in self.events)

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(0.05, left))
        return True


def run_parallel(fn: Callable[[Item], T], items: Sequence[Item], workers: int, stop: AnyEvent, name: str) -> list[T]:
    """``fn`` on every item from up to ``workers`` threads, each taking the next item when it is free.

    Results come back in the order of ``items``. The first exception sets ``stop``'s last event, so the
    other threads finish the item they hold and take no more; once every thread has stopped, that first
    exception is raised. :class:`Cancelled` when ``stop`` was set before every item was taken. No
    future or queue per item: a gradual upload has one item per file.
    """
    results: list[Any] = [None] * len(items)
    failures: list[BaseException] = []
    lock = threading.Lock()
    pending = iter(range(len(items)))

    def work() -> None:
        while True:
            with lock:
                i = next(pending, None) if not (failures or stop.is_set()) else None
            if i is None:
                return
            try:
                results[i] = fn(items[i])
            except BaseException as exc:  # noqa: BLE001 - handed to the calling thread below
                with lock:
                    failures.append(exc)
                stop.events[-1].set()
                return

    threads = [
        threading.Thread(target=work, name=f"{name}-{k}", daemon=True) for k in range(max(1, min(workers, len(items))))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise failures[0]
    if next(pending, None) is not None:
        raise Cancelled()
    return results


StrayFn = Callable[[tuple[str, ...]], None]


def stray_recorder(ctx: TransferContext, files: int) -> StrayFn:
    """``import_data(on_stray=...)`` for a request of ``files`` files: copies XNAT kept in the Unassigned
    prearchive while it ran the session as guest go into the job's history (and so into its receipt)."""
    return lambda uris: strays.record(ctx.store, ctx.job.id, uris, files)


def uploader_options(ctx: TransferContext, handler: ImportHandler) -> ImportOptions:
    """The importer parameters every transport sends for this job (routing, no auto-build, the job's rename and
    Ignore-Unparsable). Never ``overwrite``: XNAT ignores it without ``action=commit`` (the merge choice is
    carried out by the plan and the runner, :mod:`core.upload_choices`)."""
    spec = ctx.job.spec
    return ImportOptions.for_uploader(
        handler, spec.project, spec.subject, spec.session_label,
        direct_archive=bool(spec.options.get("direct_archive")),
        **XnatParams.from_options(spec.options).import_fields(ImportHandler(handler).value),
    )  # fmt: skip


def open_source(path: str, member: str = "") -> BinaryIO:
    """Open a file to send: a file on disk, or a member of a zip/tar archive (read-only, never modified).

    A member is streamed from its archive, never held whole nor extracted (:func:`~xnat_uploader.core.dicom.
    archives.open_member`); its name is looked up in the archive, never used as a path.
    """
    if not member:
        return open(path, "rb")  # noqa: SIM115 - the caller closes it
    return open_member(path, member)
