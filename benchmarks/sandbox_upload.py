"""Sandbox upload benchmark: is our XNAT stand-in fast enough not to be the bottleneck?

    python benchmarks/sandbox_upload.py           # 2,000 x 0.5 MB gradual-DICOM; a ~200 MB stored zip
    python benchmarks/sandbox_upload.py --quick   # 500 instances; a ~50 MB zip
    python benchmarks/sandbox_upload.py --only gradual --runs 1

Each run starts a fresh ``xnat-uploader sandbox`` process on a fresh data folder (the disk's
writeback of earlier runs would otherwise slow later ones down), so the sandbox's own CPU time can
be read from ``/proc/<pid>/stat`` around the upload alone (start-up and the state saved at exit are
left out). The corpora are written once under ``benchmarks/.corpus/`` and reused. Median of
``--runs`` runs, for:

* ``gradual``: one ``POST /data/services/import?import-handler=gradual-DICOM`` per CT-like instance
  of ~0.5 MB, from 8 threads with one keep-alive ``http.client`` connection each and the
  ``JSESSIONID`` of one login: what the upload benchmark's gradual clients cost the sandbox;
* ``transfer``: the zip PUT into a project resource (body streamed to disk): the HTTP layer's own
  speed;
* ``DICOM-zip``: ``POST /data/services/import`` (stream to disk, unpack, header-read every instance,
  file it into the prearchive; SHA-256s are computed later, when a listing or the inventory asks);
* ``chunked``: the DICOM-zip import with a chunked body (no Content-Length).

``server ms/file`` is the sandbox's CPU (user + system) per instance, ``(system)`` its kernel part;
the machine's other load changes them less than ``files/s``. Most of the kernel part is the copy of
each stored file into the page cache: on a VM whose memory the host backs on first touch (e.g.
Firecracker) new page-cache pages cost ~4 us each more, ~0.5 ms per 0.5 MB file, and run-to-run
differences mostly come from there.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import requests

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from xnat_uploader.sandbox.synthetic import write_corpus  # noqa: E402

PROJECT = "DEMO"
USER, PASSWORD = "admin", "admin"
THREADS = 8


def corpus_zip(instances: int) -> Path:
    folder = HERE / ".corpus" / f"sandbox_upload_{instances}"
    path = folder / "study.zip"
    if not path.exists():
        files = write_corpus(
            folder / "dicom", patients=1, series_per_study=4, instances_per_series=instances // 4, rows=512, columns=512
        )
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
            for f in files:
                z.write(f.path, f.path.relative_to(folder / "dicom").as_posix())
    return path


def corpus_files(instances: int) -> list[Path]:
    """``instances`` CT-like files of ~0.5 MB (512 x 512, 16 bits) in 8 series of one study."""
    folder = HERE / ".corpus" / f"sandbox_gradual_{instances}"
    stamp = folder / ".complete"
    if not stamp.exists():
        written = write_corpus(
            folder / "data", rows=512, columns=512, patients=1, studies_per_patient=1,
            series_per_study=8, instances_per_series=instances // 8, modality="CT",
        )  # fmt: skip
        stamp.write_text(str(len(written)))
    return sorted((folder / "data").rglob("*.dcm"))


def chunks(path: Path, size: int = 1 << 20) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while block := fh.read(size):
            yield block


class SandboxProcess:
    """``python -m xnat_uploader sandbox`` on a fresh data folder, with its CPU time readable."""

    def __init__(self, folder: Path) -> None:
        self.log = folder / "sandbox.log"
        env = dict(os.environ, XNAT_UPLOADER_CONFIG_DIR=str(folder / "config"))
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "xnat_uploader", "sandbox", "--port", "0", "--data", str(folder / "data"),
                 "--project", PROJECT, "--user", USER, "--password", PASSWORD],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=REPO,
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while not (found := re.search(r"ready at (http://\S+)", self.log.read_text(errors="replace"))):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                self.proc.wait()
                raise RuntimeError(f"the sandbox did not start:\n{self.log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.05)
        self.url = found.group(1)

    def cpu(self) -> tuple[float, float]:
        """CPU seconds used so far in user and in system (kernel) mode, from ``/proc/<pid>/stat`` (Linux)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        tick = os.sysconf("SC_CLK_TCK")
        return int(fields[11]) / tick, int(fields[12]) / tick

    def stop(self) -> float:
        """SIGTERM (it saves its state, as after Ctrl-C), reap it; returns its whole CPU seconds."""
        self.proc.send_signal(signal.SIGTERM)
        _, status, usage = os.wait4(self.proc.pid, 0)
        self.proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        return usage.ru_utime + usage.ru_stime


def send_gradual(url: str, files: list[Path]) -> int:
    """Each file as one gradual-DICOM request from ``THREADS`` keep-alive connections; returns failures."""
    parts = urlsplit(url)
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    login = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    login.request("POST", "/data/JSESSION", headers={"Authorization": f"Basic {auth}"})
    response = login.getresponse()
    cookie = response.read().decode().strip()
    login.close()
    if response.status != 200:
        raise RuntimeError(f"login failed: {response.status}")
    query = urlencode(
        {"import-handler": "gradual-DICOM", "PROJECT_ID": PROJECT, "SUBJECT_ID": "BENCH01", "EXPT_LABEL": "BENCH01_CT"}
    )
    headers = {"Content-Type": "application/dicom", "Cookie": f"JSESSIONID={cookie}"}
    queue = iter(files)
    lock = threading.Lock()
    failures = [0]

    def worker() -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        try:
            while True:
                with lock:
                    path = next(queue, None)
                if path is None:
                    return
                conn.request("POST", f"/data/services/import?{query}", body=path.read_bytes(), headers=headers)
                answer = conn.getresponse()
                answer.read()
                if answer.status != 200:
                    with lock:
                        failures[0] += 1
        finally:
            conn.close()

    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failures[0]


def send_zip(url: str, name: str, path: Path) -> None:
    http = requests.Session()
    http.auth = (USER, PASSWORD)
    http.get(url + "/data/JSESSION", timeout=30)
    if name == "transfer":
        method, target, params = "PUT", "/data/projects/DEMO/resources/BENCH/files/study.zip", {}
    else:
        method, target, params = "POST", "/data/services/import", {"import-handler": "DICOM-zip", "PROJECT_ID": PROJECT}
    with open(path, "rb") as fh:
        response = http.request(
            method,
            url + target,
            params=params,
            data=chunks(path) if name == "chunked" else fh,
            headers={"Content-Type": "application/zip"},
            timeout=300,
        )
    response.raise_for_status()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500 gradual instances and a ~50 MB zip")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--instances", type=int, help="gradual-DICOM instances (default 2000, --quick 500)")
    parser.add_argument("--only", help="comma-separated modes: gradual,transfer,DICOM-zip,chunked")
    args = parser.parse_args(argv)
    modes = ["gradual", "transfer", "DICOM-zip", "chunked"]
    if args.only:
        modes = [m for m in modes if m in args.only.split(",")]
    files = corpus_files(args.instances or (500 if args.quick else 2000)) if "gradual" in modes else []
    zip_path = corpus_zip(100 if args.quick else 400)
    with zipfile.ZipFile(zip_path) as z:
        zip_entries = len(z.infolist())
    print(f"gradual: {len(files)} files of ~{sum(f.stat().st_size for f in files) / max(1, len(files)) / 1e6:.2f} MB; "
          f"zip: {zip_path.stat().st_size / 1e6:.0f} MB stored, {zip_entries} entries")  # fmt: skip
    print(f"{args.runs} runs each on a fresh sandbox process, median")
    print(f"{'mode':<12}{'seconds':>10}{'MB/s':>8}{'files/s':>10}{'server CPU s':>14}{'server ms/file':>16}"
          f"{'(system)':>10}")  # fmt: skip
    for name in modes:
        count = len(files) if name == "gradual" else zip_entries
        mb = (sum(f.stat().st_size for f in files) if name == "gradual" else zip_path.stat().st_size) / 1e6
        times, cpus, kernel = [], [], []
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory() as tmp:
                server = SandboxProcess(Path(tmp))
                try:
                    (user0, sys0), t = server.cpu(), time.perf_counter()
                    if name == "gradual":
                        failed = send_gradual(server.url, files)
                        if failed:
                            raise RuntimeError(f"{failed} gradual requests failed")
                    else:
                        send_zip(server.url, name, zip_path)
                    times.append(time.perf_counter() - t)
                    user1, sys1 = server.cpu()
                    cpus.append(user1 + sys1 - user0 - sys0)
                    kernel.append(sys1 - sys0)
                finally:
                    server.stop()
        seconds, cpu, system = statistics.median(times), statistics.median(cpus), statistics.median(kernel)
        print(f"{name:<12}{seconds:>10.2f}{mb / seconds:>8.0f}{count / seconds:>10.0f}{cpu:>14.2f}"
              f"{cpu / count * 1000:>16.2f}{system / count * 1000:>10.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
