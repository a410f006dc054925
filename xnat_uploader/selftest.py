"""``xnat-uploader --self-test``: prove that a (frozen) build can load everything it needs, then exit.

Each check loads one part for real, not just imports it, because a frozen app fails at the first
dynamic import, data file or shared library that the bundler missed:

- Qt: a ``QApplication`` on the platform plugin (offscreen when there is no display);
- pydicom: a small dataset written and read back, with a non-ASCII specific character set;
- pynetdicom: a C-ECHO association over loopback to a Verification SCP started in-process;
- keyring: the active backend and whether it stores passwords securely;
- requests/ssl: the OpenSSL version and the CA bundle file;
- sqlite3 (the upload queue) and ``forkserver``/``spawn`` process pools (the scanner; need ``freeze_support``).

It prints one line per check and the config/data/log folders, and returns 0 when every check
passed, 1 otherwise (with a ``FAILED`` line naming the part). Call it from the main thread, in a
process that exits afterwards: it creates a ``QApplication`` and leaves it for the process exit.
"""

from __future__ import annotations

import io
import os
import platform
import sys
import traceback
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import TextIO

from xnat_uploader import APP_NAME, __version__, paths

Check = Callable[[], str]


def _say(line: str) -> None:
    """Print one line, even from a windowed Windows build whose ``sys.stdout`` is ``None``."""
    stream = sys.stdout
    if stream is None:  # pragma: no cover - windowed frozen app started from a console
        stream = _attach_windows_console()
    if stream is not None:
        stream.write(line + "\n")
        stream.flush()


def _attach_windows_console() -> TextIO | None:  # pragma: no cover - Windows only
    """Reattach to the console of the parent process (cmd, PowerShell) so that the report is seen."""
    if sys.platform != "win32":
        return None
    import ctypes

    if not ctypes.windll.kernel32.AttachConsole(-1):  # ATTACH_PARENT_PROCESS
        return None
    try:
        stream = open("CONOUT$", "w", encoding="utf-8")  # noqa: SIM115 - lives as long as the process
    except OSError:
        return None
    sys.stdout = stream
    return stream


def _check_qt() -> str:
    if (
        sys.platform.startswith("linux")
        and not os.environ.get("QT_QPA_PLATFORM")
        and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    ):
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    import PySide6
    from PySide6.QtCore import QLibraryInfo, qVersion
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtWidgets import QApplication

    if QApplication.instance() is None and os.environ.get("QT_QPA_PLATFORM"):
        # Qt aborts the process (qFatal) when the platform plugin is missing: look for it first, so
        # that a bundle without it fails with a line that says so.
        folder = os.path.join(QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath), "platforms")
        wanted = [p.split(":")[0].strip() for p in os.environ["QT_QPA_PLATFORM"].split(";") if p.strip()]
        present = os.listdir(folder) if os.path.isdir(folder) else []
        # "wayland-egl" and friends live in libqwayland: match on the part before the dash.
        if not any(f"q{name.split('-')[0]}" in file for name in wanted for file in present):
            raise RuntimeError(f"Qt platform plugin {', '.join(wanted)!r} not found in {folder}")
    app = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else APP_NAME])
    # Paint once: this loads fonts and the raster engine, which a missing library would break.
    image = QImage(16, 16, QImage.Format.Format_ARGB32)
    painter = QPainter(image)
    painter.drawText(0, 12, "x")
    painter.end()
    return f"PySide6 {PySide6.__version__}, Qt {qVersion()}, platform {app.platformName()}"


def _check_pydicom() -> str:
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.SpecificCharacterSet = "ISO_IR 100"  # exercises pydicom's charset code and Python's codecs
    ds.StudyDescription = "Selbsttest Gerät"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    buffer.seek(0)
    back = pydicom.dcmread(buffer, stop_before_pixels=True)
    if back.StudyDescription != ds.StudyDescription:
        raise RuntimeError(f"round trip changed a value: {back.StudyDescription!r}")
    return f"pydicom {pydicom.__version__} (header write/read round trip)"


def _check_pynetdicom() -> str:
    import logging

    import pynetdicom
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

    logging.getLogger("pynetdicom").setLevel(logging.ERROR)  # it logs every association at INFO
    scp = AE(ae_title="SELFTEST")
    scp.add_supported_context(Verification)
    server = scp.start_server(("127.0.0.1", 0), block=False)
    try:
        port = server.server_address[1]
        scu = AE(ae_title="XNATUPLOADER")
        scu.add_requested_context(Verification)
        scu.acse_timeout = scu.dimse_timeout = scu.network_timeout = 10
        assoc = scu.associate("127.0.0.1", port, ae_title="SELFTEST")
        if not assoc.is_established:
            raise RuntimeError("loopback association was not established")
        status = assoc.send_c_echo()
        assoc.release()
        if not status or status.Status != 0x0000:
            raise RuntimeError(f"C-ECHO failed: {status!r}")
    finally:
        server.shutdown()
    return f"pynetdicom {pynetdicom.__version__} (loopback C-ECHO)"


def _check_keyring() -> str:
    import keyring
    from keyring.backends import fail, null

    backend = keyring.get_keyring()
    name = f"{type(backend).__module__}.{type(backend).__qualname__}"
    insecure = isinstance(backend, (fail.Keyring, null.Keyring)) or type(backend).__module__.startswith("keyrings.alt")
    if type(backend).__name__ == "ChainerBackend":
        chained = getattr(backend, "backends", [])
        name += " [" + ", ".join(f"{type(b).__module__}.{type(b).__qualname__}" for b in chained) + "]"
        insecure = not chained
    secure = "no: passwords will be asked every session" if insecure else "yes"
    version = _dist_version("keyring")
    return f"keyring {version}, backend {name}, secure: {secure}"


def _check_network() -> str:
    import ssl

    import certifi
    import requests

    bundle = certifi.where()
    if not os.path.isfile(bundle):
        raise RuntimeError(f"CA bundle missing: {bundle}")
    ssl.create_default_context(cafile=bundle)
    return f"requests {requests.__version__}, {ssl.OPENSSL_VERSION}, CA bundle found"


def _check_sqlite() -> str:
    import sqlite3

    with sqlite3.connect(":memory:") as db:
        db.execute("PRAGMA journal_mode=WAL")
        (version,) = db.execute("select sqlite_version()").fetchone()
    return f"sqlite {version}"


def _child_pid() -> int:
    """Runs in the spawned worker: proves the frozen entry point handles ``freeze_support``."""
    return os.getpid()


def _check_process_pool() -> str:
    import multiprocessing

    # The scanner's pool uses forkserver where the OS has it (Linux, macOS), else spawn (Windows):
    # both start the frozen executable again, which only works through freeze_support().
    methods = [m for m in ("forkserver", "spawn") if m in multiprocessing.get_all_start_methods()]
    for method in methods:
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context(method)) as pool:
            pid = pool.submit(_child_pid).result(timeout=120)
        if pid == os.getpid():
            raise RuntimeError(f"the {method} worker ran in this process")
    return f"{' and '.join(methods)} process pools ok"


def _dist_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "(no metadata)"


CHECKS: list[tuple[str, Check]] = [
    ("qt", _check_qt),
    ("pydicom", _check_pydicom),
    ("pynetdicom", _check_pynetdicom),
    ("keyring", _check_keyring),
    ("network", _check_network),
    ("sqlite", _check_sqlite),
    ("processes", _check_process_pool),
]


def run(verbose: bool = False) -> int:
    """Run every check, print the report, and return the exit code (0 all passed, 1 otherwise)."""
    frozen = "frozen" if getattr(sys, "frozen", False) else "not frozen"
    _say(f"{APP_NAME} {__version__} self-test ({frozen})")
    _say(f"python: {platform.python_version()} on {platform.platform()} ({platform.machine()})")
    failed: list[str] = []
    for name, check in CHECKS:
        try:
            _say(f"{name}: {check()}")
        except Exception as exc:  # noqa: BLE001 - report every failure, then exit non-zero
            failed.append(name)
            _say(f"{name}: FAILED to load: {type(exc).__name__}: {exc}")
            if verbose:
                _say(traceback.format_exc().rstrip())
    _say(f"config dir: {paths.config_dir()}")
    _say(f"data dir: {paths.data_dir()}")
    _say(f"log dir: {paths.log_dir()}")
    if failed:
        _say(f"self-test FAILED: {', '.join(failed)}")
        return 1
    _say("self-test passed")
    return 0
