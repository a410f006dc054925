"""What XNAT did with a commit or an archive whose answer never came, and where a queued Direct-Archive ended.

XNAT builds and archives a session inside the commit request (and inside ``/data/services/archive``), for
up to its ``sessionArchiveTimeoutInterval`` of 600 s; proxies often cut such requests at 60 s (502/504).
Sending it again while XNAT works gets 409 "session document locked" or starts a second build
(xnat-api.md 14). So these requests are sent once, with their own long time-out. When the answer is lost
(time-out, dropped connection, 502/503/504, or 409 because something else holds the session) the client
looks: the prearchive row (BUILDING, ARCHIVING, QUEUED_*, READY, ERROR, CONFLICT, or gone) and the archive
(the session by label, then by StudyInstanceUID), with back-off, until it is clear what XNAT did. Only when
XNAT demonstrably never started the work (the row still RECEIVING, or READY without the archive that was
asked for, unchanged for a while) is the request sent again, at most once more.

:func:`decide` is the pure rule (state -> what to do); :class:`Watch` the bounded, cancellable back-off
shared with :mod:`.direct_watch` (Direct-Archive). Every wait is bounded by ``ConnectionOptions.archive_wait``
and ends within a fraction of a second of ``cancel`` being set. Blocking; call from a worker thread.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from xnat_uploader.core.errors import Cancelled
from xnat_uploader.core.xnat import errors as E
from xnat_uploader.core.xnat.listing import find_archived, get_prearchive_session, last_log
from xnat_uploader.core.xnat.models import ArchiveRef, PrearchiveRef, PrearchiveSession
from xnat_uploader.core.xnat.prearchive import ActionResult

if TYPE_CHECKING:
    from xnat_uploader.core.xnat.session import XnatSession

log = logging.getLogger(__name__)
T = TypeVar("T")

WaitFn = Callable[[str], None]
MAX_SENDS = 2  # the request itself, and once more only where XNAT shows it never started
PROXY_CUT = (502, 503, 504)  # a proxy gave up waiting; XNAT may still be at work behind it


class Next(str, enum.Enum):
    """What to do after looking at the server."""

    WAIT = "wait"  # XNAT is at work (or the picture is not clear yet): look again later
    SEND = "send"  # XNAT is not doing it (and did not do it): send the request (again)
    READY = "ready"  # built and waiting in the prearchive, as a commit without archiving leaves it
    ARCHIVED = "archived"  # the session is in the archive
    FAILED = "failed"  # XNAT ended in ERROR/CONFLICT, or the session vanished


FAILED_STATUSES = ("ERROR", "CONFLICT")
IDLE_STATUSES = ("RECEIVING", "RECEIVING_INTERRUPT")


def plain_status(status: str) -> str:
    """``_ARCHIVING`` (locked while XNAT works) -> ``ARCHIVING``."""
    return status.lstrip("_").upper()


def decide(row: str | None, archived: bool, *, want_archive: bool, sent: bool, settled: bool) -> Next:
    """What a commit/archive should do next, from what the server shows.

    Parameters
    ----------
    row
        The prearchive row's status, ``None`` when the row is gone.
    archived
        Whether the session was found in the archive (looked up only when the row is gone).
    want_archive
        Whether the request asks XNAT to archive (archive service, commit with auto-archive).
    sent
        Whether a request of ours may be at work on the server (its answer was lost). ``False`` before
        the first request of a resumed job, and after XNAT refused one (409).
    settled
        Whether the server has shown this same state for a while (one look can catch XNAT in between).
    """
    if row is None:
        if archived:
            return Next.ARCHIVED
        return Next.FAILED if (settled or not sent) else Next.WAIT
    status = plain_status(row)
    if status in FAILED_STATUSES:
        return Next.FAILED if sent else Next.SEND  # a resumed or retried job tries again; XNAT says why
    if status == "READY":
        if not want_archive:
            return Next.READY
        return Next.SEND if (settled or not sent) else Next.WAIT
    if status in IDLE_STATUSES:
        return Next.SEND if (settled or not sent) else Next.WAIT
    return Next.WAIT  # BUILDING, ARCHIVING, QUEUED_*, MOVING...: XNAT is at work


@dataclass(frozen=True)
class Target:
    """Where the session should end up: for looking it up in the archive and in the prearchive."""

    project: str
    subject: str
    label: str
    study_uid: str = ""


@dataclass
class Settled:
    """How it ended. ``uri``: the archive URI, or the prearchive URI when it stays there."""

    uri: str
    archived: bool
    sends: int = 0  # requests this call sent (commit/archive/trigger)
    lost: str = ""  # why an answer did not come, when one did not
    waited: float = 0.0  # seconds from the first request (or look) to the outcome

    def summary(self, what: str) -> str:
        """One line for the receipt: how many requests, what happened to their answers, how it ended."""
        where = "archived" if self.archived else "in the prearchive"
        times = "once" if self.sends == 1 else f"{self.sends} times"
        if not self.lost:
            return f"{what} sent {times}; XNAT answered: {where}"
        return f"{what} sent {times}; {self.lost}; after {self.waited:.0f} s XNAT showed the session {where}"


class Watch:
    """Looks at the server again and again with back-off, bounded in total and cancellable within 0.2 s."""

    def __init__(
        self, limit: float, cancel: threading.Event | None, on_wait: WaitFn | None, *,
        first: float = 0.25, factor: float = 1.5, cap: float = 3.0, grace: float = 10.0,
    ) -> None:  # fmt: skip
        self.limit, self.cancel, self.on_wait = limit, cancel, on_wait
        self.first, self.factor, self.cap, self.grace = first, factor, cap, grace
        self.started = time.monotonic()
        self._delay = first
        self._seen: tuple[object, ...] | None = None
        self._since = 0.0
        self._looks = 0

    @property
    def waited(self) -> float:
        return time.monotonic() - self.started

    def settled(self, state: tuple[object, ...]) -> bool:
        """True when ``state`` has been seen for ``grace`` seconds over at least two looks."""
        now = time.monotonic()
        if state != self._seen:
            self._seen, self._since, self._looks = state, now, 0
        self._looks += 1
        return self._looks >= 2 and now - self._since >= self.grace

    def tell(self, message: str) -> None:
        if self.on_wait is not None:
            self.on_wait(message)

    def lost_answer(self, exc: E.XnatError, doing: str) -> str:
        """After a request failed: ``""`` when it never reached XNAT (the back-off step is slept: send it again);
        why its answer is missing when XNAT may have done the work; ``exc`` raised when XNAT answered with it."""
        if not_sent(exc):
            self.tell(f"{exc.message} Trying again shortly.")
            self.pause(doing)
            return ""
        why = answer_lost(exc)
        if not why:
            raise exc
        return why

    def pause(self, what: str) -> None:
        """Sleep the next back-off step; :class:`StillRunningError` past the limit, :class:`Cancelled` on cancel."""
        if self.waited >= self.limit:
            raise E.StillRunningError(
                f"XNAT has not finished {what} after {self.limit / 60:.0f} minutes.",
                "It may still be at work: look at the session in the Prearchive tab or the archive later, "
                "then press Retry; the app checks what XNAT did before it sends anything again.",
            )
        delay = min(self._delay, max(0.0, self.limit - self.waited))
        self._delay = min(self.cap, self._delay * self.factor)
        if _wait(self.cancel, delay):
            raise Cancelled()


def _wait(cancel: threading.Event | None, seconds: float) -> bool:
    if cancel is None:
        time.sleep(seconds)
        return False
    return cancel.wait(seconds)


def call_cancellable(
    fn: Callable[[], T],
    cancel: threading.Event | None,
    *,
    slow_after: float = 0.0,
    on_slow: Callable[[], None] | None = None,
) -> T:
    """``fn()`` on a helper thread, so a request of many minutes can be left to finish while the job stops.

    :class:`Cancelled` as soon as ``cancel`` is set (the request goes on; its answer is dropped, and a
    resumed job looks at the server first). ``on_slow`` is called once after ``slow_after`` seconds.
    """
    if cancel is None:
        return fn()
    box: dict[str, object] = {}
    done = threading.Event()

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=run, name="xnat-long-request", daemon=True).start()
    started, told = time.monotonic(), False
    while not done.wait(0.2):
        if cancel.is_set():
            raise Cancelled()
        if on_slow is not None and not told and slow_after and time.monotonic() - started >= slow_after:
            told = True
            on_slow()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


def answer_lost(exc: E.XnatError) -> str:
    """Why the answer is missing, if ``exc`` means the server may have done the work; else ``""``."""
    if isinstance(exc, E.ServerTimeoutError):
        return "XNAT did not answer in time"
    if isinstance(exc, E.ConnectionLostError):
        return "the connection broke before XNAT answered"
    if isinstance(exc, E.ServerError) and exc.status in PROXY_CUT:
        return f"a proxy gave up waiting for XNAT (HTTP {exc.status})"
    return ""


def _look_prearchive(session: XnatSession, ref: PrearchiveRef) -> str | None:
    try:
        return get_prearchive_session(session, ref).status
    except E.NotFoundError:
        return None


def _failure(
    session: XnatSession, ref: PrearchiveRef | None, status: str, doing: str, words: str = ""
) -> E.ArchiveFailedError:
    """The coordinator's message for a session XNAT left in ERROR/CONFLICT (or lost), with XNAT's words
    (``words``, else the row's last log entry)."""
    if not words and ref is not None and status:
        words = last_log(session, ref)
    said = f" XNAT says: {words}" if words else ""
    plain = plain_status(status) if status else ""
    if plain == "CONFLICT" and E.already_held(words):
        waits = " This upload waits in the prearchive as CONFLICT."
        return E.ArchiveFailedError(f"{E.ALREADY_HELD}{waits}{said}", E.ALREADY_HELD_HINT, detail=words)
    if plain == "CONFLICT":
        return E.ArchiveFailedError(
            f"XNAT did not archive the session: it conflicts with a session already in the archive "
            f"(it waits in the prearchive as CONFLICT).{said}",
            "Archive it from the Prearchive tab and choose how to merge, or re-send it under another session label.",
            detail=words,
        )
    if plain:
        return E.ArchiveFailedError(
            f"XNAT could not finish {doing} (the session waits in the prearchive as {plain}).{said}",
            "Look at it in the Prearchive tab and archive it from there, or press Retry to re-send it.",
            detail=words,
        )
    return E.ArchiveFailedError(
        f"The session left the prearchive while {doing}, but it is not in the archive.",
        "Look for it in the Prearchive tab and in the project; if it is in neither, re-send it.",
    )


def explained(session: XnatSession, ref: PrearchiveRef, exc: E.XnatError, doing: str) -> E.XnatError:
    """A commit that XNAT answered with an archive failure (500 "FAILED: ..."), in the words of a watched one:
    XNAT's reason, the row's status (CONFLICT/ERROR) and what the coordinator can do. Other errors unchanged."""
    if not isinstance(exc, E.ArchiveFailedError | E.SessionExistsError) or exc.status != 500:
        return exc
    row = look(lambda: _look_prearchive(session, ref))
    status = row if isinstance(row, str) else "ERROR"
    return _failure(session, ref, status, doing, exc.detail.removeprefix("FAILED:").strip())


def not_sent(exc: E.XnatError) -> bool:
    """The request never reached XNAT, or XNAT refused it for now: sending it later is safe."""
    return isinstance(exc, E.ServerUnreachableError) or (isinstance(exc, E.ServerError) and exc.status == 429)


UNKNOWN = object()  # the server could not answer this look (a transient error): look again later


def look(fn: Callable[[], T], cancel: threading.Event | None = None) -> T | object:
    """``fn()`` (a GET or two), or :data:`UNKNOWN` when the server could not answer this time.

    On a helper thread when ``cancel`` is given: a server that hangs cannot hold a cancel up for the
    length of an answer time-out.
    """
    try:
        return call_cancellable(fn, cancel)
    except E.XnatError as exc:
        if not exc.transient:
            raise
        log.info("Looking at the session failed (%s); trying again", type(exc).__name__)
        return UNKNOWN


def settle_action(
    session: XnatSession,
    ref: PrearchiveRef,
    send: Callable[[], ActionResult],
    target: Target,
    *,
    want_archive: bool,
    look_first: bool = False,
    in_flight: bool = False,
    cancel: threading.Event | None = None,
    on_wait: WaitFn | None = None,
    what: str = "the commit",
) -> Settled:
    """Send a commit/archive request once and make sure of its outcome.

    ``send`` makes the one request (:func:`.prearchive.commit` or :func:`.prearchive.archive`, with the
    long time-out). ``look_first``: such a request went out before (a resumed or retried job), so the
    server is looked at before anything is sent; ``in_flight``: and its outcome was never learnt, so XNAT
    may still be at work on it (the app quit meanwhile). Raises :class:`ArchiveFailedError` with XNAT's
    words when the session ended in ERROR/CONFLICT, :class:`StillRunningError` past ``archive_wait``,
    :class:`Cancelled`, and the request's own errors when XNAT answered with one.
    """
    options = session.options
    watch = Watch(options.archive_wait, cancel, on_wait)
    sends, sent, lost = 0, look_first and in_flight, ""
    doing = f"{what} of the session"
    nxt = Next.WAIT if look_first else Next.SEND
    row: str | None = None

    def slow_note() -> None:
        watch.tell(f"XNAT is building and archiving the session; {what} can take minutes for a large session")

    while True:
        if nxt is Next.SEND:
            if sends >= MAX_SENDS:
                if row is not None and plain_status(row) == "READY" and not want_archive:
                    return Settled(ref.uri, False, sends, lost, watch.waited)
                raise _failure(session, ref, row or "", doing)
            sends += 1
            try:
                result = call_cancellable(send, cancel, slow_after=options.read_timeout, on_slow=slow_note)
            except E.SessionLockedError:
                sent = False  # refused: something else holds the session; look, then decide
                lost = lost or "XNAT answered that the session was busy (locked)"
            except E.XnatError as exc:
                why = watch.lost_answer(exc, doing)
                if not why:
                    sends -= 1
                    continue
                log.info("No answer to %s (%s); asking XNAT what it did", what, type(exc).__name__)
                sent, lost = True, why
            else:
                return Settled(result.uri, result.archived, sends, lost, watch.waited)
            watch.tell(f"{lost[0].upper()}{lost[1:]}; checking what XNAT did")
        looked = look(lambda: _look_prearchive(session, ref), cancel)
        archived: object = None
        if looked is None:
            archived = look(lambda: find_archived(
                session, target.project, target.label, target.subject, target.study_uid
            ), cancel)  # fmt: skip
        if looked is UNKNOWN or archived is UNKNOWN:
            nxt = Next.WAIT
            watch.pause(doing)
            continue
        row = looked  # type: ignore[assignment]
        found = archived if isinstance(archived, ArchiveRef) else None
        settled = watch.settled((row, found))
        nxt = decide(row, found is not None, want_archive=want_archive, sent=sent, settled=settled)
        log.info("%s: prearchive %s, archived %s -> %s", what, row or "gone", found is not None, nxt.value)
        if nxt is Next.ARCHIVED and found is not None:
            return Settled(found.uri, True, sends, lost, watch.waited)
        if nxt is Next.READY:
            return Settled(ref.uri, False, sends, lost, watch.waited)
        if nxt is Next.FAILED:
            raise _failure(session, ref, row or "", doing)
        if nxt is Next.WAIT:
            watch.tell(f"XNAT is archiving... ({plain_status(row) if row else 'looking in the archive'})")
            watch.pause(doing)


def archive_settled(
    session: XnatSession,
    ref: PrearchiveRef,
    send: Callable[[], ActionResult],
    *,
    subject: str | None = None,
    label: str | None = None,
    cancel: threading.Event | None = None,
    on_wait: WaitFn | None = None,
) -> ActionResult:
    """``/data/services/archive`` for the Prearchive tab and the command line: sent once, settled when unanswered.

    The row is read first: once archived it is gone, and its label, subject and StudyInstanceUID are what
    the archive is searched for (``subject``/``label`` when the archive renames).
    """
    try:
        row = look(lambda: get_prearchive_session(session, ref), cancel)
    except E.NotFoundError:
        row = None  # the archive request reports it in XNAT's words
    known = row if isinstance(row, PrearchiveSession) else None
    target = Target(
        ref.project,
        subject or (known.subject if known else ""),
        label or (known.name if known else ref.folder),
        known.study_uid if known else "",
    )
    settled = settle_action(
        session, ref, send, target, want_archive=True, cancel=cancel, on_wait=on_wait, what="the archive"
    )
    return ActionResult(settled.uri, settled.archived)
