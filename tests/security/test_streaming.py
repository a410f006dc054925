"""Archive members and large files are streamed with their known length, never held whole (issue 17, memory).

The gradual transport sends a small loose file from memory and streams the rest; here the threshold is lowered
so every file takes the streamed path, and the sandbox's copies are compared byte for byte with the sources.
"""

from __future__ import annotations

import hashlib
import warnings
import zipfile

import pytest

from tests.integration.conftest import sandbox, sandbox_factory  # noqa: F401 - the sandbox fixtures
from xnat_uploader.core.dicom.archives import DUPLICATE_NAME
from xnat_uploader.core.dicom.index import build_index
from xnat_uploader.core.dicom.scan import scan_paths
from xnat_uploader.core.plan import Target, enqueue, plan_jobs
from xnat_uploader.core.queue.runner import run_job
from xnat_uploader.core.queue.store import JobState, QueueStore
from xnat_uploader.core.transfer import gradual
from xnat_uploader.core.transfer.base import RetryPolicy
from xnat_uploader.core.xnat.session import ConnectionOptions, XnatSession
from xnat_uploader.sandbox.synthetic import write_corpus


@pytest.fixture
def mixed(tmp_path):
    """One study: half its files loose, half inside a zip. Returns the folder and SOP UID -> SHA-256."""
    written = write_corpus(tmp_path / "src", patients=1, studies_per_patient=1, series_per_study=2,
                           instances_per_series=4)  # fmt: skip
    digests = {w.sop_instance_uid: hashlib.sha256(w.path.read_bytes()).hexdigest() for w in written}
    with zipfile.ZipFile(tmp_path / "src" / "half.zip", "w", zipfile.ZIP_DEFLATED) as z:
        for w in written[::2]:
            z.write(w.path, f"../{w.path.parent.name}/{w.path.name}")  # climbing: only looked up in the archive
            w.path.unlink()
    return tmp_path / "src", digests


def _arrived(server) -> dict[str, str]:
    return {sop: d for entry in server.inventory().values() for s in entry["series"].values() for sop, d in s.items()}


def _job(store, server, folder, mode):
    result = scan_paths([folder], workers=1)
    plan = plan_jobs(build_index(result.instances, result.rejected), Target(project="DEMO"))
    [job] = plan.jobs
    return enqueue(store, job, server_url=server.url, user="admin", mode=mode, options={"workers": 3})


@pytest.mark.parametrize("mode", ["gradual", "zip"])
def test_members_and_large_files_are_streamed_and_arrive_intact(sandbox, mixed, tmp_path, monkeypatch, mode):  # noqa: F811
    folder, digests = mixed
    monkeypatch.setattr(gradual, "SMALL_MEMBER", 64)  # every file streams with its known length
    session = XnatSession(sandbox.url, "admin", "admin", ConnectionOptions(pool_size=4))
    with QueueStore(tmp_path / "q.db") as store:
        job = _job(store, sandbox, folder, mode)
        state = run_job(store, job, session, receipts_dir=tmp_path / "r", retry=RetryPolicy(attempts=2, base=0.01))
        assert state is JobState.DONE, store.job(job).message
        recorded = {f.sop_uid: f.sha256 for f in store.files(job)}
    assert _arrived(sandbox) == digests
    assert recorded == digests  # the receipt's checksums are those of the bytes sent


def test_a_file_that_changes_size_while_streamed_fails_with_the_reason(sandbox, mixed, tmp_path, monkeypatch):  # noqa: F811
    folder, _ = mixed
    monkeypatch.setattr(gradual, "SMALL_MEMBER", 64)
    session = XnatSession(sandbox.url, "admin", "admin", ConnectionOptions(pool_size=4))
    with QueueStore(tmp_path / "q.db") as store:
        job = _job(store, sandbox, folder, "gradual")
        loose = next(f for f in store.files(job) if not f.member)
        with open(loose.path, "ab") as fh:
            fh.write(b"appended after the scan")
        state = run_job(store, job, session, receipts_dir=tmp_path / "r", retry=RetryPolicy(attempts=2, base=0.01))
        assert state is JobState.FAILED
        assert "changed size since it was scanned" in store.job(job).message


def test_of_two_members_with_one_name_the_first_is_sent_and_the_second_reported(sandbox, tmp_path):  # noqa: F811
    first, second = write_corpus(tmp_path / "w", patients=2, studies_per_patient=1, series_per_study=1,
                                 instances_per_series=1)  # fmt: skip
    folder = tmp_path / "src"
    folder.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name: that is the point
        with zipfile.ZipFile(folder / "twice.zip", "w") as z:
            z.write(first.path, "IM1.dcm")
            z.write(second.path, "IM1.dcm")
    result = scan_paths([folder], workers=1)
    assert [r.sop_instance_uid for r in result.instances] == [first.sop_instance_uid]
    assert [(r.member, r.reason) for r in result.rejected] == [("IM1.dcm", DUPLICATE_NAME)]
    session = XnatSession(sandbox.url, "admin", "admin", ConnectionOptions(pool_size=2))
    with QueueStore(tmp_path / "q.db") as store:
        job = _job(store, sandbox, folder, "gradual")
        assert run_job(store, job, session, receipts_dir=tmp_path / "r") is JobState.DONE
    assert _arrived(sandbox) == {first.sop_instance_uid: hashlib.sha256(first.path.read_bytes()).hexdigest()}
