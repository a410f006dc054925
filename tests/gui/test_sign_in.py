"""Servers and sign-in (issue 7): the server bar and its dialogs against the sandbox, driven with qtbot."""

from __future__ import annotations

import json
import logging
import socket

import keyring
import keyring.backends.fail
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QWidget

from xnat_uploader.core import settings as settings_mod
from xnat_uploader.core.credentials import SERVICE, account_name
from xnat_uploader.core.errors import UserError
from xnat_uploader.core.secret import Secret
from xnat_uploader.core.settings import ServerEntry, Settings
from xnat_uploader.core.xnat import XnatClient
from xnat_uploader.gui.servers import install_server_bar
from xnat_uploader.gui.widgets.server_bar import ServerBar

PASSWORD = "s3cret-Pw-42"


pytestmark = pytest.mark.usefixtures("fresh_memory")  # no password remembered from another test


def expected_error(url: str, user: str, password: str) -> UserError:
    """The typed error the core gives for this login (what the dialog must show)."""
    with pytest.raises(UserError) as info:
        XnatClient(url, user, Secret(password), ServerEntry(url, user).connection_options(workers=1)).connect()
    return info.value


def add_server(qtbot, bar: ServerBar, url: str, user: str) -> None:
    bar.add_button.click()
    dialog = bar.server_dialog
    qtbot.keyClicks(dialog.url_edit, url)
    qtbot.keyClicks(dialog.user_edit, user)
    with qtbot.waitSignal(dialog.accepted, timeout=2000):
        qtbot.mouseClick(dialog.buttons.button(dialog.buttons.StandardButton.Ok), Qt.MouseButton.LeftButton)


def try_sign_in(qtbot, bar: ServerBar, password: str, *, remember: bool = False):
    dialog = bar.sign_in_dialog if bar.sign_in_dialog and bar.sign_in_dialog.isVisible() else bar.sign_in()
    dialog.password_edit.clear()
    qtbot.keyClicks(dialog.password_edit, password)
    if dialog.remember_check.isEnabled():
        dialog.remember_check.setChecked(remember)
    qtbot.mouseClick(dialog.sign_in_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not dialog.busy, timeout=15000)
    return dialog


def signed_in(qtbot, bar: ServerBar, password: str, *, remember: bool = False) -> None:
    dialog = try_sign_in(qtbot, bar, password, remember=remember)
    assert dialog.result() == dialog.DialogCode.Accepted, dialog.error_label.text()


def test_add_server_then_wrong_password_then_sign_in_remembered(qtbot, bar, sandbox_factory, memory_keyring, caplog):
    caplog.set_level(logging.DEBUG)
    server = sandbox_factory(users={"alice": (PASSWORD, ["DEMO"])})
    add_server(qtbot, bar, server.url + "/", "alice")
    url = settings_mod.normalize_url(server.url)
    assert [(s.url, s.user) for s in settings_mod.load().servers] == [(url, "alice")]
    assert bar.current() == (url, "alice")
    assert bar.state_label.text() == "Not signed in"

    wrong = expected_error(url, "alice", "not-it")
    dialog = try_sign_in(qtbot, bar, "not-it")
    assert dialog.isVisible()
    assert dialog.error_label.isVisible()
    assert wrong.message in dialog.error_label.text()
    assert wrong.hint in dialog.error_label.text()
    assert "not-it" not in dialog.error_label.text()

    try_sign_in(qtbot, bar, PASSWORD, remember=True)
    assert dialog.result() == dialog.DialogCode.Accepted
    assert bar.is_signed_in(url, "alice")
    assert bar.state_label.text().startswith("Signed in as alice, XNAT 1.")
    assert bar.controller.signed_in(url, "alice")
    bar.controller.logins.session_for(url, "alice")  # the queue's login exists
    assert memory_keyring.entries == {(SERVICE, account_name(url, "alice")): PASSWORD}
    text = settings_mod.settings_path().read_text(encoding="utf-8")
    assert PASSWORD not in text
    assert json.loads(text)["servers"][0]["user"] == "alice"
    assert PASSWORD not in caplog.text
    assert "not-it" not in caplog.text


def test_not_remembered_keeps_the_keyring_empty(qtbot, bar, sandbox, memory_keyring):
    bar.sign_in(ServerEntry(sandbox.url, "admin"))
    signed_in(qtbot, bar, "admin", remember=False)
    assert memory_keyring.entries == {}
    assert bar.is_signed_in(sandbox.url, "admin")


def test_no_secure_keyring_means_this_run_only(qtbot, bar, sandbox_factory, memory_keyring):
    server = sandbox_factory(users={"alice": (PASSWORD, ["DEMO"])})
    keyring.set_keyring(keyring.backends.fail.Keyring())  # the memory_keyring fixture restores the old one
    dialog = bar.sign_in(ServerEntry(server.url, "alice"))
    assert dialog.note_label.isVisible()
    assert "this run only" in dialog.note_label.text()
    assert not dialog.remember_check.isEnabled()
    assert not dialog.remember_check.isChecked()
    signed_in(qtbot, bar, PASSWORD)
    assert not dialog.remembered
    assert memory_keyring.entries == {}
    assert bar.is_signed_in(server.url, "alice")
    assert PASSWORD not in settings_mod.settings_path().read_text(encoding="utf-8")


def test_sign_out_keeps_or_forgets_the_saved_password(qtbot, bar, sandbox, memory_keyring, monkeypatch):
    url, account = settings_mod.normalize_url(sandbox.url), (SERVICE, account_name(sandbox.url, "admin"))
    bar.sign_in(ServerEntry(sandbox.url, "admin"))
    signed_in(qtbot, bar, "admin", remember=True)
    assert account in memory_keyring.entries

    monkeypatch.setattr(bar, "ask_forget_password", lambda url, user: False)
    with qtbot.waitSignal(bar.signed_out):
        qtbot.mouseClick(bar.sign_out_button, Qt.MouseButton.LeftButton)
    assert not bar.is_signed_in(url, "admin")
    assert bar.state_label.text() == "Not signed in"
    assert not bar.sign_out_button.isEnabled()
    with pytest.raises(UserError):
        bar.controller.logins.session_for(url, "admin")
    assert account in memory_keyring.entries  # kept

    dialog = bar.sign_in()  # the saved password is filled in
    assert dialog.password_edit.text() == "admin"
    assert dialog.remember_check.isChecked()
    qtbot.mouseClick(dialog.sign_in_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: bar.is_signed_in(url, "admin"), timeout=15000)

    monkeypatch.setattr(bar, "ask_forget_password", lambda url, user: True)
    bar.sign_out()
    assert account not in memory_keyring.entries
    assert not bar.is_signed_in(url, "admin")
    assert bar.sign_in().password_edit.text() == ""

    monkeypatch.setattr(bar, "ask_forget_password", lambda url, user: None)  # cancel: nothing happens
    bar.sign_in_dialog.reject()
    bar.sign_in(ServerEntry(sandbox.url, "admin"))
    signed_in(qtbot, bar, "admin")
    bar.sign_out()
    assert bar.is_signed_in(url, "admin")


def test_unreachable_server_says_so(qtbot, bar):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    expected = expected_error(url, "admin", "admin")
    dialog = bar.sign_in(ServerEntry(url, "admin"))
    try_sign_in(qtbot, bar, "admin")
    assert dialog.isVisible()
    assert dialog.sign_in_button.isEnabled()
    assert expected.message in dialog.error_label.text()
    assert not bar.is_signed_in(url, "admin")
    dialog.reject()


def test_expired_password_says_so_in_plain_words(qtbot, bar, sandbox_factory, memory_keyring):
    server = sandbox_factory(users={"alice": (PASSWORD, ["DEMO"])})
    server.expire_password("alice")  # XNAT then answers the sign-in with its change-password page
    dialog = bar.sign_in(ServerEntry(server.url, "alice"))
    try_sign_in(qtbot, bar, PASSWORD, remember=True)
    assert dialog.isVisible()
    assert dialog.error_label.isVisible()
    text = dialog.error_label.text()
    assert (
        f"The password of alice on {server.url} has expired; change it on the XNAT web site, then sign in here again."
        in text
    )
    assert PASSWORD not in text
    assert not bar.is_signed_in(server.url, "alice")
    assert memory_keyring.entries == {}  # nothing remembered for a login that does not work
    server.expire_password("alice", expired=False)  # changed on the web site: signing in works again
    try_sign_in(qtbot, bar, PASSWORD)
    assert dialog.result() == dialog.DialogCode.Accepted
    assert bar.is_signed_in(server.url, "alice")


def test_two_servers_signed_in_at_once(qtbot, bar, sandbox_factory):
    first, second = sandbox_factory(), sandbox_factory(users={"bob": (PASSWORD, ["DEMO"])})
    add_server(qtbot, bar, first.url, "admin")
    add_server(qtbot, bar, second.url, "bob")
    bar.select(first.url, "admin")
    signed_in(qtbot, bar, "admin")
    bar.select(second.url, "bob")
    assert bar.state_label.text() == "Not signed in"
    signed_in(qtbot, bar, PASSWORD)
    for url, user in ((first.url, "admin"), (second.url, "bob")):
        assert bar.is_signed_in(url, user)
        bar.controller.logins.session_for(url, user)
    assert all("\u2713" in bar.combo.itemText(i) for i in range(bar.combo.count()))
    bar.select(first.url, "admin")
    assert bar.state_label.text().startswith("Signed in as admin, XNAT ")


def test_server_dialog_checks_the_url_and_edit_remove(qtbot, bar, monkeypatch):
    bar.add_button.click()
    dialog = bar.server_dialog
    qtbot.keyClicks(dialog.url_edit, "ftp://xnat.example.org")
    qtbot.keyClicks(dialog.user_edit, "alice")
    dialog.accept()
    assert dialog.isVisible()
    assert "https://" in dialog.error_label.text()
    dialog.url_edit.setText("https://alice@xnat.example.org")
    dialog.accept()
    assert "User field" in dialog.error_label.text()
    dialog.url_edit.setText("https://xnat.example.org/")
    dialog.verify_check.setChecked(False)
    dialog.accept()
    assert not dialog.isVisible()
    assert settings_mod.load().servers == [ServerEntry("https://xnat.example.org", "alice", verify_tls=False)]

    edit = bar.edit_server()
    assert edit.url_edit.text() == "https://xnat.example.org"
    assert not edit.verify_check.isChecked()
    edit.name_edit.setText("Test site")
    edit.accept()
    assert settings_mod.load().servers[0].name == "Test site"
    assert bar.combo.currentText() == "Test site (alice)"

    monkeypatch.setattr(bar, "confirm_remove", lambda url, user: True)
    bar.remove_button.click()
    assert settings_mod.load().servers == []
    assert bar.combo.count() == 0
    assert bar.state_label.text() == "No server: add one"


def test_install_server_bar(qtbot, make_controller):
    window = QWidget()
    window.server_area = QWidget(window)
    qtbot.addWidget(window)
    bar = install_server_bar(window, make_controller(settings=Settings()))
    assert isinstance(window.server_area.layout(), QHBoxLayout)
    assert window.server_area.layout().indexOf(bar) == 0
    assert window.server_bar is bar


def test_server_dialog_keeps_the_dicom_receiver_and_the_form_uses_it(qtbot, make_controller):
    from xnat_uploader.gui.dialogs.server_dialog import ServerDialog
    from xnat_uploader.gui.widgets.upload_options import UploadOptions

    dialog = ServerDialog()
    qtbot.addWidget(dialog)
    qtbot.keyClicks(dialog.url_edit, "https://xnat.example.org")
    qtbot.keyClicks(dialog.user_edit, "alice")
    qtbot.keyClicks(dialog.dicom_host_edit, "dicom.example.org")
    dialog.dicom_port_spin.setValue(11112)
    qtbot.keyClicks(dialog.called_edit, "SITEXNAT")
    qtbot.keyClicks(dialog.calling_edit, "LAB1")
    entry = dialog.entry()
    settings = settings_mod.Settings(servers=[entry])
    settings_mod.save(settings)
    again = settings_mod.load().find("https://xnat.example.org")
    assert (again.dicom_host, again.dicom_port, again.called_aet, again.calling_aet) == (
        "dicom.example.org", 11112, "SITEXNAT", "LAB1",
    )  # fmt: skip
    options = UploadOptions()
    qtbot.addWidget(options)
    options.set_mode("cstore")
    options.set_server(again.url, again)
    built = options.options(again.url)
    assert (built["cstore_host"], built["cstore_port"], built["called_aet"], built["calling_aet"]) == (
        "dicom.example.org", 11112, "SITEXNAT", "LAB1",
    )  # fmt: skip
    options.set_server("https://other.example.org", None)  # no receiver saved: XNAT's defaults on that host
    built = options.options("https://other.example.org")
    assert (built["cstore_host"], built["cstore_port"], built["called_aet"]) == ("other.example.org", 8104, "XNAT")
