"""The first start with no server configured runs on the built-in sandbox with sample data."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import requests

from xnat_uploader import paths
from xnat_uploader.app import _start_demo_if_wanted
from xnat_uploader.core import settings
from xnat_uploader.core.settings import ServerEntry


def test_no_server_configured_starts_the_demo_in_its_own_folder():
    real_data = paths.data_dir()
    demo = _start_demo_if_wanted(argparse.Namespace())
    try:
        assert demo is not None
        assert len(list(demo.corpus.rglob("*.dcm"))) == 108
        projects = requests.get(
            demo.url + "/data/projects", params={"format": "json"}, auth=(demo.user, demo.password), timeout=10
        )
        assert projects.status_code == 200
        assert "DEMO" in projects.text
        assert paths.data_dir() != real_data  # the demo's queue never mixes with the real one
        assert str(paths.data_dir()).startswith(str(demo.root))
    finally:
        demo.stop()
    assert not demo.root.exists()


def test_a_configured_server_means_no_demo():
    current = settings.load()
    current.servers.append(ServerEntry(url="https://xnat.example.org", user="me"))
    settings.save(current)
    assert _start_demo_if_wanted(argparse.Namespace()) is None


def test_demo_command_starts_and_quits(tmp_path):
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {**os.environ, "XNAT_UPLOADER_CONFIG_DIR": str(tmp_path / "app"), "QT_QPA_PLATFORM": "offscreen",
           "TMPDIR": str(temp)}  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-m", "xnat_uploader", "demo", "--quit-after", "2", "--no-crash-dialog"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "Demo sandbox at http://127.0.0.1:" in (tmp_path / "app" / "logs" / "xnat-uploader.log").read_text()
    assert [p.name for p in temp.iterdir() if p.name.startswith("xnat-uploader-demo-")] == []  # removed on quit
