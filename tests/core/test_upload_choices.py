"""The overwrite choices and XNAT's import parameters: old names still read, combinations XNAT ignores refused."""

from __future__ import annotations

import json

import pytest

from xnat_uploader.core import settings
from xnat_uploader.core.settings import Defaults
from xnat_uploader.core.upload_choices import (
    OnExisting,
    XnatParams,
    archive_overwrite,
    dest_problems,
    on_existing_for_job,
    parse_dest,
    parse_on_existing,
    upload_problems,
)
from xnat_uploader.core.xnat.importer import ImportHandler, ImportOptions


@pytest.mark.parametrize(
    ("stored", "choice"),
    [
        (None, OnExisting.REFUSE),
        ("", OnExisting.REFUSE),  # what queued jobs held for "never merge"
        ("none", OnExisting.REFUSE),  # what settings files and the command line held
        ("append", OnExisting.ADD),
        ("delete", OnExisting.REPLACE),
        ("refuse", OnExisting.REFUSE),
        ("Add", OnExisting.ADD),
        (" replace ", OnExisting.REPLACE),
        (OnExisting.ADD, OnExisting.ADD),
        ("sometimes", None),
        (True, None),
    ],
)
def test_old_and_new_names_map_to_the_choice(stored, choice):
    assert parse_on_existing(stored) is choice


def test_a_queued_job_runs_with_what_its_destination_allows():
    assert on_existing_for_job({}) is OnExisting.REFUSE
    assert on_existing_for_job({"overwrite": ""}) is OnExisting.REFUSE
    assert on_existing_for_job({"overwrite": "append", "destination": "prearchive"}) is OnExisting.ADD
    assert on_existing_for_job({"overwrite": "delete", "destination": "archive"}) is OnExisting.REPLACE
    # An old job that asked for "delete" with no archiving step: XNAT merged it, and still does.
    assert on_existing_for_job({"overwrite": "delete", "destination": "prearchive"}) is OnExisting.ADD
    direct = {"overwrite": "replace", "destination": "direct", "direct_archive": True}
    assert on_existing_for_job(direct) is OnExisting.ADD
    assert on_existing_for_job({"overwrite": "replace", "destination": "archive"}, mode="cstore") is OnExisting.ADD


def test_archiving_from_the_prearchive_sends_overwrite_only_to_replace():
    """XNAT archives one session into an existing one whatever ``overwrite`` says; with it (append or delete alike)
    the merge overwrites what the session holds. Refusing is ours, adding sends nothing."""
    assert [archive_overwrite(c) for c in OnExisting] == [None, None, "delete"]
    assert all(c.archive_help and c.archive_short for c in OnExisting)
    assert "refuses" in OnExisting.ADD.help  # the upload's "Add" no longer promises a merge XNAT will not do
    assert "nothing is deleted" in OnExisting.REPLACE.archive_help


def test_old_settings_files_load_with_the_new_names(tmp_path):
    path = tmp_path / "settings.json"
    for old, new in (("none", "refuse"), ("append", "add"), ("delete", "replace"), (7, "refuse")):
        defaults = {"transport": "zip", "destination": "archive", "overwrite": old}
        path.write_text(json.dumps({"schema_version": 2, "servers": [], "defaults": defaults}))
        assert settings.load(path).defaults.overwrite == new
    assert Defaults().overwrite == "refuse"
    assert Defaults(destination="prearchive", overwrite="delete").overwrite == "add"  # no archiving step: Add
    assert Defaults(transport="cstore", destination="archive", overwrite="replace").overwrite == "add"


def test_replace_and_the_archive_options_only_where_xnat_carries_them_out():
    plain = XnatParams()
    assert upload_problems(OnExisting.REPLACE, plain, destination="archive", mode="zip") == []
    assert upload_problems(OnExisting.REPLACE, plain, destination="archive", mode="gradual") == []
    for destination, mode, words in (
        ("prearchive", "zip", "XNAT replaces files only when archiving"),
        ("direct", "zip", "Direct-Archive writes straight into the archive"),
        ("prearchive", "cstore", "DICOM receiver files the session itself"),
    ):
        [problem] = upload_problems(OnExisting.REPLACE, plain, destination=destination, mode=mode)
        assert problem.startswith("Replace is not possible here:")
        assert words in problem
    assert upload_problems(OnExisting.ADD, plain, destination="direct", mode="zip") == []
    archiving = XnatParams(quarantine=True)
    assert upload_problems(OnExisting.REFUSE, archiving, destination="archive", mode="zip") == []
    assert (
        "choose the destination Archive"
        in upload_problems(
            OnExisting.REFUSE, XnatParams(trigger_pipelines=False), destination="prearchive", mode="zip"
        )[0]
    )
    assert upload_problems(OnExisting.REFUSE, XnatParams(rename=True), destination="archive", mode="gradual") == []
    assert upload_problems(OnExisting.REFUSE, XnatParams(rename=True), destination="prearchive", mode="cstore")
    assert upload_problems(OnExisting.REFUSE, XnatParams(ignore_unparsable=True), destination="archive", mode="gradual")


def test_parameters_go_to_the_requests_that_read_them():
    params = XnatParams(quarantine=True, trigger_pipelines=False, rename=True, ignore_unparsable=True)
    assert XnatParams.from_options(params.to_options()) == params
    assert XnatParams.from_options({"workers": 4, "overwrite": "append"}) == XnatParams()  # an older job: nothing
    assert params.archive_params() == {"quarantine": "true", "triggerPipelines": "false"}
    assert XnatParams().archive_params() == {}
    zip_opts = ImportOptions.for_uploader(ImportHandler.DICOM_ZIP, "P", "S", "E", **params.import_fields("DICOM-zip"))
    assert ("rename", "true") in zip_opts.params()
    assert ("Ignore-Unparsable", "true") in zip_opts.params()
    gradual = ImportOptions.for_uploader(
        ImportHandler.GRADUAL_DICOM, "P", "S", "E", **params.import_fields("gradual-DICOM")
    )
    names = [k for k, _ in gradual.params()]
    assert "rename" in names
    assert "Ignore-Unparsable" not in names
    assert "overwrite" not in names
    gradual.validate()
    with pytest.raises(ValueError, match="rename applies to gradual-DICOM and DICOM-zip only"):
        ImportOptions(handler=ImportHandler.SI, rename=True).validate()


def test_dest_forms_and_disagreements():
    dest = parse_dest("/data/archive/projects/DEMO/subjects/S%201/experiments/E1")
    assert (dest.kind, dest.project, dest.subject, dest.session) == ("archive", "DEMO", "S 1", "E1")
    pre = parse_dest("/prearchive/projects/DEMO/20240501_101112345/F1/")
    assert (pre.kind, pre.project, pre.timestamp, pre.folder) == ("prearchive", "DEMO", "20240501_101112345", "F1")
    assert parse_dest("/archive").project == ""
    assert parse_dest("/REST/archive/projects/P/experiments/E").session == "E"
    with pytest.raises(ValueError, match="not a place XNAT knows"):
        parse_dest("/archive/projects/P/sessions/E")
    assert dest_problems(dest, handler="SI", project="DEMO", subject="S 1", session="E1") == []
    assert dest_problems(parse_dest("/archive"), handler="DICOM-zip", project="DEMO", subject="X") == []
    [wrong] = dest_problems(dest, handler="SI", project="OTHER")
    assert wrong == "The destination names project DEMO but OTHER was given: they must agree."
    assert len(dest_problems(dest, handler="SI", project="DEMO", subject="T", session="F")) == 2
    assert "XAR" in dest_problems(dest, handler="XAR", project="DEMO")[0]
