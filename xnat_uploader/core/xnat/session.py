"""The connection to one XNAT server: HTTP pool, JSESSION login shared by all threads, time-outs, retries.

One :class:`XnatSession` per server. Its ``requests.Session`` has a pool sized to the number of upload workers.
It logs in once with ``POST /data/JSESSION`` (HTTP Basic) and then sends only the ``JSESSIONID`` cookie, so
XNAT does not create a new server session per request (xnat-api.md 2.4). When the server answers 401 (the
session expired), the first thread to notice logs in again; the others wait for it and reuse the new cookie
(a lock plus a generation counter), then each retries its request once.

On a site with ``requireLogin=false`` an ended session is not answered with 401 but served as XNAT's guest
(:mod:`.whoami`): an import lands in Unassigned, a write gets 403, a listing comes back short. Such an answer
(or one that opens a new server session) makes the session ask XNAT who it is; if the answer is "guest", it
signs in again through the same shared path as after a 401 and sends the request again. An expired password
(XNAT's redirect to its change-password page) is a :class:`PasswordExpiredError`, at login and on any answer.

The cookie is set explicitly on each request rather than kept in ``requests``' cookie jar: the jar would also
store whatever ``Set-Cookie`` the server sends back, and two threads could then disagree about which session
id is current.

Requests after the login (the import POSTs above all: one per file in a gradual upload) skip
``requests``' per-request machinery and go straight to its connection pool (:mod:`.direct`), with the same
result on the wire and the same errors; a proxy, a form or an unusual path takes the ``requests`` path.
"""

from __future__ import annotations

import http.cookiejar
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter

from xnat_uploader.core.redact import redact_path
from xnat_uploader.core.secret import Secret
from xnat_uploader.core.xnat import errors as E
from xnat_uploader.core.xnat.answer import AnswerLimit, AnswerTooLarge
from xnat_uploader.core.xnat.body import Body, PreparedBody, StreamBody, prepare_body
from xnat_uploader.core.xnat.direct import DirectSender, read_limited
from xnat_uploader.core.xnat.transport import (
    USER_AGENT,
    ConnectionOptions,
    answer_too_large,
    normalize_url,
    transport_error,
)
from xnat_uploader.core.xnat.whoami import WHO_AM_I, WHO_AM_I_OLD, idle_timeout, other_session_cookie, user_in_answer

__all__ = [
    "USER_AGENT", "Body", "ConnectionOptions", "StreamBody", "XnatSession", "normalize_url",
    "transport_error",
]  # fmt: skip

log = logging.getLogger(__name__)

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_SIGN_IN_ANSWERS = frozenset({301, 302, 303, 307, 308, 403})  # where an expired password can show
_SESSION_ID = re.compile(r"[A-Za-z0-9._\-]{8,256}")
_SIGN_IN_LIMIT = AnswerLimit(frozenset({200}), 64 << 10)  # a session id (or a page saying why not)
_WHO_LIMIT = AnswerLimit(frozenset({200}), 1 << 20)  # a user name, or a small JSON record


class _NoCookies(http.cookiejar.DefaultCookiePolicy):
    """Keep the server's Set-Cookie out of the shared jar (see the module docstring)."""

    def set_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False

    def return_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False


class XnatSession:
    """An authenticated connection to one XNAT server.

    Thread-safe: any number of threads may call :meth:`request` at once (the pool holds ``pool_size``
    connections); :meth:`login`, :meth:`logout` and :meth:`close` may be called from any thread.

    Parameters
    ----------
    url
        The server's base URL, with any context path (``https://host/xnat``).
    user
        The XNAT login (may be ``provider/login``).
    password
        The password (or an alias-token secret); kept as a :class:`Secret`.
    options
        Time-outs, TLS settings and pool size.
    """

    def __init__(self, url: str, user: str, password: str | Secret, options: ConnectionOptions | None = None) -> None:
        self.base_url = normalize_url(url)
        self.user = user
        self._password = Secret(password)
        self.options = options or ConnectionOptions()
        self._http = requests.Session()
        self._http.cookies.set_policy(_NoCookies())
        # trust_env would also read ~/.netrc and add Basic auth to every cookie request (a new server session
        # each time, xnat-api.md 2.4); so it is off, and only the environment's proxy settings are taken over:
        # hospital networks often need them.
        self._http.trust_env = False
        self._http.proxies = requests.utils.get_environ_proxies(self.base_url)
        self._http.headers["User-Agent"] = self.options.user_agent
        self._http.headers["Accept"] = "*/*"
        if self.options.ca_bundle:
            self._http.verify = self.options.ca_bundle
        else:
            self._http.verify = self.options.verify_tls
            if not self.options.verify_tls:
                log.warning("TLS certificate checks are off for %s", self.base_url)
                urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        size = max(1, self.options.pool_size)
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=size + 2, max_retries=0)
        self._http.mount("http://", adapter)
        self._http.mount("https://", adapter)
        # The lean path to the adapter's pool; None when a proxy applies to the server (requests handles it).
        self._direct = DirectSender.for_session(self._http, self.base_url)
        self._state_lock = threading.Lock()  # guards _jsession/_generation reads and writes
        self._login_lock = threading.Lock()  # serialises logins: one at a time, the others wait
        self._jsession: str | None = None
        self._generation = 0
        self._logins = 0
        self._refused: E.XnatError | None = None  # the last automatic login's refusal: not tried again
        self._cookie_hint = True  # False once a new-session cookie turned out not to mean "signed out"
        self.idle_timeout: float | None = None  # the server's session time-out, when it says (seconds)
        self._closed = False

    # --- representation -------------------------------------------------------------------------------

    def __repr__(self) -> str:
        state = "logged in" if self._jsession else "logged out"
        return f"XnatSession(url={self.base_url!r}, user={self.user!r}, password=********, {state})"

    @property
    def logins(self) -> int:
        """How many logins this object has performed (for diagnostics and tests)."""
        return self._logins

    @property
    def logged_in(self) -> bool:
        return self._jsession is not None

    def url_for(self, path: str) -> str:
        """Absolute URL of an API path (``/data/...``, ``/xapi/...``), keeping the context path."""
        if path.startswith(("http://", "https://")):
            return path
        if not path.startswith("/"):
            path = "/" + path
        return self.base_url + path

    # --- login / logout -------------------------------------------------------------------------------

    def login(self) -> None:
        """Log in now (``POST /data/JSESSION`` with Basic auth). Thread-safe; raises :class:`XnatError`."""
        with self._login_lock:
            self._refused = None
            self._login_locked()

    def _login_locked(self) -> None:
        if self._closed:
            raise RuntimeError("this XNAT session was closed")
        try:
            resp = self._http.post(
                self.url_for("/data/JSESSION"),
                auth=(self.user, self._password.reveal()),
                timeout=self.options.timeout,
                allow_redirects=False,
                stream=True,
            )
            read_limited(resp, _SIGN_IN_LIMIT)
        except requests.RequestException as exc:
            raise transport_error(exc, self.options, "signing in") from None
        except AnswerTooLarge as exc:
            raise answer_too_large(exc, "signing in") from None
        with resp:
            problem = self._sign_in_problem(resp)
            if problem is None and resp.status_code == 401:
                problem = E.AuthenticationError(
                    "XNAT did not accept the user name or password.",
                    "Check them, and sign in on the XNAT web page to see whether the account is locked or expired.",
                    status=401,
                    detail=E.extract_message(E.page_text(resp)),
                )
            if problem is not None:
                self._refused = problem
                raise problem
            if resp.status_code == 404:
                raise E.UnexpectedResponseError(
                    "This address does not look like an XNAT server (no /data/JSESSION).",
                    "Check the URL, including a context path such as /xnat.",
                    status=404,
                )
            if resp.status_code != 200:
                raise E.error_for_response(resp, action="signing in")
            text = resp.text.strip()
            server_timeout = idle_timeout(resp.headers.get("Set-Cookie"))
        if "<html" in text.lower() or not _SESSION_ID.fullmatch(text):
            # A 200 carrying a page is a login portal or proxy, not a session id (xnat-api.md 11.12).
            raise E.UnexpectedResponseError(
                "The server answered the sign-in with a web page instead of an XNAT session.",
                "Check the URL (https, context path) and whether a single-sign-on portal sits in front of XNAT.",
                status=resp.status_code,
            )
        with self._state_lock:
            self._jsession = text
            self._generation += 1
            self._logins += 1
            self.idle_timeout = server_timeout or self.idle_timeout
        log.info("Signed in to %s as %s", self.base_url, self.user)

    def _current(self) -> tuple[int, str | None]:
        with self._state_lock:
            return self._generation, self._jsession

    def _renew(self, seen_generation: int) -> None:
        """Log in again unless another thread already did since ``seen_generation``."""
        with self._login_lock:
            generation, jsession = self._current()
            if generation != seen_generation and jsession is not None:
                return  # another thread renewed while this one waited for the lock: use its session
            self._raise_refused()
            self._login_locked()

    def _raise_refused(self) -> None:
        """Once XNAT refused an automatic login, the other threads get the same answer without asking again:
        every wrong-password attempt counts towards XNAT's account lock-out."""
        refused = self._refused
        if refused is not None:
            raise type(refused)(refused.message, refused.hint, status=refused.status, detail=refused.detail)

    def _sign_in_problem(self, resp: requests.Response) -> E.XnatError | None:
        """An expired password (or disabled account) in any answer: XNAT's redirect to its change page, or 403."""
        if resp.status_code not in _SIGN_IN_ANSWERS:
            return None
        body = E.page_text(resp) if resp.status_code == 403 else ""
        location = resp.headers.get("Location") or ""
        return E.sign_in_problem(resp.status_code, location, body, user=self.user, server=self.base_url)

    # --- who XNAT thinks we are -----------------------------------------------------------------------

    def whoami(self) -> str | None:
        """The user XNAT runs this session's requests as; ``None`` when it answers as guest (signed out).

        Asks with the current session, without signing in. Thread-safe; raises :class:`XnatError`.
        """
        return self._ask_who(self._current()[1])

    def ensure_signed_in(self) -> bool:
        """Ask XNAT who this session is and sign in again if it is guest or gone. True if it signed in again.

        Cheap (one small GET) and it keeps the server session from idling out. Thread-safe; the login is shared
        with every thread, as after a 401. Raises :class:`XnatError` (:class:`PasswordExpiredError`...).
        """
        generation, jsession = self._current()
        if jsession is None:
            self._renew(generation)
            return True
        return self._recover(generation)

    def _ask_who(self, jsession: str | None) -> str | None:
        for path in (WHO_AM_I, WHO_AM_I_OLD):
            resp = self._send(
                "GET", path, None, prepare_body(None), None, None, jsession, "checking the sign-in", None, _WHO_LIMIT
            )
            with resp:
                problem = self._sign_in_problem(resp)
                if problem is not None:
                    raise problem
                if resp.status_code == 404 and path == WHO_AM_I:
                    continue  # an XNAT without the XAPI call: ask the old way
                if resp.status_code == 401:
                    return None
                if resp.status_code != 200:
                    raise E.error_for_response(resp, action="checking the sign-in")
                return user_in_answer(path, resp.text)
        raise AssertionError("unreachable")

    def _recover(self, seen_generation: int) -> bool:
        """After an answer that looks like guest's: sign in again if XNAT really runs us as guest now.

        True when the request should be sent again with a fresh session (this thread signed in again, or
        another one did since ``seen_generation``); False when the session is signed in (the answer stands).
        """
        with self._login_lock:
            generation, jsession = self._current()
            if generation != seen_generation and jsession is not None:
                return True
            if jsession is not None and self._ask_who(jsession) is not None:
                return False
            log.info("XNAT at %s answers this session as guest now; signing in again", self.base_url)
            self._raise_refused()
            self._login_locked()
            return True

    def logout(self) -> None:
        """End the server session (``DELETE /data/JSESSION``). Never raises; thread-safe."""
        with self._login_lock:
            with self._state_lock:
                jsession, self._jsession = self._jsession, None
                self._generation += 1
            if not jsession:
                return
            try:
                resp = self._http.delete(
                    self.url_for("/data/JSESSION"),
                    headers={"Cookie": f"JSESSIONID={jsession}"},
                    timeout=self.options.timeout,
                    allow_redirects=False,
                    stream=True,  # the answer's body is never read (whatever its size)
                )
                resp.close()
                log.info("Signed out of %s (HTTP %s)", self.base_url, resp.status_code)
            except requests.RequestException as exc:
                log.info("Sign-out from %s failed: %s", self.base_url, type(exc).__name__)

    def close(self) -> None:
        """Log out and release the connections. Idempotent; thread-safe."""
        if self._closed:
            return
        self.logout()
        self._closed = True
        self._http.close()

    def __enter__(self) -> XnatSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- requests -------------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None,
        body: Body = None,
        form: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
        expect: Iterable[int] = (200,),
        action: str = "",
        project: str | None = None,
        project_404: bool = True,
        retries: int | None = None,
        timeout: tuple[float, float] | None = None,
        signed_out: Callable[[requests.Response], bool] | None = None,
    ) -> requests.Response:
        """Send one request and return the response if its status is in ``expect``.

        Thread-safe. Logs in first if needed. On a 401 it re-logs in (once for all threads) and resends once;
        a one-shot :class:`StreamBody` cannot be resent, so then :class:`SessionExpiredError` is raised
        (transient: the caller retries). The same happens after an answer XNAT gives its guest (a 403, a new
        server session, or an expected answer for which ``signed_out`` says "this is what a guest gets"),
        once XNAT confirms that the session runs as guest now (see the module docstring). GETs are retried
        ``retries`` times (default from the options) on 5xx and dropped connections. Any other status raises
        the mapped :class:`XnatError` (``project`` names the project in messages; ``project_404=False`` says a
        404 is about the object, not the project); an expired password raises :class:`PasswordExpiredError`.
        Redirects are never followed: XNAT's 301/303 carry the answer themselves (xnat-api.md 11.2).
        """
        method = method.upper()
        expected = set(expect)
        attempts = 1 + (self.options.get_retries if retries is None and method in _SAFE_METHODS else (retries or 0))
        prepared = prepare_body(body)
        try:
            for attempt in range(attempts):
                try:
                    return self._send_with_login(
                        method, path, params, prepared, form, headers, expected, (action, project, project_404),
                        timeout, signed_out,
                    )  # fmt: skip
                except (E.ServerError, E.ConnectionLostError) as exc:
                    if attempt + 1 >= attempts or not prepared.replayable:
                        raise
                    delay = self.options.retry_backoff * (2**attempt)
                    log.info(
                        "%s %s failed (%s), retrying in %.1f s", method, redact_path(path), type(exc).__name__, delay
                    )
                    time.sleep(delay)
                    prepared.rewind()
            raise AssertionError("unreachable")
        finally:
            prepared.close()

    def _send_with_login(
        self,
        method: str,
        path: str,
        params: Any,
        prepared: PreparedBody,
        form: Any,
        headers: Mapping[str, str] | None,
        expected: set[int],
        context: tuple[str, str | None, bool],
        timeout: tuple[float, float] | None,
        signed_out: Callable[[requests.Response], bool] | None = None,
    ) -> requests.Response:
        action, project, project_404 = context
        generation, jsession = self._current()
        if jsession is None:
            self._renew(generation)
            generation, jsession = self._current()

        limit = AnswerLimit(frozenset(expected))

        def send(cookie: str | None) -> requests.Response:
            resp = self._send(method, path, params, prepared, form, headers, cookie, action, timeout, limit)
            problem = self._sign_in_problem(resp)
            if problem is not None:
                resp.close()
                raise problem
            return resp

        resp = send(jsession)
        if resp.status_code == 401 and 401 not in expected:
            resp.close()
            log.info("Session on %s expired; signing in again", self.base_url)
            self._renew(generation)
            resp = self._again(send, prepared)
        else:
            landed = signed_out is not None and resp.status_code in expected and signed_out(resp)
            refused = resp.status_code == 403 and 403 not in expected
            hinted = self._cookie_hint and other_session_cookie(resp.headers.get("Set-Cookie"), jsession)
            if landed or refused or hinted:
                if self._recover(generation):
                    if landed or refused or method in _SAFE_METHODS:
                        resp.close()
                        log.info("%s %s was answered as guest; sent again signed in", method, redact_path(path))
                        resp = self._again(send, prepared)
                elif hinted and not (landed or refused):
                    self._cookie_hint = False  # this server opens new sessions for other reasons: stop asking
        if resp.status_code == 401 and 401 not in expected:  # only after signing in again just now
            resp.close()
            raise E.SessionExpiredError(
                "XNAT ended the login session again right after signing in.",
                "Try again; if it persists, ask the administrator about the session time-out.",
                status=401,
            )
        if resp.status_code not in expected:
            try:
                raise E.error_for_response(resp, project=project, action=action, project_404=project_404)
            finally:
                resp.close()
        return resp

    def _again(self, send: Callable[[str | None], requests.Response], prepared: PreparedBody) -> requests.Response:
        """Send once more with the new login; a one-shot body cannot be, so the caller retries it whole."""
        if not prepared.replayable:
            raise E.SessionExpiredError(
                "The XNAT login session expired during the transfer.",
                "The transfer will be retried with a fresh session.",
                status=401,
            )
        prepared.rewind()
        return send(self._current()[1])

    def _send(
        self,
        method: str,
        path: str,
        params: Any,
        prepared: PreparedBody,
        form: Any,
        headers: Mapping[str, str] | None,
        jsession: str | None,
        action: str,
        timeout: tuple[float, float] | None,
        limit: AnswerLimit,
    ) -> requests.Response:
        """Send once and read the answer (at most what ``limit`` allows for its status: :mod:`.answer`)."""
        all_headers = dict(headers or {})
        if jsession:
            all_headers["Cookie"] = f"JSESSIONID={jsession}"
        data = form if form is not None else prepared.data
        timeout = timeout or self.options.timeout
        direct = self._direct if form is None else None
        plan = direct.plan(method, path, params, data) if direct is not None else None
        started = time.monotonic()
        try:
            if direct is not None and plan is not None:
                resp = direct.send(method, plan, data, all_headers, timeout, limit)
            else:
                resp = self._http.request(
                    method,
                    self.url_for(path),
                    params=params,
                    data=data,
                    headers=all_headers,
                    timeout=timeout,
                    allow_redirects=False,
                    stream=True,
                )
                read_limited(resp, limit)
        except requests.RequestException as exc:
            log.info("%s %s: %s", method, redact_path(path), type(exc).__name__)
            raise transport_error(exc, self.options, action) from None
        except AnswerTooLarge as exc:
            log.info("%s %s: answer over %d bytes, not read", method, redact_path(path), exc.limit)
            raise answer_too_large(exc, action) from None
        except ValueError as exc:  # a StreamBody whose length was wrong
            raise E.XnatError(
                "The upload data changed while it was being sent.",
                "Check that the files are not being modified, then retry.",
                detail=str(exc),
            ) from None
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s -> %s in %.2f s", method, redact_path(path), resp.status_code, time.monotonic() - started)
        return resp
