"""Plain http says so: the server and sign-in dialogs ask before a password goes out unencrypted, once per
server; loopback addresses (the demo's sandbox) are never asked about; the C-STORE form says the DICOM link is
not encrypted. Real dialogs and message boxes, clicked with qtbot; the sign-in goes to the sandbox."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from xnat_uploader.core import settings as settings_mod
from xnat_uploader.core.settings import ServerEntry
from xnat_uploader.core.xnat.transport import PLAIN_HTTP_REASON

SCREENSHOT_DIR = "XNAT_UPLOADER_SCREENSHOTS"  # set it to keep the dialogs' pictures


@pytest.fixture
def shots(tmp_path) -> Path:
    folder = Path(os.environ.get(SCREENSHOT_DIR) or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


pytestmark = pytest.mark.usefixtures("fresh_memory")  # no password remembered from another test


def _question(qtbot, dialog):
    qtbot.waitUntil(lambda: dialog.http_question is not None and dialog.http_question.isVisible(), timeout=2000)
    return dialog.http_question


def _ok(qtbot, dialog) -> None:
    qtbot.mouseClick(dialog.buttons.button(dialog.buttons.StandardButton.Ok), Qt.MouseButton.LeftButton)


def test_adding_a_plain_http_server_asks_first_and_remembers(qtbot, bar, shots):
    bar.add_button.click()
    dialog = bar.server_dialog
    qtbot.keyClicks(dialog.url_edit, "http://xnat.example.org")
    qtbot.keyClicks(dialog.user_edit, "alice")
    _ok(qtbot, dialog)
    question = _question(qtbot, dialog)
    assert question.text() == "xnat.example.org uses plain http, without encryption."
    assert PLAIN_HTTP_REASON in question.informativeText()
    assert dialog.grab().save(str(shots / "server-dialog-http.png"))
    assert question.grab().save(str(shots / "plain-http-question.png"))

    qtbot.mouseClick(question.cancel_button, Qt.MouseButton.LeftButton)  # not now: back in the dialog
    qtbot.waitUntil(lambda: dialog.http_question is None)
    assert dialog.isVisible()
    assert settings_mod.load().servers == []

    _ok(qtbot, dialog)
    question = _question(qtbot, dialog)  # asked again: a cancelled question is not an answer
    with qtbot.waitSignal(dialog.accepted, timeout=2000):
        qtbot.mouseClick(question.use_button, Qt.MouseButton.LeftButton)
    saved = settings_mod.load().servers
    assert [(s.url, s.plain_http_ok) for s in saved] == [("http://xnat.example.org", True)]

    edit = bar.edit_server()  # confirmed once: editing the same server does not ask again
    edit.name_edit.setText("Lab XNAT")
    with qtbot.waitSignal(edit.accepted, timeout=2000):
        _ok(qtbot, edit)
    assert edit.http_question is None
    assert settings_mod.load().servers[0].plain_http_ok
    edit = bar.edit_server()  # another address is another server: asked again
    edit.url_edit.setText("http://other.example.org")
    _ok(qtbot, edit)
    qtbot.mouseClick(_question(qtbot, edit).cancel_button, Qt.MouseButton.LeftButton)
    assert edit.isVisible()
    edit.reject()


@pytest.mark.parametrize("url", ["https://xnat.example.org", "http://127.0.0.1:8080", "http://[::1]:8080"])
def test_https_and_loopback_servers_are_not_asked_about(qtbot, bar, url):
    bar.add_button.click()
    dialog = bar.server_dialog
    qtbot.keyClicks(dialog.url_edit, url)
    qtbot.keyClicks(dialog.user_edit, "alice")
    with qtbot.waitSignal(dialog.accepted, timeout=2000):
        _ok(qtbot, dialog)
    assert dialog.http_question is None
    assert not settings_mod.load().servers[0].plain_http_ok


def _click_sign_in(qtbot, dialog, password: str) -> None:
    dialog.password_edit.clear()
    qtbot.keyClicks(dialog.password_edit, password)
    qtbot.mouseClick(dialog.sign_in_button, Qt.MouseButton.LeftButton)


def test_signing_in_over_plain_http_sends_nothing_until_confirmed_then_not_again(qtbot, bar, sandbox, shots):
    url = sandbox.url.replace("127.0.0.1", "localhost")  # a name: it could lead to another computer
    dialog = bar.sign_in(ServerEntry(url, "admin"))
    assert dialog.http_note.isVisible()
    assert PLAIN_HTTP_REASON in dialog.http_note.toolTip()
    _click_sign_in(qtbot, dialog, "admin")
    question = _question(qtbot, dialog)
    assert PLAIN_HTTP_REASON in question.informativeText()
    assert dialog.grab().save(str(shots / "sign-in-http.png"))
    qtbot.mouseClick(question.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.http_question is None)
    assert dialog.status_label.text() == "Not signed in: nothing was sent to the server."
    assert not dialog.busy
    assert sandbox.stats["logins"] == 0  # the password never left

    _click_sign_in(qtbot, dialog, "admin")
    question = _question(qtbot, dialog)
    with qtbot.waitSignal(dialog.accepted, timeout=15000):
        qtbot.mouseClick(question.use_button, Qt.MouseButton.LeftButton)
    assert bar.is_signed_in(url, "admin")
    assert settings_mod.load().find(url).plain_http_ok  # remembered for this server

    bar.forget_login(url, "admin", keyring_too=True)
    again = bar.sign_in()  # the saved entry: no question this time
    _click_sign_in(qtbot, again, "admin")
    qtbot.waitUntil(lambda: not again.busy and again.result() == again.DialogCode.Accepted, timeout=15000)
    assert again.http_question is None


def test_the_demo_sandbox_on_a_loopback_address_signs_in_without_a_question(qtbot, bar, sandbox):
    assert sandbox.url.startswith("http://127.0.0.1:")
    dialog = bar.sign_in(ServerEntry(sandbox.url, "admin"))
    assert not dialog.http_note.isVisible()
    _click_sign_in(qtbot, dialog, "admin")
    qtbot.waitUntil(lambda: not dialog.busy and dialog.result() == dialog.DialogCode.Accepted, timeout=15000)
    assert dialog.http_question is None
    assert not settings_mod.load().find(sandbox.url).plain_http_ok


def test_the_cstore_settings_say_the_dicom_link_is_not_encrypted(qtbot, shots):
    from xnat_uploader.gui.dialogs.server_dialog import ServerDialog
    from xnat_uploader.gui.widgets.upload_options import UploadOptions

    options = UploadOptions()
    qtbot.addWidget(options)
    options.show()
    assert not options.link_note.isVisible()  # DICOM-zip: encrypted over https
    options.set_mode("cstore")
    assert options.link_note.isVisible()
    assert options.link_note.text().endswith("The DICOM link (C-STORE) is not encrypted.")
    assert "VPN" in options.link_note.toolTip()
    assert options.grab().save(str(shots / "upload-options-cstore.png"))
    options.set_mode("gradual")
    assert not options.link_note.isVisible()

    dialog = ServerDialog()
    qtbot.addWidget(dialog)
    dialog.show()
    assert dialog.dicom_note.isVisible()
    assert dialog.dicom_note.toolTip() == options.link_note.toolTip()
    assert dialog.grab().save(str(shots / "server-dialog.png"))
