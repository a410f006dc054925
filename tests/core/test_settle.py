"""The rules that decide, from what XNAT shows, what a commit or a Direct-Archive does next (no server here)."""

from __future__ import annotations

import threading
import time

import pytest

from xnat_uploader.core.errors import Cancelled
from xnat_uploader.core.xnat import errors as E
from xnat_uploader.core.xnat.direct_watch import decide_direct
from xnat_uploader.core.xnat.settle import Next, Watch, answer_lost, call_cancellable, decide, not_sent

W, S, R, A, F = Next.WAIT, Next.SEND, Next.READY, Next.ARCHIVED, Next.FAILED


@pytest.mark.parametrize(
    ("row", "archived", "want_archive", "sent", "settled", "expected"),
    [
        # the row is gone: archived -> done; not archived -> wait a little, then it is lost
        (None, True, True, True, False, A),
        (None, False, True, True, False, W),
        (None, False, True, True, True, F),
        (None, False, True, False, False, F),  # a resumed job: nothing in flight, nothing to wait for
        # XNAT at work (BUILDING is not a locking status; _ARCHIVING is): wait, whatever else
        ("BUILDING", False, True, True, True, W),
        ("_ARCHIVING", False, True, True, True, W),
        ("QUEUED_ARCHIVING", False, True, False, False, W),
        ("ARCHIVING", False, False, True, False, W),
        ("MOVING", False, True, True, True, W),
        # ended in ERROR/CONFLICT: failed, unless nothing of ours was in flight (a retry tries again)
        ("CONFLICT", False, True, True, False, F),
        ("ERROR", False, True, True, False, F),
        ("CONFLICT", False, True, False, False, S),
        # READY: a prearchive commit is done; one that should archive waits, then sends once more
        ("READY", False, False, True, False, R),
        ("READY", False, False, False, False, R),
        ("READY", False, True, True, False, W),
        ("READY", False, True, True, True, S),
        ("READY", False, True, False, False, S),
        # still RECEIVING: XNAT never started; after a lost answer, only once that is clear
        ("RECEIVING", False, True, True, False, W),
        ("RECEIVING", False, True, True, True, S),
        ("RECEIVING", False, False, False, False, S),
    ],
)
def test_decide_after_a_commit_or_archive(row, archived, want_archive, sent, settled, expected):
    assert decide(row, archived, want_archive=want_archive, sent=sent, settled=settled) is expected


@pytest.mark.parametrize(
    ("direct", "row", "archived", "triggered", "settled", "expected"),
    [
        ("QUEUED_BUILDING", None, False, True, True, W),
        ("BUILDING", None, False, True, True, W),
        ("ARCHIVING", None, False, True, True, W),
        ("RECEIVING", None, False, False, False, S),  # not triggered yet
        ("RECEIVING", None, False, True, False, W),  # the trigger may be on its way
        ("RECEIVING", None, False, True, True, S),
        ("ERROR", None, False, True, False, F),  # not even moved into the prearchive
        (None, None, True, True, False, A),
        (None, "ERROR", False, True, False, F),
        (None, "CONFLICT", False, True, False, F),
        (None, "RECEIVING", False, True, True, W),  # moved and being rebuilt
        (None, "READY", False, True, False, W),
        (None, "READY", False, True, True, R),
        (None, None, False, True, False, W),
        (None, None, False, True, True, F),
    ],
)
def test_decide_after_a_direct_archive_trigger(direct, row, archived, triggered, settled, expected):
    assert decide_direct(direct, row, archived, triggered=triggered, settled=settled) is expected


def test_lost_answers_are_told_from_refusals():
    assert answer_lost(E.ServerTimeoutError("t")) == "XNAT did not answer in time"
    assert answer_lost(E.ConnectionLostError("c")) == "the connection broke before XNAT answered"
    assert answer_lost(E.ServerError("p", status=504)) == "a proxy gave up waiting for XNAT (HTTP 504)"
    assert answer_lost(E.ServerError("x", status=500)) == ""  # XNAT itself answered
    assert answer_lost(E.ArchiveFailedError("f", status=500)) == ""
    assert not_sent(E.ServerUnreachableError("u"))
    assert not_sent(E.ServerError("busy", status=429))
    assert not not_sent(E.ServerTimeoutError("t"))


def test_a_state_is_settled_after_the_grace_time_and_two_looks():
    watch = Watch(60, None, None, grace=0.05)
    assert not watch.settled(("RECEIVING",))
    time.sleep(0.06)
    assert watch.settled(("RECEIVING",))
    assert not watch.settled(("BUILDING",))  # a change starts again


def _pause_forever(watch: Watch) -> None:
    while True:
        watch.pause("the commit")


def test_the_watch_ends_at_its_limit_and_on_cancel():
    started = time.monotonic()
    with pytest.raises(E.StillRunningError, match="has not finished the commit after 0 minutes"):
        _pause_forever(Watch(0.05, None, None, first=0.02))
    assert 0.05 <= time.monotonic() - started < 0.5
    cancel = threading.Event()
    cancel.set()
    started = time.monotonic()
    with pytest.raises(Cancelled):
        Watch(60, cancel, None, first=5).pause("the commit")
    assert time.monotonic() - started < 1


def test_a_long_request_can_be_left_running_when_the_job_stops():
    cancel, release = threading.Event(), threading.Event()
    threading.Timer(0.1, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(Cancelled):
        call_cancellable(lambda: release.wait(5), cancel)
    assert time.monotonic() - started < 1
    release.set()
    slow: list[bool] = []
    assert call_cancellable(lambda: time.sleep(0.3) or 7, threading.Event(), slow_after=0.1,
                            on_slow=lambda: slow.append(True)) == 7  # fmt: skip
    assert slow == [True]
    with pytest.raises(E.ServerTimeoutError):
        call_cancellable(lambda: (_ for _ in ()).throw(E.ServerTimeoutError("t")), threading.Event())
