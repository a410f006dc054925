"""The import service (``POST /data/services/import``): body handling, handler choice, DICOM-zip, gradual-DICOM.

SI, XAR and inbox are in ``test_sandbox_import_other.py``.
"""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.integration.sandbox_data import Api, expected_series, h3, study, tar_of, with_comments, zip_of

PREARC_URI = re.compile(r"^/data/prearchive/projects/(?P<p>[^/]+)/(?P<ts>\d{8}_\d{9})/(?P<f>[^/]+)$")


@pytest.fixture
def api(sandbox):
    return Api(sandbox.url)


@pytest.fixture
def files(tmp_path):
    return study(tmp_path, seed=1)


def only_session(sandbox):
    inventory = sandbox.inventory()
    assert len(inventory) == 1, inventory
    return next(iter(inventory.values()))


def test_dicom_zip_lands_in_one_receiving_session_with_every_instance(sandbox, api, files):
    r = api.import_zip(
        zip_of(files),
        PROJECT_ID="DEMO",
        SUBJECT_ID="S1",
        EXPT_LABEL="E1",
        prevent_auto_commit="true",
        SOURCE="uploader",
    )
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/uri-list"
    assert r.text.endswith("\r\n")
    assert r.text.count("\r\n") == 1
    m = PREARC_URI.match(r.text.strip())
    assert m
    assert m["p"] == "DEMO"
    assert m["f"] == "E1"
    session = only_session(sandbox)
    assert (session["where"], session["subject"], session["label"]) == ("prearchive", "S1", "E1")
    assert session["series"] == expected_series(files)
    row = api.rows("/data/prearchive/projects/DEMO")[0]
    assert (row["status"], row["SOURCE"], row["prevent_auto_commit"]) == ("RECEIVING", "uploader", "true")


def test_format_txt_gives_the_bare_uri(api, files):
    r = api.import_zip(zip_of(files), PROJECT_ID="DEMO", format="txt")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain")
    assert PREARC_URI.match(r.text)


def test_lower_case_names_are_mapped_for_dicom_zip_but_ignored_by_gradual(api, files):
    r = api.import_zip(zip_of(files), project="DEMO", subject="SUBJ", session="SESS")
    assert PREARC_URI.match(r.text.strip())["f"] == "SESS"
    g = api.import_dicom(files[0].path, project="DEMO", session="IGNORED")
    # gradual-DICOM reads only PROJECT_ID/EXPT_LABEL: no project -> Unassigned, label from PatientID
    m = PREARC_URI.match(g.text.strip())
    assert m["p"] == "Unassigned"
    assert m["f"] == files[0].patient_id


def test_gradual_files_of_one_study_merge_into_one_session(sandbox, api, files):
    uris = {api.import_dicom(f.path, PROJECT_ID="DEMO", EXPT_LABEL="G1").text for f in files}
    assert len(uris) == 1  # every response names the first request's session
    other = api.import_dicom(files[0].path, PROJECT_ID="DEMO", EXPT_LABEL="G2").text
    assert other not in uris  # a different label is a different session
    inv = sandbox.inventory()
    g1 = next(v for v in inv.values() if v["label"] == "G1")
    assert g1["series"] == expected_series(files)


def test_resending_an_instance_is_counted_in_the_inventory(sandbox, api, files):
    api.import_dicom(files[0].path, PROJECT_ID="DEMO", EXPT_LABEL="D")
    api.import_dicom(files[0].path, PROJECT_ID="DEMO", EXPT_LABEL="D")
    session = only_session(sandbox)
    counts = session["counts"][files[0].series_uid]
    assert counts == {files[0].sop_instance_uid: 2}
    assert session["files"] == 1  # same name, same instance: stored once


def test_non_dicom_entry_fails_the_zip_unless_ignore_unparsable(api, files):
    data = zip_of(files, extra={"notes/README.txt": b"not dicom"})
    r = api.import_zip(data, PROJECT_ID="DEMO")
    assert r.status_code == 400
    assert h3(r) == "unable to read DICOM object notes/README.txt"
    ok = api.import_zip(data, PROJECT_ID="DEMO", EXPT_LABEL="OK", **{"Ignore-Unparsable": "true"})
    assert ok.status_code == 200
    only_junk = api.import_zip(zip_of([], extra={"a.txt": b"x"}), PROJECT_ID="DEMO", **{"Ignore-Unparsable": "true"})
    assert only_junk.status_code == 400
    assert "unable to read DICOM object" in h3(only_junk)


def test_commit_builds_and_implies_ignore_unparsable(api, files):
    r = api.import_zip(zip_of(files, extra={"x.txt": b"junk"}), PROJECT_ID="DEMO", EXPT_LABEL="C", action="commit")
    assert r.status_code == 200
    row = api.rows("/data/prearchive/projects/DEMO")[0]
    assert row["status"] == "READY"


def test_commit_with_auto_archive_returns_the_archive_uri(sandbox, api, files):
    r = api.import_zip(zip_of(files), PROJECT_ID="DEMO", SUBJECT_ID="S", EXPT_LABEL="A", action="commit", AA="true")
    assert r.text == "/data/archive/projects/DEMO/subjects/S/experiments/A\r\n"
    assert only_session(sandbox)["where"] == "archive"
    again = api.import_zip(zip_of(files), PROJECT_ID="DEMO", SUBJECT_ID="S", EXPT_LABEL="A", action="commit", AA="true")
    assert again.status_code == 400
    assert h3(again) == "unable to archive for the Prearchive session"
    params = {"PROJECT_ID": "DEMO", "SUBJECT_ID": "S", "EXPT_LABEL": "A", "action": "commit", "AA": "true"}
    refused = api.import_zip(zip_of(files), **params, overwrite="append")  # merges, but not files already there
    assert refused.status_code == 400
    merged = api.import_zip(zip_of(files), **params, overwrite="delete")  # overrideExceptions: they are replaced
    assert merged.status_code == 200


def test_dest_forces_commit_and_archive(sandbox, api, files):
    r = api.import_zip(zip_of(files), dest="/archive/projects/DEMO/subjects/S9/experiments/E9")
    assert r.text.strip() == "/data/archive/projects/DEMO/subjects/S9/experiments/E9"
    bad = api.import_zip(zip_of(files), dest="/nowhere/DEMO")
    assert bad.status_code == 400
    assert h3(bad) == "Parameter dest format error"


def test_two_series_zips_to_one_prearchive_dest_share_a_session(api, files):
    by_series: dict[str, list] = {}
    for f in files:
        by_series.setdefault(f.series_uid, []).append(f)
    uris = [api.import_zip(zip_of(part), dest="/prearchive/projects/DEMO").text for part in by_series.values()]
    assert len(uris) == 2
    assert uris[0] == uris[1]


def test_merge_of_another_study_into_an_explicit_session_is_refused(api, tmp_path, files):
    uri = api.import_zip(zip_of(files), PROJECT_ID="DEMO", EXPT_LABEL="M").text.strip()
    m = PREARC_URI.match(uri)
    other = study(tmp_path, seed=2)
    r = api.import_zip(zip_of(other), dest=f"/prearchive/projects/DEMO/{m['ts']}/{m['f']}")
    assert r.status_code == 400


def test_archive_type_comes_from_the_file_name(api, files):
    assert (
        api.post(
            "/data/services/import/study.tar",
            params={"PROJECT_ID": "DEMO", "import-handler": "DICOM-zip"},
            data=tar_of(files),
            headers={"Content-Type": "application/octet-stream"},
        ).status_code
        == 200
    )
    assert (
        api.post(
            "/data/services/import",
            params={"PROJECT_ID": "DEMO", "import-handler": "DICOM-zip"},
            data=tar_of(files, gz=True),
            headers={"Content-Type": "application/x-gtar"},
        ).status_code
        == 200
    )
    r = api.post(
        "/data/services/import",
        params={"PROJECT_ID": "DEMO", "import-handler": "DICOM-zip"},
        data=zip_of(files),
        headers={"Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 400
    assert h3(r) == "Unsupported format UNKNOWN"
    # A .tar.gz body sent as application/x-tar is read as a plain tar and fails.
    r = api.post(
        "/data/services/import",
        params={"PROJECT_ID": "DEMO", "import-handler": "DICOM-zip"},
        data=tar_of(files, gz=True),
        headers={"Content-Type": "application/x-tar"},
    )
    assert r.status_code == 400


def test_handler_choice_and_its_errors(api, files):
    dcm = files[0].path.read_bytes()
    r = api.post(
        "/data/services/import", params={"PROJECT_ID": "DEMO"}, data=dcm, headers={"Content-Type": "application/dicom"}
    )
    assert r.status_code == 200  # application/dicom without a handler -> gradual-DICOM
    r = api.post(
        "/data/services/import",
        params={"import-handler": "nope"},
        data=dcm,
        headers={"Content-Type": "application/dicom"},
    )
    assert r.status_code == 404
    assert h3(r) == "Unknown importer implementation specified: nope"
    r = api.post("/data/services/import", params={"import-handler": "DICOM-zip"})
    assert r.status_code == 400
    assert h3(r) == "Unable to identify upload format."
    assert api.get("/data/services/import").status_code == 405


def test_gradual_rejects_non_dicom_with_xnats_message(api, tmp_path):
    junk = tmp_path / "notes.txt"
    junk.write_bytes(b"hello, not dicom")
    r = api.import_dicom(junk, PROJECT_ID="DEMO")
    assert r.status_code == 400
    assert h3(r) == "unable to read DICOM object upload.dcm"


def test_unknown_project_goes_to_unassigned_and_routing_uses_patient_comments(sandbox, api, tmp_path, files):
    sandbox.add_project("ROUTED")
    r = api.import_dicom(files[0].path, PROJECT_ID="NOSUCH")
    assert PREARC_URI.match(r.text.strip())["p"] == "Unassigned"
    routed = with_comments(files[1].path, tmp_path / "routed.dcm", "Project: ROUTED Subject: RS Session: RE")
    m = PREARC_URI.match(api.import_dicom(routed).text.strip())
    assert (m["p"], m["f"]) == ("ROUTED", "RE")
    row = api.rows("/data/prearchive/projects/ROUTED")
    assert [r["subject"] for r in row if r["project"] == "ROUTED"] == ["RS"]


def test_chunked_bodies_are_decoded_for_zip_and_refused_for_dicom(sandbox, api, files):
    data = zip_of(files)

    def chunks(blob: bytes, size: int = 1000):
        for i in range(0, len(blob), size):
            yield blob[i : i + size]

    r = api.post(
        "/data/services/import",
        params={"PROJECT_ID": "DEMO", "EXPT_LABEL": "CH"},
        data=chunks(data),
        headers={"Content-Type": "application/zip"},
    )
    assert r.status_code == 200
    assert only_session(sandbox)["series"] == expected_series(files)
    r = api.post(
        "/data/services/import",
        params={"PROJECT_ID": "DEMO"},
        data=chunks(files[0].path.read_bytes()),
        headers={"Content-Type": "application/dicom"},
    )
    assert r.status_code == 400
    assert h3(r).startswith("In-body File posts must include the file directly as the body of the message.")
    assert "entity size is -1 but the media type is not application/zip" in h3(r)
    empty = api.post(
        "/data/services/import",
        params={"import-handler": "gradual-DICOM"},
        data=b"",
        headers={"Content-Type": "application/dicom"},
    )
    assert empty.status_code == 400
    assert "entity size is 0" in h3(empty)


def test_multipart_upload_and_its_rules(sandbox, api, files):
    data = zip_of(files)
    r = api.post(
        "/data/services/import",
        data={"import-handler": "DICOM-zip", "PROJECT_ID": "DEMO", "EXPT_LABEL": "MP"},
        files={"file": ("study.zip", data)},
    )
    assert r.status_code == 200
    assert PREARC_URI.match(r.text.strip())["f"] == "MP"
    two = api.post(
        "/data/services/import",
        data={"import-handler": "DICOM-zip"},
        files=[("a", ("a.zip", data)), ("b", ("b.zip", data))],
    )
    assert two.status_code == 400
    assert h3(two) == "Importer is limited to one uploaded resource at a time."
    inbody = api.post("/data/services/import?inbody=true&import-handler=DICOM-zip", files={"f": ("a.zip", data)})
    assert inbody.status_code == 406


def test_direct_archive_bypasses_the_prearchive(sandbox, api, files):
    r = api.import_zip(zip_of(files), PROJECT_ID="DEMO", SUBJECT_ID="S", EXPT_LABEL="DA", **{"Direct-Archive": "true"})
    uri = r.text.strip()
    assert uri == f"/xapi/direct-archive/DEMO/{files[0].study_uid}/DA"
    assert api.rows("/data/prearchive") == []
    assert api.get(uri).json()["label"] == "DA"
    sandbox.settings.direct_archive_delay = 0.5
    assert api.post(uri).status_code == 200  # XNAT answers once the archive job is queued (xnat-api.md 14)
    assert api.get(uri).json()["status"] == "QUEUED_BUILDING"
    assert api.get("/data/projects/DEMO/experiments/DA", params={"format": "json"}).status_code == 404
    deadline = time.monotonic() + 5
    while only_session(sandbox)["where"] != "archive":
        assert time.monotonic() < deadline, "never archived"
        time.sleep(0.05)
    assert api.get(uri).status_code == 404  # no longer a direct-archive session
    assert sandbox.action_count("direct-archive") == 1


def test_auto_build_timer_builds_idle_sessions_but_not_uploader_ones(sandbox_factory, files):
    server = sandbox_factory(auto_build_after=0.2, rebuild_tick=0.05)
    api = Api(server.url)
    api.import_zip(zip_of(files), PROJECT_ID="DEMO", EXPT_LABEL="AUTO")
    api.import_zip(zip_of(files), PROJECT_ID="DEMO", EXPT_LABEL="KEEP", SOURCE="uploader")
    api.import_zip(zip_of(files), PROJECT_ID="DEMO", EXPT_LABEL="KEEP2", prevent_auto_commit="true")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        statuses = {r["name"]: r["status"] for r in api.rows("/data/prearchive")}
        if statuses["AUTO"] == "READY":
            break
        time.sleep(0.05)
    assert statuses == {"AUTO": "READY", "KEEP": "RECEIVING", "KEEP2": "RECEIVING"}


def test_a_pre_1_8_3_server_ignores_ignore_unparsable_and_direct_archive(sandbox_factory, files):
    server = sandbox_factory(version="1.8.2")
    api = Api(server.url)
    r = api.import_zip(zip_of(files, extra={"x.txt": b"junk"}), PROJECT_ID="DEMO", **{"Ignore-Unparsable": "true"})
    assert r.status_code == 400
    r = api.import_zip(zip_of(files), PROJECT_ID="DEMO", **{"Direct-Archive": "true"})
    assert r.text.startswith("/data/prearchive/projects/DEMO/")


def test_automatic_build_shows_building_and_a_new_file_interrupts_it(sandbox_factory, files):
    server = sandbox_factory(auto_build_after=0.05, rebuild_tick=0.02)
    server.settings.build_seconds = 0.6
    api = Api(server.url)
    uri = api.import_zip(zip_of(files[:3]), PROJECT_ID="DEMO", EXPT_LABEL="B").text.strip()

    def wait_for(status: str) -> None:
        deadline = time.monotonic() + 5
        while api.rows(uri)[0]["status"] != status:
            assert time.monotonic() < deadline, f"never saw {status}"
            time.sleep(0.01)

    wait_for("BUILDING")
    api.import_zip(zip_of(files[3:]), PROJECT_ID="DEMO", EXPT_LABEL="B")
    assert api.rows(uri)[0]["status"] == "RECEIVING_INTERRUPT"
    server.settings.build_seconds = 0
    wait_for("READY")
    assert server.inventory()[f"prearchive:{uri.removeprefix('/data/prearchive/projects/')}"]["files"] == 6


def test_parallel_uploads_of_one_study_end_in_one_session(sandbox, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    many = study(tmp_path, seed=12, series=4, instances=10)
    batches = [many[i::4] for i in range(4)]

    def send_zip(batch):  # entries named per instance: parallel zips with the same entry names collide (XNAT too)
        names = {f.path: f"{f.series_uid[-4:]}/{f.sop_instance_uid}.dcm" for f in batch}
        return Api(sandbox.url).import_zip(zip_named(names), PROJECT_ID="DEMO", EXPT_LABEL="PAR").text

    def send_one(f):  # named, as XNAT's clients must: unnamed files of one series collide on "upload.dcm"
        return (
            Api(sandbox.url)
            .import_dicom(f.path, f"{f.sop_instance_uid}.dcm", PROJECT_ID="DEMO", EXPT_LABEL="PARG")
            .text
        )

    with ThreadPoolExecutor(8) as pool:
        zip_uris = set(pool.map(send_zip, batches))
        gradual_uris = set(pool.map(send_one, many))
    assert len(zip_uris) == 1
    assert len(gradual_uris) == 1
    inventory = {v["label"]: v for v in sandbox.inventory().values()}
    assert inventory["PAR"]["series"] == expected_series(many)
    assert inventory["PARG"]["series"] == expected_series(many)


def test_importer_checks_follow_xnats_order_and_format_html(api, files):
    # No file is checked before the handler name: an unknown handler without a file is a 400.
    r = api.post("/data/services/import", params={"import-handler": "nope"})
    assert r.status_code == 400
    r = api.post("/data/services/import", params={"PROJECT_ID": "DEMO"})
    assert r.status_code == 500  # no handler and no file: XNAT fails internally
    r = api.import_zip(zip_of(files), PROJECT_ID="DEMO", format="html")
    assert r.status_code == 200
    assert "/data/prearchive/projects/DEMO/" in r.text
    r = api.import_zip(zip_of(files, extra={"x.txt": b"x"}), PROJECT_ID="DEMO", format="html")
    assert r.status_code == 200  # errors become a 200 page with format=html
    assert "unable to read DICOM object x.txt" in r.text
    r = api.import_zip(zip_of(files), project="DEMO", prearchive_code="1", overwrite="append")
    assert r.status_code == 400
    assert "Overwrite flag was not set to a valid option" in h3(r)


def test_concurrent_sends_collide_on_one_stored_name_whatever_the_instances(sandbox, tmp_path):
    """XNAT locks a file by session, scan and stored name while it writes it: the first two files of a series
    sent at the same moment as ``upload.dcm`` collide; named by their SOPInstanceUIDs they do not, but the
    same instance twice at once still does."""
    sandbox.settings.store_seconds = 0.4  # writing a file takes this long; the lock is held meanwhile
    files = study(tmp_path, seed=5, series=3)
    first, second, third = sorted({f.series_uid for f in files})
    a, b = [f for f in files if f.series_uid == first][:2]
    c, d = [f for f in files if f.series_uid == second][:2]
    params = {"PROJECT_ID": "DEMO", "SUBJECT_ID": "S", "EXPT_LABEL": "C"}
    seed = next(f for f in files if f.series_uid == third)
    assert Api(sandbox.url).import_dicom(seed.path, **params).status_code == 200  # the session exists first

    def together(*sends: tuple[object, str]) -> list[tuple[int, str]]:
        gate = threading.Barrier(len(sends))

        def one(send: tuple[object, str]) -> tuple[int, str]:
            f, name = send
            gate.wait()
            r = Api(sandbox.url).import_dicom(f.path, name, **params)  # type: ignore[attr-defined]
            return r.status_code, h3(r) if r.status_code != 200 else ""

        with ThreadPoolExecutor(len(sends)) as pool:
            return sorted(pool.map(one, sends))

    assert together((a, ""), (b, "")) == [(200, ""), (400, "Concurrent file sends of the same data is not supported.")]
    named = together((c, f"{c.sop_instance_uid}.dcm"), (d, f"{d.sop_instance_uid}.dcm"))
    assert named == [(200, ""), (200, "")]
    again = together((c, f"{c.sop_instance_uid}.dcm"), (c, f"{c.sop_instance_uid}.dcm"))
    assert again == [(200, ""), (400, "Concurrent file sends of the same data is not supported.")]
    [row] = sandbox.app.store.prearchive.values()
    names = {scan.series_uid: set(scan.files) for scan in row.content.scans.values()}
    assert names[second] == {f"{c.sop_instance_uid}.dcm", f"{d.sop_instance_uid}.dcm"}
    assert names[first] == {"upload.dcm"}  # only the request that held the lock stored its file


def test_idle_sessions_auto_archive_by_project_code_and_direct_archive(sandbox_factory, tmp_path, files):
    server = sandbox_factory(auto_build_after=0.1, rebuild_tick=0.02)
    server.add_project("AUTO", prearchive_code=4)
    api = Api(server.url)
    api.import_zip(zip_of(files), PROJECT_ID="AUTO", SUBJECT_ID="S", EXPT_LABEL="IDLE")
    api.import_zip(
        zip_of(study(tmp_path, seed=13)), PROJECT_ID="DEMO", EXPT_LABEL="DIRECT", **{"Direct-Archive": "true"}
    )
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        where = {v["label"]: v["where"] for v in server.inventory().values()}
        if where == {"IDLE": "archive", "DIRECT": "archive"}:
            break
        time.sleep(0.02)
    assert where == {"IDLE": "archive", "DIRECT": "archive"}
    assert api.rows("/data/projects/AUTO/experiments")[0]["label"] == "IDLE"


def zip_named(names: dict) -> bytes:
    """A zip of the files given as path -> entry name."""
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for path, name in names.items():
            z.write(path, name)
    return buf.getvalue()
