"""The background queue: per-server limit, pause/resume, cancel, retry, and resume after a restart."""

from __future__ import annotations

import time

import pytest

from xnat_uploader.core.dicom.index import build_index
from xnat_uploader.core.dicom.scan import scan_paths
from xnat_uploader.core.plan import Target, enqueue, plan_jobs
from xnat_uploader.core.queue.scheduler import Scheduler
from xnat_uploader.core.queue.store import JobState, QueueStore
from xnat_uploader.core.xnat.session import ConnectionOptions, XnatSession
from xnat_uploader.sandbox.synthetic import write_corpus


def _wait(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def setup(sandbox_factory, tmp_path):
    server = sandbox_factory(faults="slow=0.05,path=/data/services/import")
    write_corpus(tmp_path / "src", patients=3, studies_per_patient=1, series_per_study=2, instances_per_series=4)
    result = scan_paths([tmp_path / "src"])
    plan = plan_jobs(build_index(result.instances), Target(project="DEMO"))
    store = QueueStore(tmp_path / "q.db")
    jobs = [
        enqueue(store, j, server_url=server.url, user="admin", mode="gradual", options={"workers": 2})
        for j in plan.jobs
    ]
    sessions = {}

    def session_for(url, user):
        return sessions.setdefault((url, user), XnatSession(url, user, "admin", ConnectionOptions(pool_size=4)))

    yield server, store, jobs, session_for, tmp_path
    store.close()


def test_runs_every_job_one_at_a_time_per_server(setup):
    server, store, jobs, session_for, tmp_path = setup
    seen = []
    scheduler = Scheduler(store, session_for, tmp_path / "r", on_state=lambda j, s: seen.append((j, s)))
    peak = []
    scheduler.start()
    scheduler.wake()
    _wait(lambda: (peak.append(len(scheduler.running())) or True) and all(
        store.job(j).state is JobState.DONE for j in jobs))  # fmt: skip
    assert scheduler.shutdown()
    assert max(peak) == 1
    assert [j for j, s in seen if s is JobState.DONE] == jobs
    assert len(server.inventory()) == 3


def test_a_job_queued_again_the_moment_it_finished_is_not_reported_done(setup, monkeypatch):
    """A re-send or retry may queue a job again as its run ends: the run's last report is the store's state."""
    import xnat_uploader.core.queue.scheduler as scheduler_module

    server, store, jobs, session_for, tmp_path = setup
    real_run_job, requeued = scheduler_module.run_job, []

    def run_then_requeue(store_, job_id, *args, **kwargs):
        state = real_run_job(store_, job_id, *args, **kwargs)
        if not requeued:  # once: as the GUI's "re-send missing" does right after a run
            requeued.append(job_id)
            store_.set_state(job_id, JobState.QUEUED, "Queued again.")
        return state

    monkeypatch.setattr(scheduler_module, "run_job", run_then_requeue)
    seen = []
    scheduler = Scheduler(store, session_for, tmp_path / "r", on_state=lambda j, s: seen.append((j, s)))
    scheduler.start()
    scheduler.wake()
    _wait(lambda: all(store.job(j).state is JobState.DONE for j in jobs) and len(seen) >= 2 * len(jobs) + 2)
    assert scheduler.shutdown()
    first = [s for j, s in seen if j == requeued[0]]
    assert first == [JobState.RUNNING, JobState.QUEUED, JobState.RUNNING, JobState.DONE]


def test_pause_resume_cancel_retry(setup):
    server, store, jobs, session_for, tmp_path = setup
    scheduler = Scheduler(store, session_for, tmp_path / "r")
    scheduler.pause(jobs[1])  # queued -> paused before it starts
    scheduler.cancel(jobs[2])  # queued -> cancelled
    scheduler.start()
    _wait(lambda: store.job(jobs[0]).state is JobState.DONE)
    assert store.job(jobs[1]).state is JobState.PAUSED
    assert store.job(jobs[2]).state is JobState.CANCELLED
    scheduler.resume(jobs[1])
    _wait(lambda: jobs[1] in scheduler.running())
    scheduler.pause(jobs[1])  # a running job stops at once and keeps what was acknowledged
    _wait(lambda: store.job(jobs[1]).state is JobState.PAUSED)
    scheduler.resume(jobs[1])
    scheduler.retry(jobs[2])
    _wait(lambda: all(store.job(j).state is JobState.DONE for j in jobs))
    assert scheduler.shutdown()
    assert len(server.inventory()) == 3


def test_a_restart_resumes_interrupted_jobs(setup):
    server, store, jobs, session_for, tmp_path = setup
    first = Scheduler(store, session_for, tmp_path / "r")
    first.start()
    _wait(lambda: store.job(jobs[0]).files_sent >= 2)
    assert first.shutdown()  # quitting pauses the running job...
    interrupted = store.job(jobs[0])
    assert interrupted.state is JobState.PAUSED
    store.set_state(jobs[0], JobState.RUNNING)  # ...a crash instead leaves it RUNNING
    second = Scheduler(store, session_for, tmp_path / "r")
    second.start()
    _wait(lambda: all(store.job(j).state is JobState.DONE for j in jobs))
    assert second.shutdown()
    copies = [c for e in server.inventory().values() for series in e["counts"].values() for c in series.values()]
    assert len(copies) == 24
    assert max(copies) == 1
