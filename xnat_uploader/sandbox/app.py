"""The sandbox application: state, the security filter, faults and the route table in one place.

``App.handle`` is what the HTTP layer calls for each request: faults first (they act before XNAT
would see the request), then authentication, then the route's handler. Handler modules register
their routes through ``register(router, app)`` functions.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

from xnat_uploader.sandbox.auth import Auth, User
from xnat_uploader.sandbox.faults import FaultInjector, FaultSpec
from xnat_uploader.sandbox.httpd import DropConnection, HttpError, Request, Response, Router
from xnat_uploader.sandbox.store import PrearcSession, Store

log = logging.getLogger(__name__)

# Paths XNAT serves without login: the login and change-password pages, and the form login xnatpy uses.
PUBLIC = ("/app/template/Login.vm", "/app/template/XDATScreen_UpdateUser.vm", "/favicon.ico", "/data/services/auth")


@dataclass
class Settings:
    """Server behaviour knobs that tests and the demo may change."""

    version: str = "1.8.10"
    auto_build_after: float = 300.0  # sessionXmlRebuilderInterval: 5 idle minutes (xnat-api.md 4.6)
    rebuild_tick: float = 1.0  # how often the background rebuilder looks (XNAT: 60 s)
    build_seconds: float = 0.0  # how long an automatic build shows BUILDING (0: at once)
    default_importer: str = "DICOM-zip"  # uiDefaultCompressedUploaderImporter
    inbox_file_delay: float = 0.0  # seconds the inbox import spends on each file (to watch its status)
    # XNAT's requireLogin site setting. False: an open site, where a request without a live session (an
    # expired one included) runs as the guest account instead of getting 401.
    require_login: bool = True
    # Seconds storing one received DICOM file takes while its file lock is held (XNAT writes it and runs the
    # site's anonymization script then): a second request for the same stored name meanwhile gets 400
    # "Concurrent file sends". 0: at once.
    store_seconds: float = 0.0
    # XNAT builds and archives inside the commit (and /data/services/archive) request (xnat-api.md 14): how
    # long that request is held, plus per file, while the row shows BUILDING, then _ARCHIVING (0: at once).
    commit_seconds: float = 0.0
    commit_seconds_per_file: float = 0.0
    # The Direct-Archive trigger only queues the archive job: it runs this many seconds later, in the
    # background (0: right after the answer, still after it). A text here makes that archive fail with it
    # (standing for an anonymization script, database or disk failure): the session moves into the prearchive.
    direct_archive_delay: float = 0.0
    direct_archive_error: str = ""
    # Seconds a session counts as "still receiving" after its last file (XNAT's file locks; the trigger then
    # answers 400). 0: the locks go with the request, as on an idle XNAT.
    lock_linger: float = 0.0
    # GET ?format=json of a prearchive session that is gone: "empty" (200 with an empty table, XNAT 1.8.11's
    # PrearcSessionResource) or "500" (what xnat-api.md 14 reports).
    gone_session_json: str = "empty"

    @property
    def version_tuple(self) -> tuple[int, ...]:
        """``"1.8.10"`` -> ``(1, 8, 10)``, for features that depend on the server version."""
        return tuple(int(p) for p in self.version.split("-")[0].split(".") if p.isdigit())


@dataclass
class LoggedRequest:
    """One entry of the request log: enough to see what a client calls, no secrets."""

    method: str
    path: str
    query: str
    status: int  # 0: carried out, but the answer was dropped (the drop_answer fault)
    user: str
    at: float = field(default_factory=time.time)
    form: str = ""  # the form body's fields as the handler read them (redacted like the query)


class App:
    """Everything behind the HTTP layer."""

    def __init__(self, data_dir: Path, settings: Settings, faults: str | FaultSpec | None, session_timeout: float):
        self.store = Store(data_dir)
        self.settings = settings
        self.auth = Auth(timeout=session_timeout, public=self.store.is_public)
        self.faults = FaultInjector(faults)
        self.auth.expire_after_uses = self.faults.spec.expire_after
        self.router = Router()
        self.request_log: collections.deque[LoggedRequest] = collections.deque(maxlen=5000)
        self._log_lock = threading.Lock()
        self.started = time.time()
        self.anon_scripts: dict[str | None, object] = {}  # project ID (None: site) -> config.AnonScript
        self.series_filters: dict[str | None, object] = {}  # the same, for seriesImportFilter/config
        self.requests_total = 0
        # Requests that make XNAT build/archive, per kind and session: ("commit", "P/TS/FOLDER"),
        # ("archive", ...), ("direct-archive", "P/UID/label"). Counted when they arrive, answered or not.
        self.actions: collections.Counter[tuple[str, str]] = collections.Counter()
        from xnat_uploader.sandbox.inbox import InboxJobs

        self.inbox = InboxJobs(self)  # the inbox import's background requests (/xapi/dicom)
        from xnat_uploader.sandbox import (  # the handler modules import App's types; import them late
            archive,
            config,
            importer,
            inbox,
            listings,
            prearchive,
            resources,
            site,
        )

        for module in (site, importer, inbox, prearchive, archive, listings, resources, config):
            module.register(self.router, self)

    def store_owner(self, session: PrearcSession) -> User:
        """The account background work runs as: the uploader, else the site's received-file user."""
        user = self.auth.users.get(session.owner)
        return user if user is not None else User("system", "", admin=True)

    def set_faults(self, spec: str | FaultSpec | None) -> FaultSpec:
        parsed = self.faults.set(spec)
        self.auth.expire_after_uses = parsed.expire_after
        return parsed

    def handle(self, request: Request) -> Response:
        """Answer one request; exceptions become XNAT-style error pages (never a traceback body)."""
        try:
            self.faults.before(request)
            if request.path not in PUBLIC:
                self.auth.authenticate(request, require_login=self.settings.require_login)
            handler, groups = self.router.resolve(request.method, request.path)
            response = handler(request, **groups)
            if self.faults.answer_lost(request):
                self._log(request, 0)  # carried out, never answered
                raise DropConnection()
        except HttpError as err:
            response = Response.error(err)
        except (ConnectionError, TimeoutError, DropConnection):
            raise
        except Exception as exc:
            # A sandbox bug must still answer like a server would: 500 with a status page.
            # Only the first path segments: later ones can carry labels routed from patient fields.
            log.exception("sandbox handler failed for %s %s", request.method, "/".join(request.path.split("/")[:3]))
            response = Response.error(HttpError(500, f"Internal server error: {type(exc).__name__}"))
        if request.new_cookie:
            response.headers.append(("Set-Cookie", f"JSESSIONID={request.new_cookie}; Path=/; HttpOnly"))
            now = int(time.time() * 1000)
            timeout_ms = int(self.auth.timeout * 1000)
            response.headers.append(("Set-Cookie", f'SESSION_EXPIRATION_TIME="{now},{timeout_ms}"; Path=/'))
        self._log(request, response.status)
        return response

    def _log(self, request: Request, status: int) -> None:
        with self._log_lock:
            self.requests_total += 1
            self.request_log.append(
                LoggedRequest(
                    request.method,
                    request.path,
                    _redact(request.query_string),
                    status,
                    request.user.login if request.user else "",
                    form=_redact(urlencode(request.form)) if request.form else "",
                )
            )

    def action_counts(self) -> dict[tuple[str, str], int]:
        with self._log_lock:
            return dict(self.actions)

    def count_action(self, kind: str, key: str) -> None:
        """Count a request that makes XNAT build or archive a session (see :attr:`actions`)."""
        with self._log_lock:
            self.actions[(kind, key)] += 1


def _redact(query: str) -> str:
    """Query strings in the request log never keep passwords or tokens."""
    parts = []
    for item in query.split("&"):
        key = item.split("=", 1)[0]
        parts.append(f"{key}=***" if key.lower() in ("password", "xnat_csrf", "token", "secret") else item)
    return "&".join(parts)
