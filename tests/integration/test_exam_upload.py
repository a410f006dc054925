"""``upload --with-resources``: an exam folder's DICOM becomes the session, its other items resources of it."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path

import pytest

from tests.exam_data import PDF, make_exam
from xnat_uploader import paths
from xnat_uploader.cli import main
from xnat_uploader.core.attach import (
    OPT_RESOURCE_OVERWRITE,
    Attachment,
    attach_items,
    attach_pending,
    pending_attachments,
    wait_until_archived,
)
from xnat_uploader.core.errors import Cancelled
from xnat_uploader.core.queue.store import JobState, QueueStore
from xnat_uploader.core.xnat import PrearchiveRef
from xnat_uploader.core.xnat.listing import experiment_path
from xnat_uploader.sandbox.synthetic import write_corpus

pytestmark = pytest.mark.usefixtures("cli_env")


@pytest.fixture
def exam(tmp_path) -> Path:
    return make_exam(tmp_path / "exam", dicomdir=False)


def cli(sandbox, capsys, *args: str) -> tuple[int, str, str]:
    code = main([*args, "--url", sandbox.url, "--user", "admin"])
    out = capsys.readouterr()
    return code, out.out, out.err


def checksums(root: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def store() -> QueueStore:
    return QueueStore(paths.data_dir() / "queue.sqlite3")


EXPECTED = {"MISC": ["docs.zip", "protocol.txt"], "Reports": ["report.pdf", "sub/notes.txt"]}


def test_archive_with_resources_attaches_them_and_the_receipt_lists_them(sandbox, exam, capsys):
    before = checksums(exam)
    code, out, err = cli(sandbox, capsys, "upload", str(exam), "-P", "DEMO", "--archive", "--with-resources", "--json")
    assert code == 0, err
    (session,) = sandbox.inventory().values()
    assert session["where"] == "archive"
    assert session["resources"] == EXPECTED  # the folder was unpacked, the loose files sit in MISC
    (receipt,) = json.loads(out)["receipts"]
    rows = {Path(r["item"]).name: r for r in receipt["resources"]}
    assert set(rows) == {"Reports", "docs.zip", "protocol.txt"}
    assert rows["Reports"]["files"] == 2
    assert all(r["state"] == "attached" and not r["error"] and not r["duplicates"] for r in rows.values())
    assert "attached 3 item(s)" in err
    assert "resource     Reports <- " in _receipt_txt().read_text()
    assert checksums(exam) == before  # the source is never changed


def _receipt_txt() -> Path:
    (txt,) = (paths.data_dir() / "receipts").glob("*.txt")
    return txt


def test_without_the_flag_a_hint_and_the_dry_run_lists_the_attachments(sandbox, exam, capsys):
    code, out, err = cli(sandbox, capsys, "upload", str(exam), "-P", "DEMO", "--dry-run")
    assert code == 0, err
    assert "3 non-DICOM item(s)" in err
    assert "--with-resources" in err
    code, out, err = cli(sandbox, capsys, "upload", str(exam), "-P", "DEMO", "--dry-run", "--json", "--with-resources")
    assert code == 0, err
    (job,) = json.loads(out)["plan"]
    assert [(Path(r["path"]).name, r["resource"], r["files"]) for r in job["resources"]] == [
        ("Reports", "Reports", 2), ("docs.zip", "MISC", 1), ("protocol.txt", "MISC", 1),
    ]  # fmt: skip
    assert sandbox.inventory() == {}


def test_prearchive_keeps_them_pending_until_archived(sandbox, exam, capsys):
    code, _, err = cli(sandbox, capsys, "upload", str(exam), "-P", "DEMO", "--with-resources")
    assert code == 0, err
    assert "3 item(s) to attach wait for the session to be archived" in err
    (session,) = sandbox.inventory().values()
    assert session["where"] == "prearchive"
    with store() as s:
        (job,) = s.jobs()
        assert job.state is JobState.DONE
        assert len(pending_attachments(s, job.id)) == 3
    ref = f"DEMO/{session['timestamp']}/{session['folder']}"
    code, out, err = cli(sandbox, capsys, "prearchive", "archive", ref)
    assert code == 0, err
    assert "attached 3 item(s) (Reports, MISC)" in out
    (session,) = sandbox.inventory().values()
    assert (session["where"], session["resources"]) == ("archive", EXPECTED)
    with store() as s:
        (job,) = s.jobs()
        assert pending_attachments(s, job.id) == []
        assert "wait for the session" not in job.message
        assert "attached 3 item(s)" in job.message
        receipt = json.loads(Path(job.receipt).read_text())
    assert {r["state"] for r in receipt["resources"]} == {"attached"}


def test_existing_resource_and_duplicates_are_kept_unless_overwrite(sandbox, client, exam, capsys):
    code, _, err = cli(sandbox, capsys, "upload", str(exam), "-P", "DEMO", "--with-resources")
    assert code == 0, err
    (session,) = sandbox.inventory().values()
    client.archive(PrearchiveRef("DEMO", session["timestamp"], session["folder"]))  # not by the CLI: still pending
    (exp,) = client.experiments("DEMO")
    client.upload_file(exp.id, "MISC", "protocol.txt", b"older protocol")
    with store() as s:
        (job,) = s.jobs()
        assert not job.spec.options[OPT_RESOURCE_OVERWRITE]
        result = attach_pending(s, client.session, job.id)
    outcomes = {Path(o.path).name: o for o in result.items}
    assert outcomes["protocol.txt"].duplicates == ["protocol.txt"]  # reported, and the resource existed: fine
    assert outcomes["docs.zip"].duplicates == []
    assert result.ok
    sizes = {f.name: f.size for f in client.files(exp.id, "MISC")}
    assert sizes["protocol.txt"] == len(b"older protocol")  # kept
    again = attach_items(client.session, experiment_path(exp.id), [Attachment(str(exam / "protocol.txt"), "MISC",
                         False)], overwrite=True)  # fmt: skip
    assert again.ok
    assert again.duplicates == []
    sizes = {f.name: f.size for f in client.files(exp.id, "MISC")}
    assert sizes["protocol.txt"] == len("protocol v2\n")  # replaced


def test_a_failed_attach_keeps_the_upload_and_a_resumed_job_attaches_without_resending(sandbox, client, exam, capsys):
    sandbox.set_faults("http500_every=1,path=/data/experiments/")
    code, _, err = cli(sandbox, capsys, "upload", str(exam), "-P", "DEMO", "--archive", "--with-resources")
    assert code == 0, err
    assert "3 item(s) not attached" in err
    assert "xnat-uploader resource upload" in err
    (session,) = sandbox.inventory().values()
    assert (session["where"], session["resources"]) == ("archive", {})
    sandbox.set_faults("none")
    with store() as s:
        (job,) = s.jobs()
        assert job.state is JobState.DONE
        assert len(pending_attachments(s, job.id)) == 3
        s.set_state(job.id, JobState.VERIFYING)  # as if the process died after archiving
    imports = _imports(sandbox)
    code, _, err = cli(sandbox, capsys, "upload", "--resume")
    assert code == 0, err
    assert _imports(sandbox) == imports  # no DICOM sent again
    (session,) = sandbox.inventory().values()
    assert session["resources"] == EXPECTED
    with store() as s:
        (job,) = s.jobs()
        assert pending_attachments(s, job.id) == []
        assert attach_pending(s, client.session, job.id).items == []  # nothing left: nothing sent


def _imports(sandbox) -> int:
    return sum(1 for r in sandbox.request_log if r.path.startswith("/data/services/import"))


def test_a_folder_with_several_studies_cannot_place_its_items(sandbox, tmp_path, capsys):
    root = tmp_path / "two"
    write_corpus(root / "DICOM", patients=1, studies_per_patient=2, series_per_study=1, instances_per_series=1)
    (root / "report.pdf").write_bytes(PDF)
    code, _, err = cli(sandbox, capsys, "upload", str(root), "-P", "DEMO", "--with-resources")
    assert code == 2
    assert "cannot be placed" in err
    assert "xnat-uploader resource upload" in err
    assert sandbox.inventory() == {}


def test_waiting_for_the_archive_is_bounded_and_stops_within_a_second_of_cancel(sandbox, client):
    started = time.monotonic()
    assert wait_until_archived(client.session, "DEMO", "NOT_THERE", timeout=0.3, interval=0.1) is None
    assert time.monotonic() - started < 2
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(Cancelled):
        wait_until_archived(client.session, "DEMO", "NOT_THERE", timeout=60, interval=2, cancel=cancel)
    assert time.monotonic() - started < 1.5
