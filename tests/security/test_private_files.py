"""What the app keeps (settings, queue, log, receipts) is owner-only on POSIX, and an older install is tightened.

They hold labels taken from PatientID and the paths of the source files: another account on a shared lab
machine must read none of it. Every check runs with the umask most systems have (022), which would give
0644 files in 0755 folders.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from xnat_uploader import log as app_log
from xnat_uploader.core import private
from xnat_uploader.core.queue.store import FileSpec, JobSpec, QueueStore
from xnat_uploader.sandbox.synthetic import write_corpus


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def _modes(root: Path) -> dict[str, int]:
    """Every folder and file under ``root`` (itself included) -> its mode."""
    out = {".": _mode(root)}
    for path in root.rglob("*"):
        out[str(path.relative_to(root))] = _mode(path)
    return out


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _cli(app: Path, *args: str, **kw) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, XNAT_UPLOADER_CONFIG_DIR=str(app), XNAT_PASS="admin")
    return subprocess.run(
        [sys.executable, "-c", "import os, sys; os.umask(0o022); from xnat_uploader.cli import main; sys.exit(main())",
         *args],
        capture_output=True, text=True, env=env, timeout=120, **kw,
    )  # fmt: skip


def test_an_upload_leaves_only_owner_only_folders_and_files(sandbox, tmp_path):
    write_corpus(tmp_path / "src", patients=1, series_per_study=2, instances_per_series=3)
    out = _cli(tmp_path / "app", "upload", str(tmp_path / "src"), "--url", sandbox.url, "--user", "admin", "-P", "DEMO")
    assert out.returncode == 0, out.stderr
    modes = _modes(tmp_path / "app")
    for name in ("data/queue.sqlite3", "logs/xnat-uploader.log"):
        assert name in modes
    assert any(n.startswith("data/receipts/job-1-") and n.endswith(".json") for n in modes)
    assert any(n.startswith("data/receipts/job-1-") and n.endswith(".txt") for n in modes)
    wrong = {n: oct(m) for n, m in modes.items()
             if m != (private.DIR_MODE if (tmp_path / "app" / n).is_dir() else private.FILE_MODE)}  # fmt: skip
    assert wrong == {}


def test_the_queue_database_and_its_wal_files_are_owner_only(tmp_path, umask_022):
    with QueueStore(tmp_path / "new" / "queue.sqlite3") as store:
        store.add_job(JobSpec("http://x", "u", "P", "S", "E"), [FileSpec("/a", 1)])  # writes the WAL
        names = {p.name: _mode(p) for p in (tmp_path / "new").iterdir()}
        assert set(names) == {"queue.sqlite3", "queue.sqlite3-wal", "queue.sqlite3-shm"}
        assert set(names.values()) == {0o600}
    assert _mode(tmp_path / "new") == 0o700


def test_settings_are_saved_owner_only(tmp_path, umask_022):
    from xnat_uploader.core import settings

    path = settings.save(settings.Settings(), tmp_path / "config" / "settings.json")
    assert (_mode(path.parent), _mode(path)) == (0o700, 0o600)


def test_the_log_file_and_its_rotations_are_owner_only(tmp_path, umask_022):
    handler = app_log.PrivateLogFileHandler(str(tmp_path / "x.log"), maxBytes=200, backupCount=2, encoding="utf-8")
    logger = logging.getLogger("tests.security.rotation")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        for n in range(20):
            logger.warning("line %d of a log that rotates every few lines", n)
    finally:
        logger.removeHandler(handler)
        handler.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.log", "x.log.1", "x.log.2"]
    assert {_mode(p) for p in tmp_path.iterdir()} == {0o600}


def test_gui_state_names_folders_so_it_is_owner_only(tmp_path, umask_022):
    from xnat_uploader.gui import state

    state.set_last_folder(str(tmp_path / "DOE_JANE"))
    ini = state.gui_settings().fileName()
    assert state.last_folder() == str(tmp_path / "DOE_JANE")
    assert (_mode(Path(ini).parent), _mode(Path(ini))) == (0o700, 0o600)


def test_an_older_install_is_tightened_on_start_and_only_our_folders(tmp_path, umask_022):
    app, dicom = tmp_path / "app", tmp_path / "dicom"
    for folder in (app / "config", app / "data" / "receipts", app / "logs", dicom):
        folder.mkdir(parents=True, mode=0o755)
    old = {app / "config" / "settings.json": "{}", app / "data" / "queue.sqlite3": "",
           app / "data" / "receipts" / "job-1-P001_MR1.json": json.dumps({"subject": "P001"}),
           app / "logs" / "xnat-uploader.log": "old lines\n", dicom / "IM_0001.dcm": "DICOM"}  # fmt: skip
    for path, text in old.items():
        path.write_text(text)
        path.chmod(0o644)
    (app / "data" / "source").symlink_to(dicom)  # a link out of our folders is never followed

    out = _cli(app, "scan", str(tmp_path / "nothing-here"))
    assert out.returncode == 2, out.stderr  # the command itself fails (no such folder): the start did its work
    for path in old:
        assert _mode(path) == (0o644 if dicom in path.parents else 0o600), path
    for folder in (app / "config", app / "data", app / "data" / "receipts", app / "logs"):
        assert _mode(folder) == 0o700, folder
    assert _mode(dicom) == 0o755
    assert "Made 8 settings, queue and log entries owner-only" in (app / "logs" / "xnat-uploader.log").read_text()

    again = _cli(app, "scan", str(tmp_path / "nothing-here"))
    assert again.returncode == 2
    assert (app / "logs" / "xnat-uploader.log").read_text().count("owner-only") == 1  # nothing left to do


def test_private_dir_makes_missing_parents_owner_only_and_leaves_existing_ones(tmp_path, umask_022):
    tmp_path.chmod(0o755)
    made = private.private_dir(tmp_path / "a" / "b")
    assert (_mode(tmp_path), _mode(tmp_path / "a"), _mode(made)) == (0o755, 0o700, 0o700)


def test_on_windows_nothing_is_changed(tmp_path, monkeypatch, umask_022):
    """The profile's access list protects the folders there; chmod would only set the read-only flag."""
    (tmp_path / "f").write_text("x")
    monkeypatch.setattr(private, "ENFORCED", False)
    assert private.tighten([tmp_path]) == 0
    private.private_file(tmp_path / "f")
    assert _mode(tmp_path / "f") == 0o644
