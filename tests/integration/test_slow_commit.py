"""Slow commits, lost answers and queued Direct-Archives against the sandbox over loopback (xnat-api.md 14).

XNAT builds and archives inside the commit request; a Direct-Archive trigger only queues the work. Each
test runs real upload jobs (or the Prearchive tab's archive) against a sandbox that behaves that way, and
checks the job's end, the number of commit/archive requests the sandbox received (exactly one), the
sandbox inventory (every instance once, nothing lost) and what the receipt says.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time

import pytest

from xnat_uploader import cli
from xnat_uploader.core.dicom.index import build_index
from xnat_uploader.core.dicom.scan import scan_paths
from xnat_uploader.core.plan import Target, enqueue, plan_jobs
from xnat_uploader.core.queue.runner import JobControl, run_job
from xnat_uploader.core.queue.store import JobState, QueueStore
from xnat_uploader.core.transfer.base import RetryPolicy
from xnat_uploader.core.xnat import ConnectionOptions, XnatClient
from xnat_uploader.core.xnat import errors as E
from xnat_uploader.core.xnat.listing import list_prearchive
from xnat_uploader.core.xnat.session import XnatSession
from xnat_uploader.sandbox.synthetic import make_dataset, plan_corpus, write_corpus, write_dataset

FAST_RETRY = RetryPolicy(attempts=8, base=0.01, cap=0.05)
COMMIT_ANSWER_LOST = "drop_answer_at=1,method=POST,path=/data/prearchive/projects"


def _corpus(folder, instances: int, series: int = 4):
    written = write_corpus(
        folder, patients=1, studies_per_patient=1, series_per_study=series, instances_per_series=instances,
        rows=8, columns=8,
    )  # fmt: skip
    return folder, {w.sop_instance_uid: hashlib.sha256(w.path.read_bytes()).hexdigest() for w in written}


def _many(folder, series: int, instances: int):
    """A session of ``series * instances`` small files, written fast: each series' first file is encoded by
    pydicom once, the others are its bytes with a same-length SOP Instance UID and InstanceNumber."""
    (patient,) = plan_corpus(patients=1, studies_per_patient=1, series_per_study=series, instances_per_series=1)
    (study,) = patient.studies
    checksums = {}
    for spec in study.series:
        placeholder = f"{spec.uid}.{'9' * 6}"
        template = folder / f"{spec.number:03d}" / "template.dcm"
        write_dataset(make_dataset(patient, study, spec, placeholder, 999999, rows=8, columns=8), template)
        data = template.read_bytes()
        template.unlink()
        # InstanceNumber (0020,0013), explicit or implicit VR little endian, value "999999"
        number = re.compile(rb"(\x20\x00\x13\x00(?:IS\x06\x00|\x06\x00\x00\x00))999999")
        assert data.count(placeholder.encode()) == 2
        assert len(number.findall(data)) == 1
        for i in range(1, instances + 1):
            uid = f"{spec.uid}.{i:06d}"
            one = number.sub(rb"\g<1>%06d" % i, data.replace(placeholder.encode(), uid.encode()))
            (folder / f"{spec.number:03d}" / f"IM{i:06d}.dcm").write_bytes(one)
            checksums[uid] = hashlib.sha256(one).hexdigest()
    return folder, checksums


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """One session of 2,000 small files (4 series of 500)."""
    return _many(tmp_path_factory.mktemp("big"), 4, 500)


@pytest.fixture
def small(tmp_path):
    return _corpus(tmp_path / "src", 6, series=2)


def _job(store, server, folder, mode="zip", **options):
    result = scan_paths([folder])
    plan = plan_jobs(build_index(result.instances, result.rejected), Target(project="DEMO"))
    assert plan.ok, plan
    assert len(plan.jobs) == 1
    opts = {"workers": 4, "destination": "archive", "batch_files": 100, **options}  # each zip answered < 1 s
    return enqueue(store, plan.jobs[0], server_url=server.url, user="admin", mode=mode, options=opts)


def _session(server, **options):
    # The ordinary answer time-out: shorter than the slow commits, long enough for a zip batch on a busy machine
    # (a batch that times out is sent again, which the exactly-once checks would count).
    options.setdefault("read_timeout", 2.0)
    return XnatSession(server.url, "admin", "admin", ConnectionOptions(pool_size=8, **options))


def _run(store, job_id, session, tmp_path, **kwargs):
    return run_job(store, job_id, session, receipts_dir=tmp_path / "receipts", retry=FAST_RETRY, **kwargs)


def _receipt(store, job_id):
    return json.loads(open(store.job(job_id).receipt, encoding="utf-8").read())


def _assert_archived_once(server, checksums):
    """Every instance in the archive, byte-identical, received once; nothing left anywhere else."""
    entries = list(server.inventory().values())
    assert [e["where"] for e in entries] == ["archive"]
    arrived = {sop: (digest, entries[0]["counts"][series][sop])
               for series, sops in entries[0]["series"].items() for sop, digest in sops.items()}  # fmt: skip
    assert {sop: d for sop, (d, _) in arrived.items()} == checksums
    assert {n for _, n in arrived.values()} == {1}


def test_a_2000_file_commit_slower_than_the_answer_time_out_is_sent_once(sandbox, big, tmp_path):
    folder, checksums = big
    sandbox.settings.commit_seconds_per_file = 0.0015  # XNAT takes 3 s for it; answers time out after 2 s
    seen: set[str] = set()
    stop = threading.Event()

    def watch_listing() -> None:  # the server answers other requests while the commit is held
        with XnatClient(sandbox.url, "admin", "admin", ConnectionOptions(read_timeout=1.0)) as other:
            while not stop.is_set():
                seen.update(s.status for s in other.prearchive("DEMO"))
                time.sleep(0.05)

    lister = threading.Thread(target=watch_listing)
    with QueueStore(tmp_path / "q.db") as store:
        job_id = _job(store, sandbox, folder)
        events = []
        lister.start()
        try:
            started = time.monotonic()
            state = _run(store, job_id, _session(sandbox), tmp_path, progress=events.append)
        finally:
            stop.set()
            lister.join()
        job = store.job(job_id)
        assert state is JobState.DONE, job.message
        assert job.message == "verified: 4/4 series, 2000 files"
        assert "/data/archive/projects/DEMO/" in job.uri
        assert _receipt(store, job_id)["server_notes"] == ["commit sent once; XNAT answered: archived"]
        assert _receipt(store, job_id)["counts"]["files"] == 2000
    assert time.monotonic() - started > 3.0  # the commit really took longer than the answer time-out
    assert sandbox.action_count("commit") == 1
    assert {"BUILDING", "_ARCHIVING"} <= seen
    assert "committing" in {e.phase for e in events}
    _assert_archived_once(sandbox, checksums)


def test_a_lost_commit_answer_after_the_archive_went_through(sandbox_factory, big, tmp_path):
    folder, checksums = big
    server = sandbox_factory(faults=COMMIT_ANSWER_LOST)  # XNAT archives, then the connection drops
    with QueueStore(tmp_path / "q.db") as store:
        job_id = _job(store, server, folder)
        assert _run(store, job_id, _session(server), tmp_path) is JobState.DONE, store.job(job_id).message
        job = store.job(job_id)
        assert job.message == "verified: 4/4 series, 2000 files"
        (note,) = _receipt(store, job_id)["server_notes"]
        assert note.startswith("commit sent once; the connection broke before XNAT answered;")
        assert note.endswith("XNAT showed the session archived")
    assert server.stats["drop_answer"] == 1
    assert [r.status for r in server.request_log if r.query.startswith("action=commit")] == [0]  # never answered
    assert server.action_count("commit") == 1
    _assert_archived_once(server, checksums)


def test_a_commit_cut_by_its_time_out_is_followed_until_archived(sandbox_factory, small, tmp_path):
    folder, checksums = small
    server = sandbox_factory()
    server.settings.commit_seconds = 2.0  # longer than the commit's own time-out below (as behind a proxy)
    events = []
    with QueueStore(tmp_path / "q.db") as store:
        job_id = _job(store, server, folder)
        state = _run(store, job_id, _session(server, commit_timeout=0.6), tmp_path, progress=events.append)
        assert state is JobState.DONE, store.job(job_id).message
        assert store.job(job_id).message == "verified: 2/2 series, 12 files"
        (note,) = _receipt(store, job_id)["server_notes"]
        assert "XNAT did not answer in time" in note
    assert server.action_count("commit") == 1
    waiting = [e.message for e in events if e.phase == "archiving"]
    assert any(m.startswith("XNAT is archiving... (") for m in waiting), waiting
    _assert_archived_once(server, checksums)


@pytest.mark.parametrize("answer", ["answered", "lost"])
def test_a_commit_ending_in_conflict_fails_with_xnats_words_and_a_hint(sandbox_factory, small, tmp_path, answer):
    folder, _ = small
    server = sandbox_factory()
    with QueueStore(tmp_path / "q.db") as store:
        first = _job(store, server, folder)
        assert _run(store, first, _session(server), tmp_path) is JobState.DONE
        server.settings.commit_seconds = 1.5
        # Another study under the same subject and session label: a commit merges, but not another study's UID.
        other = write_corpus(tmp_path / "other", seed=1, patients=1, series_per_study=1, instances_per_series=3)
        scanned = scan_paths([other[0].path.parent])
        label = store.job(first).spec
        target = Target(project="DEMO", subject=label.subject, session=label.session_label, overwrite="add")
        (planned,) = plan_jobs(build_index(scanned.instances, scanned.rejected), target).jobs
        options = {"workers": 4, "destination": "archive", "overwrite": "add"}
        again = enqueue(store, planned, server_url=server.url, user="admin", mode="zip", options=options)
        timeouts = {"commit_timeout": 0.5} if answer == "lost" else {}
        assert _run(store, again, _session(server, **timeouts), tmp_path) is JobState.FAILED
        job = store.job(again)
    assert "XNAT did not archive the session: it conflicts with a session already in the archive" in job.message
    assert "XNAT says: Invalid modification of session UID via archive process" in job.message
    assert "Archive it from the Prearchive tab" in job.hint
    assert "re-send" in job.hint
    assert server.action_count("commit") == 2  # one per job
    assert [e["status"] for e in server.inventory().values() if e["where"] == "prearchive"] == ["CONFLICT"]


def test_a_resumed_job_looks_before_it_commits_again(sandbox_factory, small, tmp_path):
    folder, checksums = small
    server = sandbox_factory()
    server.settings.commit_seconds = 1.0
    control = JobControl()
    with QueueStore(tmp_path / "q.db") as store:
        job_id = _job(store, server, folder)

        def pause_once_committing(p) -> None:
            if p.phase == "committing":
                threading.Timer(0.3, control.pause).start()  # the app quits while XNAT works on the commit

        assert _run(store, job_id, _session(server), tmp_path, control=control, progress=pause_once_committing) \
            is JobState.PAUSED  # fmt: skip
        assert _run(store, job_id, _session(server), tmp_path) is JobState.DONE, store.job(job_id).message
        assert store.job(job_id).message == "verified: 2/2 series, 12 files"
    assert server.action_count("commit") == 1  # the resumed job found the session archived
    _assert_archived_once(server, checksums)


def test_a_direct_archive_that_xnat_runs_5_s_after_the_trigger(sandbox_factory, small, tmp_path):
    folder, checksums = small
    server = sandbox_factory()
    server.settings.direct_archive_delay = 5.0
    with QueueStore(tmp_path / "q.db") as store:
        job_id = _job(store, server, folder, mode="gradual", destination="direct", direct_archive=True)
        started = time.monotonic()
        assert _run(store, job_id, _session(server), tmp_path) is JobState.DONE, store.job(job_id).message
        job = store.job(job_id)
        assert job.message == "verified: 2/2 series, 12 files"
        assert "/data/archive/projects/DEMO/" in job.uri
        (note,) = _receipt(store, job_id)["server_notes"]
        assert note == "Direct-Archive request sent once; XNAT answered: archived"
    assert time.monotonic() - started >= 5.0
    assert server.action_count("direct-archive") == 1
    log = server.request_log
    followed = [i for i, r in enumerate(log) if r.method == "GET" and "/xapi/direct-archive/" in r.path]
    assert [log[i].status for i in followed[:-1]] == [200] * (len(followed) - 1)  # followed while queued
    assert log[followed[-1]].status == 404  # until XNAT dropped it, having archived it
    verified = [i for i, r in enumerate(log) if "/scans" in r.path]
    assert verified
    assert min(verified) > followed[-1]
    _assert_archived_once(server, checksums)


def test_a_direct_archive_that_fails_into_the_prearchive_is_recoverable(sandbox_factory, small, tmp_path):
    folder, checksums = small
    server = sandbox_factory()
    server.settings.direct_archive_error = "The anonymization script failed"
    with QueueStore(tmp_path / "q.db") as store:
        job_id = _job(store, server, folder, mode="gradual", destination="direct", direct_archive=True)
        assert _run(store, job_id, _session(server), tmp_path) is JobState.FAILED
        job = store.job(job_id)
        assert "moved it into the prearchive (ERROR)" in job.message
        assert "XNAT says: Attempt to direct-archive failed: The anonymization script failed" in job.message
        assert "Archive it from the Prearchive tab" in job.hint
        assert "Retry" in job.hint
        assert "/prearchive/projects/DEMO/" in job.uri  # the job now points at the moved session
        server.settings.direct_archive_error = ""  # the administrator fixed the script; the user presses Retry
        assert _run(store, job_id, _session(server), tmp_path) is JobState.DONE, store.job(job_id).message
        assert store.job(job_id).message == "verified: 2/2 series, 12 files"
    assert server.action_count("direct-archive") == 1
    assert server.action_count("commit") == 1  # Retry archived it from the prearchive, once
    _assert_archived_once(server, checksums)


@pytest.mark.parametrize("answer", ["answered", "lost"])
def test_the_prearchive_tabs_archive_is_sent_once(sandbox_factory, small, tmp_path, answer):
    folder, checksums = small
    server = sandbox_factory()
    with QueueStore(tmp_path / "q.db") as store:
        job_id = _job(store, server, folder, destination="prearchive")
        assert _run(store, job_id, _session(server), tmp_path) is JobState.DONE
    server.settings.commit_seconds = 1.5  # /data/services/archive is as slow as a commit
    timeouts = {"commit_timeout": 0.5} if answer == "lost" else {}
    waits: list[str] = []
    with XnatClient(server.url, "admin", "admin", ConnectionOptions(read_timeout=0.5, **timeouts)) as client:
        (row,) = list_prearchive(client.session, "DEMO")
        result = client.archive(row.ref, cancel=threading.Event(), on_wait=waits.append)
        assert result.archived
        assert result.uri == f"/data/archive/projects/DEMO/subjects/{row.subject}/experiments/{row.name}"
    assert server.action_count("archive") == 1
    assert any("checking what XNAT did" in w for w in waits) is (answer == "lost")
    _assert_archived_once(server, checksums)


def test_the_command_line_archive_follows_a_slow_archive(sandbox_factory, small, tmp_path, cli_env, capsys):
    folder, checksums = small
    server = sandbox_factory()
    with QueueStore(tmp_path / "q.db") as store:
        job_id = _job(store, server, folder, destination="prearchive")
        assert _run(store, job_id, _session(server), tmp_path) is JobState.DONE
        ref = store.job(job_id).uri.split("/prearchive/projects/", 1)[1]
    server.settings.commit_seconds = 1.5
    code = cli.main(["prearchive", "archive", ref, "--url", server.url, "--user", "admin",
                     "--timeout", "0.5", "--commit-timeout", "0.5"])  # fmt: skip
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "Archived DEMO/" in out.out
    assert "-> /data/archive/projects/DEMO/" in out.out
    assert "XNAT did not answer in time; checking what XNAT did" in out.err
    assert server.action_count("archive") == 1
    _assert_archived_once(server, checksums)


@pytest.mark.parametrize("gone", ["empty", "500"])
def test_a_gone_prearchive_session_reads_as_gone(sandbox_factory, small, tmp_path, gone):
    folder, _ = small
    server = sandbox_factory()
    server.settings.gone_session_json = gone
    with QueueStore(tmp_path / "q.db") as store:
        job_id = _job(store, server, folder, destination="prearchive")
        assert _run(store, job_id, _session(server), tmp_path) is JobState.DONE
        uri = store.job(job_id).uri
    with XnatClient(server.url, "admin", "admin", ConnectionOptions(retry_backoff=0.01)) as client:
        (row,) = client.prearchive("DEMO")
        client.archive(row.ref)
        raw = client.session.request("GET", uri, params={"format": "json"}, expect=(200, 500), retries=0)
        assert raw.status_code == (500 if gone == "500" else 200)
        with pytest.raises(E.NotFoundError):
            client.prearchive_session(row.ref)
