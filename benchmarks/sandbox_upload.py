"""Sandbox upload benchmark: is our XNAT stand-in fast enough not to be the bottleneck?

    python benchmarks/sandbox_upload.py           # a ~200 MB stored zip (400 x 0.5 MB MR instances)
    python benchmarks/sandbox_upload.py --quick   # ~50 MB

The zip is written once under ``benchmarks/.corpus/`` and reused. A sandbox runs in this process on
loopback (a fresh one per run); ``requests`` sends the zip from a file object (sized body), median
of 3 runs, for:

* ``transfer``: the same bytes PUT into a project resource (body streamed to disk and hashed): the
  HTTP layer's own speed;
* ``DICOM-zip``: ``POST /data/services/import`` (stream to disk, unpack, SHA-256 and header-read
  every instance, file it into the prearchive): what an upload benchmark against the sandbox sees;
* ``chunked``: the DICOM-zip import with a chunked body (no Content-Length).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing

from xnat_uploader.sandbox.server import SandboxServer  # noqa: E402
from xnat_uploader.sandbox.synthetic import write_corpus  # noqa: E402


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


def chunks(path: Path, size: int = 1 << 20) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while block := fh.read(size):
            yield block


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a ~50 MB zip instead of ~200 MB")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    path = corpus_zip(100 if args.quick else 400)
    mb = path.stat().st_size / 1e6
    modes = {
        # The same bytes PUT into a project resource: the HTTP layer (stream to disk + SHA-256).
        "transfer": ("/data/projects/DEMO/resources/BENCH/files/study.zip", {}, False),
        "DICOM-zip": ("/data/services/import", {"import-handler": "DICOM-zip", "PROJECT_ID": "DEMO"}, False),
        "chunked": ("/data/services/import", {"import-handler": "DICOM-zip", "PROJECT_ID": "DEMO"}, True),
    }
    print(f"{mb:.0f} MB stored zip, {args.runs} runs each on a fresh sandbox, median")
    print(f"{'mode':<12}{'seconds':>10}{'MB/s':>10}")
    for name, (url, params, chunked) in modes.items():
        times = []
        for _ in range(args.runs):
            # A fresh server and data folder per run: the disk's writeback of earlier runs would
            # otherwise slow later ones down and the order of the modes would decide the result.
            with tempfile.TemporaryDirectory() as tmp, SandboxServer(tmp) as server:
                http = requests.Session()
                http.auth = ("admin", "admin")
                http.get(server.url + "/data/JSESSION", timeout=30)
                with open(path, "rb") as fh:
                    t = time.perf_counter()
                    response = http.request(
                        "PUT" if name == "transfer" else "POST",
                        server.url + url,
                        params=params,
                        data=chunks(path) if chunked else fh,
                        headers={"Content-Type": "application/zip"},
                        timeout=300,
                    )
                    times.append(time.perf_counter() - t)
                response.raise_for_status()
        median = statistics.median(times)
        print(f"{name:<12}{median:>10.2f}{mb / median:>10.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
