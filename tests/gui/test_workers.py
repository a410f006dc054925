"""The worker adapter: progress, result, errors and cancel reach the GUI thread as signals."""

from __future__ import annotations

import threading
import time

from xnat_uploader.core.errors import Cancelled, UserError
from xnat_uploader.gui.workers import Worker, WorkerRunner


def counting(n, delay=0.0):
    def fn(cancel):
        for i in range(n):
            if cancel.is_set():
                raise Cancelled()
            time.sleep(delay)
            yield i
        return f"counted {n}"

    return fn


def test_run_synchronously_emits_throttled_progress_then_result(qtbot):
    worker = Worker(counting(10_000), min_interval=10)
    events = []
    worker.progressed.connect(events.append)
    with qtbot.waitSignal(worker.finished) as blocker:
        worker.run()
    assert blocker.args == ["counted 10000"]
    assert events[0] == 0  # the first event goes out at once
    assert events[-1] == 9999  # the last one is never lost
    assert len(events) == 2  # the rest were throttled


def test_user_error_becomes_failed_with_message_and_hint(qtbot):
    def fn(cancel):
        yield 1
        raise UserError("Project not found", "Check the project ID.")

    worker = Worker(fn)
    with qtbot.waitSignal(worker.failed) as blocker:
        worker.run()
    assert blocker.args == ["Project not found", "Check the project ID."]


def test_unexpected_error_is_caught_with_details(qtbot):
    def fn(cancel):
        yield 1
        raise ZeroDivisionError("boom")

    worker = Worker(fn)
    with qtbot.waitSignal(worker.failed) as blocker:
        worker.run()
    assert "ZeroDivisionError" in blocker.args[0]
    assert "Traceback" in blocker.args[1]


def test_real_thread_runs_off_the_gui_thread_and_cancels_quickly(qtbot):
    runner = WorkerRunner()
    threads = []

    def fn(cancel):
        threads.append(threading.current_thread())
        while True:
            if cancel.is_set():
                raise Cancelled()
            time.sleep(0.01)
            yield "tick"

    worker = Worker(fn)
    with qtbot.waitSignal(worker.progressed, timeout=5000):
        runner.start(worker)
    assert threads[0] is not threading.main_thread()
    started = time.monotonic()
    with qtbot.waitSignal(worker.cancelled, timeout=1000):
        worker.cancel()
    assert time.monotonic() - started < 1.0
    qtbot.waitUntil(lambda: runner.active == 0, timeout=2000)


def test_shutdown_stops_every_thread(qtbot):
    runner = WorkerRunner()
    outcomes = []
    for _ in range(3):
        worker = Worker(counting(10_000, delay=0.01))
        worker.cancelled.connect(lambda: outcomes.append("cancelled"))
        worker.finished.connect(lambda _: outcomes.append("finished"))
        runner.start(worker)
    assert runner.active == 3
    started = time.monotonic()
    assert runner.shutdown(timeout_ms=2000)
    assert time.monotonic() - started < 2.0
    assert runner.active == 0
    qtbot.waitUntil(lambda: len(outcomes) == 3, timeout=2000)
    assert outcomes == ["cancelled"] * 3
