"""The packaged app: PyInstaller bundle, frozen self-test, frozen GUI start, NSIS installer (and under wine).

The bundle is built once per module into a temp folder with ``packaging/build.py`` (the same code the
release workflow runs), never into the repository. Linux only, like CI; the release workflow runs
the same ``--self-test`` on Windows and macOS.

The installer test runs Debian's wine64 (installed by ``dev.sh``): silent install, files, shortcuts,
the uninstall key, the refusal while the app runs, silent uninstall keeping and then removing the
user's settings and queue. ``XNAT_UPLOADER_SKIP_WINE=1`` leaves it out of a local run.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from xnat_uploader import __version__

ROOT = Path(__file__).resolve().parents[2]
EXE_NAME = "xnat-uploader"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the Linux bundle; other OSes: release.yml"),
]


def _load_build_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("xnat_uploader_build", ROOT / "packaging" / "build.py")
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = _load_build_script()


def require(tool: str) -> str:
    """The tool's path. Missing: a failure (``./dev.sh test`` installs it), never a silent skip."""
    path = shutil.which(tool)
    if path:
        return path
    pytest.fail(f"{tool} is not installed (./dev.sh installs it with apt)")


def tree_size(folder: Path) -> int:
    """Bytes of the files under ``folder``; symlinks (PyInstaller links Qt libraries on Linux) count once."""
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file() and not f.is_symlink())


def frozen_env(tmp_path: Path) -> dict[str, str]:
    """A clean environment for the frozen app: offscreen Qt, private settings dir, no host Python paths."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "QT_", "XNAT_UPLOADER"))}
    env.update(QT_QPA_PLATFORM="offscreen", XNAT_UPLOADER_CONFIG_DIR=str(tmp_path / "app"), HOME=str(tmp_path))
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    return env


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Icons and the PyInstaller bundle, built by ``packaging/build.py --package none``."""
    base = tmp_path_factory.mktemp("build")
    started = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "packaging" / "build.py"),
            "--dist",
            str(base / "dist"),
            "--work",
            str(base / "work"),
            "--package",
            "none",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env=dict(os.environ, QT_QPA_PLATFORM="offscreen"),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    bundle = Path(result.stdout.strip().splitlines()[-1])
    size = tree_size(bundle)
    print(f"\nbundle {bundle}: {size / 1e6:.0f} MB, built in {time.monotonic() - started:.0f} s")
    return {"bundle": bundle, "icons": base / "work" / "icons", "out": base}


@pytest.mark.timeout(900)
def test_bundle_is_complete_and_lean(built: dict[str, Path]) -> None:
    bundle = built["bundle"]
    exe = bundle / EXE_NAME
    assert exe.is_file()
    assert os.access(exe, os.X_OK)
    internal = bundle / "_internal"
    # Qt's platform plugins, pydicom's data files, keyring's entry points (how it finds backends).
    assert (internal / "PySide6" / "Qt" / "plugins" / "platforms" / "libqoffscreen.so").is_file()
    assert (internal / "PySide6" / "Qt" / "plugins" / "platforms" / "libqxcb.so").is_file()
    assert list((internal / "pydicom" / "data" / "charset_files").iterdir())
    assert list(internal.glob("keyring-*.dist-info/entry_points.txt"))
    # What must not ship: unused Qt modules, build/test tools, a plaintext keyring.
    for unwanted in ("PySide6/QtQml.abi3.so", "PySide6/QtQuick.abi3.so", "numpy", "PIL", "keyrings", "pytest"):
        assert not (internal / unwanted).exists(), unwanted
    size = tree_size(bundle)
    assert size < 300e6, f"the bundle grew to {size / 1e6:.0f} MB"


def test_icons_are_generated(built: dict[str, Path]) -> None:
    icons = built["icons"]
    assert (icons / "xnat-uploader.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ico = (icons / "xnat-uploader.ico").read_bytes()
    assert ico[:4] == b"\x00\x00\x01\x00"
    assert int.from_bytes(ico[4:6], "little") >= 5
    assert (icons / "xnat-uploader.icns").read_bytes()[:4] == b"icns"


def test_frozen_self_test(built: dict[str, Path], tmp_path: Path) -> None:
    result = subprocess.run(
        [str(built["bundle"] / EXE_NAME), "--self-test", "--no-crash-dialog"],
        capture_output=True,
        text=True,
        env=frozen_env(tmp_path),
        timeout=180,
    )
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert f"xnat-uploader {__version__} self-test (frozen)" in out
    for name in ("qt", "pydicom", "pynetdicom", "keyring", "network", "sqlite", "processes"):
        assert f"\n{name}: " in out, name
        assert f"{name}: FAILED" not in out, name
    assert "platform offscreen" in out
    assert f"config dir: {tmp_path / 'app' / 'config'}" in out
    assert out.rstrip().endswith("self-test passed")


def test_frozen_self_test_reports_a_failure(built: dict[str, Path], tmp_path: Path) -> None:
    # A Qt platform that cannot load must give a clear FAILED line and a non-zero exit, not a crash.
    env = dict(frozen_env(tmp_path), QT_QPA_PLATFORM="no-such-platform")
    result = subprocess.run(
        [str(built["bundle"] / EXE_NAME), "--self-test"], capture_output=True, text=True, env=env, timeout=180
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "qt: FAILED to load: RuntimeError: Qt platform plugin 'no-such-platform' not found" in result.stdout
    assert "pydicom: pydicom" in result.stdout  # the other checks still ran
    assert "self-test FAILED: qt" in result.stdout


def test_frozen_gui_starts_and_quits_offscreen(built: dict[str, Path], tmp_path: Path) -> None:
    env = frozen_env(tmp_path)
    for args in (["--no-crash-dialog", "gui", "--quit-after", "1"], ["gui", "--no-crash-dialog", "--quit-after", "1"]):
        result = subprocess.run(
            [str(built["bundle"] / EXE_NAME), *args], capture_output=True, text=True, env=env, timeout=120
        )
        assert result.returncode == 0, result.stderr
    log = (tmp_path / "app" / "logs" / "xnat-uploader.log").read_text(encoding="utf-8")
    assert f"xnat-uploader {__version__} started" in log


def test_frozen_scan_reads_dicom_through_the_process_pool(built: dict[str, Path], tmp_path: Path) -> None:
    # More files than the scanner's small-scan limit, so that it reads them in its worker pool:
    # the frozen executable restarted as a forkserver/spawn worker, with pydicom inside.
    from tests.dicomgen import write_corpus
    from xnat_uploader.core.dicom import scan

    count = getattr(scan, "SMALL_SCAN", 3000) + 100
    folder = tmp_path / "corpus"
    written = write_corpus(
        folder, rows=8, columns=8, patients=1, studies_per_patient=1, series_per_study=1, instances_per_series=count
    )
    result = subprocess.run(
        [str(built["bundle"] / EXE_NAME), "scan", str(folder), "--json", "--workers", "2"],
        capture_output=True,
        text=True,
        env=frozen_env(tmp_path),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["instances"] == len(written) == count
    assert data["rejected"] == []


def _pe_machine(path: Path) -> int:
    data = path.read_bytes()[:4096]
    assert data[:2] == b"MZ"
    pe = int.from_bytes(data[0x3C:0x40], "little")
    assert data[pe : pe + 4] == b"PE\x00\x00"
    return int.from_bytes(data[pe + 4 : pe + 6], "little")


def test_nsis_script_compiles_over_the_bundle(built: dict[str, Path], tmp_path: Path) -> None:
    require("makensis")
    out = build.build_nsis(
        built["bundle"], tmp_path, __version__, built["icons"] / "xnat-uploader.ico", False, "amd64-unicode"
    )
    assert out.name == f"xnat-uploader-{__version__}-windows-{build.machine()}-setup.exe"
    assert _pe_machine(out) == 0x8664  # amd64
    assert out.stat().st_size > 0.9 * tree_size(built["bundle"])  # uncompressed: the whole bundle is in there


# --- the installer under wine ---------------------------------------------------------------------


class Wine:
    """A throwaway wine prefix (64-bit only: Debian's wine64 without i386 multiarch)."""

    def __init__(self, base: Path) -> None:
        self.home = base / "home"
        (self.home / "Desktop").mkdir(parents=True)  # wine links its Desktop here, not into the real HOME
        self.prefix = base / "prefix"
        self.env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
        self.env.update(
            HOME=str(self.home),
            WINEPREFIX=str(self.prefix),
            WINEDEBUG="-all",
            WINEDLLOVERRIDES="mscoree,mshtml=",  # no Mono/Gecko install prompts
        )

    def run(self, *args: str, timeout: float = 120, check: bool = False) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(["wine", *args], capture_output=True, text=True, env=self.env, timeout=timeout)
        if check:
            assert result.returncode == 0, f"wine {args}: {result.returncode}\n{result.stdout}{result.stderr}"
        return result

    def wait(self) -> None:
        subprocess.run(["wineserver", "-w"], env=self.env, timeout=120, check=False)

    def kill(self) -> None:
        subprocess.run(["wineserver", "-k"], env=self.env, timeout=60, check=False, capture_output=True)

    @property
    def user_dir(self) -> Path:
        users = [p for p in (self.prefix / "drive_c" / "users").iterdir() if p.name != "Public"]
        assert len(users) == 1, users
        return users[0]

    def reg_values(self, key: str) -> dict[str, str] | None:
        result = self.run("reg", "query", key)
        if result.returncode != 0:
            return None
        values = {}
        for line in result.stdout.splitlines():
            parts = line.strip().split(None, 2)
            if len(parts) == 3 and parts[1].startswith("REG_"):
                values[parts[0]] = parts[2]
        return values


@pytest.fixture
def wine(tmp_path: Path) -> Iterator[Wine]:
    require("wine")
    require("wineserver")
    w = Wine(tmp_path)
    try:
        w.run("wineboot", "--init", timeout=180)
        w.wait()
        yield w
    finally:
        w.kill()


def _windows_layout(bundle: Path, dest: Path) -> Path:
    """The bundle as PyInstaller lays it out on Windows (``xnat-uploader.exe`` + ``_internal``), hard-linked."""
    shutil.copytree(bundle / "_internal", dest / "_internal", copy_function=os.link)
    os.link(bundle / EXE_NAME, dest / f"{EXE_NAME}.exe")
    return dest


def _wait_for_windows_process(exe: Path, runner: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Wait until a wine process has mapped ``exe`` (then Windows semantics keep the file from being written)."""
    deadline = time.monotonic() + timeout
    needle = str(exe).encode()
    while time.monotonic() < deadline:
        assert runner.poll() is None, f"{exe.name} exited with {runner.returncode}"
        for maps in Path("/proc").glob("[0-9]*/maps"):
            try:
                if needle in maps.read_bytes():
                    return
            except OSError:  # a process that ended meanwhile, or not ours
                continue
        time.sleep(0.2)
    raise AssertionError(f"{exe.name} did not start under wine within {timeout} s")


@pytest.mark.timeout(600)
def test_installer_installs_refuses_while_running_and_uninstalls_under_wine(
    built: dict[str, Path], wine: Wine, tmp_path: Path
) -> None:
    started = time.monotonic()
    require("makensis")
    payload = _windows_layout(built["bundle"], tmp_path / "payload")
    setup = build.build_nsis(
        payload, tmp_path, __version__, built["icons"] / "xnat-uploader.ico", False, "amd64-unicode"
    )
    key = r"HKCU\Software\Microsoft\Windows\CurrentVersion\Uninstall\xnat-uploader"

    # 1. Silent per-user install with the optional desktop shortcut.
    wine.run(str(setup), "/S", "/DESKTOP", check=True)
    wine.wait()
    user = wine.user_dir
    app_dir = user / "AppData" / "Local" / "Programs" / "xnat-uploader"
    assert (app_dir / "xnat-uploader.exe").is_file()
    assert (app_dir / "uninstall.exe").is_file()
    installed = sorted(p.relative_to(app_dir / "_internal") for p in (app_dir / "_internal").rglob("*"))
    assert installed == sorted(p.relative_to(payload / "_internal") for p in (payload / "_internal").rglob("*"))
    start_menu = user / "AppData" / "Roaming" / "Microsoft" / "Windows" / "Start Menu" / "Programs"
    assert (start_menu / "XNAT Uploader.lnk").is_file()
    assert (wine.home / "Desktop" / "XNAT Uploader.lnk").is_file()
    values = wine.reg_values(key)
    assert values is not None, "no uninstall key"
    assert values["DisplayName"] == "XNAT Uploader"
    assert values["DisplayVersion"] == __version__
    assert values["Publisher"]
    assert values["DisplayIcon"].endswith(r"\xnat-uploader\xnat-uploader.exe,0")
    assert values["InstallLocation"].endswith(r"\AppData\Local\Programs\xnat-uploader")
    assert values["UninstallString"].endswith(r'\xnat-uploader\uninstall.exe"')
    assert int(values["EstimatedSize"], 16) * 1024 > 0.9 * tree_size(payload)

    # 2. While the app runs, neither the uninstaller nor a new install goes on (exit code 3).
    #    A Windows program that waits stands in for the app: wine's cmd.exe, copied over the .exe,
    #    reading commands from a pipe that stays open (no display or network needed).
    shutil.copy(wine.prefix / "drive_c" / "windows" / "system32" / "cmd.exe", app_dir / "xnat-uploader.exe")
    runner = subprocess.Popen(
        ["wine", str(app_dir / "xnat-uploader.exe")],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=wine.env,
    )
    try:
        _wait_for_windows_process(app_dir / "xnat-uploader.exe", runner)
        # _?= runs the uninstaller in place, so its exit code is the one that counts (otherwise it
        # copies itself to %TEMP%, starts the copy and returns 0 at once).
        refused = wine.run(str(app_dir / "uninstall.exe"), "/S", f"_?={values['InstallLocation']}")
        assert refused.returncode == 3, refused
        refused = wine.run(str(setup), "/S")
        assert refused.returncode == 3, refused
        assert (app_dir / "_internal").is_dir()
        assert wine.reg_values(key) is not None
    finally:
        assert runner.stdin is not None
        runner.stdin.close()  # cmd.exe ends at the end of its input
        try:
            runner.wait(timeout=30)
        except subprocess.TimeoutExpired:
            runner.kill()
            runner.wait(timeout=30)
        wine.wait()

    # 3. Upgrade in place: the new setup runs the previous uninstaller silently, which keeps the
    #    user's settings, queue and logs (the silent answer to "also remove your settings?" is no).
    data_dir = user / "AppData" / "Local" / "xnat-uploader"  # platformdirs, appauthor=False
    (data_dir / "Logs").mkdir(parents=True)
    (data_dir / "settings.json").write_text("{}", encoding="utf-8")
    (data_dir / "queue.sqlite3").write_bytes(b"")
    wine.run(str(setup), "/S", check=True)
    wine.wait()
    assert (app_dir / "xnat-uploader.exe").read_bytes()[:4] == b"\x7fELF"  # cmd.exe replaced by the payload's
    assert (app_dir / "_internal").is_dir()
    assert (data_dir / "queue.sqlite3").exists()
    assert (data_dir / "settings.json").exists()
    assert (start_menu / "XNAT Uploader.lnk").is_file()
    assert (wine.home / "Desktop" / "XNAT Uploader.lnk").is_file()  # kept although /DESKTOP was not given
    assert wine.reg_values(key) is not None

    # 4. Uninstall with /REMOVEDATA: program, shortcuts, uninstall key, settings, queue and logs all go.
    wine.run(str(app_dir / "uninstall.exe"), "/S", "/REMOVEDATA", check=True)
    wine.wait()
    assert not app_dir.exists()
    assert not (start_menu / "XNAT Uploader.lnk").exists()
    assert not (wine.home / "Desktop" / "XNAT Uploader.lnk").exists()
    assert wine.reg_values(key) is None
    assert not data_dir.exists()
    print(f"\nwine installer test: {time.monotonic() - started:.0f} s (plus wineboot)")
