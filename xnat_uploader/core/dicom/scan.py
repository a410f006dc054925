"""The scanner: paths in, batches of instance records and rejected files out, while it runs.

How the work is spread, and why:

- The walk (:mod:`.walk`) is a generator pulled by the scan loop, so headers are read while the walk
  goes on (a 100,000-file folder starts filling the tree at once).
- Reading a header is CPU-bound Python (the file is in the page cache after the first touch), so
  threads do not help (measured: benchmarks/README.md). Large scans send chunks of paths to a small
  process pool (``forkserver`` or ``spawn``, never plain ``fork``: the GUI process has Qt threads)
  and get tuples back, while this process keeps reading small chunks itself whenever no answer is
  waiting. The pool is shared by scans, started on a background thread the first time (the scan reads
  in-process meanwhile) and kept. Small scans (fewer than :data:`SMALL_SCAN` files, decided by walking
  that far ahead) never use it.
- Archives and DICOMDIRs are read in this process, where ``cancel`` reaches every member.

``iter_scan`` is a generator; run it on a worker thread (never the GUI thread). It checks ``cancel``
between files (in-process) or every 50 ms (pool), and raises :class:`~xnat_uploader.core.errors.Cancelled`.
"""

from __future__ import annotations

import atexit
import dataclasses
import itertools
import logging
import multiprocessing
import operator
import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field

from xnat_uploader.core.dicom.archives import scan_archive
from xnat_uploader.core.dicom.dicomdir import MISSING_REASON, OUTSIDE_REASON, referenced_files
from xnat_uploader.core.dicom.reader import DICOMDIR_REASON, IsArchive, IsDicomdir, NotDicom, read_file
from xnat_uploader.core.dicom.records import InstanceRecord, Rejected, ScanBatch, ScanProgress
from xnat_uploader.core.dicom.walk import Walker, os_error_reason
from xnat_uploader.core.errors import Cancelled

logger = logging.getLogger(__name__)

SMALL_SCAN = 3000  # below this many files a scan never uses the pool (break-even measured: benchmarks/README.md)
CHUNK = 200  # paths per pool task: ~10 ms of work, small enough for a prompt cancel
_WAIT = 0.05  # seconds between cancel checks while waiting on the pool
STEAL = 16  # files read in this process per turn while the pool has nothing back (~0.5 ms)

# What a worker sends back for an instance: every field but the path (this process sent it).
_FIELDS = tuple(f.name for f in dataclasses.fields(InstanceRecord))
assert _FIELDS[0] == "path"
_as_tuple = operator.attrgetter(*_FIELDS[1:])
# Fields repeated across instances: interned again in this process (strings from a worker are new objects).
_UNIQUE = ("size", "sop_instance_uid", "member", "series_number", "instance_number")
_INTERNED = tuple(i for i, name in enumerate(_FIELDS[1:]) if name not in _UNIQUE)


@dataclass
class ScanResult:
    """Everything a finished scan found."""

    instances: list[InstanceRecord] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    progress: ScanProgress = field(default_factory=ScanProgress)


def scan_paths(paths: Sequence[str | os.PathLike[str]], **kwargs: object) -> ScanResult:
    """Run :func:`iter_scan` to the end and collect its batches. Any non-GUI thread may call it."""
    result = ScanResult()
    for batch in iter_scan(paths, **kwargs):  # type: ignore[arg-type]
        result.instances.extend(batch.instances)
        result.rejected.extend(batch.rejected)
        result.progress = batch.progress
    return result


def iter_scan(
    paths: Sequence[str | os.PathLike[str]],
    *,
    cancel: threading.Event | None = None,
    workers: int | None = None,
    batch_interval: float = 0.25,
) -> Iterator[ScanBatch]:
    """Scan folders, files, zip/tar archives and DICOMDIRs; yield what was found as it is found.

    Parameters
    ----------
    paths
        Folders, single files, archives or DICOMDIR files. The same file reached twice is scanned once.
    cancel
        Set it to stop: ``Cancelled`` is raised within well under a second.
    workers
        Processes for large scans (default: the CPU count, at most 4); ``1`` keeps everything in
        this process.
    batch_interval
        Seconds between batches while the scan runs (an empty batch still carries progress).

    Yields
    ------
    ScanBatch
        Instances and rejected files found since the previous batch, with cumulative progress; the
        last batch has ``progress.done`` set.

    Run on a worker thread, never on the GUI thread. Never writes to, moves or locks a user file.
    """
    scan = _Scan(cancel, batch_interval)
    yield from scan.run([os.path.abspath(os.fspath(p)) for p in paths], _worker_count(workers))


def _worker_count(workers: int | None) -> int:
    if workers is None:
        return max(1, min(4, os.cpu_count() or 1))
    return max(1, workers)


class _Scan:
    """The state of one scan; its methods run on the thread iterating :func:`iter_scan`."""

    def __init__(self, cancel: threading.Event | None, interval: float) -> None:
        self.cancel = cancel
        self.interval = interval
        self.start = self.last = time.monotonic()
        self.progress = ScanProgress()
        self.instances: list[InstanceRecord] = []
        self.rejected: list[Rejected] = []
        self.deferred: list[tuple[str, str]] = []  # ("a" archive | "d" DICOMDIR, path): read in this process
        self.walker = Walker()
        self.walk_has_more = True

    # -- bookkeeping -------------------------------------------------------------------------------
    def check_cancel(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled()

    def due(self) -> bool:
        return time.monotonic() - self.last >= self.interval

    def batch(self, done: bool = False) -> ScanBatch:
        now = time.monotonic()
        self.last = now
        self.progress.elapsed = now - self.start
        self.progress.done = done
        out = ScanBatch(self.instances, self.rejected, dataclasses.replace(self.progress))
        self.instances, self.rejected = [], []
        return out

    def add_instance(self, record: InstanceRecord) -> None:
        self.instances.append(record)
        self.progress.files_seen += 1
        self.progress.bytes_seen += record.size
        self.progress.instances += 1

    def add_rejected(self, rejected: Rejected, size: int = 0, is_file: bool = True) -> None:
        self.rejected.append(rejected)
        self.progress.rejected += 1
        if is_file:
            self.progress.files_seen += 1
            self.progress.bytes_seen += size

    def add_result(self, path: str, result: tuple) -> None:
        """Record one reader result: ("i", fields) | ("r", reason, size) | ("a"|"d", size)."""
        kind = result[0]
        if kind == "i":
            fields = result[1]
            if type(fields) is tuple:
                fields = list(fields)
                intern = sys.intern
                for i in _INTERNED:
                    fields[i] = intern(fields[i])
                self.add_instance(InstanceRecord(path, *fields))
            else:
                self.add_instance(fields)
        elif kind == "r":
            self.add_rejected(Rejected(path, result[1]), result[2])
        else:
            if kind == "d":  # a DICOMDIR is a file seen; an archive is counted by its members
                self.progress.files_seen += 1
                self.progress.bytes_seen += result[1]
            self.deferred.append((kind, path))

    # -- the loop ----------------------------------------------------------------------------------
    def run(self, paths: list[str], workers: int) -> Iterator[ScanBatch]:
        stream = self.walker.walk(paths)
        head: list[str] = []
        exhausted = True
        if workers > 1:
            # Walk ahead: a small scan is over before a process pool would have started.
            for n, item in enumerate(stream):
                if isinstance(item, Rejected):
                    self.add_rejected(item, is_file=False)
                else:
                    head.append(item)
                if len(head) >= SMALL_SCAN:
                    exhausted = False
                    break
                if n % 64 == 0:  # a slow share can take a while to list: stay responsive meanwhile
                    self.check_cancel()
                    if self.due():
                        yield self.batch()
        if exhausted:
            yield from self.run_here([*head, *stream] if workers > 1 else stream)
        else:
            yield from self.run_pool(head, stream, workers)
        yield from self.run_deferred()
        yield self.batch(done=True)

    def run_here(self, items: Iterable[str | Rejected]) -> Iterator[ScanBatch]:
        for item in items:
            yield from self.read_here(item)

    def read_here(self, item: str | Rejected) -> Iterator[ScanBatch]:
        """Read one walk item in this process; yield a batch when one is due."""
        self.check_cancel()
        if isinstance(item, Rejected):
            self.add_rejected(item, is_file=False)
        else:
            self.add_result(item, read_one(item, keep_record=True))
        if self.deferred:
            yield from self.run_deferred()
        if self.due():
            yield self.batch()

    def run_pool(self, head: list[str], stream: Iterator[str | Rejected], workers: int) -> Iterator[ScanBatch]:
        items: Iterator[str | Rejected] = itertools.chain(head, stream)
        starter = _PoolStarter.get(workers)
        # Read here while the pool starts (~0.5 s the first time: a fork server importing pydicom);
        # a scan that ends first never waits for it, and the pool is warm for the next one.
        while not starter.ready.is_set():
            item = next(items, None)
            if item is None:
                return
            yield from self.read_here(item)
        pool = starter.pool
        if pool is None:  # no processes on this platform: the same work here
            yield from self.run_here(items)
            return
        inflight: dict[Future[list[tuple]], list[str]] = {}
        more = True
        try:
            while True:
                self.check_cancel()
                while more and len(inflight) < workers * 2:
                    chunk = self.take(items, CHUNK)
                    more = self.walk_has_more
                    if not chunk:
                        break
                    try:
                        inflight[pool.submit(read_many, chunk)] = chunk
                    except RuntimeError:  # pool broken or shut down: read it here
                        for path in chunk:
                            self.add_result(path, read_one(path, keep_record=True))
                if self.deferred:
                    yield from self.run_deferred()
                if not inflight:
                    if not more:
                        break
                    continue
                done = [future for future in inflight if future.done()]
                if not done and more:
                    # Nothing back yet: read a few files here rather than sleep. On a busy machine this
                    # process's share of the CPU would otherwise go unused.
                    for path in self.take(items, STEAL):
                        self.add_result(path, read_one(path, keep_record=True))
                    more = self.walk_has_more
                    if self.due():
                        yield self.batch()
                    continue
                if not done:
                    done, _ = wait(inflight, timeout=_WAIT, return_when=FIRST_COMPLETED)
                for future in done:
                    chunk = inflight.pop(future)
                    try:
                        results = future.result()
                    except Exception:  # noqa: BLE001 - a worker died: its chunk is read here instead
                        _drop_pool(pool)
                        results = [read_one(path, keep_record=True) for path in chunk]
                    for path, result in zip(chunk, results, strict=True):
                        self.add_result(path, result)
                if self.due():
                    yield self.batch()
        finally:
            for future in inflight:
                future.cancel()

    def take(self, items: Iterator[str | Rejected], n: int) -> list[str]:
        """Up to ``n`` files from the walk (walk problems are recorded on the way)."""
        chunk: list[str] = []
        for item in items:
            if isinstance(item, Rejected):
                self.add_rejected(item, is_file=False)
                continue
            chunk.append(item)
            if len(chunk) >= n:
                self.walk_has_more = True
                return chunk
        self.walk_has_more = False
        return chunk

    def run_deferred(self) -> Iterator[ScanBatch]:
        """Archives and DICOMDIRs met so far, read in this process (cancel reaches each member)."""
        while self.deferred:
            kind, path = self.deferred.pop(0)
            if kind == "a":
                for item, size in scan_archive(path, self.cancel):
                    if isinstance(item, Rejected):
                        self.add_rejected(item, size)
                    else:
                        self.add_instance(item)
                    if self.due():
                        yield self.batch()
                continue
            self.add_rejected(Rejected(path, DICOMDIR_REASON), is_file=False)
            try:
                refs = referenced_files(path)
            except Exception as exc:  # noqa: BLE001 - a damaged DICOMDIR is reported, the scan goes on
                self.add_rejected(Rejected(path, f"DICOMDIR cannot be read ({type(exc).__name__})"), is_file=False)
                continue
            for name in refs.missing:
                self.add_rejected(Rejected(name, MISSING_REASON), is_file=False)
            for name in refs.outside:
                self.add_rejected(Rejected(name, OUTSIDE_REASON), is_file=False)
            for name in refs.found:
                self.check_cancel()
                if self.walker.claim_file(name):
                    self.add_result(name, read_one(name, keep_record=True))
                if self.due():
                    yield self.batch()


def read_one(path: str, keep_record: bool = False) -> tuple:
    """Read one file's header into a small picklable result (see :meth:`_Scan.add_result`)."""
    try:
        record = read_file(path)
    except IsDicomdir as exc:
        return ("d", exc.size)
    except IsArchive as exc:
        return ("a", exc.size)
    except NotDicom as exc:
        return ("r", exc.reason, exc.size)
    except OSError as exc:
        return ("r", os_error_reason(exc), 0)
    return ("i", record if keep_record else _as_tuple(record))


def read_many(paths: list[str]) -> list[tuple]:
    """Pool task: read a chunk of files. Runs in a worker process."""
    return [read_one(path) for path in paths]


# -- the shared process pool --------------------------------------------------------------------------
_pool: ProcessPoolExecutor | None = None
_pool_size = 0
_pool_lock = threading.Lock()


def _init_worker() -> None:
    """Runs once in each worker: quiet pydicom's value-quoting warnings (they could log a name).

    Workers keep the normal priority: a lower one starves them whenever anything else runs (measured:
    the pool then falls below one process), and the kernel's fair share already keeps the GUI thread
    responsive.
    """
    from pydicom import config

    config.settings.reading_validation_mode = config.IGNORE


def get_pool(workers: int) -> ProcessPoolExecutor:
    """The shared scan pool, started on first use (``forkserver`` where available, else ``spawn``).

    Thread-safe. A frozen app must call ``multiprocessing.freeze_support()`` in its entry point.
    """
    global _pool, _pool_size
    with _pool_lock:
        if _pool is None or _pool_size != workers:
            if _pool is not None:
                _pool.shutdown(wait=False, cancel_futures=True)
            methods = multiprocessing.get_all_start_methods()
            if "forkserver" in methods:
                context = multiprocessing.get_context("forkserver")
                # The fork server imports the reader (and pydicom) once; workers fork from it ready to
                # read instead of spending ~0.3 s each importing. It also stops the server from
                # importing the caller's __main__ (its default), which a script may not guard.
                context.set_forkserver_preload(["xnat_uploader.core.dicom.scan"])
            else:
                context = multiprocessing.get_context("spawn")
            _pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker)
            _pool_size = workers
        return _pool


def _ping() -> None:
    """A no-op task: its answer means a worker is up."""


class _PoolStarter:
    """Starts the shared pool on a background thread, so a scan never blocks on the start-up."""

    _current: _PoolStarter | None = None
    _lock = threading.Lock()

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.ready = threading.Event()
        self.pool: ProcessPoolExecutor | None = None
        threading.Thread(target=self._start, name="scan-pool-start", daemon=True).start()

    @classmethod
    def get(cls, workers: int) -> _PoolStarter:
        with cls._lock:
            current = cls._current
            if current is None or current.workers != workers or (current.ready.is_set() and current.pool is not _pool):
                current = cls._current = _PoolStarter(workers)
            return current

    def _start(self) -> None:
        try:
            pool = get_pool(self.workers)
            for future in [pool.submit(_ping) for _ in range(self.workers)]:
                future.result()
            self.pool = pool
        except RuntimeError:  # the interpreter is exiting, or the pool was shut down meanwhile
            self.pool = None
        except Exception:  # noqa: BLE001 - no process support here: scans stay in-process
            logger.warning("scan process pool unavailable; scanning in one process", exc_info=True)
            self.pool = None
        finally:
            self.ready.set()


def start_pool(workers: int | None = None) -> None:
    """Start the shared scan pool in the background (e.g. at app start), so the first big scan is fast.

    Any thread may call it; it returns at once.
    """
    _PoolStarter.get(_worker_count(workers))


def _drop_pool(pool: ProcessPoolExecutor) -> None:
    global _pool
    with _pool_lock:
        if _pool is pool:
            _pool = None
    pool.shutdown(wait=False, cancel_futures=True)


def shutdown_pool() -> None:
    """Stop the shared pool's processes (at exit, or to free memory). Any thread may call it."""
    global _pool
    with _pool_lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


def worker_pids() -> list[int]:
    """Process ids of the pool's workers (for memory figures in the benchmark)."""
    pool = _pool
    processes = getattr(pool, "_processes", None) or {}
    return [p.pid for p in processes.values() if p.pid is not None]


atexit.register(shutdown_pool)
