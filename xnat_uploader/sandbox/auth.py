"""Users, HTTP sessions (``JSESSIONID``) and authentication, as XNAT's security layer answers.

xnat-api.md section 2: Basic auth on any request, a ``JSESSIONID`` cookie after that, idle expiry
(900 s by default), ``DELETE /data/JSESSION`` to log out. Missing or wrong credentials from a
non-browser agent get 401 with ``WWW-Authenticate`` and a Tomcat page; a browser-like agent gets a
302 to the login page instead. Passwords and session ids are never logged.

On an open site (``requireLogin=false``, XNAT's ``UpdateSecurityFilterHandlerMethod`` then permits every
URL) a request without a live session runs as the ``guest`` account, in a new server session as XNAT opens
one (its expired-password filter calls ``getSession()``): guests read public projects only and may not
write. A user whose password expired is redirected to the change-password page by XNAT's
``XnatExpiredPasswordFilter``, whatever the User-Agent, when signing in; the filter remembers its verdict
per server session, so a session that started before the password expired goes on working.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from xnat_uploader.sandbox.httpd import HttpError, Request

SITE_ID = "XNAT"
LOGIN_FAILED = "Login attempt failed. Please try again."  # AdminUtils.GetLoginFailureMessage() default
_BROWSER_UA = re.compile(r".*(Mozilla|MSIE|AppleWebKit|Opera).*")
GUEST = "guest"
CHANGE_PASSWORD_PAGE = "/app/template/XDATScreen_UpdateUser.vm"  # SecurityConfig.expiredPasswordFilter
# Paths the expired-password filter lets through (login, logout, the change-password page and its action).
_PASSWORD_FREE = (
    CHANGE_PASSWORD_PAGE, "/app/action/ModifyPassword", "/app/action/LogoutUser", "/app/template/Login.vm",
)  # fmt: skip


def _nothing_public(project: str) -> bool:
    return False


@dataclass
class User:
    """A sandbox account. ``projects`` lists what a non-admin may edit; admins see everything; everyone may
    read public projects (``public`` tells which). The guest edits nothing. ``password_expired``: signing in
    leads to the change-password page."""

    login: str
    password: str = field(repr=False)
    admin: bool = False
    projects: set[str] = field(default_factory=set)
    first_name: str = ""
    last_name: str = ""
    email: str = ""
    guest: bool = False
    password_expired: bool = False
    public: Callable[[str], bool] = field(default=_nothing_public, repr=False, compare=False)

    def can_edit(self, project: str) -> bool:
        return not self.guest and (self.admin or project in self.projects)

    def can_read(self, project: str) -> bool:
        return self.can_edit(project) or self.public(project)

    @property
    def all_data_access(self) -> bool:
        """Admins and data managers see Unassigned prearchive rows (xnat-api.md 4.3)."""
        return self.admin


@dataclass
class HttpSession:
    id: str = field(repr=False)
    user: User
    created: float
    last_access: float
    uses: int = 0
    csrf: str = field(default_factory=lambda: secrets.token_hex(16), repr=False)
    password_expired: bool = False  # XnatExpiredPasswordFilter's verdict, kept for the session's life


def interactive_agent(user_agent: str) -> bool:
    """XNAT treats browser-like agents differently (302 to login instead of 401)."""
    return bool(_BROWSER_UA.match(user_agent)) and "XNATDesktopClient" not in user_agent


class Auth:
    """Accounts and live sessions. ``timeout`` is the idle expiry in seconds."""

    def __init__(self, timeout: float = 900.0, public: Callable[[str], bool] = _nothing_public):
        self.timeout = timeout
        self.public = public  # which projects anyone may read
        self.guest = User(GUEST, "", guest=True, public=public)  # not in ``users``: nobody signs in as guest
        self.users: dict[str, User] = {}
        self._sessions: dict[str, HttpSession] = {}
        self._lock = threading.Lock()
        self.expire_after_uses = 0  # set from faults: sessions expire after N uses
        self.max_sessions = 1000  # concurrentMaxSessions per user (XNAT's default)
        self.logins = 0  # sessions created (Basic auth without a live cookie, or /data/services/auth)

    # -- accounts -----------------------------------------------------------------------------
    def add_user(self, login: str, password: str, *, admin: bool = False, projects: set[str] | None = None) -> User:
        user = User(login, password, admin=admin, projects=set(projects or ()), public=self.public)
        self.users[login] = user
        return user

    def check_password(self, login: str, password: str) -> User | None:
        if "/" in login:  # "provider/username" picks an auth provider; there is only one here
            login = login.split("/", 1)[1]
        user = self.users.get(login)
        if user is None or not hmac.compare_digest(user.password.encode(), password.encode()):
            return None
        return user

    # -- sessions -----------------------------------------------------------------------------
    def new_session(self, user: User) -> HttpSession:
        now = time.monotonic()
        session = HttpSession(secrets.token_hex(16).upper(), user, now, now, password_expired=user.password_expired)
        with self._lock:
            self._sessions[session.id] = session
            if not user.guest:
                self.logins += 1
        return session

    def lookup(self, session_id: str | None) -> HttpSession | None:
        """A live session, its idle clock and use count refreshed; None when unknown or expired."""
        if not session_id:
            return None
        now = time.monotonic()
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            if now - session.last_access > self.timeout or (
                self.expire_after_uses and session.uses >= self.expire_after_uses
            ):
                del self._sessions[session_id]
                return None
            session.last_access = now
            session.uses += 1
            return session

    def invalidate_all(self) -> int:
        """Expire every live session at once (tests of the client's re-login)."""
        with self._lock:
            n = len(self._sessions)
            self._sessions.clear()
            return n

    def invalidate(self, session_id: str | None) -> bool:
        with self._lock:
            return self._sessions.pop(session_id or "", None) is not None

    def live_sessions(self) -> int:
        now = time.monotonic()
        with self._lock:
            return sum(1 for s in self._sessions.values() if now - s.last_access <= self.timeout)

    # -- the security filter ------------------------------------------------------------------
    def authenticate(self, request: Request, *, require_login: bool = True) -> None:
        """Set ``request.user`` (and the session) or raise the 401/302 XNAT would answer.

        ``require_login=False`` (an open site): without a live session the request runs as the guest.
        """
        cookie_id = request.cookie("JSESSIONID")
        session = self.lookup(cookie_id)
        basic = _basic_credentials(request.headers.get("Authorization"))
        if basic is not None and (session is None or session.user.login != basic[0].split("/")[-1]):
            user = self.check_password(*basic)
            # XnatBasicAuthenticationFilter: a failed login (wrong password, or the session cap of
            # concurrentMaxSessions reached) is sendError(401, <login failure message>), with no
            # WWW-Authenticate header (the entry point that adds it is not called on this path).
            if user is None or self.user_sessions(user) >= self.max_sessions:
                raise HttpError(401, LOGIN_FAILED, page="tomcat")
            session = self.new_session(user)  # every Basic request without a cookie creates a session
            session.uses = 1
            request.new_cookie = session.id
        elif session is not None and request.method in ("POST", "PUT", "DELETE"):
            self._check_csrf(request, session)
        if session is None and not require_login:
            session = self.new_session(self.guest)  # XNAT opens a server session for every such request
            request.new_cookie = session.id
        if session is None:
            # XnatAuthenticationEntryPoint: 401 + challenge only for data paths from non-interactive
            # agents; everything else is redirected to the login page.
            data_path = request.path.startswith(("/data/", "/REST/", "/xapi/", "/fs/"))
            if interactive_agent(request.user_agent) or not data_path:
                raise HttpError(302, "", page="text", headers={"Location": "/app/template/Login.vm"})
            raise HttpError(
                401, "Full authentication is required to access this resource", page="tomcat", headers=self._challenge()
            )
        if session.password_expired and not request.path.endswith(_PASSWORD_FREE):
            # XnatExpiredPasswordFilter: sendRedirect to the full server path, not through the agent-aware
            # redirect strategy, so every client gets it.
            host = request.headers.get("Host") or "localhost"
            raise HttpError(302, "", page="text", headers={"Location": f"http://{host}{CHANGE_PASSWORD_PAGE}"})
        request.user = session.user
        request.session_id = session.id

    @staticmethod
    def _check_csrf(request: Request, session: HttpSession) -> None:
        """xnat-api.md 2.5: only cookie-authenticated writes from browser-like agents need the token."""
        agent = request.user_agent
        if not interactive_agent(agent) or "JAVA" in agent.upper():
            return
        request.load_form()
        if request.param("XNAT_CSRF") != session.csrf:
            raise HttpError(403, "XNAT_CSRF token was not properly set in the user request")

    def user_sessions(self, user: User) -> int:
        now = time.monotonic()
        with self._lock:
            return sum(1 for s in self._sessions.values() if s.user is user and now - s.last_access <= self.timeout)

    @staticmethod
    def _challenge() -> dict[str, str]:
        return {"WWW-Authenticate": f'Basic realm="{SITE_ID}"'}


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    login, sep, password = decoded.partition(":")
    return (login, password) if sep else None
