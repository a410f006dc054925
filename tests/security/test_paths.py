"""Paths stay inside what the user chose: DICOMDIR entries, links met in the walk, archive member names.

Each test builds its crafted input, shows the message a coordinator gets, and proves with an audit hook
(:class:`~tests.security.hostile_inputs.OpenedFiles`) that nothing outside the chosen folder was opened,
and with a marked file (PatientID ``MARK``) that nothing of it reached the scan or the upload.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest

from tests.integration.conftest import sandbox, sandbox_factory  # noqa: F401 - the sandbox fixtures
from tests.security.hostile_inputs import (
    MARK,
    OpenedFiles,
    dicomdir_pointing_out,
    folder_with_links_out,
    marked_file,
    run_cli,
    tar_with_links_and_climbing_names,
    zip_with_climbing_names,
)
from xnat_uploader.core.dicom.dicomdir import OUTSIDE_REASON, referenced_files
from xnat_uploader.core.dicom.scan import scan_paths
from xnat_uploader.core.dicom.walk import OUTSIDE_LINK
from xnat_uploader.core.queue.store import FileRow, FileState
from xnat_uploader.core.transfer.base import open_source
from xnat_uploader.core.transfer.dicom_zip import _member
from xnat_uploader.core.transfer.zipstream import ZipStream


@pytest.fixture
def outside(tmp_path) -> Path:
    """A marked instance in a folder beside the chosen one."""
    return marked_file(tmp_path / "outside" / "MARKED.dcm")


def test_dicomdir_entries_outside_its_folder_are_reported_and_never_opened(tmp_path, outside):
    dicomdir = dicomdir_pointing_out(tmp_path / "cd", outside)
    with OpenedFiles() as opened:
        result = scan_paths([dicomdir], workers=1)
    assert opened.under(outside.parent) == []  # neither the file nor its folder was opened
    assert len(result.instances) == 1  # the one file of the CD's own
    assert {r.patient_id for r in result.instances} == {result.instances[0].patient_id} != {MARK}
    outside_rows = [r for r in result.rejected if r.reason == OUTSIDE_REASON]
    assert sorted(r.path for r in outside_rows) == [str(outside)] * 2  # via "..", and by absolute path

    # The command line: exit 0 (the scan completed), the reason next to each entry, nothing marked.
    out, seconds = run_cli(tmp_path, "scan", str(dicomdir), "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert MARK not in out.stdout
    assert {"path": str(outside), "reason": OUTSIDE_REASON} in report["rejected"]  # both entries name one file
    assert report["instances"] == 1
    print(f"\n[security] DICOMDIR pointing out: exit {out.returncode}, {seconds:.2f} s, reason: {OUTSIDE_REASON!r}")


def test_a_link_inside_the_dicomdir_folder_leading_out_is_not_followed(tmp_path, outside):
    dicomdir = dicomdir_pointing_out(tmp_path / "cd", outside)
    victim = Path(referenced_files(str(dicomdir)).found[0])
    victim.unlink()
    victim.symlink_to(outside)  # the DICOMDIR's own entry, now a link out of its folder
    with OpenedFiles() as opened:
        result = scan_paths([dicomdir], workers=1)
    assert opened.under(outside.parent) == []
    assert MARK not in {r.patient_id for r in result.instances}
    assert len([r for r in result.rejected if r.reason == OUTSIDE_REASON]) == 3


def test_links_leading_out_of_the_chosen_folder_are_reported_and_not_followed(tmp_path, outside):
    root, links_out = folder_with_links_out(tmp_path / "chosen", outside)
    with OpenedFiles() as opened:
        result = scan_paths([root], workers=1)
    assert opened.under(outside.parent) == []
    assert sorted(r.path for r in result.rejected if r.reason == OUTSIDE_LINK) == sorted(map(str, links_out))
    # A link that stays inside is followed, and its file is scanned once however it is reached.
    assert [Path(r.path).name for r in result.instances] in (["own.dcm"], ["inside_link.dcm"])
    assert MARK not in {r.patient_id for r in result.instances}

    out, seconds = run_cli(tmp_path, "scan", str(root), "--json")
    assert out.returncode == 0, out.stderr
    assert MARK not in out.stdout
    assert [r["reason"] for r in json.loads(out.stdout)["rejected"]] == [OUTSIDE_LINK, OUTSIDE_LINK]
    print(f"\n[security] links out of the folder: exit {out.returncode}, {seconds:.2f} s, reason: {OUTSIDE_LINK!r}")


def test_a_link_the_user_gives_directly_is_their_choice(tmp_path, outside):
    """What the user picks is the choice itself, even when it is a link: it is read."""
    _, links_out = folder_with_links_out(tmp_path / "chosen", outside)
    result = scan_paths([links_out[0]], workers=1)
    assert [r.patient_id for r in result.instances] == [MARK]


def test_archive_member_names_are_only_names(tmp_path, outside):
    chosen = tmp_path / "chosen"
    chosen.mkdir()
    absolute = tmp_path / "evil_absolute.dcm"
    members = zip_with_climbing_names(chosen / "climbing.zip", chosen / "x.dcm", absolute)
    tar_with_links_and_climbing_names(chosen / "links.tar", marked_file(tmp_path / "_tmp" / "m.dcm", seed=403), outside)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    with OpenedFiles() as opened:
        result = scan_paths([chosen], workers=1)
    assert opened.under(outside.parent) == []
    by_archive = {}
    for r in result.instances:
        by_archive.setdefault(Path(r.path).name, set()).add(r.member)
    assert by_archive["climbing.zip"] == set(members)  # every member read, under its own name
    assert by_archive["links.tar"] == {"../../evil_tar.dcm", "/abs/evil_tar2.dcm"}  # link members are not files
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # nothing written anywhere
    assert not absolute.exists()

    # Reading a member for the upload looks the name up in the archive; the bytes are the member's own.
    for name, data in members.items():
        with open_source(str(chosen / "climbing.zip"), name) as fh:
            assert fh.read() == data
    rows = [
        FileRow(i, 1, r.path, r.member, r.size, r.sop_instance_uid, r.series_uid, 1, FileState.PENDING, None, 0, "", "")
        for i, r in enumerate(result.instances)
    ]
    stream = b"".join(ZipStream([_member(f) for f in rows]))
    names = zipfile.ZipFile(io.BytesIO(stream)).namelist()
    assert all(".." not in n and not n.startswith("/") and "\\" not in n for n in names), names
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


def test_upload_of_a_zip_with_climbing_names_writes_nothing_outside(tmp_path, sandbox):  # noqa: F811
    chosen = tmp_path / "chosen"
    chosen.mkdir()
    absolute = tmp_path / "evil_absolute.dcm"
    members = zip_with_climbing_names(chosen / "climbing.zip", chosen / "x.dcm", absolute)
    before = sorted(str(p) for p in tmp_path.rglob("*") if "app" not in p.parts)
    out, seconds = run_cli(
        tmp_path, "upload", str(chosen), "--url", sandbox.url, "--user", "admin", "-P", "DEMO", "--json"
    )
    assert out.returncode == 0, out.stderr
    receipts = json.loads(out.stdout)["receipts"]
    assert sum(r["counts"]["files"] for r in receipts) == len(members)
    assert all(r["verified"]["ok"] for r in receipts)
    assert sorted(str(p) for p in tmp_path.rglob("*") if "app" not in p.parts) == before
    assert not absolute.exists()
    print(f"\n[security] zip with climbing member names uploaded: exit {out.returncode}, {seconds:.2f} s")
