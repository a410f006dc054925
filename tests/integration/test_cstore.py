"""C-STORE transport against independent DICOM software over loopback: dcmtk's ``storescp`` and a pynetdicom SCP.

Every test runs real associations. ``storescp`` (dcmtk, a Debian package that ``dev.sh`` installs) is
started as a subprocess on a free port with its own output folder and killed in the fixture's
``finally``; what it wrote is read back to check SOPInstanceUIDs, transfer syntaxes and headers.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import JPEGBaseline8Bit
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
from pynetdicom.sop_class import CTImageStorage, SecondaryCaptureImageStorage, Verification

from tests.dicomgen import write_one
from tests.peers import dcmtk
from xnat_uploader.cli import main
from xnat_uploader.core.dicom.index import build_index
from xnat_uploader.core.dicom.scan import scan_paths
from xnat_uploader.core.plan import Target, enqueue, plan_jobs
from xnat_uploader.core.queue.runner import JobControl, run_job
from xnat_uploader.core.queue.store import FileState, JobState, QueueStore
from xnat_uploader.core.transfer import cstore
from xnat_uploader.core.transfer.base import RetryPolicy
from xnat_uploader.core.transfer.cstore import check_receiver
from xnat_uploader.core.transfer.dimse import (
    AssociationRejectedError,
    CalledAeTitleError,
    DicomTimeoutError,
    DicomUnreachableError,
    Endpoint,
)
from xnat_uploader.core.verify import verify
from xnat_uploader.core.xnat.listing import get_prearchive_session
from xnat_uploader.core.xnat.models import PrearchiveRef
from xnat_uploader.core.xnat.session import ConnectionOptions, XnatSession
from xnat_uploader.sandbox.synthetic import SECONDARY_CAPTURE, write_corpus

FAST_RETRY = RetryPolicy(attempts=4, base=0.01, cap=0.05)
SCP_AET = "STORESCP"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen | None = None, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"storescp exited with {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise AssertionError(f"nothing listens on port {port}")


class StoreSCP:
    """dcmtk's storescp in single-process mode: accepts every transfer syntax, unique file names."""

    def __init__(self, out: Path, port: int | None = None, extra: tuple[str, ...] = ()) -> None:
        self.out, self.port, self.extra = out, port or free_port(), extra
        self.proc: subprocess.Popen | None = None

    def start(self) -> StoreSCP:
        self.out.mkdir(parents=True, exist_ok=True)
        cmd = [dcmtk("storescp"), "-od", str(self.out), "-aet", SCP_AET, "+xa", "+uf", "-pdu", "131072",
               *self.extra, str(self.port)]  # fmt: skip
        # dcmtk leaves Nagle's algorithm on unless TCP_NODELAY is set: 40 ms per answer otherwise.
        env = {**os.environ, "TCP_NODELAY": "1"}
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_listening(self.port, self.proc)
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def received(self) -> dict[str, pydicom.Dataset]:
        """SOPInstanceUID -> dataset of every file storescp wrote."""
        out = {}
        for path in self.out.iterdir():
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            out[ds.SOPInstanceUID] = ds
        return out

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint("127.0.0.1", self.port, SCP_AET, "TESTSCU", acse_timeout=10, dimse_timeout=10)


@pytest.fixture
def storescp(tmp_path):
    started: list[StoreSCP] = []

    def make(out: str = "received", port: int | None = None, extra: tuple[str, ...] = ()) -> StoreSCP:
        scp = StoreSCP(tmp_path / out, port, extra).start()
        started.append(scp)
        return scp

    try:
        yield make
    finally:
        for scp in started:
            scp.kill()


@pytest.fixture
def corpus(tmp_path):
    """Two patients (MR, CT), 3 series each alternating explicit/implicit VR, plus one JPEG-baseline file."""
    root = tmp_path / "src"
    written = write_corpus(root, patients=2, studies_per_patient=1, series_per_study=3, instances_per_series=6)
    jpeg = write_one(root / "jpeg" / "IM_JPEG.dcm", seed=7, transfer_syntax=JPEGBaseline8Bit)
    sops = {w.sop_instance_uid for w in written} | {pydicom.dcmread(jpeg).SOPInstanceUID}
    return root, sops


def checksums(root: Path) -> dict[Path, str]:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}


def enqueue_folder(store: QueueStore, folder: Path, scp: StoreSCP, **options) -> list[int]:
    result = scan_paths([folder])
    plan = plan_jobs(build_index(result.instances, result.rejected), Target(project="DEMO"))
    assert plan.ok, plan
    opts = {"cstore_host": "127.0.0.1", "cstore_port": scp.port, "called_aet": SCP_AET, "calling_aet": "TESTSCU",
            "cstore_timeout": 10, "workers": 2, **options}  # fmt: skip
    return [enqueue(store, job, server_url="", user="", mode="cstore", options=opts) for job in plan.jobs]


def run_all(store: QueueStore, job_ids: list[int], tmp_path: Path) -> list[JobState]:
    return [run_job(store, j, None, receipts_dir=tmp_path / "receipts", retry=FAST_RETRY) for j in job_ids]


# -- connection test ----------------------------------------------------------------------------------


def test_echo_command_answers_and_explains_failures(storescp, capsys):
    scp = storescp()
    assert main(["echo", "--host", "127.0.0.1", "--port", str(scp.port), "--called-aet", SCP_AET]) == 0
    assert f"{SCP_AET}@127.0.0.1:{scp.port} answered" in capsys.readouterr().out
    closed = free_port()
    assert main(["echo", "--host", "127.0.0.1", "--port", str(closed), "--called-aet", SCP_AET]) == 1
    assert "connection refused" in capsys.readouterr().err


def test_refused_association_is_put_in_words(storescp):
    scp = storescp(extra=("--refuse",))
    with pytest.raises(AssociationRejectedError) as info:
        check_receiver(scp.endpoint)
    assert "rejected the association permanently" in info.value.message
    assert not info.value.transient


def test_wrong_called_ae_title(tmp_path):
    ae = AE(ae_title="XNAT")
    ae.require_called_aet = True
    ae.add_supported_context(Verification)
    port = free_port()
    server = ae.start_server(("127.0.0.1", port), block=False)
    try:
        with pytest.raises(CalledAeTitleError) as info:
            check_receiver(Endpoint("127.0.0.1", port, "NOTXNAT", acse_timeout=5))
        assert "called AE title not recognised" in info.value.message
        assert "'NOTXNAT'" in info.value.hint
        check_receiver(Endpoint("127.0.0.1", port, "XNAT", acse_timeout=5))  # the right title is answered
    finally:
        server.shutdown()


def test_silent_receiver_times_out_with_a_plain_message():
    with socket.socket() as listener:  # accepts TCP connections (backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        port = listener.getsockname()[1]
        with pytest.raises(DicomTimeoutError) as info:
            check_receiver(Endpoint("127.0.0.1", port, "XNAT", acse_timeout=0.3))
    assert "did not answer within 0.3 s" in info.value.message
    assert info.value.transient


def test_nothing_listening_fails_the_job_with_a_plain_message(tmp_path, corpus):
    folder, _ = corpus
    scp = StoreSCP(tmp_path / "never")  # not started: its port is closed
    with QueueStore(tmp_path / "q.db") as store:
        job = enqueue_folder(store, folder, scp)[0]
        assert run_all(store, [job], tmp_path) == [JobState.FAILED]
        assert "connection refused" in store.job(job).message
        assert store.job(job).files_sent == 0
    with pytest.raises(DicomUnreachableError):
        check_receiver(scp.endpoint)


# -- sending ------------------------------------------------------------------------------------------


def test_corpus_arrives_complete_with_each_transfer_syntax(storescp, corpus, tmp_path, monkeypatch):
    folder, sops = corpus
    before = checksums(folder)
    scp = storescp()
    looked = []  # the scan's SOP class and transfer syntax travel in the queue: no second look at headers
    real = cstore.read_meta
    monkeypatch.setattr(cstore, "read_meta", lambda head: looked.append(head) or real(head))
    with QueueStore(tmp_path / "q.db") as store:
        jobs = enqueue_folder(store, folder, scp)
        assert len(jobs) == 3
        assert run_all(store, jobs, tmp_path) == [JobState.DONE] * 3
        for j in jobs:
            job = store.job(j)
            assert job.files_sent == job.files_total
            assert "sent" in job.message
            assert "C-STORE" in job.message
            assert all(f.sha256 for f in store.files(j))
    received = scp.received()
    assert set(received) == sops
    assert len(list(scp.out.iterdir())) == len(sops)  # each exactly once
    syntaxes = {str(ds.file_meta.TransferSyntaxUID) for ds in received.values()}
    assert syntaxes == {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", JPEGBaseline8Bit}
    assert all("PatientComments" not in ds for ds in received.values())  # no routing unless asked
    assert checksums(folder) == before
    assert looked == []


def test_routing_comment_goes_into_the_sent_copy_only(storescp, corpus, tmp_path):
    folder, sops = corpus
    before = checksums(folder)
    scp = storescp()
    with QueueStore(tmp_path / "q.db") as store:
        jobs = enqueue_folder(store, folder, scp, route=True)
        assert run_all(store, jobs, tmp_path) == [JobState.DONE] * 3
        expected = {}
        for j in jobs:
            spec = store.job(j).spec
            for f in store.files(j):
                expected[f.sop_uid] = f"Project: DEMO Subject: {spec.subject} Session: {spec.session_label}"
                assert f.sha256 == before[Path(f.path)]  # the receipt names the user's bytes
    received = scp.received()
    assert set(received) == sops
    for sop, ds in received.items():
        assert ds.PatientComments == expected[sop]
    assert checksums(folder) == before  # the source files are untouched
    assert all("PatientComments" not in pydicom.dcmread(p) for p in before)


def test_killed_receiver_then_resume_sends_only_the_rest(storescp, corpus, tmp_path):
    folder, sops = corpus
    first = storescp("first")

    class KillingStore(QueueStore):
        """Kills storescp once 10 acknowledgements are recorded, as a crash of the receiver mid-transfer."""

        acks = 0

        def mark_sent(self, job_id, file_ids, sha256=None):
            super().mark_sent(job_id, file_ids, sha256)
            KillingStore.acks += len(file_ids)
            if KillingStore.acks >= 10:
                first.kill()

    with KillingStore(tmp_path / "q.db") as store:
        jobs = enqueue_folder(store, folder, first, workers=1)
        states = run_all(store, jobs, tmp_path)
        failed = [j for j, state in zip(jobs, states, strict=True) if state is JobState.FAILED]
        assert failed, "the jobs after the kill cannot have finished"
        assert all("connection refused" in store.job(j).message for j in failed)
        sent_before = {f.sop_uid for j in jobs for f in store.files(j, [FileState.SENT])}
        assert 10 <= len(sent_before) < len(sops)
        left = sops - sent_before

        second = storescp("second", port=first.port)  # the receiver is back on the same port
        assert run_all(store, jobs, tmp_path) == [JobState.DONE] * 3
        assert {f.sop_uid for j in jobs for f in store.files(j, [FileState.SENT])} == sops
    assert set(second.received()) == left  # nothing acknowledged before was sent again
    assert len(list(second.out.iterdir())) == len(left)


def test_pause_then_resume_sends_each_file_once(storescp, corpus, tmp_path):
    folder, sops = corpus
    scp = storescp()
    control = JobControl()

    class PausingStore(QueueStore):
        """The user presses pause as soon as the first acknowledgements are recorded."""

        def mark_sent(self, job_id, file_ids, sha256=None):
            super().mark_sent(job_id, file_ids, sha256)
            control.pause()

    with PausingStore(tmp_path / "q.db") as store:
        jobs = enqueue_folder(store, folder, scp, workers=1)
        big = max(jobs, key=lambda j: store.job(j).files_total)
        state = run_job(store, big, None, receipts_dir=tmp_path / "r", control=control)
        assert state is JobState.PAUSED
        assert 0 < store.job(big).files_sent < store.job(big).files_total
    with QueueStore(tmp_path / "q.db") as store:
        assert run_all(store, jobs, tmp_path) == [JobState.DONE] * 3
    assert set(scp.received()) == sops
    assert len(list(scp.out.iterdir())) == len(sops)  # nothing sent twice across the pause


def test_receiver_statuses_unsupported_classes_warnings_and_busy(tmp_path):
    """A pynetdicom SCP that takes CT and secondary capture but not MR; refuses SC (0x0122), warns (0xB000)
    for one CT instance, is out of resources (0xA700) once for another and answers a third too late once."""
    root = tmp_path / "src"
    write_corpus(root, patients=2, studies_per_patient=1, series_per_study=1, instances_per_series=4)  # MR, CT
    write_one(root / "sc" / "IM_SC.dcm", seed=5, SOPClassUID=SECONDARY_CAPTURE)
    busy_once: set[str] = set()
    late_once: set[str] = set()
    received: list[str] = []

    def on_store(event):
        ds = event.dataset
        if ds.SOPClassUID == SECONDARY_CAPTURE:
            return 0x0122
        if ds.InstanceNumber == 2 and ds.SOPInstanceUID not in busy_once:
            busy_once.add(ds.SOPInstanceUID)
            return 0xA700
        if ds.InstanceNumber == 3 and ds.SOPInstanceUID not in late_once:
            late_once.add(ds.SOPInstanceUID)
            time.sleep(2.5)  # answers after the sender's time-out, as a lost response: re-associate, resend
        received.append(ds.SOPInstanceUID)
        return 0xB000 if ds.InstanceNumber == 1 else 0x0000

    ae = AE(ae_title=SCP_AET)
    ae.add_supported_context(Verification)
    for sop_class in (CTImageStorage, SecondaryCaptureImageStorage):
        ae.add_supported_context(sop_class, ALL_TRANSFER_SYNTAXES)
    port = free_port()
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    try:
        scp = StoreSCP(tmp_path / "unused", port)
        with QueueStore(tmp_path / "q.db") as store:
            jobs = enqueue_folder(store, root, scp, cstore_timeout=1.0)
            states = dict(zip(jobs, run_all(store, jobs, tmp_path), strict=True))
            outcomes = {}
            for j in jobs:
                files = store.files(j)
                kind = "sc" if "IM_SC" in files[0].path else store.job(j).spec.session_label[-3:-1]
                outcomes[kind] = (states[j], [f.state for f in files], store.job(j))
    finally:
        server.shutdown()
    mr_job, ct_job, sc_job = outcomes["MR"], outcomes["CT"], outcomes["sc"]
    # MR: no accepted presentation context -> rejected for good, nothing sent.
    assert mr_job[0] is JobState.FAILED
    assert set(mr_job[1]) == {FileState.REJECTED}
    assert "does not accept MR Image Storage" in store_messages(tmp_path, mr_job[2].id)
    # SC: 0x0122 -> rejected, with the status in words.
    assert sc_job[0] is JobState.FAILED
    assert sc_job[1] == [FileState.REJECTED]
    assert "0x0122 SOP class not supported" in store_messages(tmp_path, sc_job[2].id)
    # CT: all stored; the busy answer was retried, the warning recorded in the history.
    assert ct_job[0] is JobState.DONE
    assert set(ct_job[1]) == {FileState.SENT}
    assert len(set(received)) == 4  # the late one may have been stored twice (sent again after the time-out)
    assert len(busy_once) == 1
    assert len(late_once) == 1
    with QueueStore(tmp_path / "q.db") as store:
        history = [detail for _, event, detail in store.history(ct_job[2].id) if event.startswith("warning")]
    assert any("0xB000 (coercion of data elements)" in h for h in history)
    assert any("1 instance(s) stored with warnings" in h for h in history)


def store_messages(tmp_path: Path, job_id: int) -> str:
    with QueueStore(tmp_path / "q.db") as store:
        return " | ".join(f.message for f in store.files(job_id))


def test_upload_command_cstore_without_xnat_login(storescp, corpus, tmp_path, capsys):
    folder, sops = corpus
    scp = storescp()
    argv = ["upload", str(folder), "-P", "DEMO", "--mode", "cstore", "--host", "127.0.0.1", "--port", str(scp.port),
            "--called-aet", SCP_AET, "--route", "--workers", "3"]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    assert set(scp.received()) == sops
    assert "the DICOM receiver builds the session" in capsys.readouterr().err


# -- into the sandbox's receiver (XNAT's routing) -----------------------------------------------------


def test_routed_upload_into_the_sandbox_receiver_lands_in_the_planned_session(sandbox_factory, corpus, tmp_path):
    """With ``route``, XNAT's default rules file each study under the planned project/subject/session,
    the runner finds the session in the prearchive by StudyInstanceUID, and once the receiver has built
    it, verification matches what was sent."""
    folder, sops = corpus
    server = sandbox_factory(dicom_port=0, auto_build_after=0.3, rebuild_tick=0.05)
    session = XnatSession(server.url, "admin", "admin", ConnectionOptions(pool_size=2))
    with QueueStore(tmp_path / "q.db") as store:
        result = scan_paths([folder])
        plan = plan_jobs(build_index(result.instances, result.rejected), Target(project="DEMO"))
        opts = {"cstore_host": "127.0.0.1", "cstore_port": server.dicom_port, "called_aet": "XNAT", "route": True,
                "workers": 2}  # fmt: skip
        jobs = [enqueue(store, j, server_url=server.url, user="admin", mode="cstore", options=opts) for j in plan.jobs]
        states = [run_job(store, j, session, receipts_dir=tmp_path / "r", retry=FAST_RETRY) for j in jobs]
        assert states == [JobState.DONE] * 3
        for j in jobs:
            job = store.job(j)
            assert "/prearchive/projects/DEMO/" in job.uri, job.message  # found by its StudyInstanceUID
        sessions = {(e["project"], e["subject"], e["label"]) for e in server.inventory().values()}
        assert sessions == {("DEMO", store.job(j).spec.subject, store.job(j).spec.session_label) for j in jobs}
        arrived = {sop for e in server.inventory().values() for sops_ in e["series"].values() for sop in sops_}
        assert arrived == sops
        deadline = time.monotonic() + 10
        for j in jobs:  # once built (READY), the server's scans match what was sent
            job = store.job(j)
            while get_prearchive_session(session, PrearchiveRef.parse(job.uri)).status != "READY":
                assert time.monotonic() < deadline, "the receiver never built the session"
                time.sleep(0.05)
            assert verify(session, job.uri, store.files(j, [FileState.SENT])).ok
    session.close()


def test_upload_command_cstore_with_url_uses_the_servers_host_and_finds_the_session(
    sandbox_factory, corpus, tmp_path, capsys, monkeypatch
):
    folder, sops = corpus
    server = sandbox_factory(dicom_port=0, ae_title="SITEAE")
    monkeypatch.setenv("XNAT_PASS", "admin")
    # No --host, --port or --called-aet: the server's host, and its receiver as /xapi/dicomscp lists it.
    argv = ["upload", str(folder), "-P", "DEMO", "--mode", "cstore", "--url", server.url, "--user", "admin"]
    argv += ["--route"]
    assert main(argv) == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    assert err.count("now in the prearchive: /data/prearchive/projects/DEMO/") == 3
    arrived = {sop for e in server.inventory().values() for sops_ in e["series"].values() for sop in sops_}
    assert arrived == sops
