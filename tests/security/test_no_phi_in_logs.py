"""No patient name, patient ID, subject or session label, nor the folders named after them, in any log.

A full upload runs as a coordinator runs it (the command line in its own process against the sandbox over
real loopback, debug logging on; then the window, in this process) with a patient whose every identifier is a
distinctive string, filed under folders named after the patient. Then the whole log, the log panel and
"copy diagnostics" are searched for those strings.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from xnat_uploader import log as app_log
from xnat_uploader.core import redact
from xnat_uploader.core.diagnostics import diagnostics_text
from xnat_uploader.core.queue.store import JobState
from xnat_uploader.sandbox.synthetic import plan_corpus, write_corpus

FAMILY, GIVEN = "Quixwell", "Zebedia"
PATIENT_ID = "QZ93817264"
SUBJECT, SESSION = "Subj_Quarrington", "Sess_Wolverhollow"
DISTINCT = (FAMILY, GIVEN, PATIENT_ID, SUBJECT, SESSION)


def _patient_folder(tmp_path: Path, name: str = "src") -> Path:
    """Two series of one patient, filed the way clinics do: under the patient's name and ID."""
    corpus = plan_corpus(patients=1, series_per_study=2, instances_per_series=3, seed=7)
    corpus[0].name = f"{FAMILY.upper()}^{GIVEN.upper()}"
    corpus[0].patient_id = PATIENT_ID
    root = tmp_path / name
    write_corpus(root / f"{FAMILY} {GIVEN} {PATIENT_ID}", corpus)
    (root / f"{FAMILY}_{GIVEN}_notes.txt").write_text("not DICOM", encoding="utf-8")  # a rejected file, too
    return root


def _leaks(text: str) -> list[str]:
    low = text.lower()
    return [s for s in DISTINCT if s.lower() in low]


def _log_text(folder: Path) -> str:
    files = sorted(folder.rglob("*.log*"))
    assert files, f"no log file in {folder}"
    return "\n".join(f.read_text(encoding="utf-8", errors="replace") for f in files)


def _cli(tmp_path: Path, server, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, XNAT_UPLOADER_CONFIG_DIR=str(tmp_path / "app"), XNAT_PASS="admin")
    cmd = [sys.executable, "-m", "xnat_uploader", "-v", "upload", "--url", server.url, "--user", "admin", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)


def test_a_command_line_upload_logs_no_patient_identifier(sandbox_factory, tmp_path):
    server = sandbox_factory()
    src = _patient_folder(tmp_path)
    # labels from the headers (the subject is the PatientID), zip, prearchive
    first = _cli(tmp_path, server, str(src), "-P", "DEMO")
    assert first.returncode == 0, first.stderr
    # labels typed by the user, gradual, archived
    second = _cli(tmp_path, server, str(src), "-P", "DEMO", "-S", SUBJECT, "-E", SESSION, "--mode", "gradual",
                  "--archive")  # fmt: skip
    assert second.returncode == 0, second.stderr
    labels = {(e["subject"], e["label"]) for e in server.inventory().values()}
    assert {(PATIENT_ID, f"{PATIENT_ID}_MR1"), (SUBJECT, SESSION)} <= labels

    text = _log_text(tmp_path / "app" / "logs")
    assert "Verified /data/prearchive/projects/*/*/*: verified: 2/2 series, 6 files" in text  # the log did record
    assert "Verified /data/archive/projects/*/subjects/*/experiments/*: verified" in text
    assert _leaks(text) == [], [line for line in text.splitlines() if _leaks(line)]
    redact.forget_all()  # copy diagnostics in another process: only what the file holds
    assert _leaks(diagnostics_text(next((tmp_path / "app" / "logs").glob("*.log")), lines=5000)) == []


def test_a_window_upload_logs_no_patient_identifier(qtbot, sandbox, tmp_path, monkeypatch):
    from xnat_uploader.gui.log_panel_action import install_log_panel
    from xnat_uploader.gui.main_window import MainWindow
    from xnat_uploader.gui.upload_controller import UploadController
    from xnat_uploader.gui.upload_panels import install_upload_panels

    app_log.setup(verbose=True)  # as the app does: the log file in the (test's) log dir, debug lines too
    log_dir = Path(os.environ["XNAT_UPLOADER_CONFIG_DIR"]) / "logs"
    src = _patient_folder(tmp_path)
    controller = UploadController(credentials=lambda url, user: None)
    try:
        controller.connect(sandbox.url, "admin", "admin")
        window = MainWindow(scan_workers=1)
        qtbot.addWidget(window)
        panels = install_upload_panels(window, controller)
        panel = install_log_panel(window)
        window.show()
        window.add_paths([str(src)])
        qtbot.waitUntil(lambda: not window.scan_controller.busy, timeout=20_000)
        form = panels.form
        qtbot.waitUntil(lambda: form.upload_button.isEnabled(), timeout=10_000)
        for edit, text in ((form.subject_combo.lineEdit(), SUBJECT), (form.session_edit, SESSION)):
            edit.selectAll()
            qtbot.keyClicks(edit, text)
        qtbot.waitUntil(lambda: form.upload_button.isEnabled(), timeout=5_000)
        qtbot.mouseClick(form.upload_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: [r.state for r in controller.jobs()] == [JobState.DONE], timeout=30_000)
        assert [(e["subject"], e["label"]) for e in sandbox.inventory().values()] == [(SUBJECT, SESSION)]
        # what a failed job or a broken file would log: the message quotes a label, the path a folder
        logging.getLogger("tests.security").warning("Job 9 failed: Session %s already exists in DEMO", SESSION)
        logging.getLogger("tests.security").warning("Cannot read %s", src / f"{FAMILY} {GIVEN} {PATIENT_ID}")

        text = _log_text(log_dir)
        assert "xnat_uploader.core.verify: Verified /data/prearchive/projects/*/*/*: verified" in text
        assert "Job 9 failed: Session [redacted] already exists in DEMO" in text
        assert "Cannot read [path]" in text
        assert _leaks(text) == [], [line for line in text.splitlines() if _leaks(line)]
        qtbot.waitUntil(lambda: "Cannot read" in panel.shown_text())
        assert _leaks(panel.shown_text()) == []
        assert _leaks(panel.copy_diagnostics()) == []
        panel.detach()
    finally:
        assert controller.shutdown()


@pytest.mark.parametrize(
    ("line", "kept"),
    [
        ("Verified /data/archive/projects/P1/subjects/QZ93817264/experiments/S_MR1?x=1: ok", "projects/*/subjects/*"),
        ("PermissionError: [Errno 13] Permission denied: '/scans/Quixwell Zebedia/IM1'", "Permission denied: '[path]'"),
        ("C-STORE of 1.2.840.93817264.5 failed", "1.2.840.93817264.5"),  # a UID that contains the ID: kept
        ("could not read C:\\Exports\\QUIXWELL_ZEBEDIA\\IM1 (gone)", "could not read [path] (gone)"),
        ("http://127.0.0.1:8080/data/projects/P/subjects/QZ93817264 answered 500", "/data/projects/*/subjects/*"),
        ("a member QUIXWELL_Zebedia/IM_0001.dcm changed size", "[redacted]_[redacted]/IM_0001.dcm"),
        ('  File "/opt/xnat-uploader/xnat_uploader/core/scan.py", line 12, in walk', '"/opt/xnat-uploader/xnat_'),
    ],
)
def test_redact_keeps_the_route_and_the_uid_but_not_the_patient(line, kept):
    redact.remember(PATIENT_ID, f"{FAMILY}^{GIVEN}", pieces=True)
    redact.remember(SUBJECT, SESSION)
    out = redact.redact(line)
    assert kept in out
    assert _leaks(out) == [], out
