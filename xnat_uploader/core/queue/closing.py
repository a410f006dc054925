"""Closing a job's session on the server: commit, Direct-Archive, or Replace (archive with ``overwrite=delete``).

Each of these is one request in which XNAT builds and archives (or, for Direct-Archive, queues the archive),
so none is ever sent twice blindly: every request is recorded in the queue store's history before it goes
out, and a lost answer (or a job resumed after one) is settled by looking at the server
(:mod:`core.xnat.settle`, :mod:`core.xnat.direct_watch`). What XNAT did goes into the receipt.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from xnat_uploader.core.queue.store import QueueStore
from xnat_uploader.core.transfer.base import TransferContext
from xnat_uploader.core.upload_choices import XnatParams
from xnat_uploader.core.xnat import errors as E
from xnat_uploader.core.xnat.direct_watch import MovedToPrearchiveError, follow_direct_archive
from xnat_uploader.core.xnat.models import PrearchiveRef
from xnat_uploader.core.xnat.prearchive import ActionResult, ArchiveOverwrite, archive, build, commit
from xnat_uploader.core.xnat.settle import Target, explained, settle_action

log = logging.getLogger(__name__)

# Queue-store history events: a commit or Direct-Archive request sent; what XNAT did (for the receipt); a
# commit whose outcome is known without a note (XNAT answered with an error).
EVENT_COMMIT, EVENT_TRIGGER, EVENT_NOTE, EVENT_ENDED = "commit", "direct-archive", "xnat", "commit-ended"
EVENT_RESEND = "resend"  # the runner's re-send round of series found short (logged before they go again)


def archive_direct(ctx: TransferContext, uri: str) -> str | None:
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


def commit_session(ctx: TransferContext, uri: str, archive_it: bool) -> str:
    """Build the prearchive session (and archive it if asked): one request, settled when its answer is lost.

    A job that sent its commit before (resumed after a restart, or retried) looks at the server first
    (:mod:`core.xnat.settle`), so it never commits blindly twice. ``quarantine`` and ``triggerPipelines``
    go with the commit: XNAT's archiver reads them only there. Returns where the session is now.

    The commit after a re-send round (series the verification found short, sent again whole) carries
    ``overwrite_files=true``: those series are partly in the archived session already, and XNAT refuses to
    merge an instance it holds unless it may overwrite it (``MergeSessionsA.checkForConflict``; the commit
    passes the flag on, ``PrearcSession.isOverwriteFiles``). What it overwrites is what this job sent.
    """
    extra = XnatParams.from_options(ctx.job.spec.options).archive_params()
    if archive_it and any(event == EVENT_RESEND for _, event, _ in ctx.store.history(ctx.job.id)):
        extra["overwrite_files"] = "true"
    return _settled(
        ctx, uri, lambda ref: commit(ctx.session, ref, auto_archive=True if archive_it else None, extra=extra),
        want_archive=archive_it, what="commit",
    )  # fmt: skip


def replace_archive(ctx: TransferContext, uri: str) -> str:
    """The choice Replace: build the prearchive session, archive it with ``overwrite=delete``; the archive URI.

    A build, not a commit: a commit archives by itself in a project set to auto-archive, and then merges without
    replacing. ``/data/services/archive`` with ``overwrite`` is the one request where XNAT replaces files already
    in the archived session (xnat-api.md 14). Subject and label are sent so the archive goes to the session the
    plan checked, whatever a labeling plugin says. The archive request is settled like a commit.
    """
    spec = ctx.job.spec
    extra = XnatParams.from_options(spec.options).archive_params()

    def send(ref: PrearchiveRef) -> ActionResult:
        return archive(
            ctx.session, ref, subject=spec.subject, label=spec.session_label, overwrite=ArchiveOverwrite.DELETE,
            extra=extra,
        )  # fmt: skip

    try:
        ref = PrearchiveRef.parse(uri)
    except ValueError:
        return uri  # already archived (a resumed job whose archive went through)
    if not any(event == EVENT_COMMIT for _, event, _ in ctx.store.history(ctx.job.id)):
        ctx.retry.run(lambda: build(ctx.session, ref), ctx.cancel)  # a build never archives: safe to repeat
    return _settled(ctx, uri, send, want_archive=True, what="archive (replace)")


def _settled(
    ctx: TransferContext, uri: str, request: Callable[[PrearchiveRef], ActionResult], *, want_archive: bool, what: str
) -> str:
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
        return request(ref)

    try:
        settled = settle_action(
            ctx.session, ref, send, _target(ctx), want_archive=want_archive, look_first=sent_before,
            in_flight=in_flight, cancel=ctx.cancel, on_wait=_waiting(ctx), what=f"the {what}",
        )  # fmt: skip
    except E.StillRunningError:
        raise  # the outcome is still unknown: the next run looks again before anything is sent
    except E.XnatError as exc:
        store.log(job_id, EVENT_ENDED, type(exc).__name__)
        raise explained(ctx.session, ref, exc, f"the {what} of the session") from None
    store.log(job_id, EVENT_NOTE, settled.summary(what))
    return settled.uri


def _target(ctx: TransferContext) -> Target:
    spec = ctx.job.spec
    return Target(spec.project, spec.subject, spec.session_label, spec.study_uid)


def _waiting(ctx: TransferContext) -> Callable[[str], None]:
    """Show what XNAT is doing in the queue row ("XNAT is archiving...")."""
    return lambda message: ctx.meter.set_phase("archiving", message)


def server_notes(store: QueueStore, job_id: int, since: float) -> list[str]:
    """What XNAT did with this run's commit or Direct-Archive, for the receipt."""
    return [detail for at, event, detail in store.history(job_id) if event == EVENT_NOTE and at >= since]
