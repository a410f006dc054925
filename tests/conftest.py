"""Test isolation: offscreen Qt, a private settings dir, an in-memory keyring, loopback-only sockets."""

from __future__ import annotations

import ipaddress
import logging
import os
import socket

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before any QApplication exists

import keyring  # noqa: E402
import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402
from keyring.backend import KeyringBackend  # noqa: E402

# Property tests (tests/security) draw the same examples on every run, so the suite and CI pass or fail alike;
# HYPOTHESIS_PROFILE=explore draws new ones each run (and keeps failures in .hypothesis/) to look further.
settings.register_profile("repeatable", derandomize=True, database=None)
settings.register_profile("explore")
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


class MemoryKeyring(KeyringBackend):
    """A keyring that lives in memory, so no test touches a real keychain."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.entries.pop((service, username), None)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Settings, queue and logs under a fresh folder; HOME and XDG dirs too."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("XNAT_UPLOADER_CONFIG_DIR", str(home / "app"))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XNAT_PASS", raising=False)  # a developer's own password never leaks into a test
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
        monkeypatch.setenv(var, str(home / var.lower()))
    return home


@pytest.fixture(autouse=True)
def _root_logger_restored():
    """Whatever a test configures on the root logger (``xnat_uploader.log.setup`` through ``cli.main``, say)
    is undone after it: its file handler would otherwise outlive the test's home folder and be the
    "current log" of every later test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    configured = root.__dict__.get("_xnat_uploader_configured", False)
    yield
    for handler in list(root.handlers):
        # Only the app's own handlers: pytest attaches and removes its capture handlers per test phase.
        ours = isinstance(handler, logging.FileHandler) or type(handler).__module__ == "xnat_uploader.log"
        if ours and handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)
    root._xnat_uploader_configured = configured  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def memory_keyring():
    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


def _is_local(address) -> bool:
    if not isinstance(address, tuple):
        return True  # AF_UNIX paths
    host = address[0]
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch):
    """Fail any test that tries to reach beyond this machine."""
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def connect(self, address):
        if not _is_local(address):
            raise AssertionError(f"test tried to reach a non-loopback address: {address!r}")
        return real_connect(self, address)

    def connect_ex(self, address):
        if not _is_local(address):
            raise AssertionError(f"test tried to reach a non-loopback address: {address!r}")
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
