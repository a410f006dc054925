"""C-STORE into receivers beyond dcmtk's storescp: Orthanc (a real PACS), and receivers that refuse,
abort or misbehave, over real loopback associations.

Orthanc comes from Debian's ``orthanc`` package (``dev.sh`` installs it); each test starts its own from
a minimal configuration in a temp folder (:class:`tests.peers.Orthanc`) and kills it after. The corpus
is pydicom's test files that carry the four UIDs a session needs (:func:`tests.dicomgen.pydicom_session_files`).
What arrived is read back from Orthanc's REST API, what went wrong from its log.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
from pynetdicom.sop_class import CTImageStorage, MRImageStorage, Verification

from tests.dicomgen import pydicom_session_files, write_corpus
from tests.peers import Orthanc, dcmtk, free_port
from xnat_uploader.core.dicom.index import build_index
from xnat_uploader.core.dicom.scan import scan_paths
from xnat_uploader.core.plan import Target, enqueue, plan_jobs
from xnat_uploader.core.queue.runner import run_job
from xnat_uploader.core.queue.store import FileState, JobState, QueueStore
from xnat_uploader.core.transfer.base import RetryPolicy
from xnat_uploader.core.transfer.dimse import Association, AssociationLostError, Endpoint
from xnat_uploader.core.transfer.encoding import IMPLICIT_LE, read_meta

FAST_RETRY = RetryPolicy(attempts=3, base=0.01, cap=0.05)
PROTOCOL_ERRORS = ("Odd Fragment", "DIMSE", "Store SCP Failed")
# pydicom says so when it reads a file whose elements are implicit VR under an explicit header (one
# file of the corpus; the sender re-writes it): expected here, not a fault.
pytestmark = pytest.mark.filterwarnings("ignore:Expected explicit VR, but found implicit VR:UserWarning")


@pytest.fixture
def orthanc(tmp_path):
    started: list[Orthanc] = []

    def make(**settings) -> Orthanc:
        server = Orthanc(tmp_path / f"orthanc-{len(started)}", **settings).start()
        started.append(server)
        return server

    try:
        yield make
    finally:
        for server in started:
            server.stop()


def send(files: list[Path], port: int, aet: str, tmp_path: Path, **options) -> tuple[QueueStore, dict[int, JobState]]:
    """Scan, plan (one job per study) and run every job by C-STORE; the open queue and each job's final state."""
    result = scan_paths(files)
    plan = plan_jobs(build_index(result.instances, result.rejected), Target(project="DEMO"))
    assert plan.ok, plan
    opts = {"cstore_host": "127.0.0.1", "cstore_port": port, "called_aet": aet, "calling_aet": "TESTSCU",
            "cstore_timeout": 10, "workers": 2, **options}  # fmt: skip
    store = QueueStore(tmp_path / "q.db")
    jobs = [enqueue(store, job, server_url="", user="", mode="cstore", options=opts) for job in plan.jobs]
    states = {j: run_job(store, j, None, receipts_dir=tmp_path / "receipts", retry=FAST_RETRY) for j in jobs}
    return store, states


def not_delivered(store: QueueStore, states: dict[int, JobState]) -> dict[str, str]:
    """File name -> reason of every file a job reports as not delivered; each must be named in what its job says."""
    out = {}
    for j in states:
        message = f"{store.job(j).message} {store.job(j).hint}"  # names go in the hint when nothing arrived
        for f in store.files(j, [FileState.REJECTED, FileState.FAILED]):
            name = Path(f.path).name
            assert f.message.startswith("Not sent: "), f.message
            assert len(f.message) > 20, f.message
            assert states[j] is JobState.FAILED
            assert name in message, (name, message)  # the job's own message names the file
            out[name] = f.message
    return out


def checksums(files: list[Path]) -> dict[Path, str]:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def errors_in(log: str) -> list[str]:
    return [line for line in log.splitlines() if any(e in line for e in PROTOCOL_ERRORS)]


# -- Orthanc ------------------------------------------------------------------------------------------


def test_pydicom_files_reach_orthanc_at_least_as_well_as_storescu_with_no_protocol_error(orthanc, tmp_path):
    """Every instance of the corpus arrives or is reported with its reason; storescu delivers no more."""
    files = pydicom_session_files()
    assert len(files) >= 140
    before = checksums(files)
    server = orthanc()
    store, states = send(files, server.port, server.aet, tmp_path)
    ours = server.sop_instance_uids()
    assert errors_in(server.log) == []  # no odd fragment, no DIMSE failure at the receiver
    failed = not_delivered(store, states)
    sent = {f.sop_uid for j in states for f in store.files(j, [FileState.SENT])}
    assert sent <= ours  # what we recorded as sent is there
    queued = {f.sop_uid for j in states for f in store.files(j)}
    reported = {f.sop_uid for j in states for f in store.files(j, [FileState.REJECTED, FileState.FAILED])}
    assert queued == ours | reported  # nothing lost in silence
    store.close()

    server.clear()
    # dcmtk's storescu, one association for all files; -nh: go on after a failed file (its default stops).
    cmd = [dcmtk("storescu"), "-nh", "-aec", server.aet, "127.0.0.1", str(server.port), *map(str, files)]
    scu = subprocess.run(cmd, env={**os.environ, "TCP_NODELAY": "1"}, capture_output=True, timeout=60)
    assert scu.returncode in (0, 1)
    theirs = server.sop_instance_uids()
    print(f"delivered into Orthanc: ours {len(ours)}, storescu {len(theirs)} (of {len(queued)}); ours failed: {failed}")
    assert len(ours) >= len(theirs) > 0
    assert theirs <= ours
    assert checksums(files) == before  # the source files are untouched


def test_receiver_taking_only_implicit_vr_gets_lossless_copies_and_refusals_named(orthanc, tmp_path):
    """Explicit and deflated files are converted to implicit VR (every value kept); compressed ones cannot be."""
    names = ["CT_small.dcm", "image_dfl.dcm", "rtplan.dcm", "JPEG2000.dcm", "SC_rgb_jpeg.dcm"]
    files = [Path(get_testdata_file(n)) for n in names]
    before = checksums(files)
    server = orthanc(AcceptedTransferSyntaxes=[IMPLICIT_LE])
    store, states = send(files, server.port, server.aet, tmp_path)
    failed = not_delivered(store, states)
    store.close()
    assert set(failed) == {"JPEG2000.dcm", "SC_rgb_jpeg.dcm"}
    assert "does not accept Secondary Capture Image Storage in JPEG Baseline" in failed["SC_rgb_jpeg.dcm"]
    assert "the only encoding this file can be sent in" in failed["JPEG2000.dcm"]
    assert errors_in(server.log) == []
    for path in files[:3]:
        original = pydicom.dcmread(path)
        instance = next(i for i in server.get("/instances?expand") if
                        i["MainDicomTags"]["SOPInstanceUID"] == original.SOPInstanceUID)  # fmt: skip
        received = pydicom.dcmread(io.BytesIO(server.get_bytes(f"/instances/{instance['ID']}/file")))
        assert received.file_meta.TransferSyntaxUID == IMPLICIT_LE
        assert [(e.tag, e.value) for e in received] == [(e.tag, e.value) for e in original]  # lossless
    assert checksums(files) == before


def test_orthanc_idle_time_out_is_seen_before_the_next_file(orthanc):
    """Orthanc ends an idle association after DicomScpTimeout; the sender notices it without sending into it."""
    server = orthanc(DicomScpTimeout=1)
    path = get_testdata_file("CT_small.dcm")
    data = Path(path).read_bytes()
    offset, sop_class, ts = read_meta(data)
    assoc = Association(Endpoint("127.0.0.1", server.port, server.aet, dimse_timeout=10), [(sop_class, ts)])
    assert not assoc.peer_closed()
    deadline = time.monotonic() + 5
    while not assoc.peer_closed():
        assert time.monotonic() < deadline, "Orthanc's idle time-out never showed"
        time.sleep(0.1)
    assert server.sop_instance_uids() == set()


# -- receivers that abort, refuse or misbehave (pynetdicom and raw sockets) ----------------------------


def pynetdicom_scp(on_store) -> tuple[int, object]:
    """A pynetdicom SCP taking CT and MR in any transfer syntax; ``on_store(dataset, assoc)`` answers each file."""
    ae = AE(ae_title="PYSCP")
    ae.add_supported_context(Verification)
    for sop_class in (CTImageStorage, MRImageStorage):
        ae.add_supported_context(sop_class, ALL_TRANSFER_SYNTAXES)
    port = free_port()
    handler = [(evt.EVT_C_STORE, lambda event: on_store(event.dataset, event.assoc))]
    return port, ae.start_server(("127.0.0.1", port), block=False, evt_handlers=handler)


def test_abort_on_one_file_is_seen_at_once_the_file_fails_and_the_job_goes_on(tmp_path):
    """Instance 2 aborts the association every time, 3 once, 4 is refused (0xC000): the rest arrive, the
    job ends failed naming 2 and 4 with their reasons, in far less than one answer time-out (10 s)."""
    root = tmp_path / "src"
    write_corpus(root, patients=1, studies_per_patient=1, series_per_study=1, instances_per_series=6)
    by_number: dict[int, str] = {}
    tries: dict[int, int] = {}
    received: list[int] = []

    def on_store(ds, assoc):
        n = int(ds.InstanceNumber)
        by_number[n] = ds.SOPInstanceUID
        tries[n] = tries.get(n, 0) + 1
        if n == 2 or (n == 3 and tries[n] == 1):
            assoc.abort()
            return 0x0000  # never reaches the sender: the association is gone
        if n == 4:
            return 0xC000
        received.append(n)
        return 0x0000

    port, server = pynetdicom_scp(on_store)
    started = time.monotonic()
    try:
        store, states = send([root], port, "PYSCP", tmp_path, workers=1)
    finally:
        server.shutdown()
    elapsed = time.monotonic() - started
    [(job, state)] = states.items()
    assert state is JobState.FAILED
    assert sorted(received) == [1, 3, 5, 6]
    assert tries[2] == 3  # re-sent on fresh associations, a bounded number of times
    assert tries[3] == 2
    assert elapsed < 5, elapsed  # noticed at once: no 10 s answer time-out was waited for
    files = {f.sop_uid: f for f in store.files(job)}
    assert files[by_number[2]].state is FileState.FAILED
    assert "failed on this file each of the 3 times it was sent" in files[by_number[2]].message
    assert files[by_number[4]].state is FileState.REJECTED
    assert "0xC000 cannot understand (it could not read or process the file)" in files[by_number[4]].message
    assert {f.state for sop, f in files.items() if sop not in (by_number[2], by_number[4])} == {FileState.SENT}
    assert "2 of 6 files not delivered" in store.job(job).message
    hint = store.job(job).hint  # file names only there: the message also goes to the log
    assert all(Path(files[by_number[n]].path).name in hint for n in (2, 4))
    assert "Retry the job" in hint
    receipt = json.loads(Path(store.job(job).receipt).read_text())  # the receipt lists both, with the reasons
    listed = receipt["rejected"] + receipt["failed"]
    assert {r["path"]: r["reason"] for r in listed} == {
        files[by_number[n]].path: files[by_number[n]].message for n in (2, 4)
    }
    store.close()


def test_receiver_that_aborts_every_file_stops_the_job_after_a_few(tmp_path):
    root = tmp_path / "src"
    write_corpus(root, patients=1, studies_per_patient=1, series_per_study=1, instances_per_series=8)
    seen: list[str] = []

    def on_store(ds, assoc):
        seen.append(ds.SOPInstanceUID)
        assoc.abort()
        return 0x0000

    port, server = pynetdicom_scp(on_store)
    try:
        store, states = send([root], port, "PYSCP", tmp_path, workers=1)
    finally:
        server.shutdown()
    [(job, state)] = states.items()
    assert state is JobState.FAILED
    assert "failed on 3 files in a row" in store.job(job).message
    assert len(set(seen)) == 3  # three files, three tries each; the other five wait
    assert len(seen) == 9
    assert len(store.files(job, [FileState.FAILED])) == 3
    assert len(store.files(job, [FileState.PENDING])) == 5  # a retry sends them
    store.close()


def test_oversized_pdu_from_the_receiver_is_refused_not_allocated():
    """A receiver announcing a 4 GB PDU: the association ends at once with a plain message."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]

        def answer() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)  # the A-ASSOCIATE-RQ
                conn.sendall(b"\x02\x00\xff\xff\xff\xff")  # an A-ASSOCIATE-AC "of 4 GB"
                conn.recv(64)  # our A-ABORT, then the close

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        started = time.monotonic()
        with pytest.raises(AssociationLostError) as info:
            Association(Endpoint("127.0.0.1", port, "ANY", acse_timeout=5), [(Verification, IMPLICIT_LE)])
        thread.join(5)
    assert "4,294,967,295 bytes, more than the 1,048,576 agreed" in info.value.message
    assert time.monotonic() - started < 2
