"""The command line starts and reports its version."""

import subprocess
import sys

from xnat_uploader import __version__


def test_version_in_a_fresh_process():
    out = subprocess.run(
        [sys.executable, "-m", "xnat_uploader", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == f"xnat-uploader {__version__}"


def test_gui_starts_and_quits_offscreen(tmp_path):
    env = {"QT_QPA_PLATFORM": "offscreen", "XNAT_UPLOADER_CONFIG_DIR": str(tmp_path), "PATH": ""}
    out = subprocess.run(
        [sys.executable, "-m", "xnat_uploader", "gui", "--quit-after", "0.5"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "logs" / "xnat-uploader.log").exists()
