"""Scan benchmark: our scanner against a plain ``pydicom.dcmread(stop_before_pixels=True)`` loop.

    python benchmarks/scan.py            # the 10,000-file corpus (and the quick one)
    python benchmarks/scan.py --quick    # the 2,000-file corpus only (< 30 s, corpus included)

The corpora (256x256 16-bit MR/CT-like, explicit and implicit VR, several patients, studies and
series) are written once under ``benchmarks/.corpus/`` (git-ignored) and reused.

Each measurement runs in its own child process (so its peak memory is its own): one untimed
warm-up pass (the page cache then holds the headers; our process pool is started), then one timed
pass. 3 rounds interleave the methods; the median of the 3 timed passes is reported. Both methods
walk the folder themselves. Peak memory is the child's ``ru_maxrss`` (resident set high-water mark,
from ``resource.getrusage``) plus, for the process pool, each worker's ``VmHWM`` from ``/proc``
(Linux; "n/a" elsewhere), the largest over the rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))  # run from a checkout without installing

CORPORA = {
    # name: (patients, series per study, instances per series) -> patients * 1 study * series * instances
    "quick": (4, 5, 100),  # 2,000 files
    "10k": (10, 10, 100),  # 10,000 files
}
RUNS = 3


def corpus(name: str) -> Path:
    """The cached corpus folder, written on first use."""
    patients, series, instances = CORPORA[name]
    root = HERE / ".corpus" / f"scan-{name}"
    stamp = root / ".complete"
    expected = f"{patients}x{series}x{instances} 256x256"
    if stamp.exists() and stamp.read_text() == expected:
        return root
    from xnat_uploader.sandbox.synthetic import write_corpus

    if root.exists():
        import shutil

        shutil.rmtree(root)
    started = time.perf_counter()
    written = write_corpus(
        root / "data",
        rows=256,
        columns=256,
        patients=patients,
        studies_per_patient=1,
        series_per_study=series,
        instances_per_series=instances,
        layout="nested",
    )
    stamp.write_text(expected)
    print(f"  wrote {len(written):,} files in {time.perf_counter() - started:.1f} s", flush=True)
    return root


def _walk(root: str) -> list[str]:
    out, stack = [], [root]
    while stack:
        with os.scandir(stack.pop()) as it:
            for entry in it:
                if entry.is_dir():
                    stack.append(entry.path)
                elif entry.is_file():
                    out.append(entry.path)
    return out


def _peak_kib_self() -> int:
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss // 1024 if sys.platform == "darwin" else rss  # bytes on macOS, KiB on Linux


def _peak_kib_pids(pids: list[int]) -> int | None:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1])
        except OSError:
            return None
    return total


def child(method: str, root: str, workers: int | None) -> dict:
    """One method, in this (child) process: a warm-up pass, then RUNS timed passes."""
    if method == "pydicom":
        import pydicom

        def run() -> int:
            n = 0
            for path in _walk(root):
                try:
                    pydicom.dcmread(path, stop_before_pixels=True)
                    n += 1
                except Exception:  # noqa: BLE001 - a plain loop skips what it cannot read
                    pass
            return n
    else:
        from xnat_uploader.core.dicom import scan

        def run() -> int:
            result = scan.scan_paths([root], workers=workers)
            return len(result.instances)

    started = time.perf_counter()
    files = run()  # warm-up: page cache, imports, our process pool
    first = time.perf_counter() - started
    starter = scan._PoolStarter._current if method == "ours" else None
    if starter is not None:  # the warm-up started the pool (a large scan): time it warm
        starter.ready.wait(60)
    started = time.perf_counter()
    assert run() == files
    timed = time.perf_counter() - started
    out = {"files": files, "time": timed, "first": first, "peak_kib": _peak_kib_self(), "workers_kib": 0}
    if method == "ours":
        pids = scan.worker_pids()
        out["workers"] = len(pids)
        out["workers_kib"] = _peak_kib_pids(pids) if pids else 0
        scan.shutdown_pool()
    return out


def measure(method: str, root: Path, workers: int | None = None) -> dict:
    cmd = [sys.executable, __file__, "--child", method, "--root", str(root)]
    if workers is not None:
        cmd += ["--workers", str(workers)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=REPO)
    return json.loads(out.stdout.strip().splitlines()[-1])


def report(name: str, root: Path) -> float:
    from xnat_uploader.core.dicom.scan import SMALL_SCAN

    print(f"\n{name} corpus: {root.relative_to(REPO)}", flush=True)
    methods = [
        ("pydicom dcmread(stop_before_pixels) loop", "pydicom", None),
        (f"ours, scan_paths default (pool >= {SMALL_SCAN:,})", "ours", None),
        ("ours, scan_paths(workers=1), one process", "ours", 1),
    ]
    # Rounds interleave the methods, so a neighbour's load drifting over the run hits them alike.
    runs: dict[str, list[dict]] = {label: [] for label, _, _ in methods}
    for _ in range(RUNS):
        for label, method, workers in methods:
            runs[label].append(measure(method, root, workers))
    rows = []
    for label, rounds in runs.items():
        r = dict(rounds[0])
        r["times"] = [x["time"] for x in rounds]
        r["first"] = statistics.median(x["first"] for x in rounds)
        r["peak_kib"] = max(x["peak_kib"] for x in rounds)
        r["workers_kib"] = max(x["workers_kib"] or 0 for x in rounds)
        rows.append((label, r))
    base = None
    print(f"  {'method':44} {'files':>7} {'files/s':>9} {'ratio':>6} {'1st run s':>9} {'peak MiB':>22}")
    for label, r in rows:
        rate = r["files"] / statistics.median(r["times"])
        base = base or rate
        workers = r.get("workers", 0)
        mem = f"{r['peak_kib'] / 1024:.0f}"
        if workers:
            kib = r["workers_kib"]
            mem += f" + {workers} x {kib / workers / 1024:.0f}" if kib else " + n/a"
        print(f"  {label:44} {r['files']:>7,} {rate:>9,.0f} {rate / base:>5.1f}x {r['first']:>9.2f} {mem:>22}")
    ours = rows[1][1]
    return (ours["files"] / statistics.median(ours["times"])) / base


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the 2,000-file corpus only")
    parser.add_argument("--child", choices=["pydicom", "ours"], help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.root, args.workers)))
        return 0
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    print(f"scan benchmark: warm cache, median of {RUNS} interleaved runs; {os.cpu_count()} CPUs{load}")
    print("peak memory: ru_maxrss of the scanning process (+ VmHWM of each pool worker)")
    names = ["quick"] if args.quick else ["quick", "10k"]
    ratio = 0.0
    for name in names:
        ratio = report(name, corpus(name))
    target = 5.0
    verdict = "meets" if ratio >= target else "MISSES"
    print(f"\nours vs pydicom on the {names[-1]} corpus: {ratio:.1f}x ({verdict} the >= {target:.0f}x target)")
    return 0


if __name__ == "__main__":  # the guard matters: pool workers must not re-run the benchmark
    sys.exit(main(sys.argv[1:]))
