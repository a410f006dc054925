"""The three "if the session exists" choices and XNAT's import parameters, through ``upload`` against the sandbox.

Each choice is checked by what the sandbox received (its request log, form bodies included) and what it then
holds (its inventory): refuse sends nothing, add merges, replace archives with ``overwrite=delete``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from urllib.parse import parse_qs

import pydicom
import pytest

from tests.integration.sandbox_data import Api, expected_series, zip_of
from xnat_uploader.cli import main
from xnat_uploader.core.dicom.index import build_index
from xnat_uploader.core.dicom.scan import scan_paths
from xnat_uploader.core.plan import Target, enqueue, plan_jobs
from xnat_uploader.core.queue.runner import run_job
from xnat_uploader.core.queue.store import JobState, QueueStore
from xnat_uploader.core.transfer.dicom_zip import DicomZipTransport
from xnat_uploader.core.xnat.session import XnatSession
from xnat_uploader.sandbox.synthetic import write_corpus

pytestmark = pytest.mark.usefixtures("cli_env")

IMPORT, ARCHIVE = "/data/services/import", "/data/services/archive"


@pytest.fixture
def study(tmp_path):
    """One study of two series (3 files each) in ``PATIENT/STUDY/SERIES`` folders: (study folder, files)."""
    files = write_corpus(
        tmp_path / "src", patients=1, studies_per_patient=1, series_per_study=2, instances_per_series=3
    )
    return files[0].path.parent.parent, files


def cli(sandbox, capsys, *args: str) -> tuple[int, str, str]:
    code = main([*args, "--url", sandbox.url, "--user", "admin"])
    out = capsys.readouterr()
    return code, out.out, out.err


def params(entry) -> dict[str, list[str]]:
    """A logged request's parameters: query string and form body together."""
    found = parse_qs(entry.query, keep_blank_values=True)
    for key, values in parse_qs(entry.form, keep_blank_values=True).items():
        found.setdefault(key, []).extend(values)
    return found


def requests_to(sandbox, path: str, since: int = 0) -> list[dict[str, list[str]]]:
    """POSTs to ``path`` or below it (gradual files go to ``/data/services/import/<SOP UID>.dcm``)."""
    return [
        params(r) for r in sandbox.request_log[since:]
        if (r.path == path or r.path.startswith(path + "/")) and r.method == "POST"
    ]  # fmt: skip


def commits(sandbox, since: int = 0) -> list[dict[str, list[str]]]:
    return [
        params(r)
        for r in sandbox.request_log[since:]
        if r.path.startswith("/data/prearchive/projects/") and "action=commit" in r.query
    ]


def changed_copies(folder: Path, dest: Path) -> dict[str, str]:
    """Copies of a series with the same UIDs and other bytes (the originals are never touched): {sop: sha256}."""
    dest.mkdir(parents=True)
    digests = {}
    for src in sorted(folder.iterdir()):
        ds = pydicom.dcmread(src)
        ds.ImageComments = "second version"
        ds.save_as(dest / src.name)
        digests[ds.SOPInstanceUID] = hashlib.sha256((dest / src.name).read_bytes()).hexdigest()
    return digests


def test_refuse_sends_nothing_and_names_the_session(sandbox, study, capsys):
    folder, files = study
    series = sorted({f.path.parent for f in files})
    code, _, err = cli(sandbox, capsys, "upload", str(series[0]), "-P", "DEMO", "-E", "VISIT1", "--archive")
    assert code == 0, err
    seen = len(sandbox.request_log)
    code, _, err = cli(sandbox, capsys, "upload", str(series[1]), "-P", "DEMO", "-E", "VISIT1", "--archive")
    assert code == 2
    assert "Session VISIT1 already exists in the archive of DEMO" in err
    assert "--overwrite add" in err
    assert requests_to(sandbox, IMPORT, seen) == []
    assert commits(sandbox, seen) == []
    [entry] = sandbox.inventory().values()
    assert len(entry["series"]) == 1


def test_add_merges_into_the_archived_session(sandbox, study, capsys):
    folder, files = study
    series = sorted({f.path.parent for f in files})
    code, _, err = cli(sandbox, capsys, "upload", str(series[0]), "-P", "DEMO", "-E", "VISIT1", "--archive")
    assert code == 0, err
    seen = len(sandbox.request_log)
    code, out, err = cli(sandbox, capsys, "upload", str(series[1]), "-P", "DEMO", "-E", "VISIT1", "--archive",
                         "--overwrite", "add", "--json")  # fmt: skip
    assert code == 0, err
    [receipt] = json.loads(out)["receipts"]
    assert receipt["options"]["overwrite"] == "add"
    assert receipt["verified"]["ok"]
    imports = requests_to(sandbox, IMPORT, seen)
    assert imports
    assert all("overwrite" not in p for p in imports)
    [commit] = commits(sandbox, seen)
    assert commit["AA"] == ["true"]
    assert "overwrite" not in commit
    assert requests_to(sandbox, ARCHIVE, seen) == []
    [entry] = sandbox.inventory().values()
    assert (entry["where"], entry["label"]) == ("archive", "VISIT1")
    assert entry["series"] == expected_series(files)  # the old series and the new one
    assert {n for counts in entry["counts"].values() for n in counts.values()} == {1}  # each image once


def test_add_that_re_sends_archived_series_sends_nothing_and_says_what_to_do(sandbox, study, capsys):
    """XNAT refuses a whole merge holding any image the archived session has (MergeSessionsA.checkForConflict): an
    "Add" that would re-send series the session holds stops before sending; Replace is the way through."""
    folder, files = study
    series = sorted({f.path.parent for f in files})
    code, _, err = cli(sandbox, capsys, "upload", str(series[0]), "-P", "DEMO", "-E", "VISIT1", "--archive")
    assert code == 0, err
    before = sandbox.inventory()
    seen = len(sandbox.request_log)
    code, out, err = cli(sandbox, capsys, "upload", str(folder), "-P", "DEMO", "-E", "VISIT1", "--archive",
                         "--overwrite", "add", "--json")  # fmt: skip
    assert code == 1, out
    number = pydicom.dcmread(next(f.path for f in files if f.path.parent == series[0])).SeriesNumber
    assert f"Session VISIT1 in the archive already holds images of series {number} " in err
    assert "XNAT refuses to add images a session already has (even identical ones), so nothing was sent." in err
    assert f'Leave out series {number} and upload again, or choose "Replace what is already there"' in err
    assert requests_to(sandbox, IMPORT, seen) == []  # nothing sent, nothing left in the prearchive
    assert commits(sandbox, seen) == []
    assert sandbox.inventory() == before
    code, out, err = cli(sandbox, capsys, "upload", str(folder), "-P", "DEMO", "-E", "VISIT1", "--archive",
                         "--overwrite", "replace", "--json")  # fmt: skip
    assert code == 0, err
    [entry] = sandbox.inventory().values()
    assert entry["series"] == expected_series(files)


class ArchivedMeanwhile:
    """DICOM-zip; once the job's files are sent, ``meanwhile()`` runs (another upload of the same images)."""

    name = "zip"

    def __init__(self, meanwhile) -> None:
        self.inner, self.meanwhile = DicomZipTransport(), meanwhile

    def send(self, ctx, files):
        sent = self.inner.send(ctx, files)
        self.meanwhile()
        return sent


def test_add_whose_commit_xnat_refuses_fails_in_plain_words(sandbox, study, tmp_path):
    """When XNAT itself refuses the merge (here another upload archived the same images while this one was being
    sent, after the check), the job fails saying what happened and what to do; the upload waits in the prearchive."""
    folder, files = study
    result = scan_paths([folder])
    plan = plan_jobs(build_index(result.instances, result.rejected), Target("DEMO", session="VISIT1", overwrite="add"))
    assert plan.ok, plan
    [job] = plan.jobs

    def archive_the_same_images() -> None:
        api = Api(sandbox.url)
        r = api.import_zip(zip_of(files[:3]), dest="/prearchive/projects/DEMO/20200101_000000000/OTHER")
        assert r.status_code == 200, r.text
        form = {"src": r.text.strip(), "session": "VISIT1", "subject": job.subject}
        r = api.post("/data/services/archive", data=form)
        assert r.status_code == 200, r.text

    options = {"workers": 2, "overwrite": "add", "destination": "archive"}
    with QueueStore(tmp_path / "q.db") as store, XnatSession(sandbox.url, "admin", "admin") as session:
        job_id = enqueue(store, job, server_url=sandbox.url, user="admin", mode="zip", options=options)
        state = run_job(store, job_id, session, receipts_dir=tmp_path / "receipts",
                        transports={"zip": lambda: ArchivedMeanwhile(archive_the_same_images)})  # fmt: skip
        assert state is JobState.FAILED
        row = store.job(job_id)
    assert row.message.startswith("The session in the archive already holds some of these images, so XNAT added "
                                  "none of them (it refuses to add an image a session already has, even an "
                                  "identical one).")  # fmt: skip
    assert "This upload waits in the prearchive as CONFLICT. XNAT says: Session already exists with the" in row.message
    assert '"Replace what is already there"' in row.hint
    [commit] = commits(sandbox)
    assert "overwrite_files" not in commit  # "Add" never lets XNAT overwrite
    archived = sandbox.inventory()["archive:DEMO/VISIT1"]
    assert archived["series"] == expected_series(files[:3])  # the other upload's, untouched
    [waiting] = [e for e in sandbox.inventory().values() if e["where"] == "prearchive"]
    assert (waiting["status"], waiting["series"]) == ("CONFLICT", expected_series(files))  # nothing lost


@pytest.mark.parametrize("spelling", ["replace", "delete"])  # "delete" is the old name, kept as an alias
def test_replace_archives_with_overwrite_delete_and_the_session_holds_what_was_sent(
    sandbox, study, capsys, tmp_path, spelling
):
    folder, files = study
    series = sorted({f.path.parent for f in files})
    code, _, err = cli(sandbox, capsys, "upload", str(folder), "-P", "DEMO", "-E", "VISIT1", "--archive")
    assert code == 0, err
    new = changed_copies(series[0], tmp_path / "v2" / series[0].name)
    seen = len(sandbox.request_log)
    code, out, err = cli(sandbox, capsys, "upload", str(tmp_path / "v2"), "-P", "DEMO", "-E", "VISIT1",
                         "--archive", "--overwrite", spelling, "--quarantine", "--json")  # fmt: skip
    assert code == 0, err
    [receipt] = json.loads(out)["receipts"]
    assert receipt["verified"]["ok"]
    assert receipt["options"]["overwrite"] == "replace"
    [archived] = requests_to(sandbox, ARCHIVE, seen)
    assert archived["overwrite"] == ["delete"]
    assert archived["quarantine"] == ["true"]
    assert commits(sandbox, seen) == []  # a build, never a commit: a commit would merge without replacing
    assert all("overwrite" not in p for p in requests_to(sandbox, IMPORT, seen))
    [entry] = sandbox.inventory().values()
    assert (archived["session"], archived["subject"]) == (["VISIT1"], [entry["subject"]])
    first = next(f for f in files if f.path.parent == series[0]).series_uid
    assert entry["series"][first] == new  # the files sent replaced the old ones
    assert entry["series"] == {**expected_series(files), first: new}  # the series not sent stays
    assert set(entry["counts"][first].values()) == {2}  # each instance arrived twice: once replaced


def test_replace_and_archive_options_need_the_archive_destination(sandbox, study, capsys):
    folder, _ = study
    for extra, words in (
        (["--overwrite", "replace"], "XNAT replaces files only when archiving"),
        (["--overwrite", "replace", "--direct-archive"], "Direct-Archive writes straight into the archive"),
        (["--quarantine"], "choose the destination Archive"),
        (["--no-pipelines", "--direct-archive"], "choose the destination Archive"),
        (["--ignore-unparsable", "--mode", "gradual"], "DICOM-zip uploads only"),
        (["--dest", "/archive/projects/DEMO"], "--dest is for import-archive only"),
    ):
        code, _, err = cli(sandbox, capsys, "upload", str(folder), "-P", "DEMO", *extra)
        assert code == 2, extra
        assert words in err, err
    assert sandbox.request_log == []  # refused before connecting


@pytest.mark.parametrize("mode", ["zip", "gradual"])
def test_each_flag_reaches_the_request_that_reads_it(sandbox, study, capsys, mode):
    folder, files = study
    flags = ["--quarantine", "--no-pipelines", "--rename"] + (["--ignore-unparsable"] if mode == "zip" else [])
    code, out, err = cli(sandbox, capsys, "upload", str(folder), "-P", "DEMO", "--archive", "--mode", mode,
                         *flags, "--json")  # fmt: skip
    assert code == 0, err
    [receipt] = json.loads(out)["receipts"]
    options = receipt["options"]  # what the queue stored for the job, so a resumed job sends the same
    assert (options["quarantine"], options["trigger_pipelines"], options["rename"]) == (True, False, True)
    assert options["ignore_unparsable"] is (mode == "zip")
    imports = requests_to(sandbox, IMPORT)
    assert imports
    for p in imports:
        assert p["rename"] == ["true"]
        assert p.get("Ignore-Unparsable") == (["true"] if mode == "zip" else None)
        assert "quarantine" not in p
        assert "triggerPipelines" not in p
        assert "overwrite" not in p
    [commit] = commits(sandbox)
    assert (commit["quarantine"], commit["triggerPipelines"], commit["AA"]) == (["true"], ["false"], ["true"])
    [entry] = sandbox.inventory().values()
    assert entry["where"] == "archive"
    assert entry["series"] == expected_series(files)


def test_import_archive_flags_and_dest(sandbox, client, study, capsys, tmp_path):
    folder, files = study
    zipped = Path(shutil.make_archive(str(tmp_path / "study"), "zip", folder))
    code, out, err = cli(sandbox, capsys, "import-archive", str(zipped), "-P", "DEMO", "-S", "S1", "-E", "SI1",
                         "--dest", "/archive/projects/DEMO/subjects/S1/experiments/SI1", "--quarantine",
                         "--no-pipelines")  # fmt: skip
    assert code == 0, err
    assert out.split() == ["/data/archive/projects/DEMO/subjects/S1/experiments/SI1"]
    [si] = requests_to(sandbox, IMPORT)
    assert si["import-handler"] == ["SI"]
    assert si["dest"] == ["/archive/projects/DEMO/subjects/S1/experiments/SI1"]
    assert (si["quarantine"], si["triggerPipelines"]) == (["true"], ["false"])

    seen = len(sandbox.request_log)
    code, out, err = cli(sandbox, capsys, "import-archive", str(zipped), "-P", "DEMO", "-S", "S2", "-E", "DZ1",
                         "--handler", "dicom-zip", "--rename", "--ignore-unparsable",
                         "--dest", "/prearchive/projects/DEMO")  # fmt: skip
    assert code == 0, err
    [dz] = requests_to(sandbox, IMPORT, seen)
    assert (dz["import-handler"], dz["rename"], dz["Ignore-Unparsable"]) == (["DICOM-zip"], ["true"], ["true"])
    assert dz["dest"] == ["/prearchive/projects/DEMO"]
    [row] = client.prearchive("DEMO")
    assert (row.name, row.status) == ("DZ1", "READY")

    seen = len(sandbox.request_log)
    for extra, words in (
        (["--dest", "/archive/projects/OTHER"], "names project OTHER but DEMO was given"),
        (["-E", "A", "--dest", "/archive/projects/DEMO/subjects/S/experiments/B"], "names session B but A"),
        (["--dest", "/somewhere/else"], "is not a place XNAT knows"),
        (["--rename"], "only with --handler dicom-zip"),
        (["--handler", "dicom-zip", "--quarantine"], "only with the session importer (si)"),
        (["--handler", "xar", "--dest", "/archive/projects/DEMO"], "XAR file names its own project"),
    ):
        code, _, err = cli(sandbox, capsys, "import-archive", str(zipped), "-P", "DEMO", *extra)
        assert code == 1, extra
        assert words in err, err
    assert requests_to(sandbox, IMPORT, seen) == []


@pytest.mark.parametrize(("old", "request_path"), [("append", "commit"), ("delete", ARCHIVE)])
def test_a_job_queued_by_an_older_version_runs_with_its_choice(sandbox, study, capsys, tmp_path, old, request_path):
    """Queued jobs hold the old names: "append" still merges by commit (a new series here: XNAT refuses images it
    holds), "delete" with the archive replaces (the whole study again)."""
    folder, files = study
    series = sorted({f.path.parent for f in files})
    code, _, err = cli(sandbox, capsys, "upload", str(series[0]), "-P", "DEMO", "-E", "VISIT1", "--archive")
    assert code == 0, err
    result = scan_paths([series[1] if old == "append" else folder])
    plan = plan_jobs(build_index(result.instances, result.rejected), Target("DEMO", session="VISIT1", overwrite=old))
    assert plan.ok, plan
    old_options = {"workers": 2, "overwrite": old, "destination": "archive", "direct_archive": False}
    seen = len(sandbox.request_log)
    with QueueStore(tmp_path / "old.db") as store, XnatSession(sandbox.url, "admin", "admin") as session:
        [job_id] = [enqueue(store, j, server_url=sandbox.url, user="admin", mode="zip", options=old_options)
                    for j in plan.jobs]  # fmt: skip
        state = run_job(store, job_id, session, receipts_dir=tmp_path / "receipts")
        assert state is JobState.DONE, store.job(job_id).message
    if request_path == "commit":
        [commit] = commits(sandbox, seen)
        assert "overwrite" not in commit
        assert requests_to(sandbox, ARCHIVE, seen) == []
    else:
        [archived] = requests_to(sandbox, ARCHIVE, seen)
        assert archived["overwrite"] == ["delete"]
        assert commits(sandbox, seen) == []
    assert all("overwrite" not in p for p in requests_to(sandbox, IMPORT, seen))
    [entry] = sandbox.inventory().values()
    assert entry["series"] == expected_series(files)
