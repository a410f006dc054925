"""C-STORE benchmark: our transport (1 and 4 associations) against dcmtk's storescu and xnatctl, one storescp.

    python benchmarks/cstore.py --quick     # 600 MR files (~80 MB), one round, < 30 s
    python benchmarks/cstore.py             # 2,000 MR files (~265 MB), three rounds, medians
    python benchmarks/cstore.py --interop   # files delivered, ours vs storescu, into storescp and Orthanc

Every tool sends the same corpus (one MR study, 4 series of 256x256 16-bit instances of ~130 KB,
explicit and implicit VR alternating by series) to the same dcmtk ``storescp`` (``--fork``, so
parallel associations are served in parallel, 128 KB PDUs, every transfer syntax accepted, Nagle
off through dcmtk's ``TCP_NODELAY`` variable). The tools, each a fresh process:

* ``ours-1`` / ``ours-4``: ``xnat-uploader upload DIR --mode cstore --workers 1|4`` (the whole
  command: interpreter start, scan, plan, queue, C-ECHO, send, receipt) with a fresh queue;
* ``storescu``: ``storescu +sd +r`` (dcmtk; one association for all files, scans the folder itself),
  with ``TCP_NODELAY=1`` and 128 KB PDUs: dcmtk at its best;
* ``xnatctl``: ``xnatctl session upload-dicom DIR`` with its defaults (4 workers, pynetdicom); it
  insists on a logged-in XNAT profile, so a sandbox runs in this process only for its login.

Measured per run: wall seconds from starting the process to reaping it, files/s and MB/s of the
DICOM payload, the client's CPU seconds (``os.wait4``); then storescp's output folder is checked:
every SOPInstanceUID must be there (default file names carry it). For ours, "send" is the queue's
own time from the first job's start to the last job's end (no interpreter start, scan or plan).
The targets (DESIGN.md 4) compare whole-process files/s: ours >= 1.0x storescu, >= 3x xnatctl.

``--interop`` counts instead of timing: pydicom's test files that carry a session's UIDs (a zoo of
transfer syntaxes and of files that bend the standard) sent by ours (``upload --mode cstore``) and by
``storescu -nh`` (go on after a failed file; its default stops at the first) into storescp and into
Orthanc (Debian's ``orthanc``). Printed: the distinct SOPInstanceUIDs each receiver holds after each
tool (target: ours >= storescu into each), and the protocol errors in Orthanc's log (target: none).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from tests.peers import Orthanc, find_dcmtk  # noqa: E402 - needs the checkout on sys.path

AET = "STORESCP"
TOOLS = ["ours-1", "ours-4", "storescu", "xnatctl"]
CORPORA = {"quick": (4, 150), "full": (4, 500)}  # series x instances, 256x256 MR


@dataclass
class Run:
    tool: str
    wall: float
    cpu: float
    arrived: int
    rc: int
    send: float | None = None  # ours only: the queue's send time


def dcmtk(tool: str) -> str:
    """dcmtk's program (not pynetdicom's namesake)."""
    found = find_dcmtk(tool)
    if found is None:
        raise SystemExit(f"dcmtk's {tool} is not installed (apt-get install dcmtk)")
    return found


def corpus(name: str) -> tuple[Path, set[str], int]:
    """The cached corpus: folder, SOPInstanceUIDs, bytes."""
    series, per_series = CORPORA[name]
    base = HERE / ".corpus" / f"cstore-{name}"
    stamp = base / ".complete"
    expected = f"MR 256 1x{series}x{per_series}"
    if not (stamp.exists() and stamp.read_text() == expected):
        from xnat_uploader.sandbox.synthetic import write_corpus

        shutil.rmtree(base, ignore_errors=True)
        written = write_corpus(base / "data", rows=256, columns=256, patients=1, studies_per_patient=1,
                               series_per_study=series, instances_per_series=per_series, modality="MR")  # fmt: skip
        (base / "uids.txt").write_text("\n".join(w.sop_instance_uid for w in written))
        stamp.write_text(expected)
    files = [p for p in (base / "data").rglob("*.dcm")]
    return base / "data", set((base / "uids.txt").read_text().split()), sum(p.stat().st_size for p in files)


class StoreSCP:
    def __init__(self, out: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.out = out
        out.mkdir(parents=True, exist_ok=True)
        cmd = [dcmtk("storescp"), "--fork", "-od", str(out), "-aet", AET, "+xa", "-pdu", "131072", str(self.port)]
        self.proc = subprocess.Popen(cmd, env={**os.environ, "TCP_NODELAY": "1"}, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + 10
        while socket.socket().connect_ex(("127.0.0.1", self.port)) != 0:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise SystemExit("storescp did not start")
            time.sleep(0.02)

    aet = AET

    def take(self) -> set[str]:
        """SOPInstanceUIDs received since the last call (default names: MR.<uid>), emptying the folder."""
        uids = {p.name.split(".", 1)[1] for p in self.out.iterdir()}
        for p in self.out.iterdir():
            p.unlink()
        return uids

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # --fork children too
        self.proc.wait()


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO)
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    rc = os.waitstatus_to_exitcode(status)
    proc.returncode = rc  # reaped here
    if rc != 0 and proc.stderr is not None:
        print(f"    exit {rc}: {proc.stderr.read().decode(errors='replace')[-600:]}", file=sys.stderr)
    return wall, ru.ru_utime + ru.ru_stime, rc


def send_seconds(home: Path) -> float | None:
    """From the queue's history: first 'running' to last 'done' over all jobs."""
    found = list(home.rglob("queue.sqlite3"))
    if not found:
        return None
    with contextlib.closing(sqlite3.connect(found[0])) as db:
        start = db.execute("SELECT MIN(time) FROM history WHERE event='running'").fetchone()[0]
        end = db.execute("SELECT MAX(time) FROM history WHERE event='done'").fetchone()[0]
    return end - start if start and end else None


def run_tool(tool: str, folder: Path, scp: StoreSCP | Orthanc, work: Path, xnat_url: str) -> Run:
    home = Path(tempfile.mkdtemp(prefix=f"{tool}-", dir=work))
    env = {**os.environ, "HOME": str(home), "XNAT_UPLOADER_CONFIG_DIR": str(home / "config"),
           "XDG_DATA_HOME": str(home / "data"), "XDG_CONFIG_HOME": str(home / ".config")}  # fmt: skip
    port = str(scp.port)
    if tool.startswith("ours"):
        cmd = [sys.executable, "-m", "xnat_uploader", "upload", str(folder), "-P", "BENCH", "--mode", "cstore",
               "--host", "127.0.0.1", "--port", port, "--called-aet", scp.aet,
               "--workers", tool.split("-")[1]]  # fmt: skip
    elif tool.startswith("storescu"):
        halt = ["-nh"] if tool == "storescu-nh" else []
        cmd = [dcmtk("storescu"), *halt, "-aec", scp.aet, "+sd", "+r", "-pdu", "131072", "127.0.0.1", port, str(folder)]
        env["TCP_NODELAY"] = "1"
    else:
        base = [sys.executable, "-m", "xnatctl"]
        subprocess.run([*base, "config", "init", "--url", xnat_url, "--no-login", "--force"], env=env,
                       capture_output=True, check=True)  # fmt: skip
        env.update(XNAT_USER="admin", XNAT_PASS="admin")
        cmd = [*base, "session", "upload-dicom", str(folder), "--host", "127.0.0.1", "--port", port,
               "--called-aet", AET, "-q"]  # fmt: skip
    wall, cpu, rc = timed(cmd, env)
    time.sleep(0.2)  # storescp's forked children finish writing the last files
    if isinstance(scp, Orthanc):
        arrived = len(scp.sop_instance_uids())
        scp.clear()
    else:
        arrived = len(scp.take())
    run = Run(tool, wall, cpu, arrived, rc)
    if tool.startswith("ours"):
        run.send = send_seconds(home)
    shutil.rmtree(home, ignore_errors=True)
    return run


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="600 files, one round (< 30 s)")
    ap.add_argument("--rounds", type=int, default=0, help="rounds (default: 1 with --quick, else 3)")
    ap.add_argument("--only", default=",".join(TOOLS), help="comma-separated tools")
    ap.add_argument("--interop", action="store_true", help="files delivered into storescp and Orthanc, no timing")
    args = ap.parse_args(argv)
    if args.interop:
        return interop()
    name = "quick" if args.quick else "full"
    rounds = args.rounds or (1 if args.quick else 3)
    tools = [t for t in args.only.split(",") if t]
    if "xnatctl" in tools and importlib.util.find_spec("xnatctl") is None:
        print("  xnatctl is not installed (pip install xnatctl): left out", file=sys.stderr)
        tools.remove("xnatctl")
    folder, uids, size = corpus(name)
    print(f"  corpus: {len(uids):,} MR files, {size / 1e6:,.0f} MB; {rounds} round(s); storescp --fork", flush=True)
    work = Path(tempfile.mkdtemp(prefix="cstore-bench-"))
    scp = StoreSCP(work / "received")
    sandbox = None
    try:
        xnat_url = ""
        if "xnatctl" in tools:
            from xnat_uploader.sandbox.server import SandboxServer

            sandbox = SandboxServer(data_dir=work / "sandbox").start()
            xnat_url = sandbox.url
        runs: dict[str, list[Run]] = {t: [] for t in tools}
        for r in range(rounds):
            for tool in tools if r % 2 == 0 else reversed(tools):  # alternate the order: fair to noisy machines
                run = run_tool(tool, folder, scp, work, xnat_url)
                runs[tool].append(run)
                print(f"    round {r + 1} {tool}: {run.wall:.2f} s, {run.arrived}/{len(uids)} arrived", flush=True)
    finally:
        scp.stop()
        if sandbox is not None:
            sandbox.stop()
        shutil.rmtree(work, ignore_errors=True)
    return report(runs, len(uids), size)


def interop() -> int:
    """pydicom's session files by ours and storescu into storescp and Orthanc: instances delivered."""
    from tests.dicomgen import pydicom_session_files

    work = Path(tempfile.mkdtemp(prefix="cstore-interop-"))
    files = pydicom_session_files()
    folder = work / "corpus"  # one flat folder (names numbered: two packages may share a name)
    folder.mkdir()
    for n, path in enumerate(files):
        shutil.copyfile(path, folder / f"{n:03d}_{path.name}")
    print(f"  corpus: {len(files)} of pydicom's test files with the UIDs a session needs", flush=True)
    rows, ok = [], True
    for name in ("storescp", "orthanc"):
        receiver: StoreSCP | Orthanc = StoreSCP(work / "received") if name == "storescp" else Orthanc(work / "orthanc")
        if isinstance(receiver, Orthanc):
            receiver.start()
        try:
            counts = {tool: run_tool(tool, folder, receiver, work, "").arrived for tool in ("ours-1", "storescu-nh")}
            errors = [line for line in receiver.log.splitlines() if "DIMSE" in line or "Odd Fragment" in line] if (
                isinstance(receiver, Orthanc)) else []  # fmt: skip
        finally:
            receiver.stop()
        ok &= counts["ours-1"] >= counts["storescu-nh"] and not errors
        rows.append((name, counts["ours-1"], counts["storescu-nh"], len(errors)))
    shutil.rmtree(work, ignore_errors=True)
    print(f"\n  {'receiver':<10} {'ours':>5} {'storescu -nh':>13} {'protocol errors (Orthanc log)':>30}")
    for name, ours, theirs, errors in rows:
        print(f"  {name:<10} {ours:>5} {theirs:>13} {errors if name == 'orthanc' else '-':>30}")
    verdict = "met" if ok else "NOT met"
    print(f"\n  target (DESIGN.md 4: ours >= storescu into every receiver, no protocol error): {verdict}")
    return 0 if ok else 1


def report(runs: dict[str, list[Run]], files: int, size: int) -> int:
    print(f"\n  {'tool':<10} {'wall s':>7} {'files/s':>8} {'MB/s':>6} {'CPU s':>6} {'send files/s':>13}  arrived")
    rate: dict[str, float] = {}
    ok = True
    for tool, rs in runs.items():
        wall = statistics.median(r.wall for r in rs)
        cpu = statistics.median(r.cpu for r in rs)
        sends = [r.send for r in rs if r.send]
        send = f"{files / statistics.median(sends):,.0f}" if sends else "-"
        arrived = min(r.arrived for r in rs)
        ok &= arrived == files and all(r.rc == 0 for r in rs)
        rate[tool] = files / wall
        print(f"  {tool:<10} {wall:7.2f} {files / wall:8,.0f} {size / wall / 1e6:6,.0f} {cpu:6.2f} {send:>13}  "
              f"{arrived}/{files}")  # fmt: skip
    ours = max((t for t in rate if t.startswith("ours")), key=rate.get, default=None)  # type: ignore[arg-type]
    if ours:
        print()
        for peer, target in (("storescu", 1.0), ("xnatctl", 3.0)):
            if peer in rate:
                ratio = rate[ours] / rate[peer]
                verdict = "met" if ratio >= target else "NOT met"
                print(f"  {ours} vs {peer}: {ratio:.2f}x files/s (target >= {target:.1f}x: {verdict})")
                for other in (t for t in rate if t.startswith("ours") and t != ours):
                    print(f"  {other} vs {peer}: {rate[other] / rate[peer]:.2f}x")
        if "storescu" in rate:
            for tool, rs in runs.items():
                sends = [r.send for r in rs if r.send]
                if tool.startswith("ours") and sends:
                    ratio = files / statistics.median(sends) / rate["storescu"]
                    print(f"  {tool} send phase (no start-up, scan, plan) vs storescu: {ratio:.2f}x files/s")
    if not ok:
        print("  SOME FILES DID NOT ARRIVE (or a tool failed)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
