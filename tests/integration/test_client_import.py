"""The import service through the client, against the sandbox: every handler, bodies, and error mapping."""

from __future__ import annotations

import io
import shutil
import threading
import time
import zipfile

import pytest

from tests.integration._client_data import chunks, make_studies, make_study
from xnat_uploader.core.xnat import (
    ConnectionOptions,
    ImportHandler,
    ImportOptions,
    Overwrite,
    PrearchiveRef,
    StreamBody,
    XnatClient,
)
from xnat_uploader.core.xnat import errors as E


@pytest.fixture
def client(sandbox):
    with XnatClient(sandbox.url, "admin", "admin", ConnectionOptions(pool_size=8)) as c:
        c.connect()
        yield c


def arrived(server, ref) -> set[str]:
    """SOP instance UIDs the sandbox stored for a prearchive session, or an archived ``(project, label)``."""
    inventory = server.inventory()
    key = (
        f"archive:{ref[0]}/{ref[1]}"
        if isinstance(ref, tuple)
        else f"prearchive:{ref.project}/{ref.timestamp}/{ref.folder}"
    )
    if key not in inventory:
        raise AssertionError(f"{key} not in inventory: {list(inventory)}")
    return {sop for series in inventory[key]["series"].values() for sop in series}


def test_dicom_zip_bytes_into_prearchive(sandbox, client, tmp_path):
    study = make_study(tmp_path, seed=1)
    opts = ImportOptions.for_uploader(ImportHandler.DICOM_ZIP, "DEMO", "SUBJ1", "SESS1")
    result = client.import_data(study.zip_bytes(), opts)
    (ref,) = result.prearchive
    assert ref.project == "DEMO"
    assert ref.folder == "SESS1"
    assert len(ref.timestamp) == 18
    (row,) = client.prearchive("DEMO")
    assert row.ref == ref
    assert row.status == "RECEIVING"
    assert row.study_uid == study.study_uid
    assert row.source == "uploader"
    assert row.prevent_auto_commit
    assert arrived(sandbox, ref) == study.sop_uids


@pytest.mark.parametrize("name", ["upload.zip", "upload.tar", "upload.tar.gz"])
def test_dicom_zip_from_a_path_picks_the_content_type(sandbox, client, tmp_path, name):
    study = make_study(tmp_path, seed=2)
    path = study.write_archive(tmp_path / name)
    result = client.import_data(path, ImportOptions(project="DEMO", subject="S", session=f"E_{name.replace('.', '_')}"))
    assert arrived(sandbox, result.prearchive[0]) == study.sop_uids


def test_streamed_body_with_known_length(sandbox, client, tmp_path):
    study = make_study(tmp_path, seed=3)
    data = study.zip_bytes()
    body = StreamBody(chunks(data), len(data))  # a one-shot generator, as the upload engine streams zips
    result = client.import_data(body, ImportOptions(project="DEMO", subject="S", session="STREAM", commit=True))
    assert arrived(sandbox, result.prearchive[0]) == study.sop_uids
    assert client.prearchive_session(result.prearchive[0]).status == "READY"


def test_file_object_body(sandbox, client, tmp_path):
    study = make_study(tmp_path, seed=4)
    path = study.write_archive(tmp_path / "a.zip")
    with open(path, "rb") as handle:
        result = client.import_data(handle, ImportOptions(project="DEMO", subject="S", session="FILEOBJ"))
    assert arrived(sandbox, result.prearchive[0]) == study.sop_uids


def test_gradual_dicom_from_eight_threads_lands_in_one_session(sandbox, client, tmp_path):
    study = make_study(tmp_path, seed=5, series=2, instances=6)
    opts = ImportOptions.for_uploader(ImportHandler.GRADUAL_DICOM, "DEMO", "SUBJ", "GRAD")
    uris: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    work = list(study.files)

    def worker():
        while True:
            with lock:
                if not work:
                    return
                f = work.pop()
            try:
                result = client.import_data(f.path, opts)
                with lock:
                    uris.append(result.uri or "")
            except BaseException as exc:  # noqa: BLE001 - asserted below
                errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len(set(uris)) == 1
    assert len(uris) == len(study.files)
    ref = PrearchiveRef.parse(uris[0])
    assert arrived(sandbox, ref) == study.sop_uids
    assert client.session.logins == 1
    commit = client.commit(ref)
    assert not commit.archived
    assert commit.prearchive_ref == ref


def test_si_handler(sandbox, client, tmp_path):
    study = make_study(tmp_path, seed=6)
    opts = ImportOptions(handler=ImportHandler.SI, project="DEMO", subject="S", session="SI1")
    (ref,) = client.import_data(study.zip_bytes(), opts).prearchive
    assert arrived(sandbox, ref) == study.sop_uids
    row = client.prearchive_session(ref)
    assert row.status == "READY"
    assert row.source == "SessionImporter"


def test_si_with_several_studies_is_refused(client, tmp_path):
    studies = make_studies(tmp_path, seed=7, count=2)
    files = studies[0].files + studies[1].files
    from tests.integration._client_data import Study

    with pytest.raises(E.MultipleSessionsError) as info:
        client.import_data(
            Study(files).zip_bytes(),
            ImportOptions(handler=ImportHandler.SI, project="DEMO", dest="/archive/projects/DEMO"),
        )
    assert not info.value.transient


def test_non_dicom_file_in_zip_fails_unless_ignored(sandbox, client, tmp_path):
    study = make_study(tmp_path, seed=8)
    body = study.zip_bytes(extra={"notes/README.txt": b"not dicom at all"})
    with pytest.raises(E.NonDicomFileError) as info:
        client.import_data(body, ImportOptions(project="DEMO", subject="S", session="JUNK"))
    assert info.value.status == 400
    assert not info.value.transient
    assert "README.txt" in info.value.message
    result = client.import_data(
        body, ImportOptions(project="DEMO", subject="S", session="JUNK2", ignore_unparsable=True)
    )
    assert arrived(sandbox, result.prearchive[0]) == study.sop_uids


def test_zip_without_dicom(client):
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("a.txt", "hello")
    with pytest.raises(E.NonDicomFileError, match="a.txt"):
        client.import_data(buf.getvalue(), ImportOptions(project="DEMO", subject="S", session="EMPTY"))
    with pytest.raises(E.NoDicomError):
        client.import_data(
            buf.getvalue(), ImportOptions(handler=ImportHandler.SI, project="DEMO", subject="S", session="EMPTY")
        )


def test_unknown_project_is_reported_not_silently_unassigned(sandbox, client, tmp_path):
    study = make_study(tmp_path, seed=9)
    with pytest.raises(E.ProjectAccessError) as info:
        client.import_data(study.zip_bytes(), ImportOptions(project="NOSUCH", subject="S", session="X"))
    assert "NOSUCH" in info.value.message
    assert "Unassigned" in info.value.message


def test_direct_archive_refused_on_an_old_server(sandbox_factory, tmp_path):
    server = sandbox_factory(version="1.8.2")
    study = make_study(tmp_path, seed=10)
    with XnatClient(server.url, "admin", "admin") as client:
        client.connect()
        with pytest.raises(E.ServerTooOldError, match="1.8.3"):
            client.import_data(study.zip_bytes(), ImportOptions(project="DEMO", direct_archive=True))
        with pytest.raises(E.ServerTooOldError):
            client.import_data(study.zip_bytes(), ImportOptions(project="DEMO", ignore_unparsable=True))
    assert not any(r.path == "/data/services/import" for r in server.request_log)  # refused before sending


def test_direct_archive_on_a_new_server(sandbox, client, tmp_path):
    study = make_study(tmp_path, seed=11)
    result = client.import_data(
        study.zip_bytes(), ImportOptions(project="DEMO", subject="S", session="DA", direct_archive=True)
    )
    assert result.direct_archive
    assert result.uri.startswith("/xapi/direct-archive/DEMO/")
    assert client.prearchive("DEMO") == []  # direct-archive sessions never show in the prearchive


def test_session_already_archived(sandbox, client, tmp_path):
    study = make_study(tmp_path, seed=12)
    opts = ImportOptions(project="DEMO", subject="S", session="TWICE", commit=True, auto_archive=True)
    first = client.import_data(study.zip_bytes(), opts)
    assert first.archive
    with pytest.raises(E.ArchiveFailedError) as info:  # DICOM-zip reports conflicts as a generic 400
        client.import_data(study.zip_bytes(), opts)
    assert info.value.status == 400
    assert "already exists" in info.value.message
    merged = client.import_data(study.zip_bytes(), ImportOptions(
        project="DEMO", subject="S", session="TWICE", commit=True, auto_archive=True, overwrite=Overwrite.APPEND,
        overwrite_files=True,
    ))  # fmt: skip
    assert merged.archive


def test_inbox_handler(sandbox, client, tmp_path):
    study = make_study(tmp_path, seed=13)
    folder = sandbox.data_dir / "inbox" / "DEMO" / "batch1"
    folder.mkdir(parents=True)
    for f in study.files:
        shutil.copy(f.path, folder / f"{f.sop_instance_uid}.dcm")
    opts = ImportOptions(
        handler=ImportHandler.INBOX, project="DEMO", subject="S", session="IN1", inbox_path=str(folder),
        cleanup_after_import=False,
    )  # fmt: skip
    result = client.import_data(None, opts)
    assert result.uri is not None
    assert result.uri.startswith("/xapi/dicom/")
    assert client.follow_inbox(result.uri, interval=0.02, timeout=10).status == "Completed"
    (row,) = client.prearchive("DEMO")
    assert row.name == "IN1"
    assert arrived(sandbox, row.ref) == study.sop_uids
    assert folder.exists()  # cleanupAfterImport=false kept the source


def test_upload_500_is_transient_and_not_resent(sandbox, client, tmp_path):
    study = make_study(tmp_path, seed=14)
    sandbox.set_faults("http500_every=1,path=/data/services/import")
    with pytest.raises(E.ServerError) as info:
        client.import_data(study.zip_bytes(), ImportOptions(project="DEMO", subject="S", session="F500"))
    assert info.value.transient
    assert sum(1 for r in sandbox.request_log if r.path == "/data/services/import") == 1


def test_connection_dropped_mid_body(sandbox, client, tmp_path):
    study = make_study(tmp_path, seed=15, series=3, instances=10)
    sandbox.set_faults("drop_body_at=1,path=/data/services/import")
    with pytest.raises(E.ConnectionLostError) as info:
        client.import_data(study.zip_bytes(), ImportOptions(project="DEMO", subject="S", session="DROP"))
    assert info.value.transient
    sandbox.set_faults(None)
    result = client.import_data(study.zip_bytes(), ImportOptions(project="DEMO", subject="S", session="DROP"))
    assert arrived(sandbox, result.prearchive[0]) == study.sop_uids


def test_expired_session_during_a_streamed_upload(sandbox_factory, tmp_path):
    server = sandbox_factory(session_timeout=1.0)
    study = make_study(tmp_path, seed=16)
    data = study.zip_bytes()
    with XnatClient(server.url, "admin", "admin") as client:
        client.connect()
        import time

        time.sleep(1.3)
        # A one-shot stream cannot be sent twice: the client renews the login and says "retry".
        with pytest.raises(E.SessionExpiredError) as info:
            client.import_data(
                StreamBody(chunks(data), len(data)), ImportOptions(project="DEMO", subject="S", session="EXP")
            )
        assert info.value.transient
        # A replayable stream (a factory) is re-sent after the renewal.
        time.sleep(1.3)
        result = client.import_data(
            StreamBody(lambda: chunks(data), len(data)), ImportOptions(project="DEMO", subject="S", session="EXP")
        )
        assert result.prearchive
        assert client.session.logins == 3
        # A file on disk is rewound and re-sent after the renewal.
        time.sleep(1.3)
        path = study.write_archive(tmp_path / "again.zip")
        result = client.import_data(path, ImportOptions(project="DEMO", subject="S", session="EXP2"))
        assert arrived(server, result.prearchive[0]) == study.sop_uids
        assert client.session.logins == 4


XAR_XML = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<xnat:MRSession xmlns:xnat="http://nrg.wustl.edu/xnat" project="{project}" label="{label}">'
    "<xnat:subject_ID>{subject}</xnat:subject_ID></xnat:MRSession>"
)


def xar_bytes(study, project: str, label: str, documents: int = 1) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for n in range(documents):
            z.writestr(f"session{n}.xml", XAR_XML.format(project=project, label=f"{label}{n or ''}", subject="XSUBJ"))
        for i, f in enumerate(study.files):
            z.write(f.path, f"scans/IM{i:04d}.dcm")
        z.writestr("notes/protocol.txt", "extra file kept as a resource")
    return buf.getvalue()


def test_xar_handler_archives_directly(sandbox, client, tmp_path):
    study = make_study(tmp_path, seed=17)
    result = client.import_data(xar_bytes(study, "DEMO", "XAR1"), ImportOptions(handler=ImportHandler.XAR))
    assert result.uri is not None
    assert result.uri.startswith("/data/archive/experiments/")
    (exp,) = client.experiments("DEMO")
    assert exp.label == "XAR1"
    assert arrived(sandbox, ("DEMO", "XAR1")) == study.sop_uids
    assert client.prearchive("DEMO") == []


def test_xar_errors(client, tmp_path):
    study = make_study(tmp_path, seed=18)
    xar = ImportOptions(handler=ImportHandler.XAR)
    with pytest.raises(E.MultipleSessionsError):
        client.import_data(xar_bytes(study, "DEMO", "TWO", documents=2), xar)
    with pytest.raises(E.ProjectAccessError):
        client.import_data(xar_bytes(study, "NOSUCH", "X"), xar)
    client.import_data(xar_bytes(study, "DEMO", "DUP"), xar)
    with pytest.raises(E.SessionExistsError):
        client.import_data(xar_bytes(study, "DEMO", "DUP"), xar)


def test_direct_archive_trigger(sandbox, client, tmp_path):
    study = make_study(tmp_path, seed=19)
    opts = ImportOptions(project="DEMO", subject="S", session="DA2", direct_archive=True)
    (uri,) = client.import_data(study.zip_bytes(), opts).direct_archive
    client.trigger_direct_archive(uri)  # only queues the archive job (xnat-api.md 14)
    deadline = time.monotonic() + 5
    while not client.experiments("DEMO"):
        assert time.monotonic() < deadline, "never archived"
        time.sleep(0.05)
    assert [e.label for e in client.experiments("DEMO")] == ["DA2"]
    assert arrived(sandbox, ("DEMO", "DA2")) == study.sop_uids


def test_gradual_dicom_streamed_needs_no_chunking(sandbox, client, tmp_path):
    # XNAT refuses bodies of unknown length unless they are zips; a StreamBody always declares its length.
    study = make_study(tmp_path, seed=33, series=1, instances=1)
    data = study.files[0].path.read_bytes()
    opts = ImportOptions(handler=ImportHandler.GRADUAL_DICOM, project="DEMO", subject="S", session="GS")
    result = client.import_data(StreamBody(chunks(data, 1000), len(data)), opts)
    assert arrived(sandbox, result.prearchive[0]) == study.sop_uids
