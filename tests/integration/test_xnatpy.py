"""An independent client, xnatpy (the ``xnat`` package), against the sandbox.

If xnatpy can log in, build its data model from the sandbox's schema, import a zip into the
prearchive, list and archive it and then find the experiment, the sandbox speaks XNAT well enough
for a client written by other people, not only for ours.
"""

from __future__ import annotations

import hashlib
import zipfile

import xnat

from tests.integration.sandbox_data import expected_series, study


def test_xnatpy_import_prearchive_archive_and_browse(sandbox, tmp_path):
    files = study(tmp_path, seed=51)
    zip_path = tmp_path / "session.zip"
    with zipfile.ZipFile(zip_path, "w") as z:
        for n, f in enumerate(files):
            z.write(f.path, f"{f.series_uid[-4:]}/IM{n:04d}.dcm")

    with xnat.connect(sandbox.url, user="admin", password="admin", loglevel="ERROR") as session:
        assert "DEMO" in session.projects
        assert session.xnat_version == "1.8.10"

        # Into the prearchive; a /prearchive destination makes XNAT build the session at once.
        prearc = session.services.import_(
            zip_path, project="DEMO", subject="XSUBJ", experiment="XEXP", destination="/prearchive/projects/DEMO"
        )
        assert prearc.project == "DEMO"
        assert prearc.label == "XEXP"
        listed = session.prearchive.sessions()
        assert [(s.project, s.label, s.status) for s in listed] == [("DEMO", "XEXP", "READY")]
        assert [s.id for s in listed[0].scans] == ["1", "2"]

        experiment = listed[0].archive()
        assert experiment.label == "XEXP"
        assert session.prearchive.sessions() == []

        project = session.projects["DEMO"]
        assert "XEXP" in project.experiments
        found = project.experiments["XEXP"]
        assert found.subject.label == "XSUBJ"
        assert sorted(scan.id for scan in found.scans.values()) == ["1", "2"]
        assert "XSUBJ" in project.subjects

        # Download what arrived and compare it byte for byte with what was sent.
        target = tmp_path / "download"
        for scan in found.scans.values():
            scan.resources["DICOM"].download_dir(str(target), verbose=False)
        downloaded = sorted(hashlib.sha256(p.read_bytes()).hexdigest() for p in target.rglob("*") if p.is_file())
        assert downloaded == sorted(hashlib.sha256(f.path.read_bytes()).hexdigest() for f in files)

    inventory = next(iter(sandbox.inventory().values()))
    assert (inventory["where"], inventory["label"]) == ("archive", "XEXP")
    assert inventory["series"] == expected_series(files)
    # xnatpy logged out at the end of the with-block.
    assert sandbox.request_log[-1].method == "DELETE"
    assert sandbox.request_log[-1].path == "/data/JSESSION"


def test_xnatpy_prearchive_move_delete_rebuild_and_resources(sandbox, tmp_path):
    sandbox.add_project("OTHER")
    zips = []
    for seed in (52, 53):
        files = study(tmp_path, seed=seed, series=1, instances=2)
        path = tmp_path / f"s{seed}.zip"
        with zipfile.ZipFile(path, "w") as z:
            for f in files:
                z.write(f.path, f.path.name)
        zips.append(path)

    with xnat.connect(sandbox.url, user="admin", password="admin", loglevel="ERROR") as session:
        a = session.services.import_(
            zips[0], project="DEMO", subject="S", experiment="A", destination="/prearchive/projects/DEMO"
        )
        b = session.services.import_(
            zips[1], project="DEMO", subject="S", experiment="B", destination="/prearchive/projects/DEMO"
        )
        a.move("OTHER")
        assert sorted((p.project, p.label) for p in session.prearchive.sessions()) == [("DEMO", "B"), ("OTHER", "A")]
        b.delete()
        remaining = session.prearchive.sessions()
        assert [(p.project, p.label) for p in remaining] == [("OTHER", "A")]
        remaining[0].rebuild()
        assert session.prearchive.sessions()[0].status == "READY"

        # An /archive destination archives at once and hands back the experiment.
        experiment = session.services.import_(
            zips[1], project="DEMO", subject="S2", experiment="C", destination="/archive/projects/DEMO"
        )
        assert experiment.label == "C"
        experiment.create_resource("NOTES").upload_data("hello", "notes.txt")
        assert "notes.txt" in experiment.resources["NOTES"].files

    inventory = {v["label"]: v for v in sandbox.inventory().values()}
    assert inventory["C"]["resources"] == {"NOTES": ["notes.txt"]}
