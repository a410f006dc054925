"""Resources and files: create (409 when present), PUT files, duplicates, overwrite, extract, listings."""

from __future__ import annotations

import io
import zipfile

import pytest

from tests.integration.sandbox_data import Api, h3, study, zip_of

SESSION = "/data/projects/DEMO/subjects/S1/experiments/E1"


@pytest.fixture
def api(sandbox, tmp_path):
    api = Api(sandbox.url)
    r = api.import_zip(
        zip_of(study(tmp_path, seed=31)),
        PROJECT_ID="DEMO",
        SUBJECT_ID="S1",
        EXPT_LABEL="E1",
        action="commit",
        AA="true",
    )
    assert r.status_code == 200
    return api


def test_create_resource_then_409(api):
    assert api.put(SESSION + "/resources/NOTES", params={"format": "TXT", "content": "notes"}).status_code == 200
    r = api.put(SESSION + "/resources/NOTES")
    assert r.status_code == 409
    assert h3(r) == "Specified resource already exists."
    row = api.rows(SESSION + "/resources")[0]
    assert (row["label"], row["format"], row["content"], row["file_count"]) == ("NOTES", "TXT", "notes", "0")
    assert api.put(SESSION + "/resources/NOTES/oops").status_code == 400


def test_put_file_duplicates_and_overwrite(sandbox, api):
    url = SESSION + "/resources/PDF/files/report.pdf"
    r = api.put(url, data=b"%PDF-1", headers={"Content-Type": "application/pdf"})
    assert (r.status_code, r.text) == (200, "")
    dup = api.put(url, data=b"%PDF-2", headers={"Content-Type": "application/pdf"})
    assert dup.status_code == 200
    assert dup.json() == {"duplicates": ["report.pdf"]}
    assert dup.headers["Content-Type"].startswith("text/html")
    assert api.get(url).content == b"%PDF-1"  # not replaced
    assert (
        api.put(
            url, params={"overwrite": "true"}, data=b"%PDF-3", headers={"Content-Type": "application/pdf"}
        ).status_code
        == 200
    )
    assert api.get(url).content == b"%PDF-3"
    files = api.rows(SESSION + "/resources/PDF/files")
    assert [f["Name"] for f in files] == ["report.pdf"]
    assert files[0]["Size"] == "6"
    inv = next(iter(sandbox.inventory().values()))
    assert inv["resources"] == {"PDF": ["report.pdf"]}


def test_extract_zip_and_multipart(api):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("a.txt", "A")
        z.writestr("sub/b.txt", "B")
    r = api.put(
        SESSION + "/resources/BUNDLE/files/bundle.zip",
        params={"extract": "true"},
        data=buf.getvalue(),
        headers={"Content-Type": "application/zip"},
    )
    assert r.status_code == 200
    names = sorted(f["URI"].split("/files/")[1] for f in api.rows(SESSION + "/resources/BUNDLE/files"))
    assert names == ["a.txt", "sub/b.txt"]
    r = api.post(SESSION + "/resources/MP/files", files={"f": ("m.txt", b"multi")})
    assert r.status_code == 200
    assert api.get(SESSION + "/resources/MP/files/m.txt").content == b"multi"


def test_scan_resources_permissions_and_no_body(sandbox, api):
    scan = api.rows("/data/experiments")[0]["URI"] + "/scans/1"
    assert (
        api.put(scan + "/resources/SNAP/files/s.png", data=b"png", headers={"Content-Type": "image/png"}).status_code
        == 200
    )
    assert {r["label"] for r in api.rows(scan + "/resources")} == {"DICOM", "SNAP"}
    r = api.put(SESSION + "/resources/X/files/empty.txt")
    assert r.status_code == 400
    assert "didn't provide any data" in h3(r)
    sandbox.add_project("OTHER")
    sandbox.add_user("bob", "pw", projects=["OTHER"])
    bob = Api(sandbox.url, "bob", "pw")
    assert (
        bob.put(SESSION + "/resources/B/files/b.txt", data=b"b", headers={"Content-Type": "text/plain"}).status_code
        == 404
    )  # hidden, so 404
    assert api.delete(SESSION + "/resources/SNAP").status_code == 404  # that one is on the scan
    assert api.delete(scan + "/resources/SNAP").status_code == 200
