"""``xnat-uploader --self-test`` from the source tree, and the top-level ``--no-crash-dialog`` flag.

The frozen app runs the same code in ``test_bundle.py``; these are the quick checks.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from xnat_uploader import __version__, cli


def run_self_test(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = dict(os.environ, XNAT_UPLOADER_CONFIG_DIR=str(tmp_path / "app"), QT_QPA_PLATFORM="offscreen")
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "xnat_uploader", "--self-test", "--no-crash-dialog"],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=180,
    )


def test_self_test_passes_and_reports_versions_and_folders(tmp_path: Path) -> None:
    result = run_self_test(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"xnat-uploader {__version__} self-test (not frozen)"
    report = dict(line.split(": ", 1) for line in lines[1:-1])
    assert report["qt"].startswith("PySide6 ")
    assert "platform offscreen" in report["qt"]
    assert report["pydicom"].startswith("pydicom ")
    assert report["pynetdicom"].endswith("(loopback C-ECHO)")
    assert "backend keyring.backends." in report["keyring"]
    assert "secure: " in report["keyring"]
    assert "CA bundle found" in report["network"]
    assert report["processes"] in ("forkserver and spawn process pools ok", "spawn process pools ok")
    assert report["config dir"] == str(tmp_path / "app" / "config")
    assert report["data dir"] == str(tmp_path / "app" / "data")
    assert report["log dir"] == str(tmp_path / "app" / "logs")
    assert lines[-1] == "self-test passed"
    assert not (tmp_path / "app").exists()  # it reports the folders, it does not create them


def test_self_test_fails_clearly_when_a_part_cannot_load(tmp_path: Path) -> None:
    result = run_self_test(tmp_path, QT_QPA_PLATFORM="no-such-platform")
    assert result.returncode == 1
    assert "qt: FAILED to load: RuntimeError: Qt platform plugin 'no-such-platform' not found" in result.stdout
    assert result.stdout.rstrip().endswith("self-test FAILED: qt")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--no-crash-dialog"], True),
        (["--no-crash-dialog", "gui"], True),
        (["gui", "--no-crash-dialog"], True),
        (["gui"], False),
        ([], False),
    ],
)
def test_no_crash_dialog_is_accepted_before_and_after_the_sub_command(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], expected: bool
) -> None:
    from xnat_uploader.commands import gui

    seen: list[argparse.Namespace] = []
    monkeypatch.setattr(gui, "run", lambda args: seen.append(args) or 0)
    monkeypatch.setattr(cli.log, "setup", lambda verbose=False: None)
    assert cli.main(argv) == 0
    assert seen[0].command == "gui"
    assert seen[0].no_crash_dialog is expected
