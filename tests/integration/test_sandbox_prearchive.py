"""Prearchive listing, session actions, batch services and the archive service."""

from __future__ import annotations

import time

import pytest

from tests.integration.sandbox_data import Api, expected_series, h3, study, zip_of

COLUMNS = [
    "project",
    "timestamp",
    "lastmod",
    "uploaded",
    "scan_date",
    "scan_time",
    "subject",
    "folderName",
    "name",
    "tag",
    "status",
    "url",
    "autoarchive",
    "prevent_anon",
    "prevent_auto_commit",
    "SOURCE",
    "VISIT",
    "PROTOCOL",
    "TIMEZONE",
]


@pytest.fixture
def api(sandbox):
    return Api(sandbox.url)


@pytest.fixture
def files(tmp_path):
    return study(tmp_path, seed=3)


def upload(api, files, label="E1", subject="S1", project="DEMO", **extra) -> str:
    r = api.import_zip(zip_of(files), PROJECT_ID=project, SUBJECT_ID=subject, EXPT_LABEL=label, **extra)
    assert r.status_code == 200, r.text
    return r.text.strip()


def test_listing_rows_have_xnats_columns_and_string_values(api, files):
    upload(api, files, SOURCE="uploader", VISIT="V1")
    r = api.get("/data/prearchive/projects", params={"format": "json"})
    body = r.json()
    assert "totalRecords" not in body["ResultSet"]
    row = body["ResultSet"]["Result"][0]
    assert list(row) == COLUMNS
    assert all(isinstance(v, str) for v in row.values())
    assert row["url"] == f"/prearchive/projects/DEMO/{row['timestamp']}/E1"
    assert row["tag"] == files[0].study_uid
    assert row["VISIT"] == "V1"
    assert row["autoarchive"] == "Manual"
    assert row["scan_date"].count(":") == 2  # an SQL timestamp text


def test_non_admin_sees_own_projects_and_no_unassigned(sandbox, api, files, tmp_path):
    sandbox.add_project("OTHER")
    sandbox.add_user("alice", "pw", projects=["DEMO"])
    upload(api, files, label="MINE")
    upload(api, study(tmp_path, seed=4), project="OTHER", label="THEIRS")
    api.import_dicom(files[0].path)  # -> Unassigned
    admin_rows = api.rows("/data/prearchive/projects/DEMO")
    assert {r["project"] for r in admin_rows} == {"DEMO", "Unassigned"}  # admins get Unassigned too
    alice = Api(sandbox.url, "alice", "pw")
    assert [r["name"] for r in alice.rows("/data/prearchive")] == ["MINE"]
    assert alice.get("/data/prearchive/projects/OTHER", params={"format": "json"}).status_code == 403
    assert alice.get("/data/prearchive", params={"tag": files[0].study_uid}).status_code == 403


def test_session_get_json_xml_and_not_built(api, files):
    uri = upload(api, files)
    assert api.rows(uri)[0]["name"] == "E1"
    r = api.get(uri)
    assert r.status_code == 404
    assert "session document is not available" in h3(r)
    assert api.post(uri, data={"action": "build"}).text == uri
    xml = api.get(uri)
    assert xml.status_code == 200
    assert "<xnat:MRSession" in xml.text
    scans = api.rows(uri + "/scans")
    assert [s["ID"] for s in scans] == ["1", "2"]
    assert set(scans[0]) == {"ID", "xsiType", "series_description"}
    res = api.rows(uri + "/scans/1/resources")
    assert res[0]["label"] == "DICOM"
    assert res[0]["file_count"] == "3"
    names = [f["Name"] for f in api.rows(uri + "/scans/1/resources/DICOM/files")]
    assert len(names) == 3
    z = api.get(uri, params={"format": "zip"})
    assert z.headers["Content-Type"] == "application/zip"
    assert z.content[:2] == b"PK"


def test_actions_build_commit_move_reset_set_status_and_errors(sandbox, api, files):
    sandbox.add_project("MOVED")
    uri = upload(api, files)
    r = api.post(uri, params={"action": "commit"})
    assert (r.status_code, r.text) == (200, uri)
    assert api.rows(uri)[0]["status"] == "READY"
    r = api.post(uri, data={"action": "set-status", "status": "ERROR"})
    assert r.status_code == 200
    assert api.rows(uri)[0]["status"] == "ERROR"
    assert api.post(uri, data={"action": "set-status", "status": "_ARCHIVING"}).status_code == 400
    assert api.post(uri, data={"action": "reset-status"}).status_code == 200
    assert api.rows(uri)[0]["status"] == "READY"
    missing = api.post(uri)
    assert missing.status_code == 400
    assert "No action parameter" in h3(missing)
    for action in ("archive", "rebuild"):
        r = api.post(uri, data={"action": action})
        assert r.status_code == 400
        assert "unsupported action" in h3(r)
    assert api.post(uri, data={"action": "move", "newProject": "NOPE"}).status_code == 403
    r = api.post(uri, json={"action": "move", "newProject": "MOVED"})  # a JSON body works too
    assert r.status_code == 301
    assert "Location" not in r.headers
    assert r.text == uri.replace("/DEMO/", "/MOVED/")
    assert api.rows(r.text)[0]["project"] == "MOVED"


def test_commit_auto_archives_for_project_code_4(sandbox, api, files):
    sandbox.add_project("AUTO", prearchive_code=4)
    uri = upload(api, files, project="AUTO", subject="SA", label="EA")
    assert api.get("/data/projects/AUTO/prearchive_code").text == "4"
    r = api.post(uri, params={"action": "commit"})
    assert r.status_code == 301
    assert "Location" not in r.headers
    assert r.text == "/data/archive/projects/AUTO/subjects/SA/experiments/EA"
    assert next(iter(sandbox.inventory().values()))["where"] == "archive"


def test_delete_and_its_quirks(sandbox, api, files):
    uri = upload(api, files)
    assert api.delete(uri).status_code == 200
    assert sandbox.inventory() == {}
    assert api.delete(uri).status_code == 200  # unknown folder in a known project: still 200
    r = api.delete("/data/prearchive/projects/NOPE/20240101_000000000/X")
    assert r.status_code == 500
    assert h3(r) == "No project named NOPE"


def test_archive_service_with_relabel(sandbox, api, files):
    uri = upload(api, files)
    r = api.post("/data/services/archive", data={"src": uri, "subject": "NEWSUBJ", "session": "NEWLABEL"})
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/uri-list"
    assert r.text == "/data/archive/projects/DEMO/subjects/NEWSUBJ/experiments/NEWLABEL\r\n"
    assert api.rows("/data/prearchive") == []
    inv = next(iter(sandbox.inventory().values()))
    assert (inv["where"], inv["subject"], inv["label"]) == ("archive", "NEWSUBJ", "NEWLABEL")
    assert inv["series"] == expected_series(files)


def test_archive_merge_then_conflict_then_append_and_redirect(sandbox, api, files, tmp_path):
    """One session through the archive service always merges (XNAT's ``Archiver`` passes allowSessionMerge=true);
    it refuses files the archived session holds unless ``overwrite`` lets them be replaced."""
    upload(api, files[:3], label="X")
    first = api.rows("/data/prearchive")[0]
    api.post("/data/services/archive", data={"src": "/data" + first["url"]})
    uri = upload(api, files[3:], label="X")  # the second series of the same study, same label
    r = api.post("/data/services/archive", data={"src": uri})
    assert r.status_code == 200, r.text  # merged without ``overwrite``
    inv = next(iter(sandbox.inventory().values()))
    assert inv["series"] == expected_series(files)  # both series now in one archived session
    again = upload(api, files[:3], label="X")  # the first series once more
    r = api.post("/data/services/archive", data={"src": again})
    assert r.status_code == 500
    assert h3(r) == "FAILED: Session already exists with matching files."
    assert api.rows(again)[0]["status"] == "CONFLICT"
    r = api.post("/data/services/archive", data={"src": again, "overwrite": "append", "redirect": "true"})
    assert r.status_code == 303
    assert r.headers["Location"].endswith("/data/archive/projects/DEMO/subjects/S1/experiments/X")
    other = upload(api, study(tmp_path, seed=9), label="X")  # another study under the same label
    r = api.post("/data/services/archive", data={"src": other})
    assert r.status_code == 500
    assert "Invalid modification of session" in h3(r)


def test_archive_service_errors(sandbox, api, files):
    r = api.post("/data/services/archive")
    assert r.status_code == 404
    assert h3(r) == "Unknown prearchive session."
    r = api.post("/data/services/archive", data={"src": "/data/archive/projects/DEMO/subjects/S/experiments/E"})
    assert r.status_code == 400
    assert h3(r).startswith("Invalid src URI")
    r = api.post("/data/services/archive", data={"src": "/data/prearchive/projects/DEMO/20240101_000000000/NOPE"})
    assert r.status_code == 404
    assert h3(r).endswith("not found.")
    api.import_dicom(files[0].path)
    row = api.rows("/data/prearchive/projects/Unassigned")[0]
    r = api.post("/data/services/archive", data={"src": row["url"]})
    assert r.status_code == 400
    assert h3(r) == "Cannot archive sessions from the Unassigned folder."
    assert api.get("/data/services/archive").status_code == 405


def test_archive_service_by_parameters_and_many_sources(sandbox, api, files, tmp_path):
    uri = upload(api, files, label="P1")
    project, ts, folder = uri.split("/")[-3:]
    r = api.post(
        "/data/services/archive", data={"project": project, "PREARC_TIMESTAMP": ts, "PREARC_SESSION_FOLDER": folder}
    )
    assert r.status_code == 200
    a = upload(api, study(tmp_path, seed=5), label="M1")
    b = upload(api, study(tmp_path, seed=6), label="M2")
    r = api.post("/data/services/archive", data={"src": [a, b]}, params={"format": "json"})
    rows = r.json()["ResultSet"]["Result"]
    assert {x["status"] for x in rows} == {"ARCHIVING"}
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len([v for v in sandbox.inventory().values() if v["where"] == "archive"]) < 3:
        time.sleep(0.05)
    assert sorted(v["label"] for v in sandbox.inventory().values()) == ["M1", "M2", "P1"]


def test_batch_move_delete_rebuild(sandbox, api, files, tmp_path):
    sandbox.add_project("B")
    a = upload(api, files, label="A")
    b = upload(api, study(tmp_path, seed=7), label="B")
    r = api.post("/data/services/prearchive/rebuild", data={"src": [a, b]})
    assert r.headers["Content-Type"].startswith("text/xml")
    assert "QUEUED_BUILDING" in r.text
    assert {row["status"] for row in api.rows("/data/prearchive")} == {"READY"}
    r = api.post("/data/services/prearchive/move", params={"format": "json"}, data={"src": a, "newProject": "B"})
    assert r.json()["ResultSet"]["Result"][0]["status"] == "QUEUED_MOVING"
    assert api.rows(a.replace("/DEMO/", "/B/"))[0]["project"] == "B"
    r = api.post("/data/services/prearchive/move", data={"src": b, "newProject": "NOPE"})
    assert r.status_code == 404
    assert "does not exist: NOPE" in h3(r)
    r = api.post("/data/services/prearchive/delete", params={"format": "json"}, data={"src": b})
    assert r.json()["ResultSet"]["Result"][0]["status"] == "QUEUED_DELETING"
    assert [row["name"] for row in api.rows("/data/prearchive")] == ["A"]
    alice = Api(sandbox.url, "alice", "pw")
    sandbox.add_user("alice", "pw", projects=["DEMO"])
    r = alice.post("/data/services/prearchive/delete", data={"src": a.replace("/DEMO/", "/B/")})
    assert r.status_code == 403
    assert "Invalid permissions for user alice" in h3(r)


def test_regradual_upload_reopens_a_ready_session(api, files):
    uri = upload(api, files[:2], label="R")
    api.post(uri, data={"action": "build"})
    assert api.rows(uri)[0]["status"] == "READY"
    again = upload(api, files[2:3], label="R")
    assert again == uri
    assert api.rows(uri)[0]["status"] == "RECEIVING"


def test_commit_always_merges_and_archive_with_delete_replaces_like_xnat(sandbox, api, files, tmp_path):
    """XNAT's commit archives with allowSessionMerge=true whatever ``overwrite`` says; ``overwrite=delete`` on the
    archive service overrides its checks (a changed StudyInstanceUID too) and replaces files of the same name."""
    upload(api, files[:3], label="M")
    first = api.rows("/data/prearchive")[0]
    assert api.post("/data" + first["url"], params={"action": "commit", "AA": "true"}).status_code == 301
    second = upload(api, files[3:], label="M")  # the other series of the same study, same label
    r = api.post(second, params={"action": "commit", "AA": "true", "overwrite": "none"})
    assert r.status_code == 301, r.text  # merged: the commit ignores overwrite
    [entry] = sandbox.inventory().values()
    assert entry["series"] == expected_series(files)
    other = study(tmp_path / "other", seed=11)  # another study under the same label
    again = upload(api, other, label="M")
    r = api.post(again, params={"action": "commit", "AA": "true"})
    assert r.status_code == 500
    assert "Invalid modification of session UID" in h3(r)
    r = api.post("/data/services/archive", data={"src": again, "overwrite": "delete"})
    assert r.status_code == 200, r.text
    [entry] = sandbox.inventory().values()
    assert entry["series"] == {**expected_series(files), **expected_series(other)}  # nothing was deleted
