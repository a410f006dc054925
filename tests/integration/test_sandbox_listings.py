"""Listings and single objects: XNAT's table shapes, permissions, aliases, formats, build info."""

from __future__ import annotations

import pytest

from tests.integration.sandbox_data import Api, h3, study, zip_of


@pytest.fixture
def api(sandbox):
    return Api(sandbox.url)


@pytest.fixture
def archived(sandbox, api, tmp_path):
    """One archived session DEMO/S1/E1 with two scans of three files."""
    files = study(tmp_path, seed=11)
    r = api.import_zip(zip_of(files), PROJECT_ID="DEMO", SUBJECT_ID="S1", EXPT_LABEL="E1", action="commit", AA="true")
    assert r.status_code == 200, r.text
    return files


def test_projects_listing_shape_and_total_records(sandbox, api):
    sandbox.add_project("P2", name="Second", description="two")
    r = api.get("/data/projects")
    assert r.headers["Content-Type"].startswith("application/json")  # JSON is the listing's first variant
    assert r.text.endswith(', "totalRecords": "2"}}')
    rows = r.json()["ResultSet"]["Result"]
    assert set(rows[0]) == {"ID", "secondary_ID", "name", "description", "pi_firstname", "pi_lastname", "URI"}
    assert {x["URI"] for x in rows} == {"/data/projects/DEMO", "/data/projects/P2"}
    assert all(isinstance(v, str) for x in rows for v in x.values())


def test_permissions_listing_is_lower_case_without_total_and_filtered_per_user(sandbox, api):
    sandbox.add_project("HIDDEN")
    sandbox.add_user("alice", "pw", projects=["DEMO"])
    body = api.get(
        "/data/projects", params={"permissions": "edit", "dataType": "xnat:subjectData", "format": "json"}
    ).json()
    assert "totalRecords" not in body["ResultSet"]
    assert {x["id"] for x in body["ResultSet"]["Result"]} == {"DEMO", "HIDDEN"}
    assert list(body["ResultSet"]["Result"][0]) == ["id", "secondary_id"]
    alice = Api(sandbox.url, "alice", "pw")
    assert [x["id"] for x in alice.rows("/data/projects", permissions="edit")] == ["DEMO"]
    assert [x["ID"] for x in alice.rows("/data/projects")] == ["DEMO"]
    r = alice.get("/data/projects/HIDDEN/subjects", params={"format": "json"})
    assert r.status_code == 404
    assert h3(r) == "Unable to identify project HIDDEN"
    assert api.get("/data/projects", params={"permissions": "fly"}).status_code == 500


def test_subjects_experiments_scans_after_archiving(api, archived):
    subjects = api.get("/data/projects/DEMO/subjects", params={"format": "json"}).json()["ResultSet"]
    assert subjects["totalRecords"] == "1"
    subj = subjects["Result"][0]
    assert set(subj) == {"ID", "project", "label", "insert_date", "insert_user", "URI"}
    assert subj["label"] == "S1"
    assert subj["URI"] == f"/data/subjects/{subj['ID']}"
    exps = api.rows("/data/projects/DEMO/experiments")
    assert set(exps[0]) == {"ID", "project", "date", "xsiType", "label", "insert_date", "URI"}
    assert (exps[0]["label"], exps[0]["xsiType"]) == ("E1", "xnat:mrSessionData")
    assert api.rows("/data/projects/DEMO/subjects/S1/experiments") == exps
    assert api.rows(f"/data/projects/DEMO/subjects/{subj['ID']}/experiments") == exps
    scans = api.get(f"/data/experiments/{exps[0]['ID']}/scans", params={"format": "json"}).json()["ResultSet"]
    assert scans["totalRecords"] == "2"
    assert set(scans["Result"][0]) == {
        "xnat_imagescandata_id",
        "ID",
        "type",
        "quality",
        "xsiType",
        "note",
        "series_description",
        "URI",
    }
    res = api.rows(f"/data/experiments/{exps[0]['ID']}/scans/1/resources")
    assert (res[0]["label"], res[0]["file_count"]) == ("DICOM", "3")
    files = api.rows("/data/archive/projects/DEMO/subjects/S1/experiments/E1/scans/1/resources/DICOM/files")
    assert len(files) == 3
    assert {"Name", "Size", "URI", "digest"} <= set(files[0])
    assert api.get(files[0]["URI"]).content[128:132] == b"DICM"


def test_archive_alias_formats_and_sorting(api, archived):
    assert api.rows("/data/archive/projects") == api.rows("/data/projects")
    xml = api.get("/data/projects", params={"format": "xml"})
    assert xml.headers["Content-Type"].startswith("text/xml")
    assert "<column>ID</column>" in xml.text
    csv = api.get("/data/projects/DEMO/experiments", params={"format": "csv"}).text.splitlines()
    assert csv[0] == "ID,project,date,xsiType,label,insert_date,URI"
    assert len(csv) == 2
    rows = api.rows(
        "/data/experiments/E1/scans".replace("E1", api.rows("/data/experiments")[0]["ID"]),
        sortBy="ID",
        sortOrder="DESC",
    )
    assert [r["ID"] for r in rows] == ["2", "1"]


def test_single_objects_as_json_items_and_xml(api, archived):
    doc = api.get("/data/projects/DEMO/subjects/S1/experiments/E1", params={"format": "json"}).json()
    item = doc["items"][0]
    assert item["meta"]["xsi:type"] == "xnat:mrSessionData"
    assert item["data_fields"]["label"] == "E1"
    assert item["data_fields"]["UID"] == archived[0].study_uid
    xml = api.get("/data/projects/DEMO?format=xml").text
    assert "<xnat:Project" in xml
    assert 'ID="DEMO"' in xml
    assert api.get("/data/projects/DEMO/prearchive_code").text == "0"
    assert api.put("/data/projects/DEMO/subjects/NEW").status_code == 201
    assert api.put("/data/projects/DEMO/subjects/NEW").status_code == 200


def test_build_info_version_and_absent_version_route(sandbox_factory):
    server = sandbox_factory(version="1.7.6")
    api = Api(server.url)
    info = api.get("/xapi/siteConfig/buildInfo").json()
    assert info["version"] == "1.7.6"
    assert all(isinstance(v, str) for v in info.values())
    assert api.get("/xapi/siteConfig/buildInfo/version").text == "1.7.6"
    assert api.get("/data/version").status_code == 404  # XNAT 1.7+ has no /data/version
    assert api.get("/xapi/dicomscp").json() == []
    assert Api(server.url, user=None).get("/xapi/siteConfig/buildInfo").status_code == 401


def test_rest_prefix_is_an_alias(api):
    assert api.get("/REST/projects", params={"format": "json"}).json() == api.get("/data/projects").json()


def test_create_session_by_put(api):
    r = api.put("/data/projects/DEMO/subjects/NS/experiments/NE", params={"xsiType": "xnat:ctSessionData"})
    assert r.status_code == 201
    assert r.text.startswith("XNAT_E")
    assert api.put("/data/projects/DEMO/subjects/NS/experiments/NE").text == r.text
    assert api.rows("/data/projects/DEMO/experiments")[0]["xsiType"] == "xnat:ctSessionData"


def test_anon_script_config(sandbox, api):
    r = api.get("/data/config/anon/script", params={"format": "json"})
    assert r.status_code == 404
    assert "Couldn't find config" in h3(r)
    assert api.get("/data/config/anon/script", params={"accept-not-found": "true"}).status_code == 204
    sandbox.set_anon_script('(0010,0010) := "anon"')
    row = api.rows("/data/config/anon/script")[0]
    assert (row["tool"], row["status"], row["version"]) == ("anon", "enabled", "1")
    sandbox.set_anon_script("// off", project="DEMO", enabled=False)
    assert api.rows("/data/projects/DEMO/config/anon/projects/DEMO")[0]["status"] == "disabled"
    assert api.get("/xapi/anonymize/projects/DEMO/enabled").json() is False
    assert api.get("/xapi/anonymize/site").text.startswith("(0010,0010)")
