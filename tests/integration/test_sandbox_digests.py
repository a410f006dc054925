"""File digests are computed when first asked for, not on receipt: they must still be exactly the
SHA-256 of the stored bytes (listings, inventory, after a restart) and still decide the names of files
whose uploaded name another instance holds. They never decide a merge: XNAT compares names and UIDs."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pydicom

from tests.integration.sandbox_data import Api, expected_series, h3, study, zip_of


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def changed_copy(src, dest):
    """Same instance (same UIDs, so the same place and name), different bytes."""
    ds = pydicom.dcmread(src)
    ds.ImageComments = "changed"
    ds.save_as(dest)
    return dest


def file_rows(api: Api, session: str) -> list[dict[str, str]]:
    rows = []
    for scan in api.rows(f"{session}/scans"):
        rows += api.rows(f"{session}/scans/{scan['ID']}/resources/DICOM/files")
    return rows


def test_digests_are_the_stored_bytes_also_after_a_restart(tmp_path):
    from xnat_uploader.sandbox.server import SandboxServer

    files = study(tmp_path, seed=71)
    data = tmp_path / "data"
    with SandboxServer(data) as server:
        api = Api(server.url)
        for f in files:
            r = api.import_dicom(f.path, PROJECT_ID="DEMO", SUBJECT_ID="S", EXPT_LABEL="G")
            assert r.status_code == 200, r.text
        session = r.text.strip()
        [row] = server.app.store.prearchive.values()
        stored = [f for scan in row.content.scans.values() for f in scan.files.values()]
        assert len(stored) == len(files)
        assert all(f.sha256 == "" for f in stored)  # nothing hashed on receipt
        first_scan = api.rows(f"{session}/scans")[0]["ID"]
        asked = api.rows(f"{session}/scans/{first_scan}/resources/DICOM/files")  # these get hashed now
        assert {r["digest"] for r in asked} <= {sha(f.path.read_bytes()) for f in files}
        api.put("/data/projects/DEMO/resources/R/files/a.txt", data=b"abc", headers={"Content-Type": "text/plain"})
    saved = json.loads((data / "state.json").read_text())
    scans = [scan for s in saved["prearchive"] for scan in s["content"]["scans"].values()]
    digests = [f["sha256"] for scan in scans for f in scan["files"].values()]
    assert "" in digests  # not computed yet: computed from the file after the restart
    assert any(digests)  # computed for the listing: kept
    with SandboxServer(data) as again:
        api = Api(again.url)
        rows = file_rows(api, session)
        assert len(rows) == len(files)
        assert sorted(r["digest"] for r in rows) == sorted(sha(f.path.read_bytes()) for f in files)
        [row] = again.app.store.prearchive.values()
        assert all(f.digest() == sha(f.path.read_bytes()) for s in row.content.scans.values() for f in s.files.values())
        [res] = api.rows("/data/projects/DEMO/resources/R/files")
        assert res["digest"] == sha(b"abc")
        [entry] = again.inventory().values()
        assert entry["series"] == expected_series(files)


def test_one_generated_name_per_distinct_content_of_an_instance(sandbox, tmp_path):
    """gradual-DICOM without a name in the URL calls every file ``upload.dcm``: the second instance
    of a series gets a generated name; re-sending its bytes replaces that file, other bytes add one."""
    api = Api(sandbox.url)
    a, b = study(tmp_path, seed=72, series=1, instances=2)
    b2 = changed_copy(b.path, tmp_path / "b2.dcm")
    params = {"PROJECT_ID": "DEMO", "SUBJECT_ID": "S", "EXPT_LABEL": "N"}
    for path in (a.path, b.path, b.path, b2, b.path):
        r = api.import_dicom(path, **params)
        assert r.status_code == 200, r.text
    session = r.text.strip()
    rows = file_rows(api, session)
    by_name = {r["Name"]: r["digest"] for r in rows}
    assert by_name == {
        "upload.dcm": sha(a.path.read_bytes()),
        f"{b.sop_instance_uid}-1.dcm": sha(b.path.read_bytes()),
        f"{b.sop_instance_uid}-2.dcm": sha(b2.read_bytes()),
    }
    [entry] = sandbox.inventory().values()
    assert entry["counts"][b.series_uid] == {a.sop_instance_uid: 1, b.sop_instance_uid: 4}
    assert entry["series"] == expected_series([a, b])  # the last copy received was b's own bytes
    assert entry["files"] == 3


def test_archive_merge_refuses_same_named_files_whatever_their_contents(sandbox, tmp_path):
    """XNAT's merge compares file names and SOP Instance UIDs, never bytes (``MergeSessionsA.checkForConflict``):
    identical files are refused like changed ones; ``overwrite_files=true`` lets the changed bytes replace."""
    api = Api(sandbox.url)
    files = study(tmp_path, seed=73)
    commit = {"PROJECT_ID": "DEMO", "SUBJECT_ID": "S", "EXPT_LABEL": "M", "action": "commit", "AA": "true"}
    assert api.import_zip(zip_of(files), **commit).status_code == 200
    changed = [dataclasses.replace(files[0], path=changed_copy(files[0].path, tmp_path / "c.dcm")), *files[1:]]
    for upload in (files, changed):
        r = api.import_zip(zip_of(upload), **commit, overwrite="append")
        assert r.status_code == 400
        assert h3(r) == "unable to archive for the Prearchive session"
        [row] = api.rows("/data/prearchive")
        assert row["status"] == "CONFLICT"
        assert api.get(f"/data{row['url']}/logs/last").text == "Session already exists with matching files."
        assert api.delete(f"/data{row['url']}").status_code == 200
        assert sandbox.inventory()["archive:DEMO/M"]["series"] == expected_series(files)  # untouched
    r = api.import_zip(zip_of(changed), **commit, overwrite="append", overwrite_files="true")
    assert r.status_code == 200, r.text
    archived = sandbox.inventory()["archive:DEMO/M"]
    assert archived["series"] == expected_series(changed)  # the changed bytes replaced the archived file
    assert archived["files"] == len(files)


def test_a_state_file_with_digest_lists_still_loads(tmp_path):
    """state.json written before digests were lazy lists every copy as a digest string."""
    from xnat_uploader.sandbox.server import SandboxServer

    files = study(tmp_path, seed=74)
    data = tmp_path / "data"
    with SandboxServer(data) as server:
        api = Api(server.url)
        assert api.import_zip(zip_of(files), PROJECT_ID="DEMO", SUBJECT_ID="S", EXPT_LABEL="OLD").status_code == 200
    state = json.loads((data / "state.json").read_text())
    for session in state["prearchive"]:
        for scan in session["content"]["scans"].values():
            for copies in scan["instances"].values():
                copies[:] = [sha((data / scan["files"][c["file"]]["path"]).read_bytes()) for c in copies]
    (data / "state.json").write_text(json.dumps(state))
    with SandboxServer(data) as again:
        assert again.restored
        [entry] = again.inventory().values()
        assert entry["series"] == expected_series(files)
        assert all(n == 1 for counts in entry["counts"].values() for n in counts.values())


def test_copies_no_longer_stored_survive_two_restarts(tmp_path):
    from xnat_uploader.sandbox.server import SandboxServer

    a, b = study(tmp_path, seed=75, series=1, instances=2)
    b2 = changed_copy(b.path, tmp_path / "b2.dcm")
    data = tmp_path / "data"
    with SandboxServer(data) as server:
        api = Api(server.url)
        for path in (a.path, b.path, b2, b2, b.path):  # the second b2 replaces the first: one copy left behind
            assert api.import_dicom(path, PROJECT_ID="DEMO", SUBJECT_ID="S", EXPT_LABEL="R").status_code == 200
        before = server.inventory()
    for _ in range(2):
        with SandboxServer(data) as again:
            assert again.inventory() == before
    [entry] = before.values()
    assert entry["counts"][b.series_uid] == {a.sop_instance_uid: 1, b.sop_instance_uid: 4}
    assert entry["files"] == 3
