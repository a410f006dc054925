"""Running one queued job from where it stopped to a verified receipt.

The steps, each resumable because its outcome is in the queue store: send the unsent files (the
transport records every acknowledgement), commit the prearchive session (or let Direct-Archive do
it), verify against the server, re-send whole series that came up short (once), attach the job's
non-DICOM items once the session is in the archive (:mod:`core.attach`), write the receipt.
A job interrupted at any step (crash, quit, pause, cancel) starts again at the right one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from xnat_uploader.core.attach import OPT_RESOURCES, attach_for_job
from xnat_uploader.core.errors import Cancelled, UserError
from xnat_uploader.core.queue.store import FileState, JobState, QueueStore
from xnat_uploader.core.receipt import build_receipt, write_receipt
from xnat_uploader.core.transfer.base import ProgressFn, ProgressMeter, RetryPolicy, TransferContext, Transport
from xnat_uploader.core.transfer.cstore import CStoreTransport
from xnat_uploader.core.transfer.dicom_zip import DicomZipTransport
from xnat_uploader.core.transfer.gradual import GradualTransport
from xnat_uploader.core.verify import VerifyResult, verify
from xnat_uploader.core.xnat import errors as E
from xnat_uploader.core.xnat.direct_watch import MovedToPrearchiveError, follow_direct_archive
from xnat_uploader.core.xnat.listing import list_prearchive
from xnat_uploader.core.xnat.models import PrearchiveRef
from xnat_uploader.core.xnat.prearchive import ActionResult, commit
from xnat_uploader.core.xnat.server_info import ServerInfo, get_server_info
from xnat_uploader.core.xnat.settle import Target, explained, settle_action

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
    """
    control = control or JobControl()
    job = store.job(job_id)
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
    heartbeat = _Heartbeat(session, control.cancel_event) if session is not None else None
    try:
        result = _run(ctx, transport)
        note, resources = "", None
        if (result is None or result.ok) and job.spec.options.get(OPT_RESOURCES):  # the job's non-DICOM items
            meter.set_phase("attaching")
            note, resources = attach_for_job(store, session, job_id, cancel=control.cancel_event)
        receipt = build_receipt(
            store.job(job_id), store.files(job_id), result, started, resources=resources,
            notes=server_notes(store, job_id, started),
        )  # fmt: skip
        path = write_receipt(receipts_dir, receipt)
        store.set_receipt(job_id, str(path))
        if result is not None and not result.ok:
            store.set_state(
                job_id, JobState.FAILED, f"The server holds fewer files than were sent: {result.summary()}.",
                "Retry the job to send the missing series again.",
            )  # fmt: skip
            return JobState.FAILED
        done = result.summary() if result else _unverified(store, job_id)
        done = f"{done}; {note}" if note else done
        store.set_state(job_id, JobState.DONE, done)
        meter.set_phase("done", done)
        return JobState.DONE
    except Cancelled:
        state = JobState.PAUSED if control.paused else JobState.CANCELLED
        store.set_state(job_id, state, "Paused." if control.paused else "Cancelled by the user.")
        return state
    except UserError as exc:
        log.warning("Job %d failed: %s", job_id, exc.message)
        store.set_state(job_id, JobState.FAILED, exc.message, exc.hint)
        return JobState.FAILED
    except OSError as exc:
        log.warning("Job %d failed: %s", job_id, exc)
        store.set_state(
            job_id, JobState.FAILED, f"A file could not be read: {exc.strerror or exc}.",
            "Check that the folder is still there (drive connected, network share reachable), then retry.",
        )  # fmt: skip
        return JobState.FAILED
    finally:
        if heartbeat is not None:
            heartbeat.stop()
        meter.finish()


class _Heartbeat:
    """Touch the server every minute during a job, so the XNAT session does not idle out (xnat-api.md 2.4).

    Uploads keep it busy anyway; this matters while a large batch is built or a commit takes long.
    """

    def __init__(self, session: XnatSession, cancel: threading.Event, interval: float = 60.0) -> None:
        self._stop = threading.Event()
        self._session, self._cancel, self._interval = session, cancel, interval
        self._thread = threading.Thread(target=self._run, name="xnat-heartbeat", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval) and not self._cancel.is_set():
            try:
                get_server_info(self._session)
            except E.XnatError as exc:  # the job itself will see and report real trouble
                log.debug("Heartbeat failed: %s", type(exc).__name__)

    def stop(self) -> None:
        self._stop.set()


def _run(ctx: TransferContext, transport: Transport) -> VerifyResult | None:
    store, job_id = ctx.store, ctx.job.id
    direct = bool(ctx.job.spec.options.get("direct_archive"))
    result: VerifyResult | None = None
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
                raise E.UnexpectedResponseError("Nothing was sent: every file was rejected.", "See the rejected files.")
            ctx.check_cancel()
            store.set_state(job_id, JobState.COMMITTING)
            ctx.meter.set_phase("committing")
            if direct and "/direct-archive/" in uri:
                archived = _archive_direct(ctx, uri)
                if archived is None:
                    return None  # XNAT archives it in the background; nothing to list yet
                uri = archived
            else:  # a Direct-Archive that fell back to (or was moved into) the prearchive is archived from there
                uri = _commit(ctx, uri, archive=direct or ctx.job.spec.options.get("destination") == "archive")
            store.set_uri(job_id, uri)
            store.set_state(job_id, JobState.VERIFYING)
            ctx.meter.set_phase("verifying")
            sent_files = store.files(job_id, [FileState.SENT])
            result = ctx.retry.run(lambda u=uri, s=sent_files: verify(ctx.session, u, s), ctx.cancel)
        if result.ok or round_ == 1:
            return result
        missing = result.missing_series_uids()
        store.log(job_id, "resend", result.summary())
        store.reset_files(job_id, [f.id for f in sent_files if f.series_uid in missing])
    return result


def _find_cstore_session(ctx: TransferContext) -> VerifyResult | None:
    """A C-STORE job's session: found in the prearchive by StudyInstanceUID (its ``tag``) and verified once built.

    ``None`` when it cannot be checked (no XNAT login, not listed yet, still being received or built).
    """
    store, job_id, spec = ctx.store, ctx.job.id, ctx.job.spec
    sent_files = store.files(job_id, [FileState.SENT])
    if not sent_files:
        raise E.UnexpectedResponseError("Nothing was sent: every file was rejected.", "See the rejected files.")
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


def _archive_direct(ctx: TransferContext, uri: str) -> str | None:
    """Archive a Direct-Archive session and follow XNAT until it is archived; its archive URI.

    The trigger (XNAT 1.8.4+) only queues the archive job (xnat-api.md 14), so the session is followed
    (:mod:`core.xnat.direct_watch`) until the archive holds it. ``None`` on an older server: XNAT archives
    it later by itself, unverified. When XNAT moves it into the prearchive instead, the job points there
    and fails with XNAT's words; Retry then archives it from the prearchive.
    """
    if ctx.server is not None and not ctx.server.at_least((1, 8, 4)):
        log.info("This XNAT cannot be asked to archive now (1.8.4+): it archives the session later")
        return None
    store, job_id, spec = ctx.store, ctx.job.id, ctx.job.spec
    triggered = any(event == EVENT_TRIGGER for _, event, _ in store.history(job_id))
    store.log(job_id, EVENT_TRIGGER, uri)
    try:
        settled = follow_direct_archive(
            ctx.session, uri, _target(ctx), trigger=not triggered, cancel=ctx.cancel, on_wait=_waiting(ctx)
        )
    except MovedToPrearchiveError as exc:
        store.set_uri(job_id, exc.ref.uri)  # recoverable: Retry commits it from the prearchive
        raise
    store.log(job_id, EVENT_NOTE, settled.summary("Direct-Archive request"))
    log.info("Direct-archive of %s done after %.1f s", spec.study_uid, settled.waited)
    return settled.uri


def _commit(ctx: TransferContext, uri: str, archive: bool) -> str:
    """Build the prearchive session (and archive it if asked): one request, settled when its answer is lost.

    A job that sent its commit before (resumed after a restart, or retried) looks at the server first
    (:mod:`core.xnat.settle`), so it never commits blindly twice. Returns where the session is now.
    """
    try:
        ref = PrearchiveRef.parse(uri)
    except ValueError:
        return uri  # already archived (a resumed job whose commit went through)
    store, job_id = ctx.store, ctx.job.id
    events = [event for _, event, _ in store.history(job_id) if event in (EVENT_COMMIT, EVENT_NOTE, EVENT_ENDED)]
    sent_before = EVENT_COMMIT in events
    in_flight = sent_before and events[-1] == EVENT_COMMIT  # sent, and its outcome never learnt

    def send() -> ActionResult:
        store.log(job_id, EVENT_COMMIT, ref.uri)
        return commit(ctx.session, ref, auto_archive=True if archive else None)

    try:
        settled = settle_action(
            ctx.session, ref, send, _target(ctx), want_archive=archive, look_first=sent_before,
            in_flight=in_flight, cancel=ctx.cancel, on_wait=_waiting(ctx),
        )  # fmt: skip
    except E.StillRunningError:
        raise  # the outcome is still unknown: the next run looks again before anything is sent
    except E.XnatError as exc:
        store.log(job_id, EVENT_ENDED, type(exc).__name__)
        raise explained(ctx.session, ref, exc, "the commit of the session") from None
    store.log(job_id, EVENT_NOTE, settled.summary("commit"))
    return settled.uri


# Queue-store history events: a commit or Direct-Archive request sent; what XNAT did (for the receipt); a
# commit whose outcome is known without a note (XNAT answered with an error).
EVENT_COMMIT, EVENT_TRIGGER, EVENT_NOTE, EVENT_ENDED = "commit", "direct-archive", "xnat", "commit-ended"


def _target(ctx: TransferContext) -> Target:
    spec = ctx.job.spec
    return Target(spec.project, spec.subject, spec.session_label, spec.study_uid)


def _waiting(ctx: TransferContext) -> Callable[[str], None]:
    """Show what XNAT is doing in the queue row ("XNAT is archiving...")."""
    return lambda message: ctx.meter.set_phase("archiving", message)


def server_notes(store: QueueStore, job_id: int, since: float) -> list[str]:
    """What XNAT did with this run's commit or Direct-Archive, for the receipt."""
    return [detail for at, event, detail in store.history(job_id) if event == EVENT_NOTE and at >= since]
