"""Files XNAT does not store, over real loopback against the sandbox: refused by a server fault, or dropped.

* XNAT's gradual importer answers any failure on the server with 400 "unable to read DICOM object <name>":
  such a file is sent again, and if it keeps failing it alone is recorded as failed; the rest is committed
  and verified, the job ends failed naming it, and Retry sends just that file.
* A series import filter drops files: 200 with an empty body (gradual), an empty answer to a zip batch, or a
  series missing after a zip's commit. Those are recorded as dropped, never sent again, and the job ends done
  with a warning naming the series; the receipt lists them. The plan names them before anything is sent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pydicom
import pytest

from tests.integration.sandbox_data import Api, h3, study, zip_of
from tests.integration.test_upload_engine import FAST_RETRY, _session
from xnat_uploader.core.dicom.index import build_index
from xnat_uploader.core.dicom.scan import scan_paths
from xnat_uploader.core.plan import Target, enqueue, existing_on_server, plan_jobs
from xnat_uploader.core.queue.outcomes import DROPPED_REASON, FILTERED_REASON
from xnat_uploader.core.queue.runner import run_job
from xnat_uploader.core.queue.scheduler import Scheduler
from xnat_uploader.core.queue.store import FileState, JobState, QueueStore
from xnat_uploader.core.transfer.dicom_zip import ZipSettings, plan_batches
from xnat_uploader.core.xnat.series_filter import read_series_filters
from xnat_uploader.sandbox.synthetic import plan_corpus, write_corpus

SERIES = 3  # MR: "Localizer", "T1 MPRAGE", "T2 FLAIR"
PER_SERIES = 6


@pytest.fixture
def folder(tmp_path) -> Path:
    corpus = plan_corpus(patients=1, series_per_study=SERIES, instances_per_series=PER_SERIES, seed=16, modality="MR")
    write_corpus(tmp_path / "src", corpus, rows=16, columns=16)
    return tmp_path / "src"


def _job(server, store, session, folder, mode, label="", **options):
    """Scan, plan with what the server says (its series import filters too), queue one job."""
    result = scan_paths([folder])
    existing = existing_on_server(session, "DEMO")
    target = Target(project="DEMO", session=label)
    plan = plan_jobs(build_index(result.instances, result.rejected), target, existing)
    assert plan.ok, plan
    [job] = plan.jobs
    job_id = enqueue(store, job, server_url=server.url, user="admin", mode=mode, options={"workers": 4, **options})
    return job, job_id


def _imports(server):
    return [r for r in server.request_log if r.path.startswith("/data/services/import")]


def _commits(server):
    return [r for r in server.request_log if r.method == "POST" and "action=commit" in r.query]


def _stored(server):
    """SOP UID -> copies received, over every session."""
    out: Counter[str] = Counter()
    for entry in server.inventory().values():
        for sops in entry["counts"].values():
            out.update(sops)
    return out


def _receipt(store, job_id):
    return json.loads(Path(store.job(job_id).receipt).read_text(encoding="utf-8"))


def test_gradual_400s_from_server_faults_are_sent_again_and_arrive(sandbox, folder, tmp_path):
    sandbox.set_faults("gradual400_every=4")
    with QueueStore(tmp_path / "q.db") as store, _session(sandbox) as session:
        _, job_id = _job(sandbox, store, session, folder, "gradual")
        state = run_job(store, job_id, session, receipts_dir=tmp_path / "r", retry=FAST_RETRY)
        assert state is JobState.DONE, store.job(job_id).message
        assert sandbox.stats["gradual400"] >= 4
    stored = _stored(sandbox)
    assert len(stored) == SERIES * PER_SERIES
    assert set(stored.values()) == {1}
    refused = [r for r in _imports(sandbox) if r.status == 400]
    assert len(refused) == sandbox.stats["gradual400"]
    assert len(_commits(sandbox)) == 1


def test_a_file_refused_for_good_fails_alone_and_retry_sends_just_it(sandbox, folder, tmp_path):
    with QueueStore(tmp_path / "q.db") as store, _session(sandbox) as session:
        job, job_id = _job(sandbox, store, session, folder, "gradual")
        bad = job.files[PER_SERIES + 2].sop_instance_uid
        sandbox.set_faults(f"gradual400_sop={bad}")
        state = run_job(store, job_id, session, receipts_dir=tmp_path / "r", retry=FAST_RETRY)

        row = store.job(job_id)
        assert state is JobState.FAILED
        assert "1 file was not stored" in row.message
        assert f"unable to read DICOM object {bad}.dcm" in row.message  # XNAT's words
        assert "Retry" in row.hint
        [failed] = store.files(job_id, [FileState.FAILED])
        assert (failed.sop_uid, failed.message) == (bad, f"unable to read DICOM object {bad}.dcm")
        assert set(_stored(sandbox)) == {f.sop_instance_uid for f in job.files} - {bad}  # all the others arrived
        assert len(_commits(sandbox)) == 1
        receipt = _receipt(store, job_id)
        assert receipt["verified"]["ok"]
        assert receipt["counts"]["files"] == SERIES * PER_SERIES - 1
        assert [f["sop_uid"] for f in receipt["failed"]] == [bad]
        assert len([r for r in _imports(sandbox) if r.status == 400]) == FAST_RETRY.attempts

        sandbox.set_faults(None)  # the server is mended
        before = len(_imports(sandbox))
        Scheduler(store, lambda url, user: session, tmp_path / "r").retry(job_id)  # the queue's Retry
        state = run_job(store, job_id, session, receipts_dir=tmp_path / "r", retry=FAST_RETRY)
        assert state is JobState.DONE, store.job(job_id).message
        again = _imports(sandbox)[before:]
        assert [(r.path, r.status) for r in again] == [(f"/data/services/import/{bad}.dcm", 200)]
        assert _receipt(store, job_id)["verified"]["ok"]
    stored = _stored(sandbox)
    assert len(stored) == SERIES * PER_SERIES
    assert set(stored.values()) == {1}


def test_a_server_refusing_every_file_stops_the_job_after_a_few(sandbox, folder, tmp_path):
    sandbox.set_faults("gradual400_every=1")
    with QueueStore(tmp_path / "q.db") as store, _session(sandbox) as session:
        _, job_id = _job(sandbox, store, session, folder, "gradual", workers=1)
        state = run_job(store, job_id, session, receipts_dir=tmp_path / "r", retry=FAST_RETRY)
        row = store.job(job_id)
        assert state is JobState.FAILED
        assert row.message.startswith("XNAT refused 3 files in a row although they are valid DICOM")
        assert len(store.files(job_id, [FileState.FAILED])) == 3
        assert len(store.files(job_id, [FileState.PENDING])) == SERIES * PER_SERIES - 3  # not tried: Retry sends them
    assert sandbox.stats["gradual400"] == 3 * FAST_RETRY.attempts
    assert _commits(sandbox) == []


@pytest.mark.parametrize("mode", ["gradual", "zip"])
def test_a_filtered_series_is_dropped_named_and_never_sent_again(sandbox, folder, tmp_path, mode):
    sandbox.set_series_filter("localizer", project="DEMO")
    with QueueStore(tmp_path / "q.db") as store, _session(sandbox) as session:
        job, job_id = _job(sandbox, store, session, folder, mode, batch_files=5)
        batches = plan_batches(store.files(job_id), ZipSettings(batch_files=5), 4)
        [predicted] = job.filtered  # the plan names it before anything is sent
        assert (predicted.number, predicted.description, predicted.files) == (1, "Localizer", PER_SERIES)
        assert 'series 1 "Localizer"' in job.warnings[0]
        state = run_job(store, job_id, session, receipts_dir=tmp_path / "r", retry=FAST_RETRY)

        row = store.job(job_id)
        assert state is JobState.DONE, row.message
        assert row.message.startswith(f"verified: 2/2 series, {2 * PER_SERIES} files;")
        assert f"1 series ({PER_SERIES} files) was dropped by the server" in row.message
        assert 'series 1 "Localizer"' in row.message
        dropped = store.files(job_id, [FileState.DROPPED])
        assert {f.sop_uid for f in dropped} == {f.sop_instance_uid for f in job.files if f.series_number == 1}
        if mode == "zip":  # the series come 3, 2, 1: 3 localizer files share a batch with series 2 (accepted, then
            # found missing after the commit), the other 3 fill the last batch (answered with an empty body)
            assert [[f.series_number for f in b] for b in batches][2:] == [[2, 2, 1, 1, 1], [1, 1, 1]]
            assert Counter(f.message for f in dropped) == {FILTERED_REASON: 3, DROPPED_REASON: 3}
        receipt = _receipt(store, job_id)
        [listed] = receipt["dropped"]
        assert (listed["series_number"], listed["description"], listed["files"]) == (1, "Localizer", PER_SERIES)
        assert receipt["counts"]["dropped"] == PER_SERIES
        assert [s["scan"] for s in receipt["verified"]["series"]] == ["2", "3"]
    stored = _stored(sandbox)
    assert set(stored) == {f.sop_instance_uid for f in job.files if f.series_number != 1}
    assert set(stored.values()) == {1}
    sent = _imports(sandbox)
    if mode == "gradual":  # one request per file, none of them twice
        assert len(sent) == SERIES * PER_SERIES
        assert len({r.path for r in sent}) == len(sent)
        assert sum(1 for r in sent if r.status == 200) == len(sent)
    else:  # each batch sent once: no re-send round for the missing series
        assert len(sent) == len(batches)
        assert all(r.status == 200 for r in sent)
    assert len(_commits(sandbox)) == 1


def test_a_zip_batch_of_only_filtered_files_answers_empty_and_the_next_makes_the_session(sandbox, folder, tmp_path):
    sandbox.set_series_filter("T2 FLAIR", project="DEMO")
    with QueueStore(tmp_path / "q.db") as store, _session(sandbox) as session:
        _, job_id = _job(sandbox, store, session, folder, "zip", batch_files=PER_SERIES)  # batch 1 = series 3
        state = run_job(store, job_id, session, receipts_dir=tmp_path / "r", retry=FAST_RETRY)
        assert state is JobState.DONE, store.job(job_id).message
        dropped = store.files(job_id, [FileState.DROPPED])
        assert len(dropped) == PER_SERIES
        assert {f.message for f in dropped} == {"dropped by the server (series import filter or anonymization script)"}
    assert len(_imports(sandbox)) == SERIES  # one batch per series, each once
    assert len(_stored(sandbox)) == 2 * PER_SERIES


@pytest.mark.parametrize("mode", ["gradual", "zip"])
def test_every_file_dropped_ends_with_a_clear_message_and_no_commit(sandbox, folder, tmp_path, mode):
    sandbox.set_series_filter("nothing matches this", mode="whitelist")  # the site's: keeps nothing
    with QueueStore(tmp_path / "q.db") as store, _session(sandbox) as session:
        job, job_id = _job(sandbox, store, session, folder, mode)
        assert len(job.filtered) == SERIES  # foreseen
        state = run_job(store, job_id, session, receipts_dir=tmp_path / "r", retry=FAST_RETRY)
        row = store.job(job_id)
        assert state is JobState.DONE
        assert row.message.startswith("Nothing to commit: XNAT kept none of the files.")
        assert f"3 series ({SERIES * PER_SERIES} files) were dropped by the server" in row.message
        assert len(store.files(job_id, [FileState.DROPPED])) == SERIES * PER_SERIES
        assert len(_receipt(store, job_id)["dropped"]) == SERIES
    assert _commits(sandbox) == []
    assert sandbox.inventory() == {}


def test_dry_run_names_the_series_the_filter_will_drop(sandbox, folder, tmp_path):
    sandbox.set_series_filter("[SeriesDescription]\nT2", project="DEMO")
    cmd = [sys.executable, "-m", "xnat_uploader", "upload", str(folder), "--url", sandbox.url, "--user", "admin",
           "-P", "DEMO", "--dry-run"]  # fmt: skip
    env = {**os.environ, "XNAT_UPLOADER_CONFIG_DIR": str(tmp_path / "app"), "XNAT_PASS": "admin"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert f'- series 3 "T2 FLAIR": {PER_SERIES} of {PER_SERIES} file(s) will be dropped' in out.stdout
    assert "XNAT will not keep 1 series" in out.stderr
    assert 'series 3 "T2 FLAIR"' in out.stderr
    assert _imports(sandbox) == []


def test_gradual_files_are_named_by_sop_uid_and_never_collide(sandbox, folder, tmp_path):
    """XNAT locks a file by scan and stored name while writing it: without a name every gradual file is
    ``upload.dcm``, and two files of one series written at the same moment collide (shown against the sandbox in
    ``test_sandbox_import.py::test_concurrent_sends_collide_on_one_stored_name_whatever_the_instances``). Named by
    SOP UID, every file has its own name, so even with a slow store no request is refused."""
    sandbox.settings.store_seconds = 0.15
    with QueueStore(tmp_path / "q.db") as store, _session(sandbox) as session:
        job, job_id = _job(sandbox, store, session, folder, "gradual", workers=PER_SERIES)
        assert run_job(store, job_id, session, receipts_dir=tmp_path / "r", retry=FAST_RETRY) is JobState.DONE
    imports = _imports(sandbox)
    assert sorted(r.path for r in imports) == sorted(
        f"/data/services/import/{f.sop_instance_uid}.dcm" for f in job.files
    )  # one request per file, each under its own name
    assert [r for r in imports if r.status != 200] == []


# -- the sandbox answers as XNAT does ------------------------------------------------------------------------


def test_the_filter_is_published_where_xnat_publishes_it(sandbox):
    api = Api(sandbox.url)
    assert api.get("/data/projects/DEMO/config/seriesImportFilter/config", params={"format": "json"}).status_code == 404
    sandbox.set_series_filter("localizer\nscout", project="DEMO")
    sandbox.set_series_filter("secret", mode="whitelist", enabled=False)
    [row] = api.rows("/data/projects/DEMO/config/seriesImportFilter/config")
    assert (row["tool"], row["path"], row["status"]) == ("seriesImportFilter", "config", "enabled")
    assert json.loads(row["contents"]) == {"mode": "blacklist", "list": "localizer\nscout"}
    [site] = api.rows("/data/config/seriesImportFilter/config")
    assert site["status"] == "disabled"
    with _session(sandbox) as session:
        filters = read_series_filters(session, "DEMO")
    assert [(f.scope, f.mode, f.rules) for f in filters.filters] == [
        ("DEMO", "blacklist", (("SeriesDescription", ("localizer", "scout")),))
    ]  # the disabled site filter is left out


def test_filtered_files_answer_200_with_an_empty_body(sandbox, tmp_path):
    files = study(tmp_path, seed=3, series=2, instances=2)
    kept, dropped = sorted({f.series_uid for f in files})
    dicom = {f.series_uid: f for f in files}
    names = {ds.SeriesInstanceUID: ds.SeriesDescription for ds in (pydicom.dcmread(f.path) for f in files)}
    sandbox.set_series_filter(f"^{names[dropped]}$", project="DEMO")
    api = Api(sandbox.url)
    params = {"PROJECT_ID": "DEMO", "SUBJECT_ID": "S", "EXPT_LABEL": "F"}
    r = api.import_dicom(dicom[dropped].path, **params)
    assert (r.status_code, r.text) == (200, "")
    assert sandbox.inventory() == {}  # not stored, and no session made for it
    r = api.import_dicom(dicom[kept].path, **params)
    assert r.status_code == 200
    assert r.text.startswith("/data/prearchive/projects/DEMO/")
    only = [f for f in files if f.series_uid == dropped]
    r = api.import_zip(zip_of(only), **params)
    assert (r.status_code, r.text) == (200, "")  # every entry dropped: no URI
    r = api.import_zip(zip_of(files), **params)
    assert r.text.startswith("/data/prearchive/projects/DEMO/")  # some kept: the session
    [entry] = sandbox.inventory().values()
    assert set(entry["series"]) == {kept}
    sandbox.set_series_filter(f"^{names[dropped]}$", project="DEMO", enabled=False)
    assert api.import_dicom(dicom[dropped].path, **params).text.startswith("/data/prearchive/")


def test_gradual_400_faults_refuse_valid_files_without_storing_them(sandbox, tmp_path):
    files = study(tmp_path, seed=4, series=1, instances=3)
    api = Api(sandbox.url)
    sandbox.set_faults(f"gradual400_at=2,gradual400_sop={files[2].sop_instance_uid}")
    answers = [api.import_dicom(f.path, f"{f.sop_instance_uid}.dcm", PROJECT_ID="DEMO") for f in files]
    assert [r.status_code for r in answers] == [200, 400, 400]
    assert h3(answers[1]) == f"unable to read DICOM object {files[1].sop_instance_uid}.dcm"
    assert api.import_dicom(files[1].path, PROJECT_ID="DEMO").status_code == 200  # "at" happens once
    assert api.import_dicom(files[2].path, PROJECT_ID="DEMO").status_code == 400  # "sop" until changed
    assert set(_stored(sandbox)) == {files[0].sop_instance_uid, files[1].sop_instance_uid}
    assert sandbox.stats["gradual400"] == 3
    with pytest.raises(ValueError, match="gradual400_every"):
        sandbox.set_faults("gradual400_every=-1")
