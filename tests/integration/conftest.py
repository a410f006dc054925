"""Fixtures for integration tests: a real sandbox server on loopback.

``sandbox`` is a started :class:`~xnat_uploader.sandbox.server.SandboxServer` (admin/admin, project
DEMO, its own data folder); ``sandbox_factory(**options)`` starts one with options. What tests can
reach on a server:

* ``server.url``, ``server.data_dir``, ``server.inventory()`` (per session: project, subject, label,
  where, ``series`` {series_uid: {sop_uid: sha256}}, ``counts`` {series_uid: {sop_uid: copies}},
  ``files``, ``resources``), ``server.request_log`` (method, path, redacted query, status, user);
* accounts: ``users={"alice": ("pw", ["DEMO"])}`` or ``server.add_user("alice", "pw", projects=[...])``
  (a non-admin reads and edits only those projects: no Unassigned rows, hidden projects are 404);
* projects: ``projects=("A", "B")`` or ``server.add_project("P", prearchive_code=4)`` (0 manual,
  4 auto-archive -> commit answers 301 and the archive service 303, 5 auto-archive overwrite);
* version: ``version="1.8.2"`` (buildInfo; 1.8.3 parameters are then ignored as by an old XNAT);
* sessions: ``session_timeout=0.3`` (idle expiry, seconds), ``server.expire_sessions()``,
  ``max_sessions=N`` (XNAT's per-user cap), ``server.stats["logins"]`` (sessions created);
* an open site: ``require_login=False`` (no live session -> the ``guest`` user, who reads projects added with
  ``accessibility="public"`` only and writes nothing; its imports land in Unassigned);
  ``server.expire_password("alice")`` (her next sign-in gets 302 to XNAT's change-password page);
* faults: ``faults="http500_every=3,path=/data/services/import"`` or ``server.set_faults(...)`` /
  ``server.faults = None`` on a running server; syntax in :mod:`xnat_uploader.sandbox.faults`;
* timers: ``auto_build_after=0.2, rebuild_tick=0.05`` (XNAT builds idle RECEIVING sessions after
  5 minutes), ``server.settings.build_seconds`` (how long an automatic build shows BUILDING);
* ``server.set_anon_script(text, project=None, enabled=True)`` for the anonymization config endpoints;
  ``server.set_series_filter("localizer\nscout", mode="blacklist", project=None, enabled=True)`` for a
  series import filter (published by the config service and applied to gradual and zip imports);
* gradual 400s that hide server faults: ``faults="gradual400_every=3"``, ``gradual400_at=N``,
  ``gradual400_sop=UID``; ``server.settings.store_seconds`` (how long XNAT's file lock is held per file).
* inbox imports run in the background: ``server.settings.inbox_file_delay`` (seconds per file) slows them.
* slow XNAT steps (xnat-api.md 14): ``server.settings.commit_seconds`` / ``commit_seconds_per_file`` hold a
  commit or ``/data/services/archive`` request (BUILDING, then a locked ``_ARCHIVING``);
  ``direct_archive_delay`` / ``direct_archive_error`` for the queued Direct-Archive; ``lock_linger``
  (trigger answers 400); ``gone_session_json`` ("empty" or "500"); ``server.action_count("commit")``
  counts commit requests (also ``"archive"``, ``"direct-archive"``), answered or not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from xnat_uploader.core.xnat import ConnectionOptions, XnatClient
from xnat_uploader.sandbox.server import SandboxServer


@pytest.fixture
def sandbox_factory(tmp_path_factory) -> Iterator[Callable[..., SandboxServer]]:
    """Start sandboxes with options, e.g. ``sandbox_factory(faults="http500_every=2", projects=("A", "B"))``.

    Every server gets its own data folder and is stopped after the test.
    """
    started: list[SandboxServer] = []

    def make(**options) -> SandboxServer:
        options.setdefault("data_dir", tmp_path_factory.mktemp("sandbox"))
        server = SandboxServer(**options).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def sandbox(sandbox_factory) -> SandboxServer:
    """A started sandbox (admin/admin, project DEMO) on a fresh data folder."""
    return sandbox_factory()


@pytest.fixture
def cli_env(tmp_path, monkeypatch) -> None:
    """Commands run in this process: their own settings folder, and the sandbox's password in ``XNAT_PASS``."""
    monkeypatch.setenv("XNAT_UPLOADER_CONFIG_DIR", str(tmp_path / "app"))
    monkeypatch.setenv("XNAT_PASS", "admin")


@pytest.fixture
def client(sandbox) -> Iterator[XnatClient]:
    """A signed-in client of ``sandbox`` as its admin."""
    with XnatClient(sandbox.url, "admin", "admin", ConnectionOptions(pool_size=2)) as c:
        c.connect()
        yield c
