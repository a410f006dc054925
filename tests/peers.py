"""Independent peers the tests and benchmarks check us against: Debian's dcmtk programs and Orthanc."""

from __future__ import annotations

import functools
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any


@functools.cache
def find_dcmtk(tool: str) -> str | None:
    """dcmtk's ``tool`` on PATH, or None. pynetdicom installs Python apps of the same names (storescu,
    storescp, echoscu) that come first on a venv's PATH: only a program whose --version says dcmtk counts."""
    for folder in os.get_exec_path():
        candidate = Path(folder) / tool
        if not (candidate.is_file() and os.access(candidate, os.X_OK)):
            continue
        probe = subprocess.run([str(candidate), "--version"], capture_output=True, text=True, timeout=30)
        if "dcmtk" in (probe.stdout + probe.stderr).lower():
            return str(candidate)
    return None


def dcmtk(tool: str) -> str:
    """dcmtk's ``tool``; a missing one fails the test (``./dev.sh`` installs dcmtk with apt)."""
    found = find_dcmtk(tool)
    if found is None:
        raise AssertionError(f"dcmtk's {tool} is not installed (./dev.sh installs it with apt)")
    return found


def find_orthanc() -> str | None:
    """Orthanc's server program (Debian's ``orthanc`` package installs it in /usr/sbin), or None."""
    return shutil.which("Orthanc") or shutil.which("Orthanc", path="/usr/local/sbin:/usr/sbin:/sbin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through a proxy


class Orthanc:
    """Orthanc (a real PACS, Debian's ``orthanc``) run from a minimal configuration in ``work``.

    DICOM and HTTP on free loopback ports, its database and storage in ``work``, no plugins, no HTTP
    authentication (it listens on loopback only). ``settings`` adds or overrides configuration keys
    (e.g. ``AcceptedTransferSyntaxes``, ``MaximumPduLength``). Its log is ``work/Orthanc.log``; the REST
    API answers what arrived.
    """

    def __init__(self, work: Path, aet: str = "ORTHANC", **settings: object) -> None:
        self.work, self.aet = work, aet
        self.port, self.http_port = free_port(), free_port()
        self.settings = settings
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def log(self) -> str:
        """Everything Orthanc logged so far (warnings and errors; its default verbosity)."""
        path = self.work / "Orthanc.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self, timeout: float = 20.0) -> Orthanc:
        program = find_orthanc()
        if program is None:
            raise AssertionError("Orthanc is not installed (./dev.sh installs Debian's orthanc package with apt)")
        self.work.mkdir(parents=True, exist_ok=True)
        config = {
            "Name": "xnat-uploader-test", "StorageDirectory": str(self.work / "db"),
            "IndexDirectory": str(self.work / "db"), "DicomAet": self.aet, "DicomPort": self.port,
            "HttpPort": self.http_port, "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
            "Plugins": [], "StorageCompression": False, "SaveJobs": False, "DicomScpTimeout": 10,
            **self.settings,
        }  # fmt: skip
        (self.work / "orthanc.json").write_text(json.dumps(config, indent=1))
        self.proc = subprocess.Popen(
            [program, f"--logfile={self.work / 'Orthanc.log'}", str(self.work / "orthanc.json")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.work,
            env={**os.environ, "TCP_NODELAY": "1"},  # dcmtk inside Orthanc: Nagle off, no 40 ms per answer
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"Orthanc exited with {self.proc.returncode}: {self.log[-2000:]}")
            try:
                self.get("/system")
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError(f"Orthanc did not answer within {timeout:g} s") from None
                time.sleep(0.05)
        return self

    def get(self, path: str) -> Any:
        """The JSON answer of Orthanc's REST API at ``path``."""
        return json.loads(self.get_bytes(path))

    def get_bytes(self, path: str) -> bytes:
        with _LOOPBACK.open(self.url + path, timeout=10) as answer:
            return bytes(answer.read())

    def sop_instance_uids(self) -> set[str]:
        """SOPInstanceUIDs of the instances Orthanc holds (its REST ``/instances``)."""
        found = self.get("/instances?expand")
        return {i["MainDicomTags"]["SOPInstanceUID"] for i in found}

    def clear(self) -> None:
        """Delete everything stored (each patient), so a second sender starts from an empty PACS."""
        for patient in self.get("/patients"):
            request = urllib.request.Request(f"{self.url}/patients/{patient}", method="DELETE")
            with _LOOPBACK.open(request, timeout=10):
                pass
        assert self.get("/instances") == []

    def stop(self) -> None:
        """Kill it: an orderly stop takes seconds, and nothing of a test instance needs keeping."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
