"""gradual-DICOM transport: one ``application/dicom`` POST per file, in parallel over keep-alive connections.

XNAT files each object into the prearchive session of (project, StudyInstanceUID, label) and
answers with that session's URI (xnat-api.md 3.6). Every answer is recorded in the queue store at
once, so after a crash or restart only the files without one are sent again. Each file is sent as
``/data/services/import/<SOPInstanceUID>.dcm``: XNAT stores it under that name, so the first files of
a series sent at the same moment do not collide on XNAT's default name ``upload.dcm`` ("Concurrent
file sends", :func:`~xnat_uploader.core.xnat.importer.stored_name`).

Two answers are outcomes, not errors (xnat-api.md 14): 200 with an empty body means XNAT dropped the
file (a series import filter or an anonymization script): it is recorded as dropped and never sent
again. 400 "unable to read DICOM object" for a file the scan read as DICOM hides a fault on the
server: it is sent again with back-off, and if it keeps failing it is recorded as failed with XNAT's
words while the other files go on (the job's Retry sends it again). Several files in a row refused
like that mean the server itself is in trouble: the job stops.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Iterator

from xnat_uploader.core.errors import Cancelled
from xnat_uploader.core.queue.outcomes import DROPPED_REASON
from xnat_uploader.core.queue.store import FileRow
from xnat_uploader.core.transfer.base import (
    AnyEvent,
    SendResult,
    TransferContext,
    open_source,
    run_parallel,
    stray_recorder,
    uploader_options,
)
from xnat_uploader.core.transfer.zipstream import CHUNK, SMALL_MEMBER
from xnat_uploader.core.xnat import errors as E
from xnat_uploader.core.xnat.body import StreamBody
from xnat_uploader.core.xnat.importer import ImportHandler, ImportOptions, import_data, stored_name

log = logging.getLogger(__name__)

REFUSED_IN_A_ROW = 3  # files refused for good one after another, with none stored between: stop the job


class GradualTransport:
    name = "gradual"

    def send(self, ctx: TransferContext, files: list[FileRow]) -> SendResult:
        if not files:
            return SendResult(ctx.job.uri, 0)
        options = uploader_options(ctx, ImportHandler.GRADUAL_DICOM)
        stop = AnyEvent(ctx.cancel, threading.Event())
        refused = _RefusedRow()
        # One file alone creates the prearchive session; the rest then merge into it. A file that is dropped or
        # refused creates nothing, so the next one goes alone.
        uris: set[str] = set()
        first = 0
        while first < len(files) and not uris:
            uri = self._send_one(ctx, files[first], options, stop, refused)
            uris.update([uri] if uri else [])
            first += 1
        rest = run_parallel(
            lambda f: self._send_one(ctx, f, options, stop, refused), files[first:], ctx.workers, stop, "gradual"
        )
        uris.update(u for u in rest if u)
        if len(uris) > 1:
            raise E.MultipleSessionsError(
                "XNAT put the files of one session into several prearchive sessions.",
                "Open the prearchive, check the sessions and archive or delete them; then upload again.",
                detail=" / ".join(sorted(uris)),
            )
        return SendResult(uris.pop() if uris else ctx.job.uri, len(files))

    def _send_one(
        self, ctx: TransferContext, f: FileRow, options: ImportOptions, stop: AnyEvent, refused: _RefusedRow
    ) -> str | None:
        """Send one file; its session URI, or ``None`` when XNAT dropped or refused it (both recorded)."""
        if stop.is_set():
            raise Cancelled()
        body, digest = _body(f)
        name = stored_name(f.sop_uid)

        def attempt() -> str | None:
            if stop.is_set():
                raise Cancelled()
            try:
                result = import_data(
                    ctx.session, body, options, server=ctx.server, name=name, on_stray=stray_recorder(ctx, 1)
                )
            except E.NonDicomFileError as exc:
                raise E.refused_valid_file(exc, f.member or f.path) or exc from None
            return result.uri

        try:
            uri = ctx.retry.run(attempt, stop, on_retry=lambda exc: ctx.meter.set_phase("retrying", exc.message))
        except E.FileRefusedError as exc:
            # The server's text stays out of the log (it may quote a label); the job's file row keeps it.
            log.warning("XNAT refused %s after %d tries (HTTP %s)", f.sop_uid, ctx.retry.attempts, exc.status)
            ctx.store.mark_failed(ctx.job.id, [f.id], exc.detail)
            refused.add(exc)
            return None
        refused.reset()
        if uri is None:
            ctx.store.mark_dropped(ctx.job.id, [f.id], DROPPED_REASON)
        else:
            ctx.store.mark_sent(ctx.job.id, [f.id], [digest()])
        ctx.meter.add(f.size, 1)
        return uri


def _body(f: FileRow) -> tuple[bytes | StreamBody, Callable[[], str]]:
    """The request body for one file, and its SHA-256 once sent.

    A small file is read whole (one read, sent from memory, as fast as it gets). A larger one, or an archive
    member of any size, is streamed with its known length (read again from the source for a second attempt),
    so a big member never sits in memory whole: eight sending threads would otherwise each hold one.
    """
    if not f.member and f.size <= SMALL_MEMBER:
        with open_source(f.path) as fh:
            data = fh.read(f.size + 1)
        if len(data) != f.size:
            raise _changed(f, len(data))
        return data, lambda: hashlib.sha256(data).hexdigest()
    digests: list[str] = []

    def chunks() -> Iterator[bytes]:
        digest, n = hashlib.sha256(), 0
        with open_source(f.path, f.member) as fh:
            while n <= f.size and (chunk := fh.read(min(CHUNK, f.size + 1 - n))):
                n += len(chunk)
                if n > f.size:
                    break
                digest.update(chunk)
                yield chunk
        if n != f.size:
            raise _changed(f, n)
        digests.append(digest.hexdigest())

    return StreamBody(chunks, f.size), lambda: digests[-1]


def _changed(f: FileRow, size: int) -> E.XnatError:
    return E.XnatError(
        f"{f.member or f.path} changed size since it was scanned ({f.size} -> {size} bytes).",
        "Scan the folder again before uploading; files must not change during an upload.",
    )


class _RefusedRow:
    """Counts files refused for good one after another (from every sending thread); too many stop the job."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0

    def add(self, exc: E.FileRefusedError) -> None:
        with self._lock:
            self._count += 1
            count = self._count
        if count >= REFUSED_IN_A_ROW:
            raise E.FileRefusedError(
                f"XNAT refused {count} files in a row although they are valid DICOM (XNAT says: {exc.detail}). "
                "The server seems to be in trouble (its database, its disk or an anonymization script), so the "
                "upload stopped.",
                "Ask your XNAT administrator to look at the server's log; then press Retry: only the files not "
                "stored yet are sent.",
                status=exc.status,
                detail=exc.detail,
            )

    def reset(self) -> None:
        with self._lock:
            self._count = 0
