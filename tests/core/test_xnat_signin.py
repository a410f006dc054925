"""Telling "signed out" and "password expired" from XNAT's answers, and where the copies sent meanwhile went."""

from __future__ import annotations

import pytest

from xnat_uploader.core import strays
from xnat_uploader.core.queue.store import FileSpec, JobSpec, QueueStore
from xnat_uploader.core.xnat import errors as E
from xnat_uploader.core.xnat.whoami import WHO_AM_I, WHO_AM_I_OLD, idle_timeout, other_session_cookie, user_in_answer

SERVER = "https://xnat.example.org"
PAGE = "/app/template/XDATScreen_UpdateUser.vm"


@pytest.mark.parametrize(
    ("status", "location", "body", "kind"),
    [
        (302, SERVER + PAGE, "", E.PasswordExpiredError),  # XNAT's redirect: the site URL plus the page
        (302, "/xnat" + PAGE + "?x=1", "", E.PasswordExpiredError),
        (303, PAGE, "", E.PasswordExpiredError),
        (302, SERVER + "/app/template/InactiveAccount.vm", "", E.AuthenticationError),
        (
            403,
            "",
            "<html><body><h3>Your password has expired. Please try again after changing your password.</h3>"
            "</body></html>",
            E.PasswordExpiredError,
        ),  # fmt: skip
        (
            403,
            "",
            "Your security token has expired or is invalid. Please try again after updating your session.",
            E.AuthenticationError,
        ),  # fmt: skip
    ],
)
def test_sign_in_problems_are_recognised(status, location, body, kind):
    err = E.sign_in_problem(status, location, body, user="alice", server=SERVER)
    assert type(err) is kind
    assert not err.transient
    assert err.status == status
    assert SERVER in err.message


def test_the_expired_password_message_is_plain():
    err = E.sign_in_problem(302, SERVER + PAGE, "", user="alice", server=SERVER)
    assert err.message == (
        f"The password of alice on {SERVER} has expired; change it on the XNAT web site, then sign in here again."
    )
    assert isinstance(err, E.AuthenticationError)  # whoever handles a refused login handles this one too


@pytest.mark.parametrize(
    ("status", "location", "body"),
    [
        (302, SERVER + "/app/template/Login.vm", ""),  # the login page: not about the password
        (301, SERVER + "/data/archive/projects/P/subjects/S/experiments/E", ""),  # a commit's answer
        (403, "", "Specified user account has insufficient privileges for experiments in the P project."),
        (200, SERVER + PAGE, ""),
        (401, "", "Your password has expired"),
    ],
)
def test_other_answers_are_not_sign_in_problems(status, location, body):
    assert E.sign_in_problem(status, location, body, user="alice", server=SERVER) is None


def test_who_am_i_answers():
    assert user_in_answer(WHO_AM_I, "alice\n") == "alice"
    assert user_in_answer(WHO_AM_I, "guest") is None
    assert user_in_answer(WHO_AM_I, "") is None
    assert user_in_answer(WHO_AM_I_OLD, "User 'alice' is logged in") == "alice"
    assert user_in_answer(WHO_AM_I_OLD, "User 'guest' is logged in") is None
    assert user_in_answer(WHO_AM_I_OLD, "<html>a portal</html>") is None


def test_a_new_session_cookie_is_noticed():
    assert other_session_cookie("JSESSIONID=B2C3; Path=/; HttpOnly", "A1")
    assert other_session_cookie('SESSION_EXPIRATION_TIME="1,2"; Path=/, JSESSIONID=B2; Path=/', "A1")
    assert not other_session_cookie("JSESSIONID=A1; Path=/", "A1")
    assert not other_session_cookie('SESSION_EXPIRATION_TIME="1,900000"; Path=/', "A1")
    assert not other_session_cookie(None, "A1")
    assert other_session_cookie("JSESSIONID=B2", None)


def test_idle_timeout_from_the_expiration_cookie():
    assert idle_timeout('JSESSIONID=X; Path=/, SESSION_EXPIRATION_TIME="1714550000000,900000"; Path=/') == 900.0
    assert idle_timeout("SESSION_EXPIRATION_TIME=1714550000000,60000") == 60.0
    assert idle_timeout("JSESSIONID=X") is None
    assert idle_timeout(None) is None


def test_strays_are_merged_per_session_and_worded_for_the_job(tmp_path):
    with QueueStore(tmp_path / "q.db") as store:
        job = store.add_job(JobSpec(SERVER, "alice", "DEMO", "S1", "E1"), [FileSpec("/data/IM1", 10, "1.2", "1.3")])
        assert strays.listed(store, job) == []
        assert strays.note([]) == ""
        a, b = "/data/prearchive/projects/Unassigned/1/E1", "/data/prearchive/projects/Unassigned/2/E1"
        strays.record(store, job, [a], 1)
        strays.record(store, job, [a, b], 4)
        store.log(job, "resend", "not a stray")
        store.log(job, strays.EVENT, "{not json")
        assert strays.listed(store, job) == [{"uri": a, "files": 5}, {"uri": b, "files": 4}]
        note = strays.note(strays.listed(store, job))
        assert "9 file(s) also went to the Unassigned prearchive (2 sessions, listed in the receipt)" in note
