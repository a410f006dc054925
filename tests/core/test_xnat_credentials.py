"""Credentials (keyring wrapper with an in-memory fallback), secrets that never show, settings on disk."""

from __future__ import annotations

import json
import logging
import pickle

import keyring
import keyring.backends.fail
import keyring.backends.null
import pytest
from keyring.errors import KeyringLocked

from xnat_uploader.core import credentials, settings
from xnat_uploader.core.credentials import SERVICE, CredentialStore, account_name
from xnat_uploader.core.secret import Secret
from xnat_uploader.core.settings import ServerEntry, Settings
from xnat_uploader.core.xnat import XnatClient
from xnat_uploader.core.xnat.session import XnatSession

PASSWORD = "s3cret-Pa55!"
URL = "https://xnat.example.org/xnat/"


@pytest.fixture(autouse=True)
def _fresh_memory():
    credentials.forget_memory()
    yield
    credentials.forget_memory()


def test_secret_never_shows():
    s = Secret(PASSWORD)
    for text in (str(s), repr(s), f"{s}", f"{s!r}", f"{s:>20}", str([s]), str({"p": s})):
        assert PASSWORD not in text
    assert s.reveal() == PASSWORD
    assert Secret(s) == s
    assert bool(s)
    with pytest.raises(TypeError):
        pickle.dumps(s)


def test_account_name_normalises_the_url():
    assert account_name(URL, "jdoe") == "jdoe@https://xnat.example.org/xnat"


def test_round_trip_in_a_secure_keyring(memory_keyring):
    store = CredentialStore()
    assert store.secure
    assert store.warning is None
    outcome = store.set(URL, "jdoe", PASSWORD)
    assert outcome.remembered
    assert outcome.where == "keyring"
    assert memory_keyring.entries[(SERVICE, "jdoe@https://xnat.example.org/xnat")] == PASSWORD
    credentials.forget_memory()  # a new process: only the keyring knows it
    assert store.get(URL, "jdoe") == Secret(PASSWORD)
    assert store.forget(URL, "jdoe") is True
    assert store.get(URL, "jdoe") is None
    assert store.forget(URL, "jdoe") is False


def test_no_remember_keeps_it_in_memory_only(memory_keyring):
    store = CredentialStore()
    assert store.set(URL, "jdoe", PASSWORD, remember=False).where == "memory"
    assert memory_keyring.entries == {}
    assert store.get(URL, "jdoe") == Secret(PASSWORD)


@pytest.mark.parametrize("backend", [keyring.backends.fail.Keyring, keyring.backends.null.Keyring])
def test_insecure_backend_falls_back_to_memory_with_a_warning(backend, caplog):
    keyring.set_keyring(backend())  # the autouse fixture restores the previous backend
    store = CredentialStore()
    assert not store.secure
    caplog.set_level(logging.DEBUG)
    outcome = store.set(URL, "jdoe", PASSWORD)
    assert outcome.where == "memory"
    assert not outcome.remembered
    assert outcome.warning
    assert "until the program closes" in outcome.warning
    assert store.warning == outcome.warning
    assert store.get(URL, "jdoe") == Secret(PASSWORD)  # this process still has it
    credentials.forget_memory()
    assert store.get(URL, "jdoe") is None  # nothing survived elsewhere
    assert store.forget(URL, "jdoe") is False
    assert PASSWORD not in caplog.text


class LockedKeyring(keyring.backend.KeyringBackend):
    priority = 1  # type: ignore[assignment]

    def get_password(self, service, username):
        raise KeyringLocked("locked")

    def set_password(self, service, username, password):
        raise KeyringLocked(f"could not store {password}")  # a careless backend: we must not relay this text

    def delete_password(self, service, username):
        raise KeyringLocked("locked")


def test_keyring_errors_are_caught_and_never_leak(caplog):
    caplog.set_level(logging.DEBUG)
    store = CredentialStore(LockedKeyring())
    assert store.get(URL, "jdoe") is None
    outcome = store.set(URL, "jdoe", PASSWORD)
    assert outcome.where == "memory"
    assert "KeyringLocked" in (outcome.warning or "")
    assert PASSWORD not in (outcome.warning or "")
    assert store.get(URL, "jdoe") == Secret(PASSWORD)
    assert store.forget(URL, "jdoe") is False
    assert PASSWORD not in caplog.text
    assert PASSWORD not in repr(store)


def test_client_and_session_reprs_hide_the_password():
    client = XnatClient(URL, "jdoe", PASSWORD)
    session = XnatSession(URL, "jdoe", Secret(PASSWORD))
    for text in (repr(client), str(client), repr(session), str(vars(session))):
        assert PASSWORD not in text
    client.close()
    session.close()


# --- settings -----------------------------------------------------------------------------------------


def test_settings_round_trip_without_secrets(tmp_path):
    path = tmp_path / "settings.json"
    s = Settings()
    s.upsert(ServerEntry(URL, "jdoe", verify_tls=False, ca_bundle="ca.pem"))
    s.current_server = URL.rstrip("/")
    s.extra["password"] = PASSWORD  # even if something puts one in, it is not written
    settings.save(s, path)
    text = path.read_text()
    assert PASSWORD not in text
    data = json.loads(text)
    assert data["schema_version"] == settings.SCHEMA_VERSION
    assert data["servers"] == [
        {"name": "xnat.example.org/xnat", "url": "https://xnat.example.org/xnat", "user": "jdoe",
         "verify_tls": False, "ca_bundle": "ca.pem", "dicom_host": "", "dicom_port": 0, "called_aet": "",
         "calling_aet": "", "commit_timeout": 660.0, "archive_wait": 1800.0, "plain_http_ok": False}
    ]  # fmt: skip
    loaded = settings.load(path)
    assert loaded.servers == s.servers
    assert loaded.current() == s.servers[0]
    assert not loaded.warnings
    assert list(tmp_path.iterdir()) == [path]  # no temp files left behind


def test_settings_default_location_is_the_config_dir():
    s = Settings(servers=[ServerEntry("http://127.0.0.1:8080", "admin")])
    path = settings.save(s)
    assert path.parent.name == "config"
    assert path.name == "settings.json"
    assert settings.load().servers == s.servers


def test_missing_file_gives_defaults(tmp_path):
    loaded = settings.load(tmp_path / "nope.json")
    assert loaded.servers == []
    assert loaded.warnings == []


@pytest.mark.parametrize("content", ["{not json", "[]", '{"servers": "x"}', '{"servers": [{"url": 3}]}'])
def test_corrupt_file_is_backed_up_and_replaced(tmp_path, content, caplog):
    path = tmp_path / "settings.json"
    path.write_text(content)
    loaded = settings.load(path)
    assert loaded.servers == []
    assert loaded.warnings
    assert "reset to defaults" in loaded.warnings[0]
    backups = list(tmp_path.glob("settings.json.corrupt-*"))
    assert len(backups) == 1
    assert backups[0].read_text() == content
    assert not path.exists()
    settings.save(loaded, path)
    assert settings.load(path).warnings == []


def test_newer_schema_keeps_unknown_keys(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"schema_version": 99, "servers": [], "future": {"a": 1}}))
    loaded = settings.load(path)
    assert loaded.warnings
    assert loaded.extra == {"future": {"a": 1}}
    settings.save(loaded, path)
    assert json.loads(path.read_text())["future"] == {"a": 1}


def test_upsert_replaces_by_url_and_remove():
    s = Settings()
    s.upsert(ServerEntry("https://h/", "a"))
    s.upsert(ServerEntry("https://H", "b"))
    assert [e.user for e in s.servers] == ["b"]
    s.current_server = "https://h"
    assert s.remove("https://h/")
    assert s.current_server is None
    assert not s.remove("https://h")


def test_server_entry_gives_client_options():
    entry = ServerEntry("https://h", "u", verify_tls=False, ca_bundle="ca.pem")
    options = entry.connection_options(workers=6, read_timeout=5)
    assert (options.verify_tls, options.ca_bundle, options.pool_size) == (False, "ca.pem", 6)
    assert options.timeout == (5, 5)
    assert ServerEntry("https://h", "u").connection_options().timeout == (10.0, 120.0)
