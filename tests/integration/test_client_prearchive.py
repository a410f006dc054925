"""Prearchive actions, archiving, listings and resources through the client, against the sandbox."""

from __future__ import annotations

import io
import time
import zipfile

import pytest

from tests.integration._client_data import make_study
from xnat_uploader.core.xnat import ArchiveOverwrite, ImportHandler, ImportOptions, PrearchiveRef, XnatClient
from xnat_uploader.core.xnat import errors as E


def upload(client, tmp_path, seed: int, label: str, project: str = "DEMO", subject: str = "SUBJ") -> PrearchiveRef:
    study = make_study(tmp_path, seed=seed)
    opts = ImportOptions.for_uploader(ImportHandler.DICOM_ZIP, project, subject, label)
    return client.import_data(study.zip_bytes(), opts).prearchive[0]


def test_build_then_scans_with_file_counts(client, tmp_path):
    ref = upload(client, tmp_path, 20, "B1")
    assert client.build(ref) == ref
    assert client.prearchive_session(ref).status == "READY"
    scans = client.prearchive_scans(ref)
    assert [s.file_count for s in scans] == [3, 3]
    assert all(s.id for s in scans)


def test_commit_leaves_a_manual_project_session_ready(client, tmp_path):
    ref = upload(client, tmp_path, 21, "C1")
    result = client.commit(ref)
    assert not result.archived
    assert result.prearchive_ref == ref
    assert client.prearchive_session(ref).status == "READY"


def test_commit_archives_in_an_auto_archive_project(sandbox, tmp_path):
    sandbox.add_project("AUTO", prearchive_code=4)
    with XnatClient(sandbox.url, "admin", "admin") as client:
        ref = upload(client, tmp_path, 22, "A1", project="AUTO")
        result = client.commit(ref)  # XNAT answers 301 with the archive URI in the body
        assert result.archived
        assert result.archive_ref is not None
        assert result.archive_ref.project == "AUTO"
        assert [e.label for e in client.experiments("AUTO")] == ["A1"]
        assert client.prearchive("AUTO") == []


def test_archive_with_subject_and_label_overrides(client, tmp_path):
    ref = upload(client, tmp_path, 23, "RAW")
    client.build(ref)
    result = client.archive(ref, subject="NEWSUBJ", label="NEWLABEL")
    assert result.archived
    assert result.archive_ref is not None
    assert (result.archive_ref.subject, result.archive_ref.experiment) == ("NEWSUBJ", "NEWLABEL")
    assert [s.label for s in client.subjects("DEMO")] == ["NEWSUBJ"]
    (exp,) = client.experiments("DEMO", "NEWSUBJ")
    assert exp.label == "NEWLABEL"
    scans = client.scans(exp.id)
    assert len(scans) == 2
    assert all(s.file_count == 3 for s in scans)
    assert client.prearchive("DEMO") == []


def test_archive_into_an_existing_session_overwrites_only_with_overwrite(client, sandbox, tmp_path):
    """XNAT archives one session into an existing one whatever ``overwrite`` says, but refuses files it already
    holds unless ``overwrite`` lets it replace them: the client says so in a coordinator's words."""
    first = upload(client, tmp_path, 24, "SAME")
    client.build(first)
    client.archive(first)
    again = upload(client, tmp_path / "again", 24, "SAME")  # the same study and files once more
    client.build(again)
    with pytest.raises(E.SessionExistsError) as info:
        client.archive(again)
    assert not info.value.transient
    assert info.value.message.startswith("The session in the archive already holds some of these images")
    assert '"Replace what is already there"' in info.value.hint
    assert info.value.detail == "FAILED: Session already exists with matching files."
    assert client.prearchive_session(again).status == "CONFLICT"
    result = client.archive(again, overwrite=ArchiveOverwrite.APPEND)  # append or delete: overwrite, delete nothing
    assert result.archived
    [entry] = sandbox.inventory().values()
    assert {n for counts in entry["counts"].values() for n in counts.values()} == {2}  # each replaced once


def test_archive_answering_303_in_auto_archive_project(sandbox, tmp_path):
    sandbox.add_project("AUTO2", prearchive_code=4)
    with XnatClient(sandbox.url, "admin", "admin") as client:
        ref = upload(client, tmp_path, 25, "X303", project="AUTO2")
        client.build(ref)
        result = client.archive(ref)
        assert result.archived
        assert result.archive_ref is not None
        assert result.uri.startswith("/data/")  # the Location's host part is dropped


def test_move_and_delete(sandbox, client, tmp_path):
    sandbox.add_project("OTHER")
    ref = upload(client, tmp_path, 26, "MV")
    moved = client.move(ref, "OTHER")
    assert moved.project == "OTHER"
    assert moved.folder == "MV"
    assert client.prearchive("DEMO") == []
    assert [s.ref for s in client.prearchive("OTHER")] == [moved]
    client.delete(moved)
    assert client.prearchive("OTHER") == []


def test_move_to_unknown_project(client, tmp_path):
    ref = upload(client, tmp_path, 27, "MV2")
    with pytest.raises(E.ProjectAccessError, match="'NOSUCH'"):
        client.move(ref, "NOSUCH")


def test_archive_missing_session(client):
    with pytest.raises(E.NotFoundError):
        client.archive(PrearchiveRef("DEMO", "20240101_000000000", "GONE"))


def test_batch_rebuild_move_delete(sandbox, client, tmp_path):
    from xnat_uploader.core.xnat import prearchive

    sandbox.add_project("B")
    a = upload(client, tmp_path, 28, "BA")
    b = upload(client, tmp_path, 29, "BB")
    rows = client.rebuild([a, b])
    assert {r.ref for r in rows} == {a, b}
    rows = prearchive.move_many(client.session, [a, b], "B")
    assert {r.folder for r in rows} == {"BA", "BB"}

    deadline = time.monotonic() + 10
    while {s.folder for s in client.prearchive("B")} != {"BA", "BB"} and time.monotonic() < deadline:
        time.sleep(0.1)
    moved = [s.ref for s in client.prearchive("B")]
    assert len(moved) == 2
    prearchive.delete_many(client.session, moved)
    while client.prearchive("B") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert client.prearchive("B") == []


def test_non_admin_sees_only_editable_projects_and_no_unassigned(sandbox, tmp_path):
    sandbox.add_project("A")
    sandbox.add_project("HIDDEN")
    sandbox.add_user("alice", "alice-pw", projects=["A"])
    with XnatClient(sandbox.url, "admin", "admin") as admin:
        study = make_study(tmp_path, seed=30)
        admin.import_data(study.zip_bytes(), ImportOptions(subject="S", session="U"))  # no project: Unassigned
        assert any(s.project == "Unassigned" for s in admin.prearchive())
        assert {p.id for p in admin.projects()} >= {"A", "HIDDEN", "DEMO"}
    with XnatClient(sandbox.url, "alice", "alice-pw") as alice:
        assert [p.id for p in alice.projects()] == ["A"]
        assert all(s.project != "Unassigned" for s in alice.prearchive())
        with pytest.raises(E.ProjectAccessError):
            alice.subjects("HIDDEN")
        with pytest.raises(E.ProjectAccessError, match="HIDDEN"):
            alice.prearchive("HIDDEN")
        study = make_study(tmp_path, seed=31)
        with pytest.raises(E.ProjectAccessError):
            alice.import_data(study.zip_bytes(), ImportOptions(project="HIDDEN", subject="S", session="NO"))


def test_unknown_project_listings(client):
    with pytest.raises(E.ProjectAccessError, match="NOPE"):
        client.subjects("NOPE")
    with pytest.raises(E.ProjectAccessError):
        client.experiments("NOPE")


# --- resources ----------------------------------------------------------------------------------------


@pytest.fixture
def archived(client, tmp_path):
    ref = upload(client, tmp_path, 32, "RES")
    client.build(ref)
    client.archive(ref)
    (exp,) = client.experiments("DEMO")
    return exp


def test_session_resource_create_upload_duplicates_overwrite(client, archived):
    parent = f"/data/experiments/{archived.id}"
    assert client.create_resource(parent, "NOTES", format="TXT") is True
    assert client.create_resource(parent, "NOTES") is False  # 409 -> already there, not an error
    assert client.upload_file(parent, "NOTES", "a.txt", b"first").duplicates == ()
    assert client.upload_file(parent, "NOTES", "a.txt", b"second").duplicates == ("a.txt",)
    assert client.upload_file(parent, "NOTES", "a.txt", b"third", overwrite=True).duplicates == ()
    files = client.files(parent, "NOTES")
    assert [(f.name, f.size) for f in files] == [("a.txt", 5)]


def test_scan_resource_and_zip_extraction(client, archived):
    scan = client.scans(archived.id, file_counts=False)[0]
    parent = f"/data/experiments/{archived.id}/scans/{scan.id}"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("x/1.txt", "one")
        z.writestr("x/2.txt", "two")
    assert client.create_resource(parent, "QC", content="report") is True
    client.upload_file(parent, "EXTRA", "bundle.zip", buf.getvalue(), extract=True)  # created on the fly
    names = sorted(f.name for f in client.files(parent, "EXTRA"))
    assert names == ["1.txt", "2.txt"] or names == ["x/1.txt", "x/2.txt"]
    counts = {r.label: r.file_count for r in client.resources(parent)}
    assert counts["EXTRA"] == 2
    assert counts["QC"] == 0
