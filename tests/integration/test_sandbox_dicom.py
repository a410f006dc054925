"""The sandbox's DICOM C-STORE receiver, driven by independent DICOM software (dcmtk) and pynetdicom.

dcmtk's ``storescu``/``echoscu`` must be Debian's (``./dev.sh`` installs ``dcmtk``); pynetdicom
installs console scripts of the same names, so the tools are picked by their ``--version`` text.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    RLELossless,
)
from pynetdicom import AE

from tests.integration.sandbox_data import Api
from tests.peers import dcmtk
from xnat_uploader.sandbox import dicom_scp
from xnat_uploader.sandbox.dicomio import NotDicom
from xnat_uploader.sandbox.httpd import HttpError
from xnat_uploader.sandbox.synthetic import WrittenFile, make_dataset, plan_corpus, write_corpus, write_dataset

ROUTE = "Project: DEMO Subject: S1 Session: S1_MR1"
TIMEOUT = 30  # seconds per dcmtk run: a hung association fails the test instead of the suite


# -- helpers ---------------------------------------------------------------------------------------
def storescu(
    port: int, *paths: Path, called: str = "XNAT", calling: str = "STORESCU", propose: str = "-x="
) -> subprocess.CompletedProcess:
    """Send files/folders in one association; dcmtk scans folders recursively. ``propose`` picks the
    transfer syntaxes dcmtk proposes (default: uncompressed only; ``-xy``: JPEG baseline too)."""
    argv = [dcmtk("storescu"), "-aet", calling, "-aec", called, "-to", "10", propose, "+sd", "+r"]
    argv += ["127.0.0.1", str(port), *map(str, paths)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT)


def echoscu(port: int, called: str = "XNAT", calling: str = "ECHOSCU") -> subprocess.CompletedProcess:
    argv = [dcmtk("echoscu"), "-aet", calling, "-aec", called, "-to", "10", "127.0.0.1", str(port)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT)


def corpus(root: Path, comments: str | None = None, seed: int = 0, **plan: int) -> list[WrittenFile]:
    """A small multi-series corpus (MR and CT, explicit and implicit VR), optionally with routing comments."""
    plan = {"patients": 1, "series_per_study": 3, "instances_per_series": 3, **plan}
    files = write_corpus(root, plan_corpus(seed=seed, **plan), rows=16, columns=16)
    if comments is not None:
        for f in files:
            ds = pydicom.dcmread(f.path)
            ds.PatientComments = comments
            ds.save_as(f.path)
    return files


def sop_uids(session: dict) -> set[str]:
    return {sop for instances in session["series"].values() for sop in instances}


def sessions(server, where: str = "prearchive") -> list[dict]:
    return [s for s in server.inventory().values() if s["where"] == where]


def stored_files(server) -> list[Path]:
    return sorted((server.data_dir / "prearchive").rglob("*.dcm"))


def pixel_bytes(path: Path) -> bytes:
    return pydicom.dcmread(path)["PixelData"].value


@pytest.fixture
def scp(sandbox_factory):
    """A sandbox with its DICOM receiver on a free port (AE title XNAT)."""
    return sandbox_factory(dicom_port=0)


@pytest.fixture
def api(scp):
    return Api(scp.url)


# -- dcmtk storescu/echoscu -----------------------------------------------------------------------
def test_storescu_corpus_with_routing_comments_lands_in_the_named_session(scp, api, tmp_path):
    files = corpus(tmp_path / "in", ROUTE)
    done = storescu(scp.dicom_port, tmp_path / "in")
    assert done.returncode == 0, done.stderr
    rows = [r for r in api.rows("/data/prearchive/projects/DEMO") if r["project"] == "DEMO"]
    assert len(rows) == 1, rows
    row = rows[0]
    assert (row["subject"], row["name"], row["folderName"]) == ("S1", "S1_MR1", "S1_MR1")
    assert row["tag"] == files[0].study_uid
    # XNAT's receiver sets neither SOURCE nor prevent_auto_commit: the idle timer will build it.
    assert (row["status"], row["SOURCE"], row["prevent_auto_commit"]) == ("RECEIVING", "", "false")
    (session,) = sessions(scp)
    assert (session["project"], session["subject"], session["label"]) == ("DEMO", "S1", "S1_MR1")
    assert sop_uids(session) == {f.sop_instance_uid for f in files}
    assert set(session["series"]) == {f.series_uid for f in files}
    assert scp.dicom.stats["stored"] == len(files)


def test_without_routing_info_each_patient_lands_in_unassigned(scp, api, tmp_path):
    files = corpus(tmp_path / "in", patients=2, series_per_study=2, instances_per_series=2)
    done = storescu(scp.dicom_port, tmp_path / "in")
    assert done.returncode == 0, done.stderr
    rows = api.rows("/data/prearchive/projects/Unassigned")
    assert sorted(r["name"] for r in rows) == sorted({f.patient_id for f in files})
    assert {r["project"] for r in rows} == {"Unassigned"}
    assert all(r["subject"] and r["status"] == "RECEIVING" for r in rows)
    found = sessions(scp)
    assert {s["project"] for s in found} == {"Unassigned"}
    assert set().union(*map(sop_uids, found)) == {f.sop_instance_uid for f in files}
    assert not [r for r in api.rows("/data/prearchive/projects/DEMO") if r["project"] == "DEMO"]


def test_same_study_sent_twice_merges_into_one_session(scp, api, tmp_path):
    files = corpus(tmp_path / "in", ROUTE)
    first_series = [f.path for f in files if f.series_uid == files[0].series_uid]
    assert storescu(scp.dicom_port, *first_series).returncode == 0
    first_row = api.rows("/data/prearchive/projects/DEMO")[0]
    done = storescu(scp.dicom_port, tmp_path / "in")  # the whole study again, first series included
    assert done.returncode == 0, done.stderr
    rows = api.rows("/data/prearchive/projects/DEMO")
    assert len(rows) == 1, rows
    assert rows[0]["timestamp"] == first_row["timestamp"]
    (session,) = sessions(scp)
    assert sop_uids(session) == {f.sop_instance_uid for f in files}
    counts = {sop: n for per_series in session["counts"].values() for sop, n in per_series.items()}
    assert {counts[p] for p in (f.sop_instance_uid for f in files if f.path in first_series)} == {2}


def test_jpeg_file_is_stored_as_received(scp, tmp_path):
    plan = plan_corpus(patients=1, series_per_study=1, instances_per_series=2, seed=3)
    plan[0].studies[0].series[0].transfer_syntax = JPEGBaseline8Bit
    files = write_corpus(tmp_path / "in", plan, rows=16, columns=16)
    done = storescu(scp.dicom_port, tmp_path / "in", propose="-xy")  # else dcmtk would try to decompress
    assert done.returncode == 0, done.stderr
    stored = {pydicom.dcmread(p).SOPInstanceUID: p for p in stored_files(scp)}
    assert set(stored) == {f.sop_instance_uid for f in files}
    for f in files:
        copy = pydicom.dcmread(stored[f.sop_instance_uid])
        assert copy.file_meta.TransferSyntaxUID == JPEGBaseline8Bit
        assert copy["PixelData"].value == pixel_bytes(f.path)


def test_echoscu_and_the_dicomscp_listing(scp, api):
    done = echoscu(scp.dicom_port)
    assert done.returncode == 0, done.stderr
    assert scp.dicom.stats["echoes"] == 1
    (receiver,) = api.get("/xapi/dicomscp").json()
    assert (receiver["aeTitle"], receiver["port"], receiver["enabled"]) == ("XNAT", scp.dicom_port, True)
    assert receiver["label"] == f"XNAT:{scp.dicom_port}"
    assert receiver["identifier"] == "dicomObjectIdentifier"
    assert receiver["whitelistEnabled"] is False


def test_a_sandbox_without_dicom_port_lists_no_receiver(sandbox):
    assert sandbox.dicom_port is None
    assert Api(sandbox.url).get("/xapi/dicomscp").json() == []


def test_wrong_called_ae_title_is_rejected(scp, tmp_path):
    corpus(tmp_path / "in", ROUTE, instances_per_series=1)
    done = storescu(scp.dicom_port, tmp_path / "in", called="NOT_XNAT")
    assert done.returncode != 0
    assert "called ae title not recognized" in done.stderr.lower()
    echo = echoscu(scp.dicom_port, called="NOT_XNAT")
    assert echo.returncode != 0
    assert "called ae title not recognized" in echo.stderr.lower()
    assert sessions(scp) == []
    assert scp.dicom.stats["rejected"] == 2


def test_calling_ae_titles_can_be_restricted(scp, api):
    scp.dicom.calling_aets = ["MODALITY1"]
    refused = echoscu(scp.dicom_port, calling="INTRUDER")
    assert refused.returncode != 0
    assert "calling ae title not recognized" in refused.stderr.lower()
    allowed = echoscu(scp.dicom_port, calling="MODALITY1")
    assert allowed.returncode == 0, allowed.stderr
    (receiver,) = api.get("/xapi/dicomscp").json()
    assert (receiver["whitelistEnabled"], receiver["whitelist"]) == (True, ["MODALITY1"])


def test_c_store_sessions_are_built_by_the_idle_timer(sandbox_factory, tmp_path):
    server = sandbox_factory(dicom_port=0, auto_build_after=0.3, rebuild_tick=0.05)
    files = corpus(tmp_path / "in", ROUTE, series_per_study=1)
    assert storescu(server.dicom_port, tmp_path / "in").returncode == 0
    api = Api(server.url)
    deadline = time.monotonic() + 10
    while (row := api.rows("/data/prearchive/projects/DEMO")[0])["status"] != "READY":
        assert time.monotonic() < deadline, row["status"]
        time.sleep(0.05)
    (session,) = sessions(server)
    assert sop_uids(session) == {f.sop_instance_uid for f in files}


def test_cli_starts_the_receiver_and_prints_its_address(tmp_path):
    argv = [sys.executable, "-m", "xnat_uploader.cli", "sandbox", "--data", str(tmp_path / "data")]
    argv += ["--dicom-port", "0", "--ae-title", "SANDBOX"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("Press Ctrl-C"):
                break
        found = re.search(r"DICOM receiver: AE title SANDBOX at 127\.0\.0\.1 port (\d+)", "".join(lines))
        assert found, lines
        assert echoscu(int(found[1]), called="SANDBOX").returncode == 0
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# -- pynetdicom client: edge cases dcmtk does not reach easily --------------------------------------
def _instance(path: Path, sop_class: str, syntax: str, sop_uid: str) -> Path:
    """A routed instance in ``syntax``; compressed syntaxes get (undecodable) encapsulated frames."""
    plan = plan_corpus(patients=1, series_per_study=1, instances_per_series=1, seed=9)
    study, series = plan[0].studies[0], plan[0].studies[0].series[0]
    series.sop_class, series.transfer_syntax = sop_class, syntax
    ds: Dataset = make_dataset(plan[0], study, series, sop_uid, 1, rows=8, columns=8)
    ds.PatientComments = ROUTE
    if syntax not in (ExplicitVRLittleEndian, ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian):
        ds.PixelData = encapsulate([b"\x00\x01" * 32])
        ds["PixelData"].VR = "OB"
    write_dataset(ds, path)
    return path


@pytest.mark.parametrize(
    ("syntax", "sop_class"),
    [
        (ExplicitVRBigEndian, "1.2.840.10008.5.1.4.1.1.4"),
        (DeflatedExplicitVRLittleEndian, "1.2.840.10008.5.1.4.1.1.4"),
        (JPEG2000Lossless, "1.2.840.10008.5.1.4.1.1.2"),
        (RLELossless, "1.2.840.10008.5.1.4.1.1.7"),
        (ExplicitVRLittleEndian, "1.3.12.2.1107.5.9.1"),  # a scanner's private non-image storage class
    ],
)
def test_transfer_syntaxes_and_private_classes_are_stored_as_received(scp, tmp_path, syntax, sop_class):
    sop_uid = "2.25.1789320451.77.1"
    sent = _instance(tmp_path / "one.dcm", sop_class, syntax, sop_uid)
    ae = AE(ae_title="PYNETDICOM")
    ae.add_requested_context(sop_class, syntax)
    assoc = ae.associate("127.0.0.1", scp.dicom_port, ae_title="XNAT")
    assert assoc.is_established
    try:
        status = assoc.send_c_store(sent)
    finally:
        assoc.release()
    assert status.Status == 0x0000
    (stored,) = stored_files(scp)
    copy = pydicom.dcmread(stored)
    assert copy.file_meta.TransferSyntaxUID == syntax
    assert copy.file_meta.MediaStorageSOPClassUID == sop_class
    assert copy["PixelData"].value == pixel_bytes(sent)
    (session,) = sessions(scp)
    assert (session["project"], session["label"], sop_uids(session)) == ("DEMO", "S1_MR1", {sop_uid})


def test_accepted_sockets_have_nodelay_and_a_large_pdu(scp):
    ae = AE(ae_title="PYNETDICOM")
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate("127.0.0.1", scp.dicom_port, ae_title="XNAT")
    assert assoc.is_established
    try:
        assert assoc.acceptor.maximum_length >= 128 * 1024
        deadline = time.monotonic() + 5
        while not (server_side := scp.dicom._ae.active_associations):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        sock = server_side[0].dul.socket.socket
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        assert assoc.send_c_echo().Status == 0x0000
    finally:
        assoc.release()


def test_unsupported_non_storage_class_is_not_accepted(scp):
    ae = AE(ae_title="PYNETDICOM")
    ae.add_requested_context("1.2.840.10008.5.1.4.1.2.2.1")  # Study Root Q/R FIND: not a receiver's job
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate("127.0.0.1", scp.dicom_port, ae_title="XNAT")
    try:
        assert assoc.is_established
        assert [str(cx.abstract_syntax) for cx in assoc.accepted_contexts] == ["1.2.840.10008.1.1"]
    finally:
        assoc.release()


def test_stop_closes_the_port(sandbox_factory):
    server = sandbox_factory(dicom_port=0)
    port = server.dicom_port
    assert port
    server.stop()
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


@pytest.mark.parametrize(
    ("failure", "status"),
    [
        (NotDicom("unable to read DICOM object x.dcm"), 0xC000),  # importer client error: cannot understand
        (HttpError(400, "Concurrent file sends of the same data is not supported."), 0xC000),
        (OSError(28, "No space left on device"), 0xA700),  # server trouble: out of resources
    ],
)
def test_filing_failures_answer_with_xnat_statuses(scp, tmp_path, monkeypatch, failure, status):
    def refuse(*args, **kwargs):
        raise failure

    monkeypatch.setattr(dicom_scp.sessions, "receive", refuse)
    sent = _instance(tmp_path / "one.dcm", "1.2.840.10008.5.1.4.1.1.4", ExplicitVRLittleEndian, "2.25.1789320451.78.1")
    ae = AE(ae_title="PYNETDICOM")
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.4", ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", scp.dicom_port, ae_title="XNAT")
    assert assoc.is_established
    try:
        assert assoc.send_c_store(sent).Status == status
    finally:
        assoc.release()
    assert scp.dicom.stats["failed"] == 1
    assert not any((scp.data_dir / "cache").iterdir())  # the received copy is not left behind
