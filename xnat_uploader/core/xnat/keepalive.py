"""Keeping an XNAT login alive while a job runs, and noticing when XNAT quietly signed it out.

XNAT ends a server session after ``sessionTimeout`` idle minutes (15 by default). Uploading keeps it busy,
but a long commit (XNAT builds and archives inside that one request) or building a large batch can leave it
idle. On a closed site the next request then gets 401 and the session signs in again by itself; on an open
site (``requireLogin=false``) XNAT answers as its guest instead, and nothing says so (:mod:`.whoami`). So
every few minutes the keepalive asks XNAT who the session is (:meth:`XnatSession.ensure_signed_in`): one
small authenticated GET, which also counts as activity, and a new login when the answer is "guest".

NRG's desktop client pings ``/xapi/siteConfig/buildInfo`` every minute instead; that is an open URL in
XNAT's security configuration, so its answer is the same for guest and user and cannot tell.
"""

from __future__ import annotations

import logging
import threading
from types import TracebackType
from typing import TYPE_CHECKING

from xnat_uploader.core.xnat import errors as E

if TYPE_CHECKING:
    from xnat_uploader.core.xnat.session import XnatSession

log = logging.getLogger(__name__)

MIN_INTERVAL = 1.0  # never faster than this, whatever the server announces


class KeepAlive:
    """A daemon thread that checks the login of ``session`` every :attr:`interval` seconds until stopped.

    Start it with :meth:`start` (or use it as a context manager); :meth:`stop` may be called from any thread.
    A set ``cancel`` event (a job's) ends it too. A refused login (wrong or expired password) also ends it:
    asking again would count towards XNAT's lock-out, and the job reports the error at its next request.
    Other failures (network, server errors) are only logged: the job sees and reports real trouble itself.
    """

    def __init__(
        self, session: XnatSession, *, interval: float | None = None, cancel: threading.Event | None = None
    ) -> None:
        self.session = session
        self._interval = interval if interval is not None else session.options.keepalive_interval
        self._cancel = cancel
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.checks = 0
        self.renewals = 0  # how often it found the session signed out and signed in again
        self.error: E.XnatError | None = None  # the refused login that ended it, if any

    @property
    def interval(self) -> float:
        """Seconds between checks: the configured interval, or a third of the server's session time-out if
        that is shorter (XNAT announces it in its ``SESSION_EXPIRATION_TIME`` cookie)."""
        server = self.session.idle_timeout
        return min(self._interval, max(MIN_INTERVAL, server / 3)) if server else self._interval

    def start(self) -> KeepAlive:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="xnat-keepalive", daemon=True)
            self._thread.start()
        return self

    def stop(self, wait: float = 0.0) -> None:
        """Stop checking; with ``wait``, wait up to that many seconds for a check in flight to end."""
        self._stop.set()
        if wait and self._thread is not None:
            self._thread.join(wait)

    def check(self) -> bool:
        """One check now: True if the session was signed out and signed in again. Raises :class:`XnatError`."""
        self.checks += 1
        renewed = self.session.ensure_signed_in()
        if renewed:
            self.renewals += 1
            log.info("The XNAT login had ended while a job ran; signed in again")
        return renewed

    def _stopped(self) -> bool:
        return self._stop.is_set() or (self._cancel is not None and self._cancel.is_set())

    def _run(self) -> None:
        while not self._stop.wait(self.interval) and not self._stopped():
            try:
                self.check()
            except E.AuthenticationError as exc:
                self.error = exc
                log.warning("Keeping the XNAT login alive stopped: %s", type(exc).__name__)
                return
            except E.XnatError as exc:
                log.debug("Login check failed: %s", type(exc).__name__)
            except RuntimeError:  # the session was closed under it (the job ended): nothing left to keep
                return

    def __enter__(self) -> KeepAlive:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
