"""Plain http says so on the command line: signing in to an ``http://`` server prints a warning on stderr
(``--allow-http`` silences it for scripts); a literal loopback address (the demo's sandbox) does not, because
nothing crosses a network. Real commands in their own process against the sandbox over loopback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from xnat_uploader.core.xnat.transport import PLAIN_HTTP_REASON, sends_in_clear
from xnat_uploader.sandbox.synthetic import write_corpus


@pytest.mark.parametrize(
    ("url", "in_clear"),
    [
        ("http://xnat.example.org", True),
        ("HTTP://XNAT.example.org:8080/xnat", True),
        ("http://10.1.2.3:8080", True),
        ("http://localhost:8080", True),  # a name: a hosts file or a search domain can send it elsewhere
        ("http://127.0.0.1:8080", False),
        ("http://127.8.9.10", False),
        ("http://[::1]:8080/xnat", False),
        ("https://xnat.example.org", False),
        ("https://10.1.2.3", False),
    ],
)
def test_which_addresses_send_the_password_in_clear(url, in_clear):
    assert sends_in_clear(url) is in_clear


def _run(tmp_path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, XNAT_UPLOADER_CONFIG_DIR=str(tmp_path / "app"), XNAT_PASS="admin")
    return subprocess.run([sys.executable, "-m", "xnat_uploader", *args], capture_output=True, text=True, env=env,
                          timeout=120)  # fmt: skip


def test_login_over_plain_http_warns_and_allow_http_silences_it(sandbox, tmp_path):
    url = sandbox.url.replace("127.0.0.1", "localhost")
    out = _run(tmp_path, "login", "--url", url, "--user", "admin", "--no-remember")
    assert out.returncode == 0, out.stderr
    assert f"Warning: {url} uses plain http, without encryption: {PLAIN_HTTP_REASON}" in out.stderr
    assert "--allow-http" in out.stderr
    assert "Signed in to" in out.stdout

    quiet = _run(tmp_path, "login", "--url", url, "--user", "admin", "--no-remember", "--allow-http")
    assert quiet.returncode == 0, quiet.stderr
    assert "plain http" not in quiet.stderr
    assert sandbox.stats["logins"] == 2


def test_the_warning_comes_before_anything_is_sent(tmp_path):
    """No password at hand: the command stops before any request, and has warned already."""
    env = {k: v for k, v in os.environ.items() if k != "XNAT_PASS"}
    env["XNAT_UPLOADER_CONFIG_DIR"] = str(tmp_path / "app")
    out = subprocess.run(
        [sys.executable, "-m", "xnat_uploader", "prearchive", "list", "--url", "http://xnat.example.org",
         "--user", "alice"],
        capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=60,
    )  # fmt: skip
    assert out.returncode == 1
    lines = out.stderr.splitlines()
    warning = next(i for i, line in enumerate(lines) if "uses plain http" in line)
    assert warning < next(i for i, line in enumerate(lines) if "No password" in line)


def test_an_upload_to_the_sandbox_on_127_0_0_1_does_not_warn(sandbox, tmp_path):
    write_corpus(tmp_path / "src", patients=1, series_per_study=1, instances_per_series=2)
    out = _run(tmp_path, "upload", str(tmp_path / "src"), "--url", sandbox.url, "--user", "admin", "-P", "DEMO")
    assert out.returncode == 0, out.stderr
    assert "plain http" not in out.stderr
    assert len(sandbox.inventory()) == 1
