"""Users, HTTP sessions (``JSESSIONID``) and authentication, as XNAT's security layer answers.

xnat-api.md section 2: Basic auth on any request, a ``JSESSIONID`` cookie after that, idle expiry
(900 s by default), ``DELETE /data/JSESSION`` to log out. Missing or wrong credentials from a
non-browser agent get 401 with ``WWW-Authenticate`` and a Tomcat page; a browser-like agent gets a
302 to the login page instead. Passwords and session ids are never logged.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass, field

from xnat_uploader.sandbox.httpd import HttpError, Request

SITE_ID = "XNAT"
LOGIN_FAILED = "Login attempt failed. Please try again."  # AdminUtils.GetLoginFailureMessage() default
_BROWSER_UA = re.compile(r".*(Mozilla|MSIE|AppleWebKit|Opera).*")


@dataclass
class User:
    """A sandbox account. ``projects`` lists what a non-admin may edit; admins see everything."""

    login: str
    password: str = field(repr=False)
    admin: bool = False
    projects: set[str] = field(default_factory=set)
    first_name: str = ""
    last_name: str = ""
    email: str = ""

    def can_edit(self, project: str) -> bool:
        return self.admin or project in self.projects

    def can_read(self, project: str) -> bool:
        return self.can_edit(project)

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


def interactive_agent(user_agent: str) -> bool:
    """XNAT treats browser-like agents differently (302 to login instead of 401)."""
    return bool(_BROWSER_UA.match(user_agent)) and "XNATDesktopClient" not in user_agent


class Auth:
    """Accounts and live sessions. ``timeout`` is the idle expiry in seconds."""

    def __init__(self, timeout: float = 900.0):
        self.timeout = timeout
        self.users: dict[str, User] = {}
        self._sessions: dict[str, HttpSession] = {}
        self._lock = threading.Lock()
        self.expire_after_uses = 0  # set from faults: sessions expire after N uses
        self.max_sessions = 1000  # concurrentMaxSessions per user (XNAT's default)
        self.logins = 0  # sessions created (Basic auth without a live cookie, or /data/services/auth)

    # -- accounts -----------------------------------------------------------------------------
    def add_user(self, login: str, password: str, *, admin: bool = False, projects: set[str] | None = None) -> User:
        user = User(login, password, admin=admin, projects=set(projects or ()))
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
        session = HttpSession(secrets.token_hex(16).upper(), user, now, now)
        with self._lock:
            self._sessions[session.id] = session
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
    def authenticate(self, request: Request) -> None:
        """Set ``request.user`` (and the session) or raise the 401/302 XNAT would answer."""
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
        if session is None:
            # XnatAuthenticationEntryPoint: 401 + challenge only for data paths from non-interactive
            # agents; everything else is redirected to the login page.
            data_path = request.path.startswith(("/data/", "/REST/", "/xapi/", "/fs/"))
            if interactive_agent(request.user_agent) or not data_path:
                raise HttpError(302, "", page="text", headers={"Location": "/app/template/Login.vm"})
            raise HttpError(
                401, "Full authentication is required to access this resource", page="tomcat", headers=self._challenge()
            )
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
