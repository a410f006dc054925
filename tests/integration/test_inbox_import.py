"""The inbox import as a background job: the sandbox's ``/xapi/dicom``, ``follow_inbox`` and the ``inbox`` command."""

from __future__ import annotations

import json
import re
import shutil
import threading
import time

import pytest

from tests.integration._client_data import make_study
from tests.integration.sandbox_data import Api, h3
from xnat_uploader.cli import main
from xnat_uploader.core.errors import Cancelled
from xnat_uploader.core.xnat import ImportHandler, ImportOptions, XnatClient
from xnat_uploader.core.xnat import errors as E

pytestmark = pytest.mark.usefixtures("cli_env")


def inbox_folder(sandbox, tmp_path, name: str, seed: int, project: str = "DEMO"):
    """A folder of one synthetic study (2 series x 3 files) in the sandbox's inbox for ``project``."""
    folder = sandbox.data_dir / "inbox" / project / name
    folder.mkdir(parents=True)
    study = make_study(tmp_path, seed=seed)
    for f in study.files:
        shutil.copy(f.path, folder / f"{f.sop_instance_uid}.dcm")
    return folder, study


def start(client, folder, **kw) -> str:
    opts = ImportOptions(handler=ImportHandler.INBOX, project="DEMO", inbox_path=str(folder), **kw)
    uri = client.import_data(None, opts).uri
    assert uri is not None
    assert uri.startswith("/xapi/dicom/")
    return uri


def cli(sandbox, capsys, *args: str) -> tuple[int, str, str]:
    code = main([*args, "--url", sandbox.url, "--user", "admin", "--interval", "0.05"])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_status_changes_are_seen_and_the_session_lands_in_the_prearchive(sandbox, client, tmp_path):
    folder, study = inbox_folder(sandbox, tmp_path, "visit1", seed=61)
    sandbox.settings.inbox_file_delay = 0.1
    uri = start(client, folder, session="IN1")
    seen = []
    final = client.follow_inbox(uri, interval=0.02, timeout=20, on_status=lambda s: seen.append(s.status))
    assert seen[0] in ("Queued", "Importing")
    assert "Importing" in seen
    assert seen[-1] == "Completed"
    assert len(seen) == len(set(seen))  # on_status only when the status changes
    assert final.done
    assert not final.failed
    assert final.session_path == str(folder.resolve())
    (row,) = client.prearchive("DEMO")
    assert row.name == "IN1"
    assert "Imported 6 DICOM files into 1 session(s)" in final.resolution
    assert f"/prearchive/projects/DEMO/{row.timestamp}/{row.folder}" in final.resolution
    assert sum(scan.file_count or 0 for scan in client.prearchive_scans(row.ref)) == len(study.files) == 6
    assert not folder.exists()  # cleanupAfterImport defaults to true


def test_the_request_json_and_who_may_see_it(sandbox, client, tmp_path):
    sandbox.add_user("alice", "pw", projects=["DEMO"])
    sandbox.add_user("bob", "pw", projects=["DEMO"])
    alice, bob, admin = Api(sandbox.url, "alice", "pw"), Api(sandbox.url, "bob", "pw"), Api(sandbox.url)
    first, _ = inbox_folder(sandbox, tmp_path, "a", seed=62)
    second, _ = inbox_folder(sandbox, tmp_path, "b", seed=63)
    sandbox.settings.inbox_file_delay = 0.1
    uris = []
    for folder in (first, second):
        params = {"import-handler": "inbox", "PROJECT_ID": "DEMO", "path": str(folder), "cleanupAfterImport": "false"}
        r = alice.post("/data/services/import", params=params)
        assert r.status_code == 200, r.text
        uris.append(r.text.strip())
    deadline = time.monotonic() + 5
    while alice.get(uris[0]).json()["status"] == "Queued" and time.monotonic() < deadline:
        time.sleep(0.01)  # the worker picks the first request up
    active = alice.get("/xapi/dicom/list/active").json()
    assert [j["status"] for j in active] == ["Importing", "Queued"]  # one import at a time
    job = active[1]
    assert set(job) == {
        "id", "enabled", "created", "timestamp", "disabled", "username", "parameters", "sessionPath", "status",
        "cleanupAfterImport", "resolution",
    }  # fmt: skip
    assert (job["username"], job["cleanupAfterImport"], job["resolution"]) == ("alice", False, None)
    assert job["parameters"]["import-handler"] == "inbox"
    assert job["sessionPath"] == str(second.resolve())
    assert uris[1] == f"/xapi/dicom/{job['id']}"

    assert bob.get(uris[0]).status_code == 404  # another user's request
    assert bob.get("/xapi/dicom/list/all").json() == []
    assert admin.get(uris[0]).json()["username"] == "alice"  # site admins see all
    assert alice.get("/xapi/dicom/999").status_code == 404

    assert alice.wait_job(uris[1])["status"] == "Completed"
    assert alice.get("/xapi/dicom/list/active").json() == []
    assert [j["status"] for j in alice.get("/xapi/dicom/list/all").json()] == ["Completed", "Completed"]
    assert len(admin.get("/xapi/dicom/list/all").json()) == 2


def test_no_dicom_fails_with_a_resolution_and_the_command_exits_1(sandbox, client, capsys, tmp_path):
    folder = sandbox.data_dir / "inbox" / "DEMO" / "notes"
    folder.mkdir(parents=True)
    (folder / "readme.txt").write_text("no images here")
    status = client.follow_inbox(start(client, folder), interval=0.02, timeout=10)
    assert status.failed
    assert "No DICOM files were found" in status.resolution
    assert folder.exists()  # a failed import leaves its source

    code, out, err = cli(sandbox, capsys, "inbox", str(folder), "-P", "DEMO")
    assert code == 1
    assert out == ""
    assert "Inbox import failed: No DICOM files were found" in err
    assert ": Failed" in err


def test_cancel_returns_within_a_second(sandbox, client, tmp_path):
    folder, _ = inbox_folder(sandbox, tmp_path, "slow", seed=64)
    sandbox.settings.inbox_file_delay = 0.5
    uri = start(client, folder)
    cancel, seen, outcome = threading.Event(), threading.Event(), {}

    def follow():
        try:
            client.follow_inbox(uri, interval=30, cancel=cancel, on_status=lambda s: seen.set())
        except Cancelled:
            outcome["cancelled_at"] = time.monotonic()

    worker = threading.Thread(target=follow)
    worker.start()
    assert seen.wait(5)
    cancelled = time.monotonic()
    cancel.set()
    worker.join(5)
    assert outcome["cancelled_at"] - cancelled < 1.0
    assert client.inbox_status(uri).status in ("Queued", "Importing")  # the job goes on without us


def test_stopping_the_server_ends_a_running_import(sandbox_factory, tmp_path):
    server = sandbox_factory()
    folder, _ = inbox_folder(server, tmp_path, "slow", seed=65)
    server.settings.inbox_file_delay = 5
    with XnatClient(server.url, "admin", "admin") as c:
        uri = start(c, folder)
        assert c.inbox_status(uri).status in ("Queued", "Importing")
    began = time.monotonic()
    server.stop()
    assert time.monotonic() - began < 3
    assert not [t for t in threading.enumerate() if t.name == "sandbox-inbox"]


def test_unknown_job_and_time_out(sandbox, client, tmp_path):
    with pytest.raises(E.ProgressUnavailableError, match="does not report its progress"):
        client.follow_inbox("/xapi/dicom/4242", interval=0.02)
    with pytest.raises(ValueError, match="inbox"):
        client.inbox_status("/data/prearchive")
    folder, _ = inbox_folder(sandbox, tmp_path, "slow", seed=66)
    sandbox.settings.inbox_file_delay = 0.3
    with pytest.raises(E.StillRunningError, match="still"):
        client.follow_inbox(start(client, folder), interval=0.05, timeout=0.3)


def test_command_no_wait_json_and_time_out(sandbox, client, capsys, tmp_path):
    folder, _ = inbox_folder(sandbox, tmp_path, "v1", seed=67)
    code, out, err = cli(sandbox, capsys, "inbox", str(folder), "-P", "DEMO", "--no-wait", "--keep-source")
    assert code == 0, err
    (uri,) = out.split()
    assert uri.startswith("/xapi/dicom/")
    assert ": Completed" not in err  # not followed
    assert Api(sandbox.url).wait_job(uri)["status"] == "Completed"

    sandbox.settings.inbox_file_delay = 0.2
    code, out, err = cli(sandbox, capsys, "inbox", str(folder), "-P", "DEMO", "-E", "SLOW", "--wait-timeout", "0.3")
    assert code == 1
    assert "is still Importing after 0.3 s" in err
    sandbox.settings.inbox_file_delay = 0
    slow = re.search(r"started: (/xapi/dicom/\d+)", err).group(1)
    assert Api(sandbox.url).wait_job(slow)["status"] == "Completed"

    folder, _ = inbox_folder(sandbox, tmp_path, "v3", seed=68)
    code, out, err = cli(sandbox, capsys, "inbox", str(folder), "-P", "DEMO", "-E", "J1", "--json")
    assert code == 0, err
    data = json.loads(out)
    (row,) = [r for r in client.prearchive("DEMO") if r.name == "J1"]
    assert (data["status"], data["sessions"]) == ("Completed", [f"/data{row.url}"])
    assert "Imported 6 DICOM files" in data["resolution"]


def test_a_path_outside_the_inbox_is_refused_at_once(sandbox, tmp_path):
    api = Api(sandbox.url)
    params = {"import-handler": "inbox", "PROJECT_ID": "DEMO", "path": str(tmp_path)}
    r = api.post("/data/services/import", params=params)
    assert r.status_code == 400
    assert h3(r).startswith("You must specify a valid path")
    assert api.get("/xapi/dicom/list/all").json() == []  # no job was recorded
