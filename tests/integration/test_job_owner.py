"""A run whose claim another copy took over (this process was frozen past the stale time) stops and leaves
the job to its new owner, whose run then sends the rest once."""

from __future__ import annotations

import sqlite3
import threading
import time

from xnat_uploader.core.dicom.index import build_index
from xnat_uploader.core.dicom.scan import scan_paths
from xnat_uploader.core.plan import Target, enqueue, plan_jobs
from xnat_uploader.core.queue.claims import JobOwnedElsewhere
from xnat_uploader.core.queue.runner import JobControl, run_job
from xnat_uploader.core.queue.store import JobState, QueueStore
from xnat_uploader.core.xnat.session import ConnectionOptions, XnatSession
from xnat_uploader.sandbox.synthetic import write_corpus


def test_a_run_that_lost_its_claim_stops_and_its_late_reports_change_nothing(sandbox_factory, tmp_path):
    server = sandbox_factory(faults="slow=0.2,path=/data/services/import")
    write_corpus(tmp_path / "src", patients=1, studies_per_patient=1, series_per_study=2, instances_per_series=4)
    result = scan_paths([tmp_path / "src"], workers=1)
    (planned,) = plan_jobs(build_index(result.instances), Target(project="DEMO", mode="gradual")).jobs
    path = tmp_path / "q.db"
    frozen, taker = QueueStore(path, beat_every=3600), QueueStore(path)  # frozen beats only when told below
    try:
        job_id = enqueue(frozen, planned, server_url=server.url, user="admin", mode="gradual", options={"workers": 1})
        outcome: dict[str, object] = {}

        def run() -> None:
            with XnatSession(server.url, "admin", "admin", ConnectionOptions(pool_size=2)) as session:
                try:
                    outcome["state"] = run_job(
                        frozen, job_id, session, receipts_dir=tmp_path / "r", control=JobControl()
                    )
                except JobOwnedElsewhere as exc:
                    outcome["error"] = exc

        thread = threading.Thread(target=run)
        thread.start()
        deadline = time.monotonic() + 30
        while frozen.job(job_id).files_sent < 1:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        db = sqlite3.connect(path)  # the running copy fell silent for two minutes (a laptop asleep)
        db.execute("UPDATE jobs SET heartbeat=? WHERE id=?", (time.time() - 120, job_id))
        db.commit()
        db.close()
        assert taker.claim(job_id) is None
        assert taker.set_state(job_id, JobState.RUNNING, "Taken over.")
        assert frozen.beat() == [job_id]  # it wakes: its next heartbeat finds the claim gone and stops the run
        thread.join(30)
        assert not thread.is_alive()
        error = outcome.get("error")
        assert isinstance(error, JobOwnedElsewhere), outcome
        assert error.owner.token == taker.owner.token
        job = taker.job(job_id)
        assert (job.state, job.message) == (JobState.RUNNING, "Taken over.")  # its "cancelled" was refused
        assert job.owner.token == taker.owner.token  # and its release too

        server.set_faults(None)
        with XnatSession(server.url, "admin", "admin", ConnectionOptions(pool_size=2)) as session:
            assert run_job(taker, job_id, session, receipts_dir=tmp_path / "r") is JobState.DONE
        copies = [n for e in server.inventory().values() for s in e["counts"].values() for n in s.values()]
        assert sorted(copies) == [1] * 8
        assert server.action_count("commit") == 1
    finally:
        frozen.close()
        taker.close()
