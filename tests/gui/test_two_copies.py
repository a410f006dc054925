"""A second copy of the app: it brings the first window forward, and on a shared queue never touches its jobs."""

from __future__ import annotations

import argparse
import subprocess
import sys
import textwrap

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from xnat_uploader import app as app_module
from xnat_uploader import paths
from xnat_uploader.core.plan import Existing, Target
from xnat_uploader.core.queue.store import JobState
from xnat_uploader.gui.models.queue_model import COL_STATE, GREY
from xnat_uploader.gui.single_instance import SingleInstance
from xnat_uploader.gui.widgets.queue_panel import QueuePanel

ELSEWHERE = "Being sent by another copy of the app"


def test_a_second_window_on_the_queue_never_pauses_cancels_or_runs_the_first_ones_job(
    qtbot, sandbox_factory, make_controller, make_index
):
    server = sandbox_factory(faults="slow=0.5,path=/data/services/import")  # the job lasts while we look
    first = make_controller()
    first.connect(server.url, "admin", "admin")
    plan = first.plan(make_index(), Target("DEMO", mode="gradual"), Existing(), None, server.url)
    first.submit(plan, "gradual", {"workers": 1}, server_url=server.url, user="admin")
    qtbot.waitUntil(lambda: len(first.jobs()) == 1, timeout=5000)
    job_id = first.jobs()[0].id
    qtbot.waitUntil(lambda: first.store.job(job_id).files_sent >= 1, timeout=20000)

    # The second window opens the same queue, with no password saved: before, it paused every unfinished job
    # "until you sign in" and, once signed in, would have run it too.
    second = make_controller()
    panel = QueuePanel(second)
    qtbot.addWidget(panel)
    assert first.store.job(job_id).state is JobState.RUNNING
    assert second.owned_elsewhere(second.job(job_id)) is not None
    assert first.owned_elsewhere(first.job(job_id)) is None
    row = panel.model.row_of(job_id)
    assert panel.model.index(row, COL_STATE).data() == ELSEWHERE
    assert panel.model.index(row, COL_STATE).data(Qt.ItemDataRole.ForegroundRole) == GREY
    assert "pause or cancel it there" in panel.model.index(row, COL_STATE).data(Qt.ItemDataRole.ToolTipRole)
    panel.select_job(job_id)
    for action in ("pause", "resume", "cancel", "retry", "remove", "resend"):
        assert not panel.actions[action].isEnabled(), action
    assert panel.actions["details"].isEnabled()

    for act in (second.pause, second.cancel, second.remove):  # also when asked directly: refused, with the reason
        with qtbot.waitSignal(second.action_failed, timeout=5000) as refused:
            act(job_id)
        assert refused.args[0] == job_id
        assert "being sent by another copy of xnat-uploader" in refused.args[1]
    ran_here = []
    server.set_faults(None)
    qtbot.waitUntil(
        lambda: (
            (ran_here.extend(second.scheduler.running()) or True) and first.store.job(job_id).state is JobState.DONE
        ),
        timeout=30000,
    )
    assert ran_here == []
    qtbot.waitUntil(lambda: second.job(job_id).state is JobState.DONE, timeout=10000)  # its view follows
    assert panel.model.index(row, COL_STATE).data() == "Done"

    events = [event for _, event, _ in first.store.history(job_id)]
    assert events.count("running") == 1
    assert not {"paused", "cancelled", "queued"} & set(events)
    copies = [n for e in server.inventory().values() for s in e["counts"].values() for n in s.values()]
    assert sorted(copies) == [1] * 8
    assert server.action_count("commit") == 1


def test_pause_and_retry_in_the_owning_window_still_work(qtbot, sandbox_factory, make_controller, make_index):
    server = sandbox_factory(faults="slow=0.3,path=/data/services/import")
    first = make_controller()
    first.connect(server.url, "admin", "admin")
    second = make_controller()
    plan = first.plan(make_index(), Target("DEMO", mode="gradual"), Existing(), None, server.url)
    first.submit(plan, "gradual", {"workers": 1}, server_url=server.url, user="admin")
    qtbot.waitUntil(lambda: len(first.jobs()) == 1, timeout=5000)
    job_id = first.jobs()[0].id
    qtbot.waitUntil(lambda: first.store.job(job_id).files_sent >= 1, timeout=20000)
    first.pause(job_id)
    # A paused job belongs to no one (released just after the state is written).
    qtbot.waitUntil(lambda: first.store.job(job_id).state is JobState.PAUSED, timeout=10000)
    qtbot.waitUntil(lambda: first.store.job(job_id).owner is None, timeout=5000)
    first.cancel(job_id)
    qtbot.waitUntil(lambda: first.store.job(job_id).state is JobState.CANCELLED, timeout=10000)
    first.retry(job_id)  # retry claims it for this window at once: the other (not signed in) never starts it
    qtbot.waitUntil(lambda: first.store.job(job_id).state is not JobState.CANCELLED, timeout=10000)
    assert first.store.job(job_id).owner.token == first.store.owner.token
    server.set_faults(None)
    qtbot.waitUntil(lambda: first.store.job(job_id).state is JobState.DONE, timeout=30000)
    assert second.scheduler.running() == []
    copies = [n for e in server.inventory().values() for s in e["counts"].values() for n in s.values()]
    assert sorted(copies) == [1] * 8


def test_the_second_guard_finds_the_first_and_asks_it_to_come_forward(qtbot, tmp_path):
    first, second = SingleInstance(tmp_path), SingleInstance(tmp_path)
    assert first.acquire()
    assert not second.acquire()
    assert second.holder_pid() is not None
    with qtbot.waitSignal(first.come_forward_requested, timeout=5000):
        assert second.ask_to_come_forward()
    other_folder = SingleInstance(tmp_path / "elsewhere")  # another data folder is another queue: no conflict
    (tmp_path / "elsewhere").mkdir()
    assert other_folder.acquire()
    other_folder.release()
    first.release()
    assert second.acquire()  # once the first has quit, the next start is the first copy
    second.release()


def test_a_guard_left_by_a_crashed_copy_does_not_block_the_next_start(tmp_path):
    child = textwrap.dedent(
        f"""
        import os
        from pathlib import Path
        from PySide6.QtCore import QCoreApplication
        from xnat_uploader.gui.single_instance import SingleInstance
        app = QCoreApplication([])
        guard = SingleInstance(Path({str(tmp_path)!r}))
        assert guard.acquire()
        os._exit(0)  # a crash: no unlock, no socket closed
        """
    )
    subprocess.run([sys.executable, "-c", child], check=True, timeout=60)
    assert (tmp_path / "app.lock").exists()
    guard = SingleInstance(tmp_path)
    assert guard.acquire()
    guard.release()


def test_starting_the_app_again_brings_the_first_window_forward_and_exits(qtbot, monkeypatch):
    running = SingleInstance(paths.ensure(paths.data_dir()))  # the first copy, already up
    assert running.acquire()

    def must_not_run(*_args, **_kwargs):
        raise AssertionError("the second copy opened a window")

    monkeypatch.setattr(app_module, "_start_demo_if_wanted", lambda _args: None)
    monkeypatch.setattr("xnat_uploader.gui.main_window.MainWindow", must_not_run)
    monkeypatch.setattr(QApplication, "exec", must_not_run)
    try:
        with qtbot.waitSignal(running.come_forward_requested, timeout=5000):
            assert app_module.run_gui(argparse.Namespace(no_crash_dialog=True, quit_after=0)) == 0
    finally:
        running.release()


@pytest.mark.parametrize("minimised", [False, True])
def test_the_window_asked_to_come_forward_is_shown(qtbot, minimised):
    from PySide6.QtWidgets import QWidget

    window = QWidget()
    qtbot.addWidget(window)
    if minimised:
        window.showMinimized()
    app_module._bring_forward(window)
    assert window.isVisible()
    assert not window.isMinimized()
