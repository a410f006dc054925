"""Following a Direct-Archive session after its trigger, until XNAT archived it or moved it into the prearchive.

``POST /xapi/direct-archive/P/UID/label`` answers 200 when XNAT has only queued the archive job (JMS,
``DirectArchiveSessionServiceImpl``), and 400 while the session's file locks remain. The experiment appears
later; meanwhile its listings answer 404. When archiving fails, XNAT moves the session into the prearchive
(status ERROR, with "Attempt to direct-archive failed" in its log), or leaves the direct-archive row in ERROR
when even that fails. :func:`decide_direct` is the rule; :func:`follow_direct_archive` the loop, bounded by
``ConnectionOptions.archive_wait`` and cancellable. Blocking; call from a worker thread.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from xnat_uploader.core.xnat import errors as E
from xnat_uploader.core.xnat.importer import direct_archive_status, trigger_direct_archive
from xnat_uploader.core.xnat.listing import find_archived, last_log, list_prearchive
from xnat_uploader.core.xnat.models import ArchiveRef, PrearchiveRef
from xnat_uploader.core.xnat.settle import (
    FAILED_STATUSES,
    IDLE_STATUSES,
    MAX_SENDS,
    UNKNOWN,
    Next,
    Settled,
    Target,
    WaitFn,
    Watch,
    call_cancellable,
    look,
    plain_status,
)

if TYPE_CHECKING:
    from xnat_uploader.core.xnat.session import XnatSession

log = logging.getLogger(__name__)


def decide_direct(direct: str | None, row: str | None, archived: bool, *, triggered: bool, settled: bool) -> Next:
    """What a Direct-Archive should do next.

    ``direct`` is the Direct-Archive session's status (``None`` once XNAT dropped it), ``row`` the status
    of a prearchive row XNAT moved it to (``None``: none), ``archived`` whether the archive holds it,
    ``triggered`` whether XNAT accepted (or may have received) the trigger.
    """
    if direct is not None:
        status = plain_status(direct)
        if status in FAILED_STATUSES:
            return Next.FAILED  # not even moved into the prearchive
        if status in IDLE_STATUSES:
            return Next.SEND if (settled or not triggered) else Next.WAIT
        return Next.WAIT
    if archived:
        return Next.ARCHIVED
    if row is None:
        return Next.FAILED if settled else Next.WAIT  # between the archive's save and the listing, briefly
    status = plain_status(row)
    if status in FAILED_STATUSES:
        return Next.FAILED
    if status == "READY":
        return Next.READY if settled else Next.WAIT  # moved and rebuilt; XNAT may still archive it
    return Next.WAIT  # moved into the prearchive and being rebuilt (or auto-archived)


class MovedToPrearchiveError(E.ArchiveFailedError):
    """XNAT could not archive a Direct-Archive session and moved it into the prearchive, at ``ref``."""

    def __init__(self, message: str, hint: str, ref: PrearchiveRef, *, detail: str = "") -> None:
        super().__init__(message, hint, detail=detail)
        self.ref = ref


def follow_direct_archive(
    session: XnatSession,
    uri: str,
    target: Target,
    *,
    trigger: bool = True,
    cancel: threading.Event | None = None,
    on_wait: WaitFn | None = None,
) -> Settled:
    """Trigger a Direct-Archive session (unless ``trigger`` is False) and follow it until XNAT archived it.

    XNAT answers the trigger when the archive job is queued, and 400 while the session's files are still
    locked (asked again with back-off here). Returns when the archive holds the session; raises
    :class:`MovedToPrearchiveError` (with the row's log) when XNAT moved it into the prearchive,
    :class:`ArchiveFailedError` when it left it in ERROR, :class:`StillRunningError` past
    ``archive_wait``, :class:`Cancelled`.
    """
    watch = Watch(session.options.archive_wait, cancel, on_wait)
    sends, triggered, lost = 0, not trigger, ""  # not triggering: a trigger went out before (a resumed job)
    nxt = Next.SEND if trigger else Next.WAIT
    doing = "archiving the session directly"
    while True:
        if nxt is Next.SEND:
            if sends >= MAX_SENDS:
                raise E.ArchiveFailedError(
                    f"XNAT did not start archiving the session, although it was asked {sends} times.",
                    "Ask the XNAT administrator to look at the direct-archive sessions, or re-send the session.",
                )
            try:
                call_cancellable(lambda: trigger_direct_archive(session, uri), cancel)
                sends, triggered = sends + 1, True
            except E.BadRequestError as exc:  # "still receiving new files": XNAT's file locks linger
                log.info("Direct-archive trigger refused for now (%s); asking again", type(exc).__name__)
                watch.tell("XNAT is still receiving the files; asking again shortly")
                watch.pause(doing)
                continue
            except E.NotFoundError:
                triggered = True  # no longer a direct-archive session: see where it went
            except E.XnatError as exc:
                why = watch.lost_answer(exc, doing)
                if not why:
                    continue
                sends, triggered, lost = sends + 1, True, why
        direct = look(lambda: direct_archive_status(session, uri), cancel)
        found: object = None
        moved: object = None
        if direct is None:
            found = look(lambda: find_archived(
                session, target.project, target.label, target.subject, target.study_uid
            ), cancel)  # fmt: skip
            if found is None:
                moved = look(lambda: _moved_row(session, target), cancel)
        if UNKNOWN in (direct, found, moved):
            nxt = Next.WAIT
            watch.pause(doing)
            continue
        ref, row = moved if isinstance(moved, tuple) else (None, None)
        archived = found if isinstance(found, ArchiveRef) else None
        status = direct if isinstance(direct, str) else None
        settled = watch.settled((status, row, archived))
        nxt = decide_direct(status, row, archived is not None, triggered=triggered, settled=settled)
        log.info("Direct-archive: session %s, prearchive %s, archived %s -> %s", status, row, bool(archived), nxt.value)
        if nxt is Next.ARCHIVED and archived is not None:
            return Settled(archived.uri, True, sends, lost, watch.waited)
        if nxt in (Next.FAILED, Next.READY):
            raise _moved_failure(session, ref, status, row)
        if nxt is Next.WAIT:
            watch.tell(f"XNAT is archiving... ({plain_status(status) if status else 'looking in the archive'})")
            watch.pause(doing)


def _moved_row(session: XnatSession, target: Target) -> tuple[PrearchiveRef, str] | None:
    """The prearchive row XNAT moved a failed Direct-Archive session to (found by its StudyInstanceUID)."""
    rows = [r for r in list_prearchive(session, target.project) if r.study_uid == target.study_uid]
    rows.sort(key=lambda r: r.name != target.label)
    return (rows[0].ref, rows[0].status) if rows else None


def _moved_failure(
    session: XnatSession, moved: PrearchiveRef | None, direct: str | None, row: str | None
) -> E.ArchiveFailedError:
    if moved is None:
        status = plain_status(direct) if direct else ""
        return E.ArchiveFailedError(
            f"XNAT could not archive the session directly{f' (its status: {status})' if status else ''}, "
            "and it is neither in the archive nor in the prearchive.",
            "Ask the XNAT administrator to look at the direct-archive sessions, or re-send the session.",
        )
    words = last_log(session, moved)
    said = f" XNAT says: {words}" if words else ""
    return MovedToPrearchiveError(
        f"XNAT could not archive the session directly and moved it into the prearchive "
        f"({plain_status(row or '')}).{said}",
        "Archive it from the Prearchive tab (choose how to merge if it conflicts), or press Retry to "
        "archive it from there again.",
        moved,
        detail=words,
    )
