"""DICOM-zip transport: a session's files in batches, each a ZIP generated while it is sent.

XNAT imports every entry of a DICOM-zip like a gradual-DICOM file and merges them by project,
StudyInstanceUID and label (xnat-api.md 3.6-3.7), so batches of one session can go in parallel and
all answer with the same prearchive URI. The first batch goes alone, so the session exists before
the others arrive. A batch is acknowledged as a whole; a batch that fails half-way is sent again
whole (re-sent instances replace themselves: entry names are the SOPInstanceUIDs). A batch answered
with an empty body was dropped whole by the server (a series import filter or an anonymization
script): its files are recorded as dropped, never sent again (:mod:`core.queue.outcomes`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from xnat_uploader.core.dicom.values import is_valid_uid
from xnat_uploader.core.errors import Cancelled
from xnat_uploader.core.queue.outcomes import DROPPED_REASON
from xnat_uploader.core.queue.store import FileRow
from xnat_uploader.core.transfer.base import (
    AnyEvent,
    SendResult,
    StrayFn,
    TransferContext,
    open_source,
    run_parallel,
    stray_recorder,
    uploader_options,
)
from xnat_uploader.core.transfer.zipstream import CHUNK, ZipMember, ZipStream
from xnat_uploader.core.xnat import errors as E
from xnat_uploader.core.xnat.body import StreamBody
from xnat_uploader.core.xnat.importer import ImportHandler, ImportOptions, ImportResult, import_data

log = logging.getLogger(__name__)

DEFAULT_BATCH_BYTES = 256 << 20
DEFAULT_BATCH_FILES = 2000
FIRST_BATCH_BYTES = 4 << 20
MIN_BATCH_BYTES = 16 << 20  # below this, per-request overhead outweighs the overlap


@dataclass(frozen=True)
class ZipSettings:
    batch_bytes: int = DEFAULT_BATCH_BYTES
    batch_files: int = DEFAULT_BATCH_FILES
    compress_level: int | None = None  # None: stored (fastest); 1 for slow links (about half the bytes for MR/CT)
    prebuild: bool = False  # write each batch to a temp file first, for proxies that refuse streamed bodies

    @classmethod
    def from_options(cls, options: dict[str, object]) -> ZipSettings:
        """The settings a job asked for (its options in the queue), defaults for the rest."""
        level = options.get("compress_level")
        return cls(
            batch_bytes=int(options.get("batch_bytes") or DEFAULT_BATCH_BYTES),  # type: ignore[call-overload]
            batch_files=int(options.get("batch_files") or DEFAULT_BATCH_FILES),  # type: ignore[call-overload]
            compress_level=None if level is None else int(level),  # type: ignore[call-overload]
            prebuild=bool(options.get("prebuild")),
        )


def make_batches(files: Sequence[FileRow], max_bytes: int, max_files: int) -> list[list[FileRow]]:
    """Split in order, closing a batch before it would pass either limit (a huge file gets its own)."""
    batches: list[list[FileRow]] = []
    current: list[FileRow] = []
    size = 0
    for f in files:
        if current and (size + f.size > max_bytes or len(current) >= max_files):
            batches.append(current)
            current, size = [], 0
        current.append(f)
        size += f.size
    if current:
        batches.append(current)
    return batches


def plan_batches(files: Sequence[FileRow], settings: ZipSettings, workers: int) -> list[list[FileRow]]:
    """A small first batch (it creates the session while the others wait), then batches sized so every
    worker has some: the server imports a body once it has arrived whole, so several smaller requests in
    flight overlap sending with importing where one big one would not."""
    first_bytes = 0
    head: list[FileRow] = []
    for f in files:
        if head and (first_bytes + f.size > FIRST_BATCH_BYTES or len(head) >= settings.batch_files):
            break
        head.append(f)
        first_bytes += f.size
    rest = files[len(head) :]
    share = -(-sum(f.size for f in rest) // workers) if rest else 0  # ceil
    per_batch = min(settings.batch_bytes, max(MIN_BATCH_BYTES, share))
    return [head, *make_batches(rest, per_batch, settings.batch_files)]


def arcname(f: FileRow) -> str:
    """A stable, unique name per instance: re-sending it replaces the same file on the server.

    ``<SeriesInstanceUID>/<SOPInstanceUID>.dcm`` when both are valid UIDs (digits and dots), else a name of
    our own: header values and file names never reach the archive's names, so no entry can carry ``/``,
    ``\\``, ``..`` or a control character, whatever a file's headers hold. XNAT sorts the files by their
    headers, not by these names.
    """
    folder = f.series_uid if is_valid_uid(f.series_uid) else "series"
    base = f.sop_uid if is_valid_uid(f.sop_uid) else f"file{f.id}"
    return f"{folder}/{base}.dcm"


def _member(f: FileRow) -> ZipMember:
    if f.member:
        return ZipMember(arcname=arcname(f), size=f.size, opener=lambda: open_source(f.path, f.member))
    return ZipMember(arcname=arcname(f), size=f.size, path=f.path)


class DicomZipTransport:
    name = "zip"

    def __init__(self, settings: ZipSettings | None = None) -> None:
        self.settings = settings  # None: from each job's options

    def send(self, ctx: TransferContext, files: list[FileRow]) -> SendResult:
        if not files:
            return SendResult(ctx.job.uri, 0)
        settings = self.settings or ZipSettings.from_options(ctx.job.spec.options)
        batches = plan_batches(files, settings, max(1, ctx.workers))
        options = uploader_options(ctx, ImportHandler.DICOM_ZIP)
        stop = AnyEvent(ctx.cancel, threading.Event())
        # A batch whose every file XNAT dropped creates no session, so the next one goes alone.
        uri: str | None = None
        first = 0
        while first < len(batches) and uri is None:
            uri = self._send_batch(ctx, batches[first], options, stop, settings)
            first += 1
        rest = batches[first:]
        others = run_parallel(
            lambda batch: self._send_batch(ctx, batch, options, stop, settings), rest, ctx.workers, stop, "zip-batch"
        )
        for other in others:
            if other is not None and other != uri:
                raise E.MultipleSessionsError(
                    "XNAT put the batches of one session into two prearchive sessions.",
                    "Open the prearchive, check both sessions and archive or delete them; then upload again.",
                    detail=f"{uri} / {other}",
                )
        return SendResult(uri or ctx.job.uri, len(files))

    def _send_batch(
        self, ctx: TransferContext, batch: list[FileRow], options: ImportOptions, stop: AnyEvent, settings: ZipSettings
    ) -> str | None:
        """Send one batch; the session URI, or ``None`` when XNAT kept none of its files (recorded as dropped)."""
        members = [_member(f) for f in batch]
        by_name = {m.arcname: f for m, f in zip(members, batch, strict=True)}
        level = settings.compress_level
        first = ZipStream(members, compress_level=level)  # deflate: measures the archive once, for every attempt
        length = len(first)
        digests: dict[str, str] = {}
        # Progress counts the files' bytes, not the archive's: scale what goes out by the payload share,
        # and settle the exact figure when the batch is acknowledged.
        payload = sum(f.size for f in batch)
        scale = payload / length if length else 0.0
        sent_bytes = [0]

        def on_bytes(n: int) -> None:
            share = int(n * scale)
            sent_bytes[0] += share
            ctx.meter.add_bytes(share)

        def make_stream() -> ZipStream:
            stream = ZipStream(members, compress_level=level, on_bytes=on_bytes, cancel=stop, measured=first.measured)
            digests.update(first.sha256)
            stream.sha256 = digests  # filled while it is read
            return stream

        def attempt() -> str | None:
            if stop.is_set():
                raise Cancelled()
            try:
                on_stray = stray_recorder(ctx, len(batch))
                if settings.prebuild:
                    result = self._send_prebuilt(ctx, make_stream(), options, on_stray)
                else:
                    body = StreamBody(make_stream, length)
                    result = import_data(ctx.session, body, options, server=ctx.server, on_stray=on_stray)
            except BaseException:
                ctx.meter.undo_bytes(sent_bytes[0])  # these bytes will be sent again (or never)
                sent_bytes[0] = 0
                raise
            return result.uri

        uri = ctx.retry.run(attempt, stop, on_retry=lambda exc: ctx.meter.set_phase("retrying", exc.message))
        ctx.meter.add_bytes(payload - sent_bytes[0])
        if uri is None:  # 200 with an empty body: a series import filter or an anonymization script kept nothing
            ctx.store.mark_dropped(ctx.job.id, [f.id for f in by_name.values()], DROPPED_REASON)
        else:
            ctx.store.mark_sent(ctx.job.id, [f.id for f in by_name.values()], [digests.get(n, "") for n in by_name])
        ctx.meter.add_files(len(batch))
        if ctx.meter.phase == "retrying":
            ctx.meter.set_phase("sending")
        return uri

    def _send_prebuilt(
        self, ctx: TransferContext, stream: ZipStream, options: ImportOptions, on_stray: StrayFn
    ) -> ImportResult:
        """Write the archive to a temp file, then send that file; the file is removed whatever happens."""
        report, stream.on_bytes = stream.on_bytes, None  # progress follows the upload, not the writing
        fd, name = tempfile.mkstemp(prefix="xnat-uploader-", suffix=".zip")
        try:
            with os.fdopen(fd, "wb") as fh:
                for chunk in stream:
                    fh.write(chunk)
            size = os.path.getsize(name)

            def chunks() -> Iterator[bytes]:
                with open(name, "rb") as fh:
                    while block := fh.read(CHUNK):
                        if stream.cancel is not None and stream.cancel.is_set():
                            raise Cancelled()
                        yield block
                        if report is not None:
                            report(len(block))

            return import_data(ctx.session, StreamBody(chunks, size), options, server=ctx.server, on_stray=on_stray)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(name)
