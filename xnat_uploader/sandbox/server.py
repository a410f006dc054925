"""``SandboxServer``: start an XNAT-compatible server on loopback, in background threads.

    with SandboxServer(tmp_path, projects=("DEMO",)) as server:
        requests.get(server.url + "/data/projects", auth=("admin", "admin"))
        server.inventory()       # what arrived, per session, with SHA-256 per SOP instance
        server.set_faults("http500_every=3")

Behaviour follows ``xnat-api.md``; see :mod:`xnat_uploader.sandbox.faults` for the fault syntax.
With ``dicom_port`` (0: any free port) a C-STORE receiver (:mod:`xnat_uploader.sandbox.dicom_scp`)
runs next to the HTTP server: ``server.dicom_port``, ``server.dicom`` (its stats, allowed calling AEs).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType

from xnat_uploader.sandbox import persist as persist_state
from xnat_uploader.sandbox.app import App, LoggedRequest, Settings
from xnat_uploader.sandbox.auth import User
from xnat_uploader.sandbox.dicom_scp import DicomReceiver
from xnat_uploader.sandbox.faults import FaultSpec
from xnat_uploader.sandbox.httpd import SandboxHTTPServer
from xnat_uploader.sandbox.prearchive import AutoBuilder

log = logging.getLogger(__name__)


class SandboxServer:
    """An XNAT stand-in. ``data_dir`` None -> a temporary folder removed on :meth:`stop`.

    ``user``/``password`` is the site administrator; ``users={"alice": ("pw", ["DEMO"])}`` (or
    :meth:`add_user`) adds non-admin accounts that may read and edit only the projects listed.
    ``version`` is what ``/xapi/siteConfig/buildInfo`` reports (e.g. ``"1.7.6"`` for "server too
    old"). ``auto_build_after`` is XNAT's idle time before RECEIVING sessions are built (300 s);
    tests lower it. :meth:`add_project` takes a ``prearchive_code`` (0, 4 auto-archive, 5 overwrite).
    With a ``data_dir`` of the caller's, the metadata is saved to ``state.json`` on :meth:`stop` and
    restored by the next server on that folder (``persist=False`` turns this off). ``dicom_port``
    (0: any free port) also runs XNAT's DICOM C-STORE receiver with AE title ``ae_title``.
    ``require_login=False`` makes an open site: requests without a live session (an expired one too) run as
    the guest account, who reads only projects added with ``accessibility="public"`` and writes nothing.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        user: str = "admin",
        password: str = "admin",
        projects: Iterable[str] = ("DEMO",),
        faults: str | FaultSpec | None = None,
        session_timeout: float = 900.0,
        max_sessions: int = 1000,
        users: Mapping[str, tuple[str, Iterable[str]]] | None = None,
        version: str = "1.8.10",
        auto_build_after: float = 300.0,
        rebuild_tick: float = 1.0,
        persist: bool = True,
        dicom_port: int | None = None,
        ae_title: str = "XNAT",
        require_login: bool = True,
    ):
        self._owns_dir = data_dir is None
        self.data_dir = Path(data_dir) if data_dir is not None else Path(tempfile.mkdtemp(prefix="xnat-sandbox-"))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.host, self.port = host, port
        settings = Settings(
            version=version, auto_build_after=auto_build_after, rebuild_tick=rebuild_tick, require_login=require_login
        )
        self.app = App(self.data_dir, settings, faults, session_timeout)
        # A folder of our own (not a temporary one) keeps its metadata across restarts: state.json.
        self._persist = persist and not self._owns_dir
        self.restored = self._persist and persist_state.load(self.app.store)
        self.app.auth.max_sessions = max_sessions
        self.admin = self.app.auth.add_user(user, password, admin=True)
        for project in projects:
            if project not in self.app.store.projects:  # restored projects keep their settings
                self.add_project(project)
        for login, (secret, member_of) in (users or {}).items():
            self.add_user(login, secret, projects=member_of)
        self._httpd: SandboxHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._builder: AutoBuilder | None = None
        self.url = ""
        # XNAT's DICOM receiver files as the site's "received file user", normally an administrator.
        self.dicom: DicomReceiver | None = None
        if dicom_port is not None:
            self.dicom = DicomReceiver(self.app, self.admin, host=host, port=dicom_port, ae_title=ae_title)

    # -- set-up helpers -------------------------------------------------------------------------
    def add_project(
        self,
        project_id: str,
        *,
        name: str | None = None,
        prearchive_code: int = 0,
        aliases: Iterable[str] = (),
        description: str = "",
        accessibility: str = "private",
    ) -> None:
        """Create a project (``prearchive_code`` 0 manual, 4 auto-archive, 5 auto-archive overwrite;
        ``accessibility`` "private" as XNAT's default, "protected", or "public": readable by everyone)."""
        if accessibility not in ("private", "protected", "public"):
            raise ValueError(f"accessibility must be private, protected or public, not {accessibility!r}")
        self.app.store.add_project(
            project_id,
            name=name or project_id,
            prearchive_code=prearchive_code,
            aliases=list(aliases),
            description=description,
            accessibility=accessibility,
        )

    def add_user(self, login: str, password: str, *, projects: Iterable[str] = (), admin: bool = False) -> User:
        """Add an account; a non-admin may read and edit only ``projects``."""
        return self.app.auth.add_user(login, password, admin=admin, projects=set(projects))

    def set_anon_script(self, contents: str, project: str | None = None, enabled: bool = True) -> None:
        """Store a site-wide (``project=None``) or project anonymization script for the config endpoints."""
        from xnat_uploader.sandbox.config import make_script

        scripts = self.app.anon_scripts
        scripts[project] = make_script(contents, enabled, scripts.get(project))  # type: ignore[arg-type]

    def set_series_filter(
        self, patterns: str, *, mode: str = "blacklist", project: str | None = None, enabled: bool = True
    ) -> None:
        """Store a site-wide (``project=None``) or project series import filter, as XNAT's config service holds
        it (``{"mode": ..., "list": ...}``; one regular expression per line, ``[Field]`` lines switch the
        field). Enabled, it drops matching files on arrival (:mod:`xnat_uploader.sandbox.filters`)."""
        import json

        from xnat_uploader.sandbox.config import make_script

        contents = json.dumps({"mode": mode, "list": patterns})
        configs = self.app.series_filters
        configs[project] = make_script(contents, enabled, configs.get(project))  # type: ignore[arg-type]

    def set_faults(self, spec: str | FaultSpec | None) -> FaultSpec:
        """Change faults on a running server (counters restart); ``None``/``""`` turns them off."""
        return self.app.set_faults(spec)

    @property
    def faults(self) -> FaultSpec:
        """The active faults; assign a spec string (or FaultSpec, or None) to change them."""
        return self.app.faults.spec

    @faults.setter
    def faults(self, spec: str | FaultSpec | None) -> None:
        self.app.set_faults(spec)

    def expire_password(self, login: str, expired: bool = True) -> None:
        """Let ``login``'s password expire: signing in then answers 302 to XNAT's change-password page.

        As in XNAT, a server session that was already open goes on working (the filter decides once per
        session); the redirect comes at the next sign-in, e.g. after :meth:`expire_sessions`.
        """
        self.app.auth.users[login].password_expired = expired

    def expire_sessions(self) -> int:
        """Invalidate every live JSESSIONID now (the next request with one gets 401); returns how many."""
        return self.app.auth.invalidate_all()

    @property
    def stats(self) -> dict[str, int]:
        """Counters for tests: ``logins`` (sessions created), ``live_sessions``, ``requests`` answered,
        and the faults injected so far (``http500``, ``drop``, ``slow``, ``gradual400``)."""
        return {
            "logins": self.app.auth.logins,
            "live_sessions": self.app.auth.live_sessions(),
            "requests": self.app.requests_total,
            **self.app.faults.injected,
        }

    @property
    def settings(self) -> Settings:
        """Live knobs: ``version``, ``auto_build_after``, ``default_importer``..."""
        return self.app.settings

    @property
    def request_log(self) -> list[LoggedRequest]:
        """Requests answered so far (method, path, redacted query, status, user), oldest first."""
        return list(self.app.request_log)

    @property
    def actions(self) -> dict[tuple[str, str], int]:
        """Requests that made XNAT build or archive, per ``(kind, session)``: ``("commit", "P/TS/FOLDER")``,
        ``("archive", "P/TS/FOLDER")``, ``("direct-archive", "P/UID/label")``; counted on arrival, even
        when the answer was dropped."""
        return self.app.action_counts()

    def action_count(self, kind: str) -> int:
        """How many requests of one kind (``"commit"``, ``"archive"``, ``"direct-archive"``) arrived."""
        return sum(n for (k, _), n in self.actions.items() if k == kind)

    def inventory(self) -> dict[str, dict]:
        """What arrived, per session (prearchive, direct-archive and archive); see ``Store.inventory``."""
        return self.app.store.inventory()

    # -- life cycle ---------------------------------------------------------------------------
    def start(self) -> SandboxServer:
        """Bind and serve in background threads; returns at once with :attr:`url` set."""
        if self._httpd is not None:
            return self
        self._httpd = SandboxHTTPServer((self.host, self.port), self.app)
        host, port = self._httpd.server_address[:2]
        self.port = port
        self.url = f"http://{host}:{port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=f"sandbox-http-{port}", daemon=True
        )
        self._thread.start()
        self._builder = AutoBuilder(self.app)
        self._builder.start()
        if self.dicom is not None:
            try:
                self.dicom.start()
            except OSError:  # e.g. the DICOM port is taken: leave nothing half running
                self.stop()
                raise
        log.info("sandbox serving at %s", self.url)
        return self

    @property
    def dicom_port(self) -> int | None:
        """The C-STORE receiver's port (the bound one after :meth:`start`), or None without one."""
        return self.dicom.port if self.dicom is not None else None

    def stop(self) -> None:
        """Stop serving, close connections, and remove the data folder if it was a temporary one."""
        if self.dicom is not None:
            self.dicom.stop()  # first: no instance may arrive while the state is saved
        if self._builder is not None:
            self._builder.stop()
            self._builder = None
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.close_all_connections()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.app.inbox.stop()  # after the HTTP side: no new inbox request can arrive now
        if self._persist:
            persist_state.save(self.app.store)
        if self._owns_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def serve_forever(self) -> None:
        """Start and block until interrupted (the command line uses this)."""
        self.start()
        assert self._thread is not None
        try:
            while self._thread.is_alive():
                self._thread.join(timeout=0.5)
        finally:
            self.stop()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"SandboxServer(url={self.url!r}, data_dir={str(self.data_dir)!r})"
