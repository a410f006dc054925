"""``xnat-uploader login|logout|prearchive`` end to end against the sandbox (``cli.main`` in-process)."""

from __future__ import annotations

import io
import json
import logging
import socket

import keyring.backends.fail
import pytest

from tests.integration._client_data import make_study
from xnat_uploader import cli
from xnat_uploader.core import credentials, settings
from xnat_uploader.core.credentials import SERVICE, account_name
from xnat_uploader.core.upload_choices import OnExisting
from xnat_uploader.core.xnat import ImportHandler, ImportOptions, XnatClient

PASSWORD = "Cli-Pass-42"


@pytest.fixture
def sandbox(sandbox_factory):
    """A sandbox whose admin password differs from the user name, so leak checks mean something."""
    return sandbox_factory(password=PASSWORD)


@pytest.fixture(autouse=True)
def _fresh_memory():
    credentials.forget_memory()
    yield
    credentials.forget_memory()


def run(monkeypatch, capsys, *argv: str, stdin: str | None = None) -> tuple[int, str, str]:
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def login(monkeypatch, capsys, server, *extra: str, password: str = PASSWORD):
    return run(
        monkeypatch, capsys, "login", "--url", server.url, "--user", "admin", "--password-stdin", *extra,
        stdin=password + "\n",
    )  # fmt: skip


def test_login_stores_server_and_password(sandbox, monkeypatch, capsys, memory_keyring, caplog):
    caplog.set_level(logging.DEBUG)
    code, out, err = login(monkeypatch, capsys, sandbox)
    assert code == 0, err
    assert f"Signed in to {sandbox.url} as admin (XNAT 1.8.10)" in out
    assert "keychain" in out
    assert memory_keyring.entries[(SERVICE, account_name(sandbox.url, "admin"))] == PASSWORD
    saved = settings.load()
    assert saved.current().url == sandbox.url
    assert saved.current().user == "admin"
    assert PASSWORD not in settings.settings_path().read_text()
    assert PASSWORD not in out + err + caplog.text
    assert any(r.method == "DELETE" and r.path == "/data/JSESSION" for r in sandbox.request_log)


def test_login_no_remember(sandbox, monkeypatch, capsys, memory_keyring):
    code, _, _ = login(monkeypatch, capsys, sandbox, "--no-remember")
    assert code == 0
    assert memory_keyring.entries == {}


def test_login_without_secure_keyring_warns(sandbox, monkeypatch, capsys):
    keyring.set_keyring(keyring.backends.fail.Keyring())
    code, out, err = login(monkeypatch, capsys, sandbox)
    assert code == 0
    assert "until the program closes" in err


def test_login_wrong_password(sandbox, monkeypatch, capsys, memory_keyring, caplog):
    caplog.set_level(logging.DEBUG)
    code, out, err = login(monkeypatch, capsys, sandbox, password="nope-wrong-77")
    assert code == 1
    assert "Sign-in failed: XNAT did not accept the user name or password." in err
    assert "nope-wrong-77" not in out + err + caplog.text
    assert memory_keyring.entries == {}
    assert settings.load().servers == []


def test_login_unreachable(monkeypatch, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, _, err = run(
        monkeypatch, capsys, "login", "--url", f"http://127.0.0.1:{port}", "--user", "u", "--password-stdin",
        stdin="pw\n",
    )  # fmt: skip
    assert code == 1
    assert "cannot be reached" in err


def test_login_bad_url_and_empty_password(monkeypatch, capsys):
    code, _, err = run(
        monkeypatch, capsys, "login", "--url", "xnat.example.org", "--user", "u", "--password-stdin", stdin="pw\n"
    )
    assert code == 1
    assert "not valid" in err
    code, _, err = run(
        monkeypatch, capsys, "login", "--url", "http://127.0.0.1:9", "--user", "u", "--password-stdin", stdin="\n"
    )
    assert code == 1
    assert "No password" in err


def test_prearchive_commands(sandbox, monkeypatch, capsys, tmp_path):
    sandbox.add_project("OTHER")
    assert login(monkeypatch, capsys, sandbox)[0] == 0
    with XnatClient(sandbox.url, "admin", PASSWORD) as client:
        refs = []
        for seed, label in ((40, "ONE"), (41, "TWO"), (42, "THREE")):
            study = make_study(tmp_path, seed=seed)
            opts = ImportOptions.for_uploader(ImportHandler.DICOM_ZIP, "DEMO", "SUBJ", label, commit=True)
            refs.append(client.import_data(study.zip_bytes(), opts).prearchive[0])

    # The password now comes from the keyring: no --password-stdin, no --url (current server).
    code, out, err = run(monkeypatch, capsys, "prearchive", "list")
    assert code == 0, err
    assert "SESSION" in out
    assert all(f"DEMO/{r.timestamp}/{r.folder}" in out for r in refs)

    code, out, _ = run(monkeypatch, capsys, "prearchive", "list", "--project", "DEMO", "--json")
    rows = json.loads(out)
    assert code == 0
    assert {r["folder"] for r in rows} == {"ONE", "TWO", "THREE"}
    assert all(r["status"] == "READY" and r["uri"].startswith("/data/prearchive/") for r in rows)

    one, two, three = (f"DEMO/{r.timestamp}/{r.folder}" for r in refs)
    code, out, err = run(monkeypatch, capsys, "prearchive", "archive", one, "--subject", "S9", "--label", "L9")
    assert code == 0, err
    assert "/data/archive/projects/DEMO/subjects/S9/experiments/L9" in out

    code, out, err = run(monkeypatch, capsys, "prearchive", "move", refs[1].uri, "--to-project", "OTHER")
    assert code == 0, err
    assert "Moved" in out

    code, out, err = run(monkeypatch, capsys, "prearchive", "delete", three)
    assert code == 1
    assert "--yes" in err
    code, out, err = run(monkeypatch, capsys, "prearchive", "delete", three, "--yes")
    assert code == 0, err

    code, out, _ = run(monkeypatch, capsys, "prearchive", "list", "--json")
    assert [(r["project"], r["folder"]) for r in json.loads(out)] == [("OTHER", "TWO")]

    code, _, err = run(monkeypatch, capsys, "prearchive", "archive", one)
    assert code == 1
    assert "Archiving DEMO/" in err

    code, _, err = run(monkeypatch, capsys, "prearchive", "list", "--project", "NOSUCH")
    assert code == 1
    assert "NOSUCH" in err


def test_prearchive_archive_overwrite_says_and_does_what_xnat_does(sandbox, monkeypatch, capsys, tmp_path):
    """``--overwrite refuse|add|replace`` (refuse the default, alone: add). XNAT archives one session into an existing
    one whatever ``overwrite`` says; refusing is checked by us, "add" is refused by XNAT when the archived session
    holds these images, "replace" lets it overwrite them."""
    with pytest.raises(SystemExit):
        cli.main(["prearchive", "archive", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for choice in OnExisting:
        assert f"{choice.value}: {choice.archive_short}" in help_text
    assert "--overwrite alone means add" in help_text
    assert login(monkeypatch, capsys, sandbox)[0] == 0

    def upload(n: int) -> str:
        with XnatClient(sandbox.url, "admin", PASSWORD) as client:
            study = make_study(tmp_path / str(n), seed=43)  # the same study each time: the same images
            opts = ImportOptions.for_uploader(ImportHandler.DICOM_ZIP, "DEMO", "SUBJ", "VISIT", commit=True)
            ref = client.import_data(study.zip_bytes(), opts).prearchive[0]
        return f"DEMO/{ref.timestamp}/{ref.folder}"

    code, out, err = run(monkeypatch, capsys, "prearchive", "archive", upload(0))  # nothing there yet: archived
    assert code == 0, err
    again = upload(1)
    seen = len(sandbox.request_log)
    code, _, err = run(monkeypatch, capsys, "prearchive", "archive", again)  # refuse: ours, nothing sent
    assert code == 1
    assert "Nothing was archived: a session VISIT already exists in the archive of DEMO." in err
    assert not any(r.path == "/data/services/archive" for r in sandbox.request_log[seen:])
    code, _, err = run(monkeypatch, capsys, "prearchive", "archive", again, "--overwrite")  # alone: add
    assert code == 1
    assert "The session in the archive already holds some of these images" in err
    assert '"Replace what is already there"' in err
    [row] = [r for r in sandbox.inventory().values() if r["where"] == "prearchive"]
    assert row["status"] == "CONFLICT"
    code, out, err = run(monkeypatch, capsys, "prearchive", "archive", again, "--overwrite", "replace")
    assert code == 0, err
    assert "/data/archive/projects/DEMO/subjects/SUBJ/experiments/VISIT" in out
    sent = [r.form for r in sandbox.request_log[seen:] if r.path == "/data/services/archive"]
    assert len(sent) == 2  # add, then replace
    assert "overwrite" not in sent[0]
    assert "overwrite=delete" in sent[1]
    [entry] = sandbox.inventory().values()
    assert {n for counts in entry["counts"].values() for n in counts.values()} == {2}  # replaced, nothing added twice


def test_prearchive_with_password_stdin_and_no_saved_server(sandbox, monkeypatch, capsys):
    code, out, err = run(
        monkeypatch, capsys, "prearchive", "list", "--url", sandbox.url, "--user", "admin", "--password-stdin",
        stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert code == 0, err
    assert "empty" in out


def test_prearchive_without_any_server(monkeypatch, capsys):
    code, _, err = run(monkeypatch, capsys, "prearchive", "list")
    assert code == 1
    assert "login" in err


def test_logout_forget_password(sandbox, monkeypatch, capsys, memory_keyring):
    assert login(monkeypatch, capsys, sandbox)[0] == 0
    code, out, _ = run(monkeypatch, capsys, "logout", "--forget-password")
    assert code == 0
    assert "Signed out" in out
    assert "removed" in out
    assert memory_keyring.entries == {}
    assert settings.load().current_server is None
    credentials.forget_memory()
    # Without a stored password and no terminal, commands say how to sign in.
    code, _, err = run(monkeypatch, capsys, "prearchive", "list", "--url", sandbox.url, "--user", "admin")
    assert code == 1
    assert "No password" in err


def test_login_to_an_old_server_says_what_is_unavailable(sandbox_factory, monkeypatch, capsys):
    server = sandbox_factory(password=PASSWORD, version="1.8.2")
    code, out, err = login(monkeypatch, capsys, server)
    assert code == 0, err
    assert "(XNAT 1.8.2)" in out
    assert "older than XNAT 1.8.3" in out
