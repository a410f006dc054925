"""C-STORE streams a large file or archive member, a fragment at a time, never holding it whole (issue 17, memory).

A zip of a few MB holds three members of 60 MB each. A child process scans it and sends it by C-STORE to dcmtk's
``storescp`` (bit-preserving: it writes each data set as it arrived) with two workers; the child's peak resident
memory during the send (``VmHWM``, reset before the send) must stay far below one member's size, and every data
set must arrive byte for byte. ``python -m tests.security.test_cstore_streaming ZIP PORT`` is the child.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.integration.test_cstore import SCP_AET, enqueue_folder, run_all, storescp  # noqa: F401 - fixture
from tests.security._measure import peak_kb
from tests.security.hostile_inputs import MB, big_instance_stream, zip_of_large_members
from xnat_uploader.core.dicom.archives import open_member
from xnat_uploader.core.errors import UserError
from xnat_uploader.core.queue.store import FileState, JobState, QueueStore
from xnat_uploader.core.transfer import cstore
from xnat_uploader.core.transfer.encoding import dataset_offset

MEMBERS, EACH = 3, 60 * MB


def _digests(fh) -> tuple[str, str]:
    """SHA-256 of a DICOM file and of its data set (after its preamble and meta), read in pieces."""
    head = fh.read(64 * 1024)
    whole, dataset = hashlib.sha256(head), hashlib.sha256(head[dataset_offset(head) :])
    while block := fh.read(1 << 20):
        whole.update(block)
        dataset.update(block)
    return whole.hexdigest(), dataset.hexdigest()


def test_large_zip_members_go_by_cstore_in_bounded_memory_and_arrive_intact(storescp, tmp_path):  # noqa: F811
    scp = storescp(extra=("+B",))  # bit-preserving: the received data set is the bytes sent
    folder = tmp_path / "src"
    folder.mkdir()
    archive = zip_of_large_members(folder / "big.zip", MEMBERS, EACH)
    assert archive.stat().st_size < 5 * MB

    child = subprocess.run(
        [sys.executable, "-m", "tests.security.test_cstore_streaming", str(folder), str(scp.port)],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": os.getcwd()},
    )  # fmt: skip
    assert child.returncode == 0, child.stderr[-2000:]
    outcome = json.loads(child.stdout.strip().splitlines()[-1])
    assert outcome["states"], outcome
    assert set(outcome["states"]) == {"done"}, outcome
    # Two workers each sending a 60 MB member: held whole that is 120 MB and more; streamed, a few fragments.
    assert outcome["peak_kb"] < 16 * 1024, outcome

    sources, files = {}, {}
    for i in range(MEMBERS):
        sop = f"1.2.826.0.1.3680043.2.1143.17.3.{i}"
        with open_member(str(archive), f"big{i}.dcm") as fh:
            files[sop], sources[sop] = _digests(fh)
    assert outcome["sent"] == files  # each acknowledged, with the checksum of the whole member
    received = scp.received()
    assert set(received) == set(sources)
    for sop, ds in received.items():
        with open(ds.filename, "rb") as fh:
            assert _digests(fh)[1] == sources[sop], sop


def _large_file(path: Path, size: int = 3 * MB) -> Path:
    head, pixels = big_instance_stream("1.2.826.0.1.3680043.2.1143.17.5", size)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(head + bytes(pixels))
    return path


def test_a_large_file_that_grew_since_the_scan_is_not_sent(storescp, tmp_path):  # noqa: F811
    scp = storescp()
    big = _large_file(tmp_path / "src" / "big.dcm")
    with QueueStore(tmp_path / "q.db") as store:
        jobs = enqueue_folder(store, tmp_path / "src", scp)
        with open(big, "ab") as fh:
            fh.write(b"appended after the scan")
        assert run_all(store, jobs, tmp_path) == [JobState.FAILED]
        assert "changed size since it was scanned" in store.job(jobs[0]).message
    assert scp.received() == {}


def test_a_file_cut_short_while_streamed_stops_before_its_last_fragment(tmp_path):
    big = _large_file(tmp_path / "big.dcm")
    row = type("Row", (), {"path": str(big), "member": "", "size": big.stat().st_size})()
    stream = cstore._Stream.open(cstore._Item(row, "", "1.2.840.10008.1.2.1"))  # type: ignore[arg-type]
    assert stream is not None
    assert len(stream) < row.size
    try:
        assert len(stream.read(1 << 20)) == 1 << 20
        os.truncate(big, row.size - 2)
        with pytest.raises(UserError, match="changed size since it was scanned"):
            stream.read(len(stream) - (1 << 20))
    finally:
        stream.close()


def _child(folder: str, port: int) -> None:
    """Scan ``folder``, send it to the receiver on ``port``; print the states and the send's peak memory (KB)."""

    class _Scp:  # what enqueue_folder needs of a StoreSCP
        pass

    scp = _Scp()
    scp.port = port  # type: ignore[attr-defined]
    with tempfile.TemporaryDirectory() as tmp, QueueStore(Path(tmp) / "q.db") as store:
        jobs = enqueue_folder(store, Path(folder), scp, workers=2)  # type: ignore[arg-type]
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM: the peak of the send alone
        base = peak_kb()
        states = run_all(store, jobs, Path(tmp))
        peak = peak_kb() - base
        sent = {f.sop_uid: f.sha256 for j in jobs for f in store.files(j) if f.state is FileState.SENT}
    print(json.dumps({"states": [s.value for s in states], "sent": sent, "peak_kb": peak}))


if __name__ == "__main__":
    _child(sys.argv[1], int(sys.argv[2]))
