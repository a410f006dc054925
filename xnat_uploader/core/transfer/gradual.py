"""gradual-DICOM transport: one ``application/dicom`` POST per file, in parallel over keep-alive connections.

XNAT files each object into the prearchive session of (project, StudyInstanceUID, label) and
answers with that session's URI (xnat-api.md 3.6). Every acknowledged file is recorded in the
queue store at once, so after a crash or restart only the files without an acknowledgement are
sent again. Sending the same file twice at the same moment is refused by XNAT ("Concurrent file
sends"), which cannot happen here: each file is in exactly one worker's hands.
"""

from __future__ import annotations

import hashlib
import logging
import threading

from xnat_uploader.core.errors import Cancelled
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
from xnat_uploader.core.xnat import errors as E
from xnat_uploader.core.xnat.importer import ImportHandler, ImportOptions, import_data

log = logging.getLogger(__name__)


class GradualTransport:
    name = "gradual"

    def send(self, ctx: TransferContext, files: list[FileRow]) -> SendResult:
        if not files:
            return SendResult(ctx.job.uri, 0)
        options = uploader_options(ctx, ImportHandler.GRADUAL_DICOM)
        stop = AnyEvent(ctx.cancel, threading.Event())
        # The first file alone creates the prearchive session; the rest then merge into it.
        uris = {self._send_one(ctx, files[0], options, stop)}
        uris.update(
            run_parallel(lambda f: self._send_one(ctx, f, options, stop), files[1:], ctx.workers, stop, "gradual")
        )
        if len(uris) > 1:
            raise E.MultipleSessionsError(
                "XNAT put the files of one session into several prearchive sessions.",
                "Open the prearchive, check the sessions and archive or delete them; then upload again.",
                detail=" / ".join(sorted(uris)),
            )
        return SendResult(uris.pop(), len(files))

    def _send_one(self, ctx: TransferContext, f: FileRow, options: ImportOptions, stop: AnyEvent) -> str:
        if stop.is_set():
            raise Cancelled()
        with open_source(f.path, f.member) as fh:
            data = fh.read()
        if len(data) != f.size:
            raise E.XnatError(
                f"{f.member or f.path} changed size since it was scanned ({f.size} -> {len(data)} bytes).",
                "Scan the folder again before uploading; files must not change during an upload.",
            )

        def attempt() -> str:
            if stop.is_set():
                raise Cancelled()
            result = import_data(ctx.session, data, options, server=ctx.server, on_stray=stray_recorder(ctx, 1))
            if result.uri is None:
                raise E.UnexpectedResponseError(
                    "XNAT accepted a file but kept none of it.",
                    "A series import filter or anonymization script of the project may reject it; ask the project "
                    "owner.",
                )
            return result.uri

        uri = ctx.retry.run(attempt, stop, on_retry=lambda exc: ctx.meter.set_phase("retrying", exc.message))
        ctx.store.mark_sent(ctx.job.id, [f.id], [hashlib.sha256(data).hexdigest()])
        ctx.meter.add(len(data), 1)
        return uri
