"""Archiving into a session already in the archive: the sandbox's answers, entry point by entry point, are
XNAT 1.8.11's (``xnat_uploader.sandbox.merge`` names the source of each rule).

A commit and a one-session ``/data/services/archive`` always merge; what they refuse is an upload that holds
a file or an instance the archived session already has (identical bytes or not), unless the request lets
XNAT replace files. The refusal is a 500 "FAILED: <reason>" (DICOM-zip: 400) and the row goes to CONFLICT.
"""

from __future__ import annotations

import io
import time
import zipfile

import pydicom
import pytest

from tests.integration.sandbox_data import Api, expected_series, h3, study, zip_of

HAS_FILES = "Session already exists with matching files."
CAT_ENTRY_MATCH = "Session already exists with the same resources."
PRE_EXISTS = "Session already exists, retry with overwrite enabled"


@pytest.fixture
def api(sandbox):
    return Api(sandbox.url)


@pytest.fixture
def files(tmp_path):
    """Two series (A, B) of three instances each."""
    return study(tmp_path, seed=81)


def named(files) -> bytes:
    """A zip whose members are named by SOP Instance UID (as the app names gradual files)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for f in files:
            z.write(f.path, f"{f.series_uid[-4:]}/{f.sop_instance_uid}.dcm")
    return buf.getvalue()


def changed(f, tmp_path):
    """The same instance (same UIDs) with other bytes."""
    ds = pydicom.dcmread(f.path)
    ds.ImageComments = "second version"
    dest = tmp_path / f"changed-{f.sop_instance_uid}.dcm"
    ds.save_as(dest)
    return type(f)(**{**f.__dict__, "path": dest})


def upload(api, data: bytes, label="M", subject="S", **extra) -> str:
    r = api.import_zip(data, PROJECT_ID="DEMO", SUBJECT_ID=subject, EXPT_LABEL=label, **extra)
    assert r.status_code == 200, r.text
    return r.text.strip()


def commit(api, uri: str, **params):
    return api.post(uri, params={"action": "commit", "AA": "true", **params})


def archive(api, uri: str, **form):
    return api.post("/data/services/archive", data={"src": uri, **form})


def row_of(api, uri: str) -> dict[str, str]:
    [row] = api.rows(uri)
    return row


def last_log(api, uri: str) -> str:
    return api.get(f"{uri}/logs/last").text


def archived(sandbox, label="M") -> dict:
    return sandbox.inventory()[f"archive:DEMO/{label}"]


def refused(api, sandbox, response, uri: str, reason: str, before: dict) -> None:
    """XNAT's refusal: 500 "FAILED: <reason>", the row in CONFLICT with the reason logged, the archive as it was."""
    assert response.status_code == 500, response.text
    assert h3(response) == f"FAILED: {reason}"
    assert row_of(api, uri)["status"] == "CONFLICT"
    assert last_log(api, uri) == reason
    assert archived(sandbox)["series"] == before["series"]
    assert archived(sandbox)["counts"] == before["counts"]


def test_a_commit_merges_new_series_and_new_instances_nothing_lost(api, sandbox, files):
    a, b = files[:3], files[3:]
    assert commit(api, upload(api, named(a[:2]))).status_code == 301
    r = commit(api, upload(api, named([a[2], *b])), overwrite="none")  # a commit ignores ``overwrite``
    assert r.status_code == 301, r.text
    assert r.text == "/data/archive/projects/DEMO/subjects/S/experiments/M"
    entry = archived(sandbox)
    assert entry["series"] == expected_series(files)  # the third instance of A joined A; B was added
    assert {n for counts in entry["counts"].values() for n in counts.values()} == {1}
    assert api.rows("/data/prearchive") == []


@pytest.mark.parametrize(
    ("resend", "reason"),
    [
        pytest.param(lambda a, tmp: named(a), HAS_FILES, id="same-names"),
        pytest.param(lambda a, tmp: zip_of(a[1:2]), CAT_ENTRY_MATCH, id="same-instance-other-name"),
        pytest.param(lambda a, tmp: named([changed(a[0], tmp)]), HAS_FILES, id="changed-bytes"),
    ],
)
def test_a_commit_refuses_images_the_archived_session_holds(api, sandbox, files, tmp_path, resend, reason):
    a, b = files[:3], files[3:]
    assert commit(api, upload(api, named(a))).status_code == 301
    before = archived(sandbox)
    upload(api, resend(a, tmp_path))
    uri = upload(api, named(b))  # the new series B joins that prearchive session: refused with it, never half merged
    refused(api, sandbox, commit(api, uri, overwrite="delete"), uri, reason, before)  # ``overwrite``: no effect


def test_a_commit_with_overwrite_files_replaces_what_it_re_sends(api, sandbox, files, tmp_path):
    a = files[:3]
    assert commit(api, upload(api, named(a))).status_code == 301
    new = changed(a[0], tmp_path)
    r = commit(api, upload(api, named([new])), overwrite_files="true")
    assert r.status_code == 301, r.text
    r = commit(api, upload(api, zip_of([a[1]])), overwrite_files="TRUE")  # the same instance, another name
    assert r.status_code == 301, r.text
    entry = archived(sandbox)
    assert entry["series"] == expected_series([new, *a[1:]])
    assert entry["files"] == 3  # a[1]'s old file made way for the one of the new name
    assert entry["counts"][a[0].series_uid] == {a[0].sop_instance_uid: 2, a[1].sop_instance_uid: 2,
                                                 a[2].sop_instance_uid: 1}  # fmt: skip


def test_a_commit_in_a_project_that_auto_archives_with_overwrite_replaces(api, sandbox, files, tmp_path):
    sandbox.add_project("OVER", prearchive_code=5)
    a = files[:3]
    for data in (named(a), named([changed(a[0], tmp_path)])):
        r = api.import_zip(data, PROJECT_ID="OVER", SUBJECT_ID="S", EXPT_LABEL="M")
        assert commit(api, r.text.strip()).status_code == 301
    entry = sandbox.inventory()["archive:OVER/M"]
    assert entry["counts"][a[0].series_uid][a[0].sop_instance_uid] == 2


def test_the_archive_service_merges_one_session_whatever_overwrite_says(api, sandbox, files):
    a, b = files[:3], files[3:]
    r = archive(api, upload(api, named(a)))
    assert r.status_code == 200, r.text
    r = archive(api, upload(api, named(b)))  # no ``overwrite``: XNAT merges all the same
    assert r.status_code == 200, r.text
    assert r.text == "/data/archive/projects/DEMO/subjects/S/experiments/M\r\n"
    assert archived(sandbox)["series"] == expected_series(files)


@pytest.mark.parametrize("overwrite", ["append", "delete"])
def test_the_archive_service_replaces_files_only_with_overwrite(api, sandbox, files, tmp_path, overwrite):
    a = files[:3]
    assert archive(api, upload(api, named(a))).status_code == 200
    before = archived(sandbox)
    new = changed(a[0], tmp_path)
    uri = upload(api, named([new, a[1]]))
    refused(api, sandbox, archive(api, uri), uri, HAS_FILES, before)
    # ``overwrite_files`` is read but never passed on for one session (Archiver.finishSingleSessionArchive)
    refused(api, sandbox, archive(api, uri, overwrite_files="true"), uri, HAS_FILES, before)
    r = archive(api, uri, overwrite=overwrite)  # append and delete: the same for one session
    assert r.status_code == 200, r.text
    entry = archived(sandbox)
    assert entry["series"] == expected_series([new, *a[1:]])
    assert entry["counts"][a[0].series_uid] == {a[0].sop_instance_uid: 2, a[1].sop_instance_uid: 2,
                                                 a[2].sop_instance_uid: 1}  # fmt: skip


def test_another_study_subject_or_modality_is_refused_as_a_conflict(api, sandbox, files, tmp_path):
    assert archive(api, upload(api, named(files[:3]))).status_code == 200
    before = archived(sandbox)
    other = study(tmp_path, seed=82, series=1)
    uri = upload(api, named(other))
    refused(api, sandbox, archive(api, uri), uri, "Invalid modification of session UID via archive process.", before)
    assert archive(api, uri, overwrite="append").status_code == 200  # overrideExceptions lets another study in
    before = archived(sandbox)
    uri = upload(api, named(files[3:]), subject="T")
    refused(api, sandbox, archive(api, uri), uri,
            "Invalid modification of session subject via archive process.: M Already Exists for another Subject",
            before)  # fmt: skip


def _settled(api, uris: list[str], timeout: float = 5.0) -> dict[str, str]:
    """The rows of a batch archive once none is ARCHIVING (a row gone: archived)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = {r["url"]: r for r in api.rows("/data/prearchive")}
        states = {u: rows[u.removeprefix("/data")]["status"] if u.removeprefix("/data") in rows else "gone"
                  for u in uris}  # fmt: skip
        if "ARCHIVING" not in states.values() or time.monotonic() > deadline:
            return states
        time.sleep(0.05)


def test_the_archive_service_with_several_sessions_merges_only_with_overwrite(api, sandbox, files, tmp_path):
    a = files[:3]
    assert archive(api, upload(api, named(a))).status_code == 200
    again = upload(api, named(a))  # A once more, under the archived session's label
    for n, extra in enumerate(({}, {"overwrite": "append"}, {"overwrite": "append", "overwrite_files": "true"})):
        other = upload(api, named(study(tmp_path, seed=83 + n, series=1)), label=f"N{n}")  # a new session beside it
        api.post("/data/services/archive", data={"src": [again, other], **extra}, params={"format": "json"})
        states = _settled(api, [again, other])
        assert states[other] == "gone"  # archived
        if n < 2:
            assert states[again] == "CONFLICT"
            assert last_log(api, again) == (PRE_EXISTS, HAS_FILES)[n]  # no overwrite: no merge at all
    assert states[again] == "gone"
    assert archived(sandbox)["counts"][a[0].series_uid] == {f.sop_instance_uid: 2 for f in a}


def test_dicom_zip_commit_and_dest_follow_the_importers_overwrite(api, sandbox, files, tmp_path):
    a, b = files[:3], files[3:]
    params = {"PROJECT_ID": "DEMO", "SUBJECT_ID": "S", "EXPT_LABEL": "M", "action": "commit", "AA": "true"}
    assert api.import_zip(named(a), **params).status_code == 200
    r = api.import_zip(named(b), **params)  # no ``overwrite``: no merge
    assert (r.status_code, h3(r)) == (400, "unable to archive for the Prearchive session")
    [row] = api.rows("/data/prearchive")
    assert (row["status"], last_log(api, "/data" + row["url"])) == ("CONFLICT", PRE_EXISTS)
    api.delete("/data" + row["url"])
    assert api.import_zip(named(b), **params, overwrite="append").status_code == 200  # merged
    r = api.import_zip(named(a), **params, overwrite="append")
    assert (r.status_code, h3(r)) == (400, "unable to archive for the Prearchive session")
    [row] = api.rows("/data/prearchive")
    assert (row["status"], last_log(api, "/data" + row["url"])) == ("CONFLICT", HAS_FILES)
    api.delete("/data" + row["url"])
    new = changed(a[0], tmp_path)
    dest = "/archive/projects/DEMO/subjects/S/experiments/M"  # dest: commit and archive, like action=commit AA=true
    r = api.import_zip(named([new]), dest=dest, overwrite="append", overwrite_files="true")
    assert r.status_code == 200, r.text
    assert r.text == f"/data{dest}\r\n"
    assert archived(sandbox)["series"] == expected_series([new, *a[1:], *b])
    r = api.import_zip(named([a[1]]), dest=dest, overwrite="override")  # overrideExceptions replaces too
    assert r.status_code == 200, r.text
