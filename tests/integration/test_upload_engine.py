"""The upload engine against the sandbox over loopback: every instance arrives exactly once, byte-identical.

Each test scans a synthetic multi-study corpus, plans one job per study, runs the jobs through the
persistent queue, and checks the sandbox inventory (SOPInstanceUID -> SHA-256 and copies received)
against the source files, whose checksums must not change either.
"""

from __future__ import annotations

import hashlib
import json
import threading

import pytest

from xnat_uploader.core.dicom.index import build_index
from xnat_uploader.core.dicom.scan import scan_paths
from xnat_uploader.core.plan import Target, enqueue, plan_jobs
from xnat_uploader.core.queue.runner import JobControl, run_job
from xnat_uploader.core.queue.store import FileState, JobState, QueueStore
from xnat_uploader.core.transfer.base import RetryPolicy
from xnat_uploader.core.transfer.dicom_zip import DicomZipTransport, ZipSettings
from xnat_uploader.core.xnat.session import ConnectionOptions, XnatSession
from xnat_uploader.sandbox.synthetic import write_corpus

FAST_RETRY = RetryPolicy(attempts=8, base=0.01, cap=0.05)


@pytest.fixture
def corpus(tmp_path):
    written = write_corpus(
        tmp_path / "src", patients=2, studies_per_patient=1, series_per_study=3, instances_per_series=8
    )
    checksums = {w.sop_instance_uid: hashlib.sha256(w.path.read_bytes()).hexdigest() for w in written}
    return tmp_path / "src", written, checksums


def _enqueue_all(store, server, folder, mode, **options):
    result = scan_paths([folder])
    plan = plan_jobs(build_index(result.instances, result.rejected), Target(project="DEMO"))
    assert plan.ok, plan
    return [
        enqueue(store, job, server_url=server.url, user="admin", mode=mode, options={"workers": 4, **options})
        for job in plan.jobs
    ]


def _session(server, **options):
    return XnatSession(server.url, "admin", "admin", ConnectionOptions(pool_size=8, **options))


def _arrived(server):
    """SOP UID -> (sha256, copies), over every session, asserting no instance sits in two sessions."""
    out = {}
    for entry in server.inventory().values():
        for series_uid, sops in entry["series"].items():
            for sop, digest in sops.items():
                assert sop not in out, f"{sop} is in two sessions"
                out[sop] = (digest, entry["counts"][series_uid][sop])
    return out


def _assert_exactly_once(server, checksums, allow_resent=False):
    arrived = _arrived(server)
    assert set(arrived) == set(checksums)
    for sop, digest in checksums.items():
        assert arrived[sop][0] == digest, "stored bytes differ from the source"
        if not allow_resent:
            assert arrived[sop][1] == 1, "an instance was received more than once"


def _run_all(store, job_ids, session, tmp_path, **kwargs):
    kwargs.setdefault("retry", FAST_RETRY)
    return [run_job(store, j, session, receipts_dir=tmp_path / "receipts", **kwargs) for j in job_ids]


@pytest.mark.parametrize("mode", ["zip", "gradual"])
def test_multi_study_upload_arrives_exactly_once(sandbox, corpus, tmp_path, mode):
    folder, written, checksums = corpus
    with QueueStore(tmp_path / "q.db") as store:
        jobs = _enqueue_all(store, sandbox, folder, mode)
        assert len(jobs) == 2
        events = []
        states = _run_all(store, jobs, _session(sandbox), tmp_path, progress=events.append)
        assert states == [JobState.DONE, JobState.DONE]
        for job_id in jobs:
            job = store.job(job_id)
            assert job.files_sent == job.files_total == 24
            assert job.message.startswith("verified: 3/3 series")
            assert "/prearchive/projects/DEMO/" in job.uri
            receipt = (tmp_path / "receipts").glob(f"job-{job_id}-*.json")
            assert next(receipt).read_text().count('"sha256"') == 24
    _assert_exactly_once(sandbox, checksums)
    assert {e.phase for e in events} >= {"sending", "committing", "verifying", "done"}
    assert events[-1].bytes_done == events[-1].bytes_total
    for w in written:  # the user's files are untouched
        assert hashlib.sha256(w.path.read_bytes()).hexdigest() == checksums[w.sop_instance_uid]


@pytest.mark.parametrize("mode", ["zip", "gradual"])
@pytest.mark.parametrize(
    "faults",
    [
        "http500_every=3,path=/data/services/import",
        "drop_body_every=4,path=/data/services/import",
        "expire_after=5",
    ],
)
def test_uploads_survive_faults(sandbox_factory, corpus, tmp_path, mode, faults):
    folder, _, checksums = corpus
    server = sandbox_factory(faults=faults)
    transports = {"zip": lambda: DicomZipTransport(ZipSettings(batch_files=5)), "gradual": None}
    with QueueStore(tmp_path / "q.db") as store:
        jobs = _enqueue_all(store, server, folder, mode)
        kwargs = {"transports": {"zip": transports["zip"]}} if mode == "zip" else {}
        states = _run_all(store, jobs, _session(server), tmp_path, **kwargs)
        assert states == [JobState.DONE, JobState.DONE], [store.job(j).message for j in jobs]
    _assert_exactly_once(server, checksums, allow_resent=True)


def test_permanent_error_fails_fast_with_a_clear_message(sandbox, corpus, tmp_path):
    folder, _, _ = corpus
    sandbox.add_user("alice", "pw", projects=["OTHER"])
    sandbox.add_project("OTHER")
    with QueueStore(tmp_path / "q.db") as store:
        job_id = _enqueue_all(store, sandbox, folder, "zip")[0]
        session = XnatSession(sandbox.url, "alice", "pw")
        assert run_job(store, job_id, session, receipts_dir=tmp_path, retry=FAST_RETRY) is JobState.FAILED
        job = store.job(job_id)
        assert "DEMO" in job.message
        assert job.hint
        assert job.files_sent == 0


@pytest.mark.parametrize("mode", ["zip", "gradual"])
def test_cancel_then_resume_sends_only_the_rest(sandbox_factory, corpus, tmp_path, mode):
    folder, _, checksums = corpus
    server = sandbox_factory(faults="slow=0.05,path=/data/services/import")
    with QueueStore(tmp_path / "q.db") as store:
        job_id = _enqueue_all(store, server, folder, mode)[0]
        control = JobControl()
        session = _session(server)

        def pause_when_some_sent(progress):
            if progress.files_done >= 5:
                control.pause()

        transports = {"zip": lambda: DicomZipTransport(ZipSettings(batch_files=5))}
        state = run_job(
            store, job_id, session, receipts_dir=tmp_path, control=control, progress=pause_when_some_sent,
            transports=transports if mode == "zip" else None, workers=1, retry=FAST_RETRY,
        )  # fmt: skip
        assert state is JobState.PAUSED
        sent_before = {f.sop_uid for f in store.files(job_id, [FileState.SENT])}
        assert 5 <= len(sent_before) < 24
        server.set_faults(None)
        state = run_job(store, job_id, session, receipts_dir=tmp_path, transports=transports if mode == "zip" else None)
        assert state is JobState.DONE
    arrived = _arrived(server)
    study_sops = {f for f in arrived if f.split(".")[:-2] == next(iter(sent_before)).split(".")[:-2]}
    assert sent_before <= study_sops
    for sop in sent_before:
        assert arrived[sop][1] == 1, "an acknowledged file was sent again"
        assert arrived[sop][0] == checksums[sop]


def test_cancel_stops_within_a_second(sandbox_factory, corpus, tmp_path):
    folder, _, _ = corpus
    server = sandbox_factory(faults="slow=0.3,path=/data/services/import")
    with QueueStore(tmp_path / "q.db") as store:
        job_id = _enqueue_all(store, server, folder, "gradual")[0]
        control = JobControl()
        result = {}
        thread = threading.Thread(
            target=lambda: result.setdefault(
                "state", run_job(store, job_id, _session(server), receipts_dir=tmp_path, control=control)
            )
        )
        thread.start()
        threading.Event().wait(0.5)
        import time

        started = time.monotonic()
        control.cancel()
        thread.join(5)
        assert not thread.is_alive()
        assert time.monotonic() - started < 1.0
        assert result["state"] is JobState.CANCELLED
        assert store.job(job_id).message == "Cancelled by the user."


def test_archive_destination_commits_into_the_archive_and_verifies_there(sandbox, corpus, tmp_path):
    folder, _, checksums = corpus
    with QueueStore(tmp_path / "q.db") as store:
        jobs = _enqueue_all(store, sandbox, folder, "zip", destination="archive")
        assert _run_all(store, jobs, _session(sandbox), tmp_path) == [JobState.DONE, JobState.DONE]
        for job_id in jobs:
            job = store.job(job_id)
            assert "/archive/projects/DEMO/subjects/" in job.uri
            assert job.message.startswith("verified: 3/3 series")
    assert {e["where"] for e in sandbox.inventory().values()} == {"archive"}
    _assert_exactly_once(sandbox, checksums)


def test_direct_archive_skips_the_prearchive_and_is_verified_in_the_archive(sandbox, corpus, tmp_path):
    folder, _, checksums = corpus
    with QueueStore(tmp_path / "q.db") as store:
        jobs = _enqueue_all(store, sandbox, folder, "gradual", direct_archive=True)
        assert _run_all(store, jobs, _session(sandbox), tmp_path) == [JobState.DONE, JobState.DONE]
        for job_id in jobs:
            job = store.job(job_id)
            assert "/archive/projects/DEMO/" in job.uri
            assert job.message.startswith("verified: 3/3 series")
    assert {e["where"] for e in sandbox.inventory().values()} == {"archive"}
    _assert_exactly_once(sandbox, checksums)


@pytest.mark.parametrize(
    "settings",
    [ZipSettings(batch_files=5, compress_level=1), ZipSettings(batch_files=5, prebuild=True),
     ZipSettings(batch_files=7, compress_level=1, prebuild=True)],
    ids=["deflate", "prebuilt", "deflate-prebuilt"],
)  # fmt: skip
def test_zip_variants_for_slow_links_and_proxies(sandbox_factory, corpus, tmp_path, settings, monkeypatch):
    folder, _, checksums = corpus
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(temp))
    server = sandbox_factory(faults="drop_body_every=3,path=/data/services/import")
    with QueueStore(tmp_path / "q.db") as store:
        jobs = _enqueue_all(store, server, folder, "zip")
        states = _run_all(
            store, jobs, _session(server), tmp_path, transports={"zip": lambda: DicomZipTransport(settings)}
        )
        assert states == [JobState.DONE, JobState.DONE]
        for job_id in jobs:
            assert all(len(f.sha256) == 64 for f in store.files(job_id))
    _assert_exactly_once(server, checksums, allow_resent=True)
    assert list(temp.iterdir()) == []  # no temp file left behind


@pytest.mark.parametrize("mode", ["zip", "gradual"])
def test_a_copied_instance_is_sent_once_and_named_in_the_receipt(sandbox, corpus, tmp_path, mode):
    """The same instance twice in the folder (a copy under another name): XNAT keeps one file per instance,
    so one copy is sent, the job verifies, and the receipt says which copy was left out and why."""
    folder, written, checksums = corpus
    original = written[0].path
    copy = folder / "copy-of-first.dcm"
    copy.write_bytes(original.read_bytes())
    with QueueStore(tmp_path / "q.db") as store:
        jobs = _enqueue_all(store, sandbox, folder, mode)
        assert _run_all(store, jobs, _session(sandbox), tmp_path) == [JobState.DONE, JobState.DONE]
        for job_id in jobs:
            job = store.job(job_id)
            assert job.files_sent == job.files_total == 24  # the copy is not a file to send
            assert not store.unsent_files(job_id)
            assert job.message.startswith("verified: 3/3 series")
        receipts = [json.loads(p.read_text()) for p in (tmp_path / "receipts").glob("job-*.json")]
    left_out = [r for receipt in receipts for r in receipt["rejected"]]
    assert len(left_out) == 1
    assert {left_out[0]["path"], left_out[0]["reason"].split(" as ")[1].split(",")[0]} == {str(copy), str(original)}
    assert "same instance" in left_out[0]["reason"]
    _assert_exactly_once(sandbox, checksums)


class LosesOneFile:
    """DICOM-zip, but after the first send the server loses one stored file of the session (as a disk fault
    would): the commit archives the session one file short."""

    name = "zip"

    def __init__(self, server) -> None:
        self.inner, self.server, self.lost = DicomZipTransport(), server, ""

    def send(self, ctx, files):
        sent = self.inner.send(ctx, files)
        if not self.lost:
            store = self.server.app.store
            with store.lock:
                [session] = store.prearchive.values()
                scan = next(iter(session.content.scans.values()))
                name, stored = next(iter(scan.files.items()))
                stored.digest()  # still counted as received
                stored.path.unlink()
                del scan.files[name]
                self.lost = stored.series_uid
        return sent


def test_a_series_short_after_archiving_is_sent_again_and_merged(sandbox, corpus, tmp_path):
    """The re-send round commits with ``overwrite_files=true``: the short series is partly archived already, and
    XNAT refuses to merge instances it holds unless it may overwrite them (what it overwrites is this job's)."""
    folder, written, checksums = corpus
    one_study = [w for w in written if w.study_uid == written[0].study_uid]
    losing = LosesOneFile(sandbox)
    with QueueStore(tmp_path / "q.db") as store:
        [job_id] = _enqueue_all(store, sandbox, one_study[0].path.parent.parent, "zip", destination="archive")
        state = run_job(store, job_id, _session(sandbox), receipts_dir=tmp_path / "receipts", retry=FAST_RETRY,
                        transports={"zip": lambda: losing})  # fmt: skip
        job = store.job(job_id)
        assert state is JobState.DONE, job.message
        assert job.message == "verified: 3/3 series, 24 files"
    commits = [r for r in sandbox.request_log if "action=commit" in r.query]
    assert len(commits) == 2
    assert "overwrite_files" not in commits[0].query
    assert "overwrite_files=true" in commits[1].query
    [entry] = sandbox.inventory().values()
    assert entry["where"] == "archive"
    assert entry["series"] == {s: {w.sop_instance_uid: checksums[w.sop_instance_uid] for w in one_study
                                   if w.series_uid == s} for s in {w.series_uid for w in one_study}}  # fmt: skip
    resent = {sop for sop, n in entry["counts"][losing.lost].items() if n == 2}
    assert resent == {w.sop_instance_uid for w in one_study if w.series_uid == losing.lost}  # the short series again
    assert all(n == 1 for s, counts in entry["counts"].items() if s != losing.lost for n in counts.values())
