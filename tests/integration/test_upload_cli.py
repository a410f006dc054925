"""``xnat-uploader upload`` as a user runs it: a real process against the sandbox, killed and resumed."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from xnat_uploader.sandbox.synthetic import write_corpus


def _env(tmp_path, **more):
    return dict(os.environ, XNAT_UPLOADER_CONFIG_DIR=str(tmp_path / "app"), XNAT_PASS="admin", **more)


def _upload(server, tmp_path, *args, **kwargs):
    cmd = [sys.executable, "-m", "xnat_uploader", "upload", "--url", server.url, "--user", "admin", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=_env(tmp_path), timeout=120, **kwargs)


@pytest.fixture
def folder(tmp_path):
    write_corpus(tmp_path / "src", patients=2, studies_per_patient=1, series_per_study=2, instances_per_series=6)
    return tmp_path / "src"


def test_dry_run_plans_without_sending(sandbox, folder, tmp_path):
    out = _upload(sandbox, tmp_path, str(folder), "-P", "DEMO", "--dry-run", "--json")
    assert out.returncode == 0, out.stderr
    plan = json.loads(out.stdout)["plan"]
    assert [(p["session"], p["files"]) for p in plan] == [("SYN000001_MR1", 12), ("SYN000002_CT1", 12)]
    assert sandbox.inventory() == {}


def test_upload_prints_receipts_and_refuses_a_silent_duplicate(sandbox, folder, tmp_path):
    out = _upload(sandbox, tmp_path, str(folder), "-P", "DEMO", "--mode", "gradual", "--json")
    assert out.returncode == 0, out.stderr
    receipts = json.loads(out.stdout)["receipts"]
    assert [r["counts"]["files"] for r in receipts] == [12, 12]
    assert all(r["verified"]["ok"] for r in receipts)
    assert len(sandbox.inventory()) == 2
    again = _upload(sandbox, tmp_path, str(folder), "-P", "DEMO")
    assert again.returncode == 2
    assert "uploaded before" in again.stderr
    merged = _upload(sandbox, tmp_path, str(folder), "-P", "DEMO", "--overwrite", "append")
    assert merged.returncode == 0, merged.stderr
    assert len(sandbox.inventory()) == 2  # merged into the same two sessions


def test_bad_input_gives_clear_messages(sandbox, folder, tmp_path):
    nothing = _upload(sandbox, tmp_path, str(tmp_path / "nope"), "-P", "DEMO")
    assert nothing.returncode == 2
    assert "Not found" in nothing.stderr
    no_project = _upload(sandbox, tmp_path, str(folder))
    assert no_project.returncode == 2
    assert "-P PROJECT" in no_project.stderr
    wrong = subprocess.run(
        [sys.executable, "-m", "xnat_uploader", "upload", str(folder), "--url", sandbox.url, "--user", "admin",
         "-P", "DEMO"],
        capture_output=True, text=True, env={**_env(tmp_path), "XNAT_PASS": "wrong"}, timeout=60,
    )  # fmt: skip
    assert wrong.returncode == 1
    assert "user name or password" in wrong.stderr
    assert "wrong" not in wrong.stderr


def _sent(db_path):
    if not db_path.exists():
        return set()
    db = sqlite3.connect(db_path)
    try:
        return {sop for (sop,) in db.execute("SELECT sop_uid FROM files WHERE state='sent'")}
    except sqlite3.OperationalError:
        return set()
    finally:
        db.close()


@pytest.mark.parametrize("mode", ["gradual", "zip"])
def test_killed_upload_resumes_without_resending_acknowledged_files(sandbox, folder, tmp_path, mode):
    sandbox.set_faults("slow=0.15,path=/data/services/import")
    cmd = [sys.executable, "-m", "xnat_uploader", "upload", str(folder), "--url", sandbox.url, "--user", "admin",
           "-P", "DEMO", "--mode", mode, "--workers", "1"]  # fmt: skip
    if mode == "zip":
        cmd += ["--batch-files", "3"]
    proc = subprocess.Popen(cmd, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    db_path = tmp_path / "app" / "data" / "queue.sqlite3"
    deadline = time.monotonic() + 60
    while len(_sent(db_path)) < 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    acknowledged = _sent(db_path)
    assert 6 <= len(acknowledged) < 24
    sandbox.set_faults(None)
    out = _upload(sandbox, tmp_path, "--resume", "--json")
    assert out.returncode == 0, out.stderr
    assert "Resuming" in out.stderr
    copies = {}
    for entry in sandbox.inventory().values():
        for series in entry["counts"].values():
            copies.update(series)
    assert len(copies) == 24
    for sop in acknowledged:
        assert copies[sop] == 1, "an acknowledged file was sent again"


def test_slow_link_and_proxy_options_reach_the_job(sandbox, folder, tmp_path):
    out = _upload(sandbox, tmp_path, str(folder), "-P", "DEMO", "--deflate", "1", "--prebuild-zip", "--json")
    assert out.returncode == 0, out.stderr
    receipts = json.loads(out.stdout)["receipts"]
    assert [(r["options"]["compress_level"], r["options"]["prebuild"]) for r in receipts] == [(1, True), (1, True)]
    assert all(r["verified"]["ok"] for r in receipts)
