"""``xnat-uploader resource upload``, ``import-archive`` and ``inbox`` through the CLI, against the sandbox."""

from __future__ import annotations

import io
import shutil
import zipfile

import pytest

from tests.integration._client_data import make_study
from xnat_uploader.cli import main
from xnat_uploader.core.xnat import ImportHandler, ImportOptions

XAR_XML = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<xnat:MRSession xmlns:xnat="http://nrg.wustl.edu/xnat" project="{project}" label="{label}">'
    "<xnat:subject_ID>XSUBJ</xnat:subject_ID></xnat:MRSession>"
)


def xar_bytes(study, label: str, xml: str | None = None) -> bytes:
    """A XAR: one session document plus the study's DICOM files."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("session.xml", xml if xml is not None else XAR_XML.format(project="DEMO", label=label))
        for i, f in enumerate(study.files):
            z.write(f.path, f"scans/IM{i:04d}.dcm")
    return buf.getvalue()


pytestmark = pytest.mark.usefixtures("cli_env")


@pytest.fixture
def archived(client, tmp_path) -> str:
    """An archived session DEMO/XSUBJ/ARCH1 (a XAR goes straight to the archive); returns its ID."""
    client.import_data(xar_bytes(make_study(tmp_path, seed=41), "ARCH1"), ImportOptions(handler=ImportHandler.XAR))
    (exp,) = client.experiments("DEMO")
    return exp.id


def cli(sandbox, capsys, *args: str) -> tuple[int, str, str]:
    code = main([*args, "--url", sandbox.url, "--user", "admin"])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_resource_file_and_folder_then_duplicates_then_overwrite(sandbox, client, archived, capsys, tmp_path):
    report = tmp_path / "report.pdf"
    report.write_bytes(b"%PDF-1 first")
    folder = tmp_path / "physio"
    (folder / "run1").mkdir(parents=True)
    (folder / "run1" / "resp.log").write_text("breath")
    (folder / "ecg.log").write_text("beat")
    args = ("resource", "upload", str(report), str(folder), "-P", "DEMO", "-E", "ARCH1", "--name", "EXTRA")

    code, out, err = cli(sandbox, capsys, *args)
    assert code == 0, err
    assert "Uploaded 2 item(s) to resource EXTRA of ARCH1" in err
    assert "already there" not in out.lower()
    names = sorted(f.name for f in client.files(archived, "EXTRA"))
    assert names == ["ecg.log", "report.pdf", "resp.log"]  # XNAT lists file names without their folder
    inventory = next(iter(sandbox.inventory().values()))
    assert sorted(inventory["resources"]["EXTRA"]) == ["ecg.log", "report.pdf", "run1/resp.log"]

    report.write_bytes(b"%PDF-2 second")
    code, out, err = cli(sandbox, capsys, *args)
    assert code == 0, err
    assert "Already there, not replaced: 3 files; use --overwrite" in out

    code, out, err = cli(sandbox, capsys, *args, "--overwrite")
    assert code == 0, err
    assert "already there" not in out.lower()
    (pdf,) = [f for f in client.files(archived, "EXTRA") if f.name == "report.pdf"]
    assert pdf.size == len(b"%PDF-2 second")


def test_resource_on_a_scan(sandbox, client, archived, capsys, tmp_path):
    (scan, *_) = client.scans(archived)
    note = tmp_path / "note.txt"
    note.write_text("scan note")
    code, _, err = cli(sandbox, capsys, "resource", "upload", str(note), "-P", "DEMO", "-E", "ARCH1",
                       "--scan", scan.id, "--name", "NOTES")  # fmt: skip
    assert code == 0, err
    assert [f.name for f in client.files(f"/data/experiments/{archived}/scans/{scan.id}", "NOTES")] == ["note.txt"]


def test_resource_on_a_missing_or_prearchived_session(sandbox, client, capsys, tmp_path):
    note = tmp_path / "note.txt"
    note.write_text("x")
    code, _, err = cli(sandbox, capsys, "resource", "upload", str(note), "-P", "DEMO", "-E", "NOPE", "--name", "N")
    assert code == 1
    assert "Session 'NOPE' does not exist in the archive of project DEMO" in err
    client.import_data(make_study(tmp_path, seed=42).zip_bytes(), ImportOptions(project="DEMO", subject="S",
                                                                                session="WAITING"))  # fmt: skip
    code, _, err = cli(sandbox, capsys, "resource", "upload", str(note), "-P", "DEMO", "-E", "WAITING", "--name", "N")
    assert code == 1
    assert "in the prearchive" in err
    assert "must be archived first" in err


def test_import_archive_si_and_xar(sandbox, client, capsys, tmp_path):
    study = make_study(tmp_path, seed=43)
    path = study.write_archive(tmp_path / "study.zip")
    code, out, err = cli(sandbox, capsys, "import-archive", str(path), "-P", "DEMO", "-S", "S1", "-E", "SI1")
    assert code == 0, err
    (uri,) = out.split()
    assert uri.startswith("/data/prearchive/projects/DEMO/")
    assert [row.name for row in client.prearchive("DEMO")] == ["SI1"]

    xar = tmp_path / "session.xar"
    xar.write_bytes(xar_bytes(make_study(tmp_path, seed=44), "XAR1"))
    code, out, err = cli(sandbox, capsys, "import-archive", str(xar), "-P", "DEMO")
    assert code == 0, err
    (uri,) = out.split()
    assert uri.startswith("/data/archive/experiments/")
    assert [e.label for e in client.experiments("DEMO")] == ["XAR1"]


def test_import_archive_dicom_zip_from_a_tar(sandbox, client, capsys, tmp_path):
    path = make_study(tmp_path, seed=47).write_archive(tmp_path / "study.tar.gz")
    code, out, err = cli(sandbox, capsys, "import-archive", str(path), "-P", "DEMO", "-S", "S2", "-E", "DZ1",
                         "--handler", "dicom-zip")  # fmt: skip
    assert code == 0, err
    assert "with DICOM-zip" in err
    (row,) = client.prearchive("DEMO")
    assert (row.name, row.status) == ("DZ1", "READY")
    assert out.split() == [f"/data/prearchive/projects/DEMO/{row.timestamp}/{row.folder}"]
    code, _, err = cli(sandbox, capsys, "import-archive", str(tmp_path / "nope.zip"), "-P", "DEMO")
    assert code == 1
    assert "Not a file" in err


def test_import_archive_invalid_xar(sandbox, client, capsys, tmp_path):
    xar = tmp_path / "bad.xar"
    xar.write_bytes(xar_bytes(make_study(tmp_path, seed=45), "BAD", xml="<nothing/>"))
    code, out, err = cli(sandbox, capsys, "import-archive", str(xar), "-P", "DEMO")
    assert code == 1
    assert out == ""
    assert "Import (XAR) failed" in err
    assert "Unable to locate XNAT xml document" in err
    assert client.experiments("DEMO") == []


def test_inbox_inside_and_outside_the_root(sandbox, client, capsys, tmp_path):
    folder = sandbox.data_dir / "inbox" / "DEMO" / "visit1"
    folder.mkdir(parents=True)
    study = make_study(tmp_path, seed=46)
    for f in study.files:
        shutil.copy(f.path, folder / f"{f.sop_instance_uid}.dcm")
    code, out, err = cli(sandbox, capsys, "inbox", str(folder), "-P", "DEMO", "-E", "IN1", "--keep-source",
                         "--interval", "0.05")  # fmt: skip
    assert code == 0, err
    assert "Inbox import 1: Completed" in err
    (row,) = client.prearchive("DEMO")
    assert row.name == "IN1"
    assert out.split() == [f"/data{row.url}"]  # the session that appeared
    assert folder.exists()  # --keep-source

    code, out, err = cli(sandbox, capsys, "inbox", str(tmp_path), "-P", "DEMO")
    assert code == 1
    assert out == ""
    assert "is not a folder or archive inside its inbox for project DEMO" in err
    assert tmp_path.exists()
