"""Running one queued job from where it stopped to a verified receipt.

The steps, each resumable because its outcome is in the queue store: send the unsent files (the
transport records every acknowledgement), commit the prearchive session (or let Direct-Archive do
it), verify against the server, re-send whole series that came up short (once), attach the job's
non-DICOM items once the session is in the archive (:mod:`core.attach`), write the receipt.
A job interrupted at any step (crash, quit, pause, cancel) starts again at the right one.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xnat_uploader.core import strays
from xnat_uploader.core.attach import OPT_RESOURCES, attach_for_job
from xnat_uploader.core.errors import Cancelled, UserError
from xnat_uploader.core.queue import outcomes
from xnat_uploader.core.queue.additions import check_before_adding
from xnat_uploader.core.queue.claims import JobOwnedElsewhere
from xnat_uploader.core.queue.closing import (
    EVENT_RESEND,
    archive_direct,
    commit_session,
    replace_archive,
    server_notes,
)
from xnat_uploader.core.queue.guard import QueueStoreError
from xnat_uploader.core.queue.store import FileState, JobState, QueueStore
from xnat_uploader.core.receipt import build_receipt, write_receipt
from xnat_uploader.core.redact import remember
from xnat_uploader.core.transfer.base import ProgressFn, ProgressMeter, RetryPolicy, TransferContext, Transport
from xnat_uploader.core.transfer.cstore import CStoreTransport
from xnat_uploader.core.transfer.dicom_zip import DicomZipTransport
from xnat_uploader.core.transfer.gradual import GradualTransport
from xnat_uploader.core.upload_choices import OnExisting, on_existing_for_job
from xnat_uploader.core.verify import VerifyResult, verify
from xnat_uploader.core.xnat import errors as E
from xnat_uploader.core.xnat.keepalive import KeepAlive
from xnat_uploader.core.xnat.listing import list_prearchive
from xnat_uploader.core.xnat.server_info import ServerInfo

if TYPE_CHECKING:
    from xnat_uploader.core.xnat.session import XnatSession

log = logging.getLogger(__name__)

TRANSPORTS: dict[str, Callable[[], Transport]] = {
    "zip": DicomZipTransport,
    "gradual": GradualTransport,
    "cstore": CStoreTransport,
}


@dataclass
class JobControl:
    """How the outside stops a running job: ``cancel()`` ends it, ``pause()`` stops it to resume later."""

    cancel_event: threading.Event = field(default_factory=threading.Event)
    paused: bool = False

    def cancel(self) -> None:
        self.cancel_event.set()

    def pause(self) -> None:
        self.paused = True
        self.cancel_event.set()


def run_job(
    store: QueueStore,
    job_id: int,
    session: XnatSession | None,
    *,
    receipts_dir: Path,
    server: ServerInfo | None = None,
    progress: ProgressFn | None = None,
    control: JobControl | None = None,
    workers: int | None = None,
    retry: RetryPolicy | None = None,
    transports: dict[str, Callable[[], Transport]] | None = None,
) -> JobState:
    """Run job ``job_id`` to its end (or until paused/cancelled/failed). Returns the final state.

    Blocking; call it from a worker thread (or the CLI's main thread). ``progress`` is called from
    sending threads, at most every 0.2 s, with plain :class:`TransferProgress` data. ``session`` may be
    ``None`` only for C-STORE jobs sent without an XNAT login: they are then not verified.

    The job is claimed first and released when it stops, so no other copy of the program sends it
    meanwhile: :class:`JobOwnedElsewhere` if another live one holds it (or takes it over from this
    process, frozen longer than the stale time; the run is then stopped and left to it).
    """
    control = control or JobControl()
    owner = store.claim(job_id, on_lost=lambda _job: control.cancel())
    if owner is not None:
        raise JobOwnedElsewhere(job_id, store.job(job_id).spec.project, owner)
    try:
        state = _run_job(
            store, job_id, session, receipts_dir=receipts_dir, server=server, progress=progress, control=control,
            workers=workers, retry=retry, transports=transports,
        )  # fmt: skip
        if not store.holds(job_id):
            job = store.job(job_id)
            if job.owner is not None:
                raise JobOwnedElsewhere(job_id, job.spec.project, job.owner)
            return job.state
        return state
    finally:
        store.release(job_id)


def _run_job(
    store: QueueStore,
    job_id: int,
    session: XnatSession | None,
    *,
    receipts_dir: Path,
    control: JobControl,
    server: ServerInfo | None = None,
    progress: ProgressFn | None = None,
    workers: int | None = None,
    retry: RetryPolicy | None = None,
    transports: dict[str, Callable[[], Transport]] | None = None,
) -> JobState:
    job = store.job(job_id)
    remember(job.spec.subject, job.spec.session_label)  # a resumed job's labels: never in a log line
    if job.state.finished and job.state is not JobState.FAILED:
        return job.state
    make = (transports or TRANSPORTS).get(job.spec.mode)
    if make is None:
        store.set_state(job_id, JobState.FAILED, f"Unknown transport '{job.spec.mode}'.", "")
        return JobState.FAILED
    transport = make()
    meter = ProgressMeter(
        job_id, job.bytes_total, job.files_total, progress, bytes_done=job.bytes_sent, files_done=job.files_sent
    )
    ctx = TransferContext(
        session=session,  # type: ignore[arg-type]  # None only for C-STORE without REST; checked where used
        store=store,
        job=job,
        cancel=control.cancel_event,
        meter=meter,
        server=server,
        workers=workers or int(job.spec.options.get("workers") or 4),
        retry=retry or RetryPolicy(),
    )
    started = time.time()
    keepalive = KeepAlive(session, cancel=control.cancel_event).start() if session is not None else None
    try:
        result = _run(ctx, transport)
        note, resources = "", None
        stored = bool(store.files(job_id, [FileState.SENT]))  # False: XNAT dropped every file, no session
        if (result is None or result.ok) and stored and job.spec.options.get(OPT_RESOURCES):  # non-DICOM items
            meter.set_phase("attaching")
            note, resources = attach_for_job(store, session, job_id, cancel=control.cancel_event)
        unassigned = strays.listed(store, job_id)  # copies XNAT kept while it ran us as guest
        receipt = build_receipt(
            store.job(job_id), store.files(job_id), result, started, resources=resources, strays=unassigned,
            notes=server_notes(store, job_id, started),
        )  # fmt: skip
        unwritten = _save_receipt(store, job_id, receipts_dir, receipt)
        if result is not None and not result.ok:
            store.set_state(
                job_id, JobState.FAILED, f"The server holds fewer files than were sent: {result.summary()}.",
                "Retry the job to send the missing series again.",
            )  # fmt: skip
            return JobState.FAILED
        files = store.files(job_id)
        # The rest arrived (and is committed); these did not, each with its reason. Retry sends just the failed.
        refused = outcomes.not_delivered(files) if job.spec.mode == "cstore" else outcomes.refused(files)
        if refused is not None:
            store.set_state(job_id, JobState.FAILED, *refused)
            meter.set_phase("done", refused[0])
            return JobState.FAILED
        done = result.summary() if result else _unverified(store, job_id)
        dropped = outcomes.dropped_note(store.job(job_id), files)
        if not stored:
            done = outcomes.all_dropped_message(store.job(job_id), files)
        parts = (done, dropped if stored else "", note, strays.note(unassigned), unwritten)
        done = "; ".join(part for part in parts if part)
        store.set_state(job_id, JobState.DONE, done)
        meter.set_phase("done", done)
        return JobState.DONE
    except Cancelled:
        state = JobState.PAUSED if control.paused else JobState.CANCELLED
        store.set_state(job_id, state, "Paused." if control.paused else "Cancelled by the user.")
        return state
    except QueueStoreError:
        raise  # the queue cannot record a failure either: the job stays as recorded and resumes later
    except UserError as exc:
        log.warning("Job %d failed: %s", job_id, exc.message)
        store.set_state(job_id, JobState.FAILED, exc.message, exc.hint)
        return JobState.FAILED
    except OSError as exc:
        log.warning("Job %d failed: %s", job_id, exc.strerror or type(exc).__name__)  # not the file's path
        store.set_state(
            job_id, JobState.FAILED, f"A file could not be read: {exc.strerror or exc}.",
            "Check that the folder is still there (drive connected, network share reachable), then retry.",
        )  # fmt: skip
        return JobState.FAILED
    finally:
        if keepalive is not None:
            keepalive.stop()
        meter.finish()


def _save_receipt(store: QueueStore, job_id: int, receipts_dir: Path, receipt: dict[str, Any]) -> str:
    """Write the job's receipt; ``""``, or a note saying why it could not be written. A full disk at this point
    must not turn a delivered, verified upload into a failed job: the upload stands, the note says what is missing.
    """
    try:
        path = write_receipt(receipts_dir, receipt)
    except OSError as exc:
        log.warning("The receipt of job %d could not be written: %s", job_id, exc.strerror or type(exc).__name__)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return f"the receipt could not be written: the disk holding {receipts_dir} is full"
        return f"the receipt could not be written ({exc.strerror or type(exc).__name__})"
    store.set_receipt(job_id, str(path))
    return ""


def _run(ctx: TransferContext, transport: Transport) -> VerifyResult | None:
    store, job_id = ctx.store, ctx.job.id
    direct = bool(ctx.job.spec.options.get("direct_archive"))
    result: VerifyResult | None = None
    check_before_adding(ctx)  # an "Add" XNAT would refuse whole stops before sending
    for round_ in range(2):  # the second round re-sends series that verification found short
        store.set_state(job_id, JobState.RUNNING)
        ctx.meter.set_phase("sending")
        unsent = store.unsent_files(job_id)
        if unsent:
            sent = transport.send(ctx, unsent)
            if sent.uri:
                store.set_uri(job_id, sent.uri)
        if ctx.job.spec.mode == "cstore":
            result = _find_cstore_session(ctx)  # the receiver fills the prearchive itself: nothing to commit
            if result is None:
                return None
        else:
            uri = store.job(job_id).uri
            if not uri:
                problem = outcomes.nothing_stored(store.files(job_id))
                if problem is None:
                    return None  # XNAT dropped every file: nothing to commit
                raise problem
            ctx.check_cancel()
            store.set_state(job_id, JobState.COMMITTING)
            ctx.meter.set_phase("committing")
            if direct and "/direct-archive/" in uri:
                archived = archive_direct(ctx, uri)
                if archived is None:
                    return None  # XNAT archives it in the background; nothing to list yet
                uri = archived
            elif on_existing_for_job(ctx.job.spec.options, ctx.job.spec.mode) is OnExisting.REPLACE:
                uri = replace_archive(ctx, uri)
            else:  # a Direct-Archive that fell back to (or was moved into) the prearchive is archived from there
                uri = commit_session(ctx, uri, direct or ctx.job.spec.options.get("destination") == "archive")
            store.set_uri(job_id, uri)
            store.set_state(job_id, JobState.VERIFYING)
            ctx.meter.set_phase("verifying")
            sent_files = store.files(job_id, [FileState.SENT])
            result = ctx.retry.run(lambda u=uri, s=sent_files: verify(ctx.session, u, s), ctx.cancel)
            result = outcomes.settle_filtered(store, store.job(job_id), result, sent_files)
        if result.ok or round_ == 1:
            return result
        missing = result.missing_series_uids()
        store.log(job_id, EVENT_RESEND, result.summary())
        # The files sent now (a C-STORE job's too; dropped ones are no longer SENT): the short series go again.
        store.reset_files(job_id, [f.id for f in store.files(job_id, [FileState.SENT]) if f.series_uid in missing])
    return result


def _find_cstore_session(ctx: TransferContext) -> VerifyResult | None:
    """A C-STORE job's session: found in the prearchive by StudyInstanceUID (its ``tag``) and verified once built.

    ``None`` when it cannot be checked (no XNAT login, not listed yet, still being received or built).
    """
    store, job_id, spec = ctx.store, ctx.job.id, ctx.job.spec
    sent_files = store.files(job_id, [FileState.SENT])
    if not sent_files:
        missing = outcomes.not_delivered(store.files(job_id))
        if missing is None:
            raise E.UnexpectedResponseError("Nothing was sent: every file was rejected.", "See the rejected files.")
        raise E.UnexpectedResponseError(f"Nothing was sent: {missing[0]}", missing[1])
    if ctx.session is None or not spec.study_uid:
        return None
    store.set_state(job_id, JobState.VERIFYING)
    ctx.meter.set_phase("verifying")
    rows = [r for r in ctx.retry.run(lambda: list_prearchive(ctx.session), ctx.cancel) if r.study_uid == spec.study_uid]
    rows.sort(key=lambda r: (r.project != spec.project, r.name != spec.session_label))  # the routed one first
    if not rows:
        return None
    store.set_uri(job_id, rows[0].uri)
    if rows[0].status != "READY":
        return None
    return ctx.retry.run(lambda: verify(ctx.session, rows[0].uri, sent_files), ctx.cancel)


def _unverified(store: QueueStore, job_id: int) -> str:
    """The DONE message of a job that could not be verified (yet)."""
    job = store.job(job_id)
    if job.spec.mode != "cstore":
        return "sent"
    where = f" (now in the prearchive: {job.uri})" if job.uri else ""
    return (
        f"sent {job.files_sent} files by C-STORE; the DICOM receiver builds the session itself{where}, "
        "XNAT after a few idle minutes"
    )
