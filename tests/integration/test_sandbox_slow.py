"""The sandbox's slow and asynchronous steps, over raw HTTP (xnat-api.md 14): a synchronous commit that holds
its request while listings go on, a second commit meanwhile, a queued Direct-Archive, lingering file locks,
gone prearchive rows, lost answers."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from tests.integration.sandbox_data import Api, h3, study, zip_of


@pytest.fixture
def files(tmp_path):
    return study(tmp_path, seed=41)


def _upload(api, files, label="SLOW", **params):
    r = api.import_zip(zip_of(files), PROJECT_ID="DEMO", SUBJECT_ID="S", EXPT_LABEL=label, **params)
    assert r.status_code == 200, r.text
    return r.text.strip()


def _statuses_while(api, uri, until: threading.Event) -> list[str]:
    seen: list[str] = []
    while not until.is_set():
        rows = api.rows(uri)
        seen.append(rows[0]["status"] if rows else "gone")
        time.sleep(0.02)
    return seen


def test_a_slow_commit_shows_building_then_locked_archiving_and_a_second_commit_is_refused(sandbox, files):
    sandbox.settings.commit_seconds = 1.2
    api, other = Api(sandbox.url), Api(sandbox.url)
    uri = _upload(api, files)
    done = threading.Event()
    answer: list[requests.Response] = []
    committing = threading.Thread(
        target=lambda: (answer.append(api.post(uri, data={"action": "commit", "AA": "true"})), done.set())
    )
    started = time.monotonic()
    committing.start()
    time.sleep(0.2)
    assert other.rows(uri)[0]["status"] == "BUILDING"  # the build half of the held request
    time.sleep(0.6)  # the archive half
    second = other.post(uri, data={"action": "commit", "AA": "true"})
    seen = _statuses_while(other, uri, done)
    committing.join()
    assert time.monotonic() - started >= 1.2
    assert answer[0].status_code == 301
    assert answer[0].text == "/data/archive/projects/DEMO/subjects/S/experiments/SLOW"
    assert second.status_code == 409
    assert h3(second) == "session document locked"
    assert seen[0] == "_ARCHIVING"
    assert seen[-1] in ("_ARCHIVING", "gone")
    assert sandbox.action_count("commit") == 2
    assert [v["where"] for v in sandbox.inventory().values()] == ["archive"]


def test_a_second_commit_while_building_builds_again(sandbox, files):
    sandbox.settings.commit_seconds = 0.6
    api, other = Api(sandbox.url), Api(sandbox.url)
    uri = _upload(api, files)
    answers: list[int] = []
    first = threading.Thread(target=lambda: answers.append(api.post(uri, data={"action": "commit"}).status_code))
    first.start()
    time.sleep(0.2)
    assert other.rows(uri)[0]["status"] == "BUILDING"  # not a locking status (PrearcUtils)
    assert other.post(uri, data={"action": "commit"}).status_code == 200  # builds once more
    first.join()
    assert answers == [200]
    assert other.rows(uri)[0]["status"] == "READY"


def test_the_archive_service_holds_its_request_and_refuses_a_second_one(sandbox, files):
    sandbox.settings.commit_seconds = 0.8
    api, other = Api(sandbox.url), Api(sandbox.url)
    uri = _upload(api, files)
    answers: list[requests.Response] = []
    first = threading.Thread(target=lambda: answers.append(api.post("/data/services/archive", data={"src": uri})))
    first.start()
    time.sleep(0.3)
    assert other.rows(uri)[0]["status"] in ("ARCHIVING", "_ARCHIVING")
    second = other.post("/data/services/archive", data={"src": uri})
    assert second.status_code == 403
    assert h3(second) == "Operation already in progress on this prearchive entry."
    first.join()
    assert answers[0].status_code == 200
    assert sandbox.action_count("archive") == 1  # the refused one never reached the archiver


def test_a_lost_answer_is_carried_out_but_never_answered(sandbox, files):
    api = Api(sandbox.url)
    uri = _upload(api, files)
    sandbox.set_faults("drop_answer_at=1,method=POST,path=/data/prearchive/projects")
    with pytest.raises(requests.ConnectionError):
        api.post(uri, data={"action": "commit", "AA": "true"})
    assert sandbox.stats["drop_answer"] == 1
    assert [v["where"] for v in sandbox.inventory().values()] == ["archive"]  # the work was done
    assert [r.status for r in sandbox.request_log if r.method == "POST"][-1] == 0


def test_a_queued_direct_archive_answers_at_once_and_archives_later(sandbox, files):
    sandbox.settings.direct_archive_delay = 0.6
    api = Api(sandbox.url)
    uri = _upload(api, files, label="DA", **{"Direct-Archive": "true"})
    assert api.post(uri).status_code == 200
    assert api.get(uri).json()["status"] == "QUEUED_BUILDING"
    assert api.get("/data/projects/DEMO/experiments/DA", params={"format": "json"}).status_code == 404
    assert api.get("/data/projects/DEMO/experiments/DA/scans", params={"format": "json"}).status_code == 404
    deadline = time.monotonic() + 5
    while api.get(uri).status_code != 404:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert api.get("/data/projects/DEMO/experiments/DA", params={"format": "json"}).status_code == 200
    uid = files[0].study_uid
    rows = api.rows("/data/projects/DEMO/experiments", **{"xnat:imageSessionData/UID": uid,
                                                          "columns": "ID,label,xnat:imageSessionData/UID"})  # fmt: skip
    assert [(r["label"], r["xnat:imageSessionData/UID"]) for r in rows] == [("DA", uid)]
    assert api.rows("/data/projects/DEMO/experiments", **{"xnat:imageSessionData/UID": "1.2.3"}) == []


def test_lingering_file_locks_refuse_the_trigger_with_400(sandbox, files):
    sandbox.settings.lock_linger = 0.5
    api = Api(sandbox.url)
    uri = _upload(api, files, label="DA", **{"Direct-Archive": "true"})
    refused = api.post(uri)
    assert refused.status_code == 400
    assert "still receiving new files" in h3(refused)
    time.sleep(0.5)
    assert api.post(uri).status_code == 200


def test_a_failed_direct_archive_moves_into_the_prearchive_as_error_with_a_log(sandbox, files):
    sandbox.settings.direct_archive_error = "The anonymization script failed"
    api = Api(sandbox.url)
    uri = _upload(api, files, label="DA", **{"Direct-Archive": "true"})
    assert api.post(uri).status_code == 200
    deadline = time.monotonic() + 5
    while not api.rows("/data/prearchive/projects/DEMO"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    (row,) = api.rows("/data/prearchive/projects/DEMO")
    assert (row["name"], row["status"]) == ("DA", "ERROR")
    assert api.get(uri).status_code == 404
    log = api.get(f"/data{row['url']}/logs/last").text
    assert log.splitlines()[0] == "Attempt to direct-archive failed"
    assert log.endswith("The anonymization script failed")


@pytest.mark.parametrize(("setting", "status"), [("empty", 200), ("500", 500)])
def test_a_gone_prearchive_session(sandbox, files, setting, status):
    sandbox.settings.gone_session_json = setting
    api = Api(sandbox.url)
    uri = _upload(api, files)
    assert api.post("/data/services/archive", data={"src": uri}).status_code == 200
    r = api.get(uri, params={"format": "json"})
    assert r.status_code == status
    if status == 200:
        assert r.json()["ResultSet"]["Result"] == []  # XNAT 1.8.11 builds the table of matching rows: none
    assert api.get(uri).status_code == 404  # the session document (XML) is gone: 404 either way
    assert api.get(uri + "/logs/last").text == ""
