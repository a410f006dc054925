"""Every length a peer sends is capped: a DICOM receiver or an "XNAT" that announces gigabytes, never stops
sending, or trickles its answer gets a plain error at once (or at the time-out), and memory stays low.

The peers are real loopback servers scripted by ``_network_fakes.py``; the peak memory of a case is measured
in a child process (``_measure.py``) so it belongs to that case alone. Each test shows the message and the
time; the figures quoted in comments were measured on the 2-core development machine.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.security import _measure
from tests.security._network_fakes import FakeReceiver, ac_pdu, echo_rsp, pdata, read_pdu
from xnat_uploader.core.transfer import dimse
from xnat_uploader.core.xnat import errors as E
from xnat_uploader.core.xnat.models import parse_result_set, parse_uri_list
from xnat_uploader.core.xnat.whoami import WHO_AM_I_OLD, idle_timeout, user_in_answer

ROOT = Path(__file__).resolve().parents[2]
MB = 1024  # peaks are in KB


def measured(case: str, route: str = "wire") -> dict:
    """Run ``case`` of ``_measure.py`` in a child process: its outcome, time and peak memory."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-m", "tests.security._measure", case, route],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return json.loads(done.stdout.splitlines()[-1])


# --- DICOM -------------------------------------------------------------------------------------------------

FOUR_GB = "a message of 4,294,967,295 bytes, more than the 1,048,576 agreed; the association was ended."


@pytest.mark.parametrize("case", ["echo-ac-4gb", "echo-answer-4gb"])
def test_echo_refuses_a_4gb_pdu_at_once(case: str) -> None:
    # Issue 17: a fake receiver's 6-byte header made echo allocate 3.17 GB. Now: 0.002 s, nothing allocated.
    outcome = _measure.run(case)
    assert outcome["error"] == "AssociationLostError"
    assert FOUR_GB in outcome["message"]  # the first error is kept: the abort after it does not replace it
    assert outcome["seconds"] < 0.5


def test_echo_against_a_4gb_pdu_keeps_memory_low() -> None:
    outcome = measured("echo-answer-4gb")  # measured: peak 30.5 MB, +0.0 MB during the call
    assert outcome["error"] == "AssociationLostError"
    assert FOUR_GB in outcome["message"]
    assert outcome["rss_peak_kb"] - outcome["rss_before_kb"] < 16 * MB
    assert outcome["rss_peak_kb"] < 100 * MB


def _accept_then(answer) -> FakeReceiver:  # noqa: ANN001 - the script's second half
    def script(conn, receiver) -> None:  # noqa: ANN001
        conn.sendall(ac_pdu())
        read_pdu(conn)  # the C-ECHO-RQ
        answer(conn, receiver)

    return FakeReceiver(script)


def _fragments_forever(conn, receiver) -> None:  # noqa: ANN001
    while not receiver.stopped:  # data fragments, never the command: before, echo waited for ever
        conn.sendall(pdata(1, 0x00, b"\0" * 64))
        time.sleep(0.02)


def _answer_a_byte_at_a_time(conn, receiver) -> None:  # noqa: ANN001
    for byte in pdata(1, 0x03, echo_rsp()):  # 100+ bytes, each well within the per-read time-out
        if receiver.stopped:
            return
        conn.sendall(bytes([byte]))
        time.sleep(0.05)


@pytest.mark.parametrize("answer", [_fragments_forever, _answer_a_byte_at_a_time])
def test_an_answer_that_never_completes_ends_at_the_dimse_timeout(answer) -> None:  # noqa: ANN001
    with _accept_then(answer) as receiver:
        started = time.monotonic()
        with pytest.raises(dimse.DicomTimeoutError) as caught:
            dimse.echo(receiver.endpoint(timeout=0.5))
        seconds = time.monotonic() - started
    assert "did not answer within 0.5 s (waiting for the receiver's answer)" in caught.value.message
    assert 0.45 < seconds < 1.5  # one deadline for the whole answer, not 0.5 s per byte


def test_an_answer_cut_short_is_malformed_not_a_crash() -> None:
    def answer(conn, receiver) -> None:  # noqa: ANN001
        conn.sendall(pdata(1, 0x03, echo_rsp()[:-1]))  # the status element's value is one byte short

    with _accept_then(answer) as receiver:
        started = time.monotonic()
        with pytest.raises(dimse.AssociationLostError) as caught:
            dimse.echo(receiver.endpoint(timeout=2))
    assert "sent an answer that is cut short (command element (0000,0900) runs past" in caught.value.message
    assert time.monotonic() - started < 0.5  # before: struct.error out of echo


def test_item_lengths_of_an_accept_that_run_past_it_are_malformed() -> None:
    pdu = bytearray(ac_pdu())
    struct.pack_into(">H", pdu, 6 + 68 + 2, 0xFFFF)  # the first item claims 65,535 bytes

    def script(conn, receiver) -> None:  # noqa: ANN001
        conn.sendall(bytes(pdu))

    with FakeReceiver(script) as receiver, pytest.raises(dimse.AssociationLostError) as caught:
        dimse.echo(receiver.endpoint(timeout=2))
    assert "malformed PDU (item 0x10 runs past the end of the PDU)" in caught.value.message


# --- HTTP --------------------------------------------------------------------------------------------------

TOO_LARGE = "XNAT answered with more data than expected while listing projects (more than 64 MB)"
ROUTES = ["wire", "requests", "urlopen"]  # the lean path, requests itself (a form), urllib3 (a file body)


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("case", ["http-length-10gb", "http-endless-chunked", "http-gzip-bomb"])
def test_an_answer_over_64_mb_is_refused_with_a_plain_message(case: str, route: str) -> None:
    # Before: the 10 GB announcement waited for its body for ever (killed after 40 s), the endless chunked
    # answer grew to the 1.5 GB memory limit of the run. Now 0.004 s and 0.07-0.2 s.
    outcome = _measure.run(case, route)
    assert outcome["error"] == "AnswerTooLargeError"
    assert outcome["message"].startswith(TOO_LARGE)
    assert outcome["seconds"] < (0.5 if case == "http-length-10gb" else 3.0)


@pytest.mark.parametrize(("case", "route", "growth_mb"), [
    ("http-length-10gb", "requests", 16),  # measured: +0.1 MB
    ("http-endless-chunked", "wire", 100),  # measured: +65 MB (what is read before the cap is reached)
    ("http-gzip-bomb", "wire", 100),  # measured: +65 MB, for 320 MB inflated from 0.3 MB
])  # fmt: skip
def test_refusing_a_large_answer_keeps_memory_near_the_cap(case: str, route: str, growth_mb: int) -> None:
    outcome = measured(case, route)
    assert outcome["error"] == "AnswerTooLargeError"
    assert outcome["rss_peak_kb"] - outcome["rss_before_kb"] < growth_mb * MB


@pytest.mark.parametrize("route", ROUTES)
def test_an_endless_error_page_is_cut_and_its_status_reported(route: str) -> None:
    # Before: MemoryError at 1.3 GB after 2.7 s (requests path). Now the first MB is read, the connection closed.
    outcome = _measure.run("http-error-endless", route)
    assert outcome["error"] == "ServerError"
    assert outcome["message"].startswith("The XNAT server had a problem while listing projects (HTTP 500).")
    assert outcome["detail"] == "Disk quota exceeded"
    assert outcome["seconds"] < 3.0  # a GET is tried 3 times (0.5 s and 1 s apart); a POST once


# --- answers crafted to make the parsers slow --------------------------------------------------------------


def _fast(call, *args, **kwargs) -> float:  # noqa: ANN001
    started = time.monotonic()
    call(*args, **kwargs)
    return time.monotonic() - started


@pytest.mark.parametrize("page", [
    "<html><body>" + "<h3>" * 250_000,  # a lazy <h3>(.*?)</h3> rescanned the rest from each: 4.6 s per 64 KB
    "<html><body>" + "<" * 1_000_000,  # <[^>]+> did the same: 2.5 s per 64 KB
    "<html><body>" + "<b>Message</b>" * 70_000,
    "<html><body>" + "<title>" * 140_000,
])  # fmt: skip
def test_error_messages_come_out_of_a_1_mb_page_in_linear_time(page: str) -> None:
    assert _fast(E.extract_message, page) < 0.5
    assert _fast(E.sign_in_problem, 403, "", page, user="u", server="s") < 0.5


def test_a_long_uri_list_is_read_in_linear_time() -> None:
    text = "\r\n".join(f"/data/prearchive/projects/P/{i}/S" for i in range(500_000))  # ~18 MB
    assert _fast(parse_uri_list, text) < 3.0  # before: quadratic, 1.8 s for 20,000 lines
    assert len(parse_uri_list(text)) == 500_000


def test_an_odd_sign_in_answer_is_read_in_linear_time() -> None:
    assert _fast(user_in_answer, WHO_AM_I_OLD, "User '" * 170_000) < 0.1  # before: 7.7 s for 120 KB
    assert user_in_answer(WHO_AM_I_OLD, "User 'jdoe' is logged in") == "jdoe"


def test_a_session_timeout_of_5000_digits_is_no_timeout() -> None:
    assert idle_timeout('SESSION_EXPIRATION_TIME="1,' + "9" * 5000 + '"') is None  # before: ValueError
    assert idle_timeout('SESSION_EXPIRATION_TIME="1714550000000,900000"') == 900.0


def test_json_nested_too_deeply_is_not_an_xnat_table() -> None:
    with pytest.raises(E.UnexpectedResponseError, match="not the JSON table XNAT sends"):
        parse_result_set("[" * 100_000 + "]" * 100_000)  # before: RecursionError
