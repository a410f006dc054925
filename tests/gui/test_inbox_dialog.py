"""Server > Import from Server Path: the dialog runs an inbox import on the sandbox and follows its status."""

from __future__ import annotations

import time

from PySide6.QtCore import Qt

from xnat_uploader.gui.dialogs.inbox_dialog import InboxDialog
from xnat_uploader.gui.inbox_action import install_inbox_action
from xnat_uploader.gui.main_window import MainWindow
from xnat_uploader.sandbox.httpd import HttpError
from xnat_uploader.sandbox.synthetic import write_corpus


def _dialog(qtbot, controller) -> InboxDialog:
    dialog = InboxDialog(controller, interval=0.1)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitUntil(lambda: dialog.project_combo.isEnabled(), timeout=10000)
    return dialog


def _in_inbox(sandbox, name: str, instances: int = 3):
    folder = sandbox.data_dir / "inbox" / "DEMO" / name
    write_corpus(folder, patients=1, series_per_study=1, instances_per_series=instances, rows=16, columns=16)
    return folder


def test_an_import_from_the_inbox_is_followed_until_completed(qtbot, sandbox, make_controller):
    sandbox.app.settings.inbox_file_delay = 0.05
    controller = make_controller()
    controller.connect(sandbox.url, "admin", "admin")
    folder = _in_inbox(sandbox, "exam01")
    dialog = _dialog(qtbot, controller)
    assert dialog.project_combo.currentText() == "DEMO"
    assert not dialog.import_button.isEnabled()  # no path yet
    qtbot.keyClicks(dialog.path_edit, str(folder))
    qtbot.keyClicks(dialog.session_edit, "INBOX_MR1")
    assert dialog.import_button.isEnabled()
    qtbot.mouseClick(dialog.import_button, Qt.MouseButton.LeftButton)
    assert dialog.close_button.text() == "Cancel"
    qtbot.waitUntil(lambda: dialog.result_label.text().startswith("Completed"), timeout=20000)
    lines = dialog.status_list.toPlainText().splitlines()
    assert lines[-1].endswith("Completed")
    assert len(lines) >= 2  # at least one status before the last
    assert dialog.close_button.text() == "Close"
    assert folder.exists()  # "keep the files" is the default
    assert [e["label"] for e in sandbox.inventory().values()] == ["INBOX_MR1"]


def test_a_path_outside_the_inbox_is_refused_in_plain_words(qtbot, sandbox, make_controller, tmp_path):
    controller = make_controller()
    controller.connect(sandbox.url, "admin", "admin")
    dialog = _dialog(qtbot, controller)
    qtbot.keyClicks(dialog.path_edit, str(tmp_path / "elsewhere"))
    qtbot.mouseClick(dialog.import_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "refused" in dialog.result_label.text(), timeout=10000)
    text = dialog.result_label.text()
    assert "it is not a folder or archive inside its inbox for project DEMO" in text
    assert "in a folder named DEMO" in text
    assert "b00000" in dialog.result_label.styleSheet()
    assert dialog.import_button.isEnabled()  # try again with another path


def test_cancel_stops_following_at_once(qtbot, sandbox, make_controller):
    sandbox.app.settings.inbox_file_delay = 1.0
    controller = make_controller()
    controller.connect(sandbox.url, "admin", "admin")
    folder = _in_inbox(sandbox, "slow", instances=6)
    dialog = _dialog(qtbot, controller)
    dialog.path_edit.setText(str(folder))
    dialog.import_button.click()
    qtbot.waitUntil(lambda: "Importing" in dialog.status_list.toPlainText(), timeout=10000)
    started = time.monotonic()
    qtbot.mouseClick(dialog.close_button, Qt.MouseButton.LeftButton)
    assert time.monotonic() - started < 1.0
    assert not dialog.runner.running
    assert dialog.result_label.text().startswith("Stopped following")
    assert dialog.close_button.text() == "Close"
    qtbot.wait(300)  # no late status of the cancelled import shows up
    assert "Completed" not in dialog.status_list.toPlainText()
    qtbot.waitUntil(lambda: dialog.runner.runner.active == 0, timeout=3000)  # its thread ended within a poll


def test_the_menu_action_explains_that_a_sign_in_is_needed(qtbot, make_controller):
    controller = make_controller()
    window = MainWindow(scan_workers=1)
    qtbot.addWidget(window)
    installed = install_inbox_action(window, controller)
    assert installed.action.text() == "Import from Server Path..."
    installed.action.trigger()
    dialog = window.inbox_dialog
    assert dialog.isVisible()
    assert not dialog.import_button.isEnabled()
    assert "Sign in to a server first" in dialog.problem_label.text()
    dialog.close_button.click()
    assert not dialog.isVisible()
    assert installed.shutdown()


def test_a_failed_import_shows_the_servers_reason(qtbot, sandbox, make_controller):
    controller = make_controller()
    controller.connect(sandbox.url, "admin", "admin")
    folder = sandbox.data_dir / "inbox" / "DEMO" / "notes"
    folder.mkdir(parents=True)
    (folder / "readme.txt").write_text("no images here\n", encoding="utf-8")
    dialog = _dialog(qtbot, controller)
    dialog.path_edit.setText(str(folder))
    dialog.import_button.click()
    qtbot.waitUntil(lambda: dialog.result_label.text().startswith("Failed"), timeout=10000)
    assert "No DICOM files were found to import" in dialog.result_label.text()
    assert "b00000" in dialog.result_label.styleSheet()
    assert dialog.status_list.toPlainText().splitlines()[-1].endswith("Failed")


def test_a_server_without_progress_reports_says_where_to_look(qtbot, sandbox, make_controller, monkeypatch):
    def no_such_api(job_id, user):
        raise HttpError(404, "Not Found")

    monkeypatch.setattr(sandbox.app.inbox, "get", no_such_api)  # as an XNAT without /xapi/dicom answers
    controller = make_controller()
    controller.connect(sandbox.url, "admin", "admin")
    folder = _in_inbox(sandbox, "old")
    dialog = _dialog(qtbot, controller)
    dialog.path_edit.setText(str(folder))
    dialog.import_button.click()
    qtbot.waitUntil(lambda: "does not report its progress" in dialog.result_label.text(), timeout=10000)
    assert "prearchive" in dialog.result_label.text()
    assert not dialog.runner.running
