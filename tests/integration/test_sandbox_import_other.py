"""The SI, XAR and inbox import handlers."""

from __future__ import annotations

import io
import zipfile

import pytest

from tests.integration.sandbox_data import Api, expected_series, h3, study, zip_of


@pytest.fixture
def api(sandbox):
    return Api(sandbox.url)


def si(api, data: bytes, **params: str):
    params["import-handler"] = "SI"
    return api.post("/data/services/import", params=params, data=data, headers={"Content-Type": "application/zip"})


def test_si_builds_at_once_and_marks_the_row(sandbox, api, tmp_path):
    files = study(tmp_path, seed=21)
    r = si(api, zip_of(files, extra={"junk.txt": b"ignored by SI"}), project="DEMO", subject="S", session="SI1")
    assert r.status_code == 200
    row = api.rows("/data/prearchive")[0]
    assert (row["status"], row["SOURCE"], row["prevent_auto_commit"], row["name"]) == (
        "READY",
        "SessionImporter",
        "true",
        "SI1",
    )
    assert next(iter(sandbox.inventory().values()))["series"] == expected_series(files)


def test_si_errors(api, tmp_path):
    a, b = study(tmp_path, seed=22), study(tmp_path, seed=23)
    r = si(api, zip_of(a + b), project="DEMO")
    assert r.status_code == 400
    assert h3(r) == "Upload included files for multiple imaging sessions."
    r = si(api, zip_of([], extra={"a.txt": b"x"}), project="DEMO")
    assert r.status_code == 400
    assert h3(r) == "Upload did not include parsable files for session generation."


def test_si_auto_archive_and_conflict_409(api, tmp_path):
    files = study(tmp_path, seed=24)
    r = si(api, zip_of(files), project="DEMO", subject="S", session="A1", AA="true")
    assert r.text.strip() == "/data/archive/projects/DEMO/subjects/S/experiments/A1"
    r = si(api, zip_of(files), project="DEMO", subject="S", session="A1", AA="true")
    assert r.status_code == 409
    assert h3(r) == "Session already exists, retry with overwrite enabled"
    assert api.rows("/data/prearchive")[0]["status"] == "CONFLICT"


def xar(files, project="DEMO", subject="XS", label="X1", xml: str | None = None) -> bytes:
    doc = (
        xml
        if xml is not None
        else (
            f'<?xml version="1.0"?><xnat:MRSession xmlns:xnat="http://nrg.wustl.edu/xnat" project="{project}" '
            f'label="{label}"><xnat:subject_ID>{subject}</xnat:subject_ID></xnat:MRSession>'
        )
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("session.xml", doc)
        for n, f in enumerate(files):
            z.write(f.path, f"SCANS/{n}.dcm")
        z.writestr("RESOURCES/notes.txt", "a note")
    return buf.getvalue()


def test_xar_archives_directly(sandbox, api, tmp_path):
    files = study(tmp_path, seed=25)
    r = api.post(
        "/data/services/import",
        params={"import-handler": "XAR"},
        data=xar(files),
        headers={"Content-Type": "application/zip"},
    )
    assert r.status_code == 200
    assert r.text.strip().startswith("/data/archive/experiments/XNAT_E")
    inv = next(iter(sandbox.inventory().values()))
    assert (inv["where"], inv["label"], inv["subject"]) == ("archive", "X1", "XS")
    assert inv["series"] == expected_series(files)
    assert inv["resources"] == {"XAR": ["RESOURCES/notes.txt"]}


def test_xar_errors(api, tmp_path):
    files = study(tmp_path, seed=26)

    def post(data: bytes):
        return api.post(
            "/data/services/import",
            params={"import-handler": "XAR"},
            data=data,
            headers={"Content-Type": "application/zip"},
        )

    assert h3(post(xar(files, project="NOPE"))).endswith("Invalid project tag.")
    assert h3(post(xar(files, xml="<nothing/>"))) == "Unable to locate XNAT xml document."
    assert h3(post(b"PK not a zip")) == "Archive file is corrupt or not a valid archive file type."


def test_inbox_imports_a_server_side_folder(sandbox, api, tmp_path):
    files = study(tmp_path, seed=27)
    folder = sandbox.data_dir / "inbox" / "DEMO" / "visit1"
    folder.mkdir(parents=True)
    for n, f in enumerate(files):
        (folder / f"{n}.dcm").write_bytes(f.path.read_bytes())
    r = api.post(
        "/data/services/import",
        params={"import-handler": "inbox", "PROJECT_ID": "DEMO", "path": "DEMO/visit1", "EXPT_LABEL": "IN1"},
    )
    assert r.status_code == 200
    assert r.text.startswith("/xapi/dicom/")
    assert api.wait_job(r.text.strip())["status"] == "Completed"
    assert not folder.exists()  # cleanupAfterImport defaults to true
    inv = next(iter(sandbox.inventory().values()))
    assert inv["label"] == "IN1"
    assert inv["series"] == expected_series(files)
    r = api.post("/data/services/import", params={"import-handler": "inbox", "PROJECT_ID": "DEMO", "path": "../../etc"})
    assert r.status_code == 400
    assert h3(r).startswith("You must specify a valid path")
