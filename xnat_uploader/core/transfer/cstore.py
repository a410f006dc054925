"""C-STORE transport: send a job's files to a DICOM receiver (XNAT's, or any SCP) over DICOM associations.

The settings live in the job's options, so a resumed job finds them again (see :data:`OPTION_KEYS`).
A run goes: C-ECHO (a plain message when the receiver cannot be reached or refuses us); read each
file's SOP class and transfer syntax from its header; propose those pairs, each with the transfer
syntaxes the file can be converted to without loss (:data:`.encoding.LOSSLESS`; at most 128 per
association, more kinds make more association groups); split each group over ``workers``
associations in parallel threads; each association is reused for all its files. A file goes in its
own transfer syntax when the receiver takes it, else converted by pydicom; a file whose bytes a
receiver could not read as they are (odd length, implicit VR under an explicit header) is made right
first (:mod:`.encoding`). A large file (or archive member) sent as it is is streamed a fragment at a time
(:class:`_Stream`), so a worker never holds it whole; re-written, converted or routed copies are made in
memory, as pydicom needs. The wire work is in :mod:`.dimse`, which keeps the GIL mostly released
(socket calls, hashing), so threads are enough.

Per instance, the receiver's status decides: success and warnings (0xB000, 0xB006, 0xB007) are
recorded as sent (in small batches, see :class:`_Acks`; warnings also in the job history); "out of
resources" (0xA7xx, XNAT's answer to a server error) re-associates and sends the file again with
backoff; every other refusal (0x0122 SOP class not supported, 0xA9xx, 0xCxxx ...) rejects that file
for good, and the job goes on with the others. A lost association or a late answer re-associates and
sends the file again, at most :data:`FILE_TRIES` times (twice after a time-out): a receiver that
keeps breaking off on one file gets that file marked failed, and the job goes on; on
:data:`DROPS_IN_A_ROW` files in a row the receiver is the problem and the job stops. A restart sends
only the files not yet acknowledged.

XNAT does not answer a C-STORE with a session URI: its receiver files the data into the prearchive
itself and builds the session later. So :meth:`CStoreTransport.send` returns ``uri=""``; the runner
then looks for the session by StudyInstanceUID. With ``route`` on, ``Project: P Subject: S Session: E``
is written into PatientComments of the sent copy (xnat-api.md 10.2), never into the user's file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from xnat_uploader.core.dicom.reader import NotDicom, read_file, read_stream
from xnat_uploader.core.errors import Cancelled, UserError
from xnat_uploader.core.queue.store import FileRow
from xnat_uploader.core.transfer import dimse
from xnat_uploader.core.transfer.base import AnyEvent, SendResult, TransferContext, open_source, run_parallel
from xnat_uploader.core.transfer.dimse import (
    Association,
    DicomError,
    DicomTimeoutError,
    Endpoint,
    NoContextError,
    OddLengthError,
    group_contexts,
)
from xnat_uploader.core.transfer.encoding import (
    LOSSLESS,
    CannotSendError,
    dataset_to_send,
    read_meta,
    sendable,
    streamable,
)
from xnat_uploader.core.transfer.store_status import is_retryable, is_warning, refusal, status_words

log = logging.getLogger(__name__)

# Keys of ``JobSpec.options`` read by this transport.
OPT_HOST, OPT_PORT, OPT_CALLED, OPT_CALLING = "cstore_host", "cstore_port", "called_aet", "calling_aet"
OPT_ROUTE, OPT_TIMEOUT = "route", "cstore_timeout"
OPTION_KEYS = (OPT_HOST, OPT_PORT, OPT_CALLED, OPT_CALLING, OPT_ROUTE, OPT_TIMEOUT)
DEFAULT_CALLING_AET = "XNATUPLOAD"
MAX_LOGGED_WARNINGS = 20  # per run, one history line each; the rest are counted
ACK_BATCH, ACK_SECONDS = 16, 0.5  # acknowledged files are recorded in the queue at least this often
FILE_TRIES = 3  # sends of one file on fresh associations after a drop, before the file is marked failed
DROPS_IN_A_ROW = 3  # files failed that way one after the other: the receiver is the problem, the job stops
STREAM_ABOVE = 1 << 20  # larger files sent as they are go streamed, a fragment at a time, never held whole
STREAM_HEAD = 64 * 1024  # read first to find the data set's start and check its encoding


@dataclass(frozen=True)
class CStoreSettings:
    """Where to send and how. Plain data: any thread."""

    endpoint: Endpoint
    route: bool = False

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> CStoreSettings:
        """Read the job options; raises :class:`UserError` when the receiver is not fully named. Any thread."""
        host, port, called = options.get(OPT_HOST), options.get(OPT_PORT), options.get(OPT_CALLED)
        if not host or not port or not called:
            raise UserError(
                "The DICOM receiver is not set for this upload (host, port and called AE title are needed).",
                "Give --host, --port and --called-aet (XNAT's receiver: the server's host, port 8104, AE title XNAT).",
            )
        timeout = float(options.get(OPT_TIMEOUT) or 30.0)
        endpoint = Endpoint(
            str(host), int(port), str(called), str(options.get(OPT_CALLING) or DEFAULT_CALLING_AET),
            connect_timeout=min(timeout, 10.0), acse_timeout=timeout, dimse_timeout=timeout,
        )  # fmt: skip
        return cls(endpoint, bool(options.get(OPT_ROUTE)))


def routing_comment(project: str, subject: str, session: str) -> str:
    """The PatientComments text XNAT's default routing reads (xnat-api.md 10.2): ``Project: P Subject: S ...``.

    Pure; any thread. Values follow XNAT's label rule (letters, digits, ``_``, ``-``), which its matcher needs.
    """
    parts = [f"Project: {project}"]
    if subject:
        parts.append(f"Subject: {subject}")
    if session:
        parts.append(f"Session: {session}")
    return " ".join(parts)


def check_receiver(endpoint: Endpoint) -> None:
    """C-ECHO the receiver; raises a :class:`DicomError` with a plain message when it does not answer well.

    Blocking (up to the endpoint's time-outs): call it from a worker thread or the command line's main thread.
    """
    status = dimse.echo(endpoint)
    if status != 0x0000:
        raise DicomError(
            f"The DICOM receiver {endpoint} answered the connection test with status 0x{status:04X}.",
            "Check the receiver's configuration.",
        )


@dataclass
class _Item:
    row: FileRow
    sop_class: str
    transfer_syntax: str


@dataclass
class _Stats:
    """Counts shared by the sending threads (under ``lock``)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    sent: int = 0
    rejected: int = 0
    warnings: Counter[int] = field(default_factory=Counter)
    warnings_logged: int = 0


class _Acks:
    """Acknowledged files of one worker, written to the queue in one transaction per few files.

    A transaction per file costs about as much as hashing the file (~0.1 ms); every ``ACK_BATCH``
    files or ``ACK_SECONDS`` the queue catches up. A crash in between re-sends those few files, which
    the receiver simply stores again; a failure or a cancel flushes them first (the caller's finally).
    """

    def __init__(self, ctx: TransferContext) -> None:
        self.ctx = ctx
        self.ids: list[int] = []
        self.digests: list[str] = []
        self.bytes = 0
        self.since = 0.0

    def add(self, file_id: int, digest: str, size: int) -> None:
        if not self.ids:
            self.since = time.monotonic()
        self.ids.append(file_id)
        self.digests.append(digest)
        self.bytes += size
        if len(self.ids) >= ACK_BATCH or time.monotonic() - self.since >= ACK_SECONDS:
            self.flush()

    def flush(self) -> None:
        if not self.ids:
            return
        self.ctx.store.mark_sent(self.ctx.job.id, self.ids, self.digests)
        self.ctx.meter.add_bytes(self.bytes)
        self.ctx.meter.add_files(len(self.ids))
        self.ids, self.digests, self.bytes = [], [], 0


class CStoreTransport:
    """The ``cstore`` transport. ``settings`` overrides the job options (tests, benchmarks)."""

    name = "cstore"

    def __init__(self, settings: CStoreSettings | None = None) -> None:
        self.settings = settings

    def send(self, ctx: TransferContext, files: list[FileRow]) -> SendResult:
        """Send ``files``; records every answer in the queue store. Call from the job's (worker) thread."""
        if not files:
            return SendResult("", 0)
        settings = self.settings or CStoreSettings.from_options(ctx.job.spec.options)
        ctx.meter.set_phase("sending", f"connection test (C-ECHO) to {settings.endpoint}")
        ctx.retry.run(lambda: check_receiver(settings.endpoint), ctx.cancel, on_retry=self._on_retry(ctx))
        items = self._read_headers(ctx, files)
        stats = _Stats()
        stop = AnyEvent(ctx.cancel, threading.Event())
        jobs: list[tuple[list[tuple[str, str]], list[_Item]]] = []
        kinds: dict[str, set[str]] = {}
        for i in items:
            kinds.setdefault(i.sop_class, set()).update(sendable(i.transfer_syntax))
        for contexts in group_contexts(kinds):
            wanted = set(contexts)
            group = [i for i in items if (i.sop_class, i.transfer_syntax) in wanted]
            # Contiguous slices keep each series together on one association, in order.
            n = max(1, min(ctx.workers, len(group)))
            size = -(-len(group) // n)
            jobs += [(contexts, group[k : k + size]) for k in range(0, len(group), size)]
        ctx.meter.set_phase("sending", f"{len(items)} instances, {len(jobs)} association(s)")
        run_parallel(lambda job: self._send_slice(ctx, settings, job[0], job[1], stop, stats), jobs, ctx.workers, stop,
                     "cstore")  # fmt: skip
        self._report_warnings(ctx, stats)
        return SendResult("", stats.sent)

    # -- before sending -------------------------------------------------------------------------------
    def _read_headers(self, ctx: TransferContext, files: list[FileRow]) -> list[_Item]:
        """SOP class and transfer syntax of each file (its header only); unreadable files are rejected."""
        items = []
        for f in files:
            ctx.check_cancel()
            # The scan found both UIDs. Without them (an older queue), most files carry them in their file
            # meta, which the first 4 KB tell; others (no meta, archive members) get the full header reader.
            sop_class, ts = f.sop_class, f.transfer_syntax  # from the scan (queues before schema 2: empty)
            if not (sop_class and ts) and not f.member:
                with open(f.path, "rb") as fh:
                    _, sop_class, ts = read_meta(fh.read(4096))
            if not (sop_class and ts):
                try:
                    if f.member:
                        with open_source(f.path, f.member) as fh:
                            rec = read_stream(fh, f.size, f.path, f.member)
                    else:
                        rec = read_file(f.path)
                except NotDicom as exc:
                    ctx.store.mark_failed(ctx.job.id, [f.id], f"Not sent: {exc.reason}.", permanent=True)
                    continue
                sop_class, ts = rec.sop_class_uid, rec.transfer_syntax
            if not sop_class or not ts:
                ctx.store.mark_failed(ctx.job.id, [f.id], "Not sent: no SOP Class UID in the file.", permanent=True)
                continue
            items.append(_Item(f, sop_class, ts))
        return items

    # -- one association's worth of files -------------------------------------------------------------
    def _send_slice(
        self, ctx: TransferContext, settings: CStoreSettings, contexts: list[tuple[str, str]], items: list[_Item],
        stop: AnyEvent, stats: _Stats,
    ) -> None:  # fmt: skip
        """Send ``items`` over one association, re-associating after a break. Runs on a pool thread."""
        assoc: Association | None = None
        acks = _Acks(ctx)
        comment = self._routing(ctx, settings)
        attempts = 0  # failed tries of the current file
        drops = 0  # files in a row marked failed because the receiver broke off on them
        i = 0
        try:
            while i < len(items):
                if stop.is_set():
                    raise Cancelled()
                item = items[i]
                if assoc is not None and assoc.peer_closed():
                    assoc = None  # the receiver ended it while idle (its idle time-out): no fault of this file
                if assoc is None:
                    assoc = self._associate(ctx, settings.endpoint, contexts, stop)
                    if assoc is None:  # the receiver takes none of these kinds of data
                        for rest in items[i:]:
                            self._reject_all(ctx, [rest], stats, _not_accepted(rest))
                        return
                send_as = next((ts for ts in sendable(item.transfer_syntax)
                                if (item.sop_class, ts) in assoc.accepted), None)  # fmt: skip
                if send_as is None:
                    self._reject_all(ctx, [item], stats, _not_accepted(item))
                    i += 1
                    continue
                # The common large file goes as it is, streamed; the rest (small, re-written, routed) from memory.
                stream = _Stream.open(item) if send_as == item.transfer_syntax and comment is None else None
                data = b"" if stream is not None else self._read(item)
                digest: list[str] = []
                try:
                    payload = stream or dataset_to_send(data, item.transfer_syntax, send_as, comment)
                    answer = assoc.store(
                        item.sop_class, item.row.sop_uid, send_as, payload,
                        while_waiting=lambda d=data, s=stream, out=digest: out.append(
                            s.hash.hexdigest() if s is not None else hashlib.sha256(d).hexdigest()),
                    )  # fmt: skip
                except CannotSendError as exc:  # found before a byte went out: the association goes on
                    self._reject_all(ctx, [item], stats, exc.reason)
                    i += 1
                    continue
                except OddLengthError as exc:  # the same (dataset_to_send makes data sets even; never sent odd)
                    self._reject_all(ctx, [item], stats, exc.message.rstrip("."))
                    i += 1
                    continue
                except DicomError as exc:
                    assoc = None  # closed by the failure; re-associate for this file
                    attempts += 1
                    tries = min(ctx.retry.attempts, 2 if isinstance(exc, DicomTimeoutError) else FILE_TRIES)
                    if exc.transient and attempts >= tries:
                        drops += 1
                        self._give_up_on(ctx, item, exc, attempts, drops)
                        attempts = 0
                        i += 1
                        continue
                    self._back_off(ctx, item, exc, attempts, stop)  # waits; raises when it cannot help
                    continue
                finally:
                    if stream is not None:
                        stream.close()
                drops = 0
                status = answer.status
                if status == 0x0000 or is_warning(status):
                    acks.add(item.row.id, digest[0], item.row.size)
                    with stats.lock:
                        stats.sent += 1
                        if status:
                            self._note_warning(ctx, stats, item, status, answer.comment)
                elif is_retryable(status):
                    attempts += 1
                    assoc.release()  # a fresh association after the pause, as a busy receiver may need
                    assoc = None
                    busy = DicomError(
                        f"The DICOM receiver answered 0x{status:04X} ({status_words(status)}) to a file.",
                        "It may be short of disk space or failing to store; check the receiver's log.",
                    )
                    busy.transient = True
                    self._back_off(ctx, item, busy, attempts, stop)
                    continue
                else:
                    self._reject_all(ctx, [item], stats, refusal(status, answer.comment))
                attempts = 0
                i += 1
        finally:
            acks.flush()  # what the receiver acknowledged is recorded, whatever ended the loop
            if assoc is not None:
                assoc.release()

    def _associate(
        self, ctx: TransferContext, endpoint: Endpoint, contexts: list[tuple[str, str]], stop: AnyEvent
    ) -> Association | None:
        try:
            return ctx.retry.run(lambda: Association(endpoint, contexts), stop, on_retry=self._on_retry(ctx))
        except NoContextError:
            return None

    def _back_off(self, ctx: TransferContext, item: _Item, exc: DicomError, attempts: int, stop: AnyEvent) -> None:
        """After a failed try of ``item``: wait (backoff with jitter), or give up after the policy's attempts."""
        if not exc.transient or attempts >= ctx.retry.attempts:
            ctx.store.mark_failed(ctx.job.id, [item.row.id], exc.message)
            raise exc
        log.warning("C-STORE of %s failed (%s); try %d", item.row.sop_uid, type(exc).__name__, attempts + 1)
        ctx.meter.set_phase("retrying", exc.message)
        if stop.wait(ctx.retry.delay(attempts - 1)):
            raise Cancelled() from exc
        ctx.meter.set_phase("sending")

    @staticmethod
    def _give_up_on(ctx: TransferContext, item: _Item, exc: DicomError, attempts: int, drops: int) -> None:
        """The receiver failed ``attempts`` times on ``item``: mark it failed (a retry of the job sends it
        again) and go on, unless that happened to ``drops`` files in a row: then stop the job."""
        ctx.store.mark_failed(ctx.job.id, [item.row.id], (
            f"Not sent: the DICOM receiver failed on this file each of the {attempts} times it was sent (it broke off "
            f"the connection or did not answer); its log may say why. Last time: {exc.message}"))  # fmt: skip
        log.warning("C-STORE of %s given up after %d tries (%s)", item.row.sop_uid, attempts, type(exc).__name__)
        if drops >= DROPS_IN_A_ROW:
            raise DicomError(
                f"The DICOM receiver failed on {drops} files in a row (it broke off the connection or did not answer); "
                "the upload stopped.",
                "Check the receiver's log and settings, then retry the job: it sends only what did not arrive.",
                detail=exc.message,
            )

    @staticmethod
    def _on_retry(ctx: TransferContext) -> Any:
        return lambda exc: ctx.meter.set_phase("retrying", exc.message)

    # -- data -----------------------------------------------------------------------------------------
    @staticmethod
    def _read(item: _Item) -> bytes:
        with open_source(item.row.path, item.row.member) as fh:
            data = fh.read()
        if len(data) != item.row.size:
            raise _changed(item, f"{len(data)} bytes")
        return data

    @staticmethod
    def _routing(ctx: TransferContext, settings: CStoreSettings) -> str | None:
        """With ``route``, the PatientComments written into each sent copy (never into the user's file)."""
        if not settings.route:
            return None
        spec = ctx.job.spec
        return routing_comment(spec.project, spec.subject, spec.session_label)

    # -- outcomes -------------------------------------------------------------------------------------
    @staticmethod
    def _reject_all(ctx: TransferContext, items: list[_Item], stats: _Stats, reason: str) -> None:
        ctx.store.mark_failed(ctx.job.id, [i.row.id for i in items], f"Not sent: {reason}.", permanent=True)
        with stats.lock:
            stats.rejected += len(items)

    @staticmethod
    def _note_warning(ctx: TransferContext, stats: _Stats, item: _Item, status: int, comment: str) -> None:
        """Count a warning (caller holds ``stats.lock``); the first few go to the job history by UID."""
        stats.warnings[status] += 1
        if stats.warnings_logged < MAX_LOGGED_WARNINGS:
            stats.warnings_logged += 1
            detail = f"{item.row.sop_uid}: stored with warning 0x{status:04X} ({status_words(status)})"
            ctx.store.log(ctx.job.id, "warning", detail + (f": {comment}" if comment else ""))

    @staticmethod
    def _report_warnings(ctx: TransferContext, stats: _Stats) -> None:
        if not stats.warnings:
            return
        parts = ", ".join(f"0x{s:04X} {status_words(s)}: {n}" for s, n in sorted(stats.warnings.items()))
        total = sum(stats.warnings.values())
        ctx.store.log(ctx.job.id, "warnings", f"{total} instance(s) stored with warnings ({parts})")
        ctx.meter.set_phase("sending", f"{total} instance(s) stored with warnings")


def _changed(item: _Item, now: str) -> UserError:
    return UserError(
        f"{item.row.member or item.row.path} changed size since it was scanned ({item.row.size} -> {now}).",
        "Scan the folder again before uploading; files must not change during an upload.",
    )


class _Stream:
    """A large file's (or archive member's) data set, read and hashed a fragment at a time as it is sent.

    A :class:`.dimse.DatasetStream`: its length is the scanned size minus the preamble and meta. A file
    that turns out shorter or longer raises the same "changed size" error as a file read whole, before the
    data set's last fragment goes out, so the receiver never stores a copy that differs from the scan.
    """

    def __init__(self, item: _Item, fh: BinaryIO, head: bytes, offset: int) -> None:
        self.item, self.fh = item, fh
        self.hash = hashlib.sha256(head)  # of the whole file, as the receipts record it
        self.pending = head[offset:]
        self.length = self.left = item.row.size - offset

    @classmethod
    def open(cls, item: _Item) -> _Stream | None:
        """The file opened for streaming, or ``None`` when it is small or needs re-writing (read it whole)."""
        if item.row.size <= STREAM_ABOVE:
            return None
        fh = open_source(item.row.path, item.row.member)
        try:
            if not item.row.member and (now := os.fstat(fh.fileno()).st_size) != item.row.size:
                raise _changed(item, f"{now} bytes")
            head = fh.read(STREAM_HEAD)
            offset = streamable(head, item.row.size, item.transfer_syntax)
            if offset is not None:
                return cls(item, fh, head, offset)
        except BaseException:
            fh.close()
            raise
        fh.close()
        return None

    def __len__(self) -> int:
        return self.length

    def __bool__(self) -> bool:  # an open stream, whatever its length
        return True

    def read(self, n: int) -> bytes:
        part, self.pending = self.pending[:n], self.pending[n:]
        if len(part) < n:
            more = self.fh.read(n - len(part))
            self.hash.update(more)
            part = part + more if part else more
        self.left -= len(part)
        if len(part) < n or (self.left == 0 and self.fh.read(1)):
            raise _changed(item=self.item, now="shorter" if len(part) < n else "longer")
        return part

    def close(self) -> None:
        self.fh.close()


def _not_accepted(item: _Item) -> str:
    """Why ``item`` cannot go to this receiver: none of its sendable transfer syntaxes was accepted."""
    syntaxes = " or ".join(_name(ts) for ts in sendable(item.transfer_syntax))
    said = f"the DICOM receiver does not accept {_name(item.sop_class)} in {syntaxes}"
    if item.transfer_syntax in LOSSLESS:
        return f"{said}: it accepts none of the encodings this file can be sent in"
    return f"{said}, the only encoding this file can be sent in (it is not converted)"


def _name(uid: str) -> str:
    from pydicom.uid import UID  # names for a message only

    name = UID(uid).name
    return name if name and name != uid else uid


__all__ = ["OPTION_KEYS", "CStoreSettings", "CStoreTransport", "check_receiver", "routing_comment"]
