"""Small pure pieces of the upload engine: batching, progress metering, retries, verification."""

from __future__ import annotations

import threading
import time

import pytest

from xnat_uploader.core.errors import Cancelled
from xnat_uploader.core.queue.store import FileRow, FileState
from xnat_uploader.core.transfer.base import AnyEvent, ProgressMeter, RetryPolicy, run_parallel
from xnat_uploader.core.transfer.dicom_zip import ZipSettings, arcname, make_batches, plan_batches
from xnat_uploader.core.verify import compare
from xnat_uploader.core.xnat import errors as E
from xnat_uploader.core.xnat.models import Scan


def row(i, size=100, series_number=1, series_uid="1.2.3", sop=None):
    return FileRow(i, 1, f"/d/IM{i}", "", size, sop or f"1.2.3.{i}", series_uid, series_number, FileState.SENT,
                   None, 0, "", "")  # fmt: skip


def test_batches_close_before_either_limit():
    files = [row(i, size=40) for i in range(10)]
    batches = make_batches(files, max_bytes=100, max_files=100)
    assert [len(b) for b in batches] == [2, 2, 2, 2, 2]
    assert [len(b) for b in make_batches(files, max_bytes=10_000, max_files=3)] == [3, 3, 3, 1]
    huge = [row(0, size=500), row(1, size=10)]
    assert [len(b) for b in make_batches(huge, max_bytes=100, max_files=10)] == [1, 1]
    assert make_batches([], 100, 10) == []


def test_batch_plan_starts_small_and_gives_every_worker_work():
    mb = 1 << 20
    files = [row(i, size=mb) for i in range(200)]  # 200 MB
    batches = plan_batches(files, ZipSettings(), workers=4)
    assert sum(len(b) for b in batches) == 200
    assert [f.id for b in batches for f in b] == list(range(200))  # order kept, nothing lost
    assert len(batches[0]) == 4  # the first batch only opens the session
    assert len(batches) - 1 >= 4  # then at least one batch per worker
    assert max(len(b) for b in batches[1:]) <= 49
    few = plan_batches([row(i, size=100) for i in range(10)], ZipSettings(), workers=4)
    assert [len(b) for b in few] == [10]  # tiny sessions stay one request
    capped = plan_batches(files, ZipSettings(batch_bytes=10 * mb), workers=2)
    assert max(sum(f.size for f in b) for b in capped) <= 10 * mb


def test_arcnames_are_stable_and_unique_per_instance():
    assert arcname(row(1)) == "1.2.3/1.2.3.1.dcm"
    assert len({arcname(row(i)) for i in range(50)}) == 50


def test_meter_reports_throttled_with_rate_and_eta():
    reports = []
    meter = ProgressMeter(7, bytes_total=1000, files_total=10, report=reports.append, interval=10)
    meter.add_bytes(100)  # first report goes out (nothing reported yet)
    meter.add_bytes(100)  # throttled
    meter.add_files(2)  # throttled
    meter.set_phase("committing")  # phase changes always report
    assert [r.phase for r in reports] == ["sending", "committing"]
    last = reports[-1]
    assert (last.job_id, last.bytes_done, last.files_done, last.fraction) == (7, 200, 2, 0.2)
    meter.undo_bytes(100)
    assert reports[-1].bytes_done == 100


def test_meter_add_counts_bytes_and_files_in_one_step():
    reports = []
    meter = ProgressMeter(7, bytes_total=1000, files_total=10, report=reports.append, interval=10,
                          bytes_done=100, files_done=1)  # fmt: skip
    meter.add(300, 1)  # first report goes out
    meter.add(200, 2)  # throttled, still counted
    assert [(r.bytes_done, r.files_done) for r in reports] == [(400, 2)]
    assert (meter.bytes_done, meter.files_done) == (600, 4)
    meter.finish()
    assert (reports[-1].bytes_done, reports[-1].files_done) == (600, 4)


def test_retry_policy_retries_transient_only():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise E.ServerError("HTTP 503", "temporary", status=503)
        return "ok"

    policy = RetryPolicy(attempts=5, base=0.001)
    assert policy.run(flaky, threading.Event()) == "ok"
    assert len(calls) == 3

    def permanent():
        calls.append(1)
        raise E.ProjectAccessError("no project", "check it", status=404)

    calls.clear()
    with pytest.raises(E.ProjectAccessError):
        policy.run(permanent, threading.Event())
    assert len(calls) == 1


def test_retry_after_is_honoured():
    calls = []

    def busy():
        calls.append(time.monotonic())
        if len(calls) == 1:
            error = E.ServerError("HTTP 429", "busy", status=429)
            error.retry_after = 0.3
            raise error
        return "ok"

    assert RetryPolicy(attempts=3, base=0.001).run(busy, threading.Event()) == "ok"
    assert calls[1] - calls[0] >= 0.3


def test_retry_gives_up_after_attempts_and_honours_cancel():
    def always():
        raise E.ConnectionLostError("lost", "")

    with pytest.raises(E.ConnectionLostError):
        RetryPolicy(attempts=3, base=0.001).run(always, threading.Event())
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        RetryPolicy(attempts=3, base=10).run(always, cancel)


def test_any_event():
    a, b = threading.Event(), threading.Event()
    either = AnyEvent(a, b)
    assert not either.wait(0.01)
    b.set()
    assert either.is_set()
    assert either.wait(1)


def test_verify_compares_per_series_number():
    sent = [row(i, series_number=1) for i in range(3)] + [
        row(10 + i, series_number=2, series_uid="1.2.4") for i in range(2)
    ]
    good = compare(sent, [Scan("1", file_count=3), Scan("2", file_count=2), Scan("99", file_count=5)], "/u")
    assert good.ok
    assert good.extra_scans == ["99"]
    assert good.summary() == "verified: 2/2 series, 5 files"
    short = compare(sent, [Scan("1", file_count=3), Scan("2", file_count=1)])
    assert not short.ok
    assert short.missing_series_uids() == {"1.2.4"}
    assert "scan 2 1/2" in short.summary()
    gone = compare(sent, [])
    assert gone.found == 0
    assert gone.missing_series_uids() == {"1.2.3", "1.2.4"}


# -- run_parallel -------------------------------------------------------------------------------------------
def test_run_parallel_returns_results_in_order_from_several_threads():
    seen_threads: set[str] = set()
    gate = threading.Barrier(3, timeout=5)

    def work(n: int) -> int:
        seen_threads.add(threading.current_thread().name)
        if n < 3:
            gate.wait()  # the first three items are held at once: three threads are really at work
        return n * n

    stop = AnyEvent(threading.Event(), threading.Event())
    assert run_parallel(work, list(range(50)), 3, stop, "t") == [n * n for n in range(50)]
    assert len(seen_threads) == 3
    assert all(name.startswith("t-") for name in seen_threads)
    assert not stop.is_set()


def test_run_parallel_stops_the_others_and_raises_the_first_failure():
    done: list[int] = []

    def work(n: int) -> int:
        if n == 5:
            raise ValueError("item 5")
        time.sleep(0.001)
        done.append(n)
        return n

    stop = AnyEvent(threading.Event(), threading.Event())
    with pytest.raises(ValueError, match="item 5"):
        run_parallel(work, list(range(1000)), 4, stop, "t")
    assert stop.events[1].is_set()  # the local stop, not the user's cancel
    assert not stop.events[0].is_set()
    assert len(done) < 100  # no new item was taken after the failure (at most the ones in flight)


def test_run_parallel_raises_cancelled_when_stopped_before_every_item_was_taken():
    cancel = threading.Event()

    def work(n: int) -> int:
        if n == 10:
            cancel.set()
        return n

    with pytest.raises(Cancelled):
        run_parallel(work, list(range(1000)), 2, AnyEvent(cancel, threading.Event()), "t")


def test_run_parallel_with_no_items_returns_nothing():
    assert run_parallel(lambda n: n, [], 4, AnyEvent(threading.Event(), threading.Event()), "t") == []
