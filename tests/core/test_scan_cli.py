"""``xnat-uploader scan``: real scans of generated folders, through ``cli.main`` and as a subprocess."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pydicom
import pytest

from tests.dicomgen import conflicting_series, make_odd_corpus, secondary_capture_series, write_archives, write_corpus
from xnat_uploader.cli import main
from xnat_uploader.commands import scan as scan_command
from xnat_uploader.core.dicom import checks
from xnat_uploader.core.dicom.records import Rejected, ScanBatch, ScanProgress


def scan_json(capsys, *args: str | Path) -> dict:
    code = main(["scan", *map(str, args), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert err == ""  # not a terminal: no progress line
    return json.loads(out)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    written = write_corpus(root, patients=2, studies_per_patient=2, series_per_study=2, instances_per_series=3)
    (root / "notes.txt").write_text("not DICOM\n")
    return root, written


def test_json_counts_and_tree_equal_what_was_written(capsys, corpus):
    root, written = corpus
    data = scan_json(capsys, root)
    assert {"patients", "studies", "series", "instances", "bytes", "tree", "findings", "rejected"} <= set(data)
    assert data["patients"] == len({w.patient_id for w in written}) == 2
    assert data["studies"] == len({w.study_uid for w in written}) == 4
    assert data["series"] == len({w.series_uid for w in written}) == 8
    assert data["instances"] == len(written) == 24
    assert data["bytes"] == sum(w.size for w in written)
    assert all(isinstance(data[k], int) for k in ("patients", "studies", "series", "instances", "bytes"))
    assert data["findings"] == []
    assert data["rejected"] == [{"path": str(root / "notes.txt"), "reason": data["rejected"][0]["reason"]}]
    assert data["rejected"][0]["reason"]
    # The tree: patients > studies > series, counts per node equal to the files written there.
    per_series: dict[str, int] = {}
    for w in written:
        per_series[w.series_uid] = per_series.get(w.series_uid, 0) + 1
    seen = {}
    for patient in data["tree"]:
        assert patient["instances"] == sum(1 for w in written if w.patient_id == patient["patient_id"])
        assert patient["patient_name"]
        for study in patient["studies"]:
            assert study["instances"] == sum(s["instances"] for s in study["series"])
            for series in study["series"]:
                seen[series["uid"]] = series["instances"]
                assert series["bytes"] == sum(w.size for w in written if w.series_uid == series["uid"])
    assert seen == per_series


def test_human_output_tree_and_total(capsys, corpus):
    root, written = corpus
    assert main(["scan", str(root)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    names = {str(pydicom.dcmread(w.path, stop_before_pixels=True).PatientName) for w in written}
    for name in names:
        assert name in out  # the user's own terminal shows names
    assert "Localizer" in out
    assert "kB" in out
    assert f"{root / 'notes.txt'}: " in out
    last = out.strip().splitlines()[-1]
    assert last.startswith("Total: 24 DICOM files")
    assert "1 rejected file" in last
    assert "no findings" in last


def test_odd_corpus_scans_with_exit_0_and_reports_every_bad_file(capsys, tmp_path):
    odd = make_odd_corpus(tmp_path / "odd")
    data = scan_json(capsys, odd.root)
    rejected = {r["path"]: r["reason"] for r in data["rejected"]}
    for key, path in odd.bad.items():
        assert str(path) in rejected, key
        assert rejected[str(path)], key
    assert str(odd.dicomdir) in rejected  # read, not uploaded
    assert data["instances"] >= len(odd.good) + 2  # + the two files the DICOMDIR references
    names = {p["patient_name"] for p in data["tree"]}
    assert "Müller^Jürgen" in names
    assert checks.COMPRESSED in {f["code"] for f in data["findings"]}

    assert main(["scan", str(odd.root)]) == 0
    out = capsys.readouterr().out
    for path in odd.bad.values():
        assert str(path) in out
    assert rejected[str(odd.bad["zero_byte"])] in out
    assert "Rejected" in out


def test_every_finding_type_reaches_the_output(capsys, tmp_path):
    cases = conflicting_series(tmp_path / "cases")
    sc = secondary_capture_series(tmp_path / "sc")
    data = scan_json(capsys, tmp_path)
    found = {f["code"]: f for f in data["findings"]}
    expected = {
        checks.SEVERAL_PATIENTS,
        checks.DUPLICATE_SAME,
        checks.DUPLICATE_DIFFERENT,
        checks.SERIES_NUMBER_CONFLICT,
        checks.MISSING_SOP_INSTANCE_UID,
        checks.BURNED_IN,
    }
    assert expected <= set(found)
    assert set(found[checks.DUPLICATE_DIFFERENT]["paths"]) == {str(p) for p in cases["dup_diff"]}
    assert set(found[checks.BURNED_IN]["paths"]) == {str(p) for p in sc}
    assert all(f["severity"] in ("error", "warning", "info") and f["message"] for f in data["findings"])
    assert main(["scan", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for code in expected:
        assert f"[{code}]" in out
    assert "ERROR" in out
    assert "WARNING" in out


def test_many_rejected_files_are_grouped_by_reason(capsys, tmp_path):
    for i in range(30):
        (tmp_path / f"note{i:02d}.txt").write_text("just text\n")
    for i in range(3):
        (tmp_path / f"empty{i}").write_bytes(b"")
    assert main(["scan", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "(30 files):" in out
    assert "(3 files):" in out
    assert "... and 25 more" in out
    assert str(tmp_path / "note00.txt") in out
    assert str(tmp_path / "note29.txt") not in out
    assert "33 rejected files" in out.splitlines()[-1]


def test_archives_and_overlapping_paths(capsys, tmp_path):
    written = write_corpus(tmp_path / "src", patients=1, series_per_study=2, instances_per_series=2)
    zpath, tpath = write_archives(tmp_path / "arch", written)
    data = scan_json(capsys, zpath, tpath)
    assert data["instances"] == 2 * len(written)
    assert data["patients"] == 1
    assert any(r["path"].startswith(f"{zpath}!") for r in data["rejected"])  # README.txt inside the zip
    # The same folder given twice (and a sub-folder of it) counts each file once.
    data = scan_json(capsys, tmp_path / "src", tmp_path / "src", written[0].path.parent)
    assert data["instances"] == len(written)


def test_missing_path_exits_2_with_a_clear_message(capsys, tmp_path):
    assert main(["scan", str(tmp_path / "nope"), str(tmp_path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "no such file or folder" in err
    assert "nope" in err


@pytest.mark.parametrize("argv", [["scan"], ["scan", ".", "--workers", "0"], ["scan", ".", "--bogus"]])
def test_bad_arguments_exit_2(capsys, argv):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "usage" in capsys.readouterr().err


def test_ctrl_c_cancels_the_scan_and_exits_130(capsys, monkeypatch, tmp_path):
    """Unit test of ``run``: a stand-in scan is interrupted after its first batch."""
    seen: dict[str, object] = {}

    def interrupted_scan(paths, *, cancel=None, workers=None, batch_interval=0.25):
        seen["cancel"] = cancel
        try:
            yield ScanBatch(rejected=[Rejected("x", "not DICOM")], progress=ScanProgress(files_seen=1))
            raise KeyboardInterrupt
        finally:
            seen["closed"] = True

    monkeypatch.setattr("xnat_uploader.core.dicom.scan.iter_scan", interrupted_scan)
    assert main(["scan", str(tmp_path)]) == 130
    assert isinstance(seen["cancel"], threading.Event)
    assert seen["cancel"].is_set()
    assert seen["closed"] is True
    out, err = capsys.readouterr()
    assert out == ""
    assert "Interrupted" in err


def test_progress_line_on_a_terminal():
    stream = io.StringIO()
    line = scan_command.ProgressLine(stream, interval=0)
    line.update(ScanProgress(files_seen=1234, bytes_seen=5_600_000, elapsed=2.0))
    assert stream.getvalue().startswith("\r")
    assert "1,234 files" in stream.getvalue()
    assert "5.6 MB" in stream.getvalue()
    assert "617 files/s" in stream.getvalue()
    line.clear()
    assert stream.getvalue().endswith("\r")
    assert "\n" not in stream.getvalue()


def test_human_bytes():
    assert scan_command.human_bytes(0) == "0 B"
    assert scan_command.human_bytes(999) == "999 B"
    assert scan_command.human_bytes(1500) == "1.5 kB"
    assert scan_command.human_bytes(812_000_000) == "812.0 MB"
    assert scan_command.human_bytes(3.2e12) == "3.2 TB"


def test_subprocess_json_and_no_patient_data_in_the_log(tmp_path):
    cases = conflicting_series(tmp_path / "data" / "cases")
    write_corpus(tmp_path / "data" / "clean", patients=1, series_per_study=1, instances_per_series=2, seed=5)
    (tmp_path / "data" / "junk.txt").write_text("text")
    config = tmp_path / "config"
    env = {**os.environ, "XNAT_UPLOADER_CONFIG_DIR": str(config)}
    out = subprocess.run(
        [sys.executable, "-m", "xnat_uploader", "-v", "scan", str(tmp_path / "data"), "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert out.returncode == 0, out.stderr
    assert "Scanning:" not in out.stderr  # stderr is a pipe, not a terminal
    data = json.loads(out.stdout)
    assert data["instances"] == sum(len(v) for v in cases.values()) + 2
    assert data["rejected"] == [{"path": str(tmp_path / "data" / "junk.txt"), "reason": data["rejected"][0]["reason"]}]
    log_text = (config / "logs" / "xnat-uploader.log").read_text(encoding="utf-8")
    assert "scan of 1 paths" in log_text
    for patient in data["tree"]:
        assert patient["patient_id"] not in log_text
        assert patient["patient_name"] not in log_text
