"""The Settings dialog: upload defaults saved as versioned JSON (never a secret), the places shown, and the
upload form starting from (and following) the saved defaults."""

from __future__ import annotations

import json

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QDialogButtonBox, QMainWindow, QToolBar, QWidget

from xnat_uploader import paths
from xnat_uploader.core import settings
from xnat_uploader.core.settings import Defaults, ServerEntry, Settings
from xnat_uploader.gui.dialogs.settings_dialog import SettingsDialog
from xnat_uploader.gui.settings_action import install_settings_action
from xnat_uploader.gui.widgets.target_form import TargetForm

URL, USER, PASSWORD = "https://xnat.example.org", "jdoe", "Pa55-never-on-disk"


def _choose(combo, data) -> None:
    combo.setCurrentIndex(combo.findData(data))
    assert combo.currentData() == data


def _ok(qtbot, dialog) -> None:
    qtbot.mouseClick(dialog.button_box.button(QDialogButtonBox.StandardButton.Ok), Qt.MouseButton.LeftButton)


def test_ok_saves_the_defaults_and_no_secret(qtbot, memory_keyring):
    shared = Settings(servers=[ServerEntry(URL, USER)])
    memory_keyring.set_password("xnat-uploader", f"{USER}@{URL}", PASSWORD)
    dialog = SettingsDialog(shared)
    qtbot.addWidget(dialog)
    dialog.show()
    _choose(dialog.transport_combo, "gradual")
    assert not dialog.deflate_combo.isEnabled()  # deflate is for DICOM-zip
    _choose(dialog.transport_combo, "zip")
    _choose(dialog.destination_combo, "archive")
    _choose(dialog.overwrite_combo, "add")
    _choose(dialog.deflate_combo, 6)
    dialog.workers_spin.setFocus()
    dialog.workers_spin.selectAll()
    qtbot.keyClicks(dialog.workers_spin, "3")
    with qtbot.waitSignal(dialog.defaults_saved) as saved:
        _ok(qtbot, dialog)
    expected = Defaults(transport="zip", workers=3, destination="archive", overwrite="add", deflate=6)
    assert saved.args == [expected]
    assert shared.defaults == expected  # the shared object, so a later save of the servers keeps them

    text = settings.settings_path().read_text()
    assert PASSWORD not in text
    data = json.loads(text)
    assert data["schema_version"] == settings.SCHEMA_VERSION == 2
    assert data["defaults"] == {
        "transport": "zip", "workers": 3, "destination": "archive", "overwrite": "add", "deflate": 6,
    }  # fmt: skip
    assert data["servers"][0]["user"] == USER
    assert settings.load().defaults == expected


def test_cancel_changes_nothing(qtbot):
    shared = Settings()
    dialog = SettingsDialog(shared)
    qtbot.addWidget(dialog)
    _choose(dialog.transport_combo, "gradual")
    dialog.reject()
    assert shared.defaults == Defaults()
    assert not settings.settings_path().exists()


def test_the_places_are_shown_and_open(qtbot, monkeypatch):
    opened: list[QUrl] = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url) or True)
    dialog = SettingsDialog(Settings())
    qtbot.addWidget(dialog)
    assert dialog.folder_edits["config"].text() == str(paths.config_dir())
    assert dialog.folder_edits["data"].text() == str(paths.data_dir())
    assert dialog.folder_edits["logs"].text() == str(paths.log_dir())
    qtbot.mouseClick(dialog.findChild(QWidget, "open_logs"), Qt.MouseButton.LeftButton)
    assert [u.toLocalFile() for u in opened] == [str(paths.log_dir())]
    assert paths.log_dir().is_dir()


def test_an_old_file_without_defaults_loads_and_is_backed_up(tmp_path):
    path = tmp_path / "settings.json"
    old = {"schema_version": 1, "servers": [{"url": URL, "user": USER}], "current_server": URL}
    path.write_text(json.dumps(old))
    loaded = settings.load(path)
    assert loaded.warnings == []
    assert loaded.defaults == Defaults()
    assert loaded.current().user == USER
    assert json.loads((tmp_path / "settings.json.v1").read_text()) == old  # kept before the upgrade
    settings.save(loaded, path)
    assert json.loads(path.read_text())["schema_version"] == 2


def test_bad_default_values_fall_back_one_by_one(tmp_path):
    path = tmp_path / "settings.json"
    bad = {"transport": "ftp", "workers": 0, "destination": "archive", "overwrite": True, "deflate": 12}
    path.write_text(json.dumps({"schema_version": 2, "servers": [], "defaults": bad}))
    loaded = settings.load(path)
    assert loaded.defaults == Defaults(destination="archive")
    assert not list(tmp_path.glob("*.corrupt-*"))


def test_the_form_starts_from_the_defaults_and_follows_ok(qtbot, make_controller):
    shared = Settings(defaults=Defaults(transport="gradual", workers=2, overwrite="delete"))
    controller = make_controller(settings=shared)
    window = QMainWindow()
    qtbot.addWidget(window)
    bar = QToolBar(window)
    bar.setObjectName("main_toolbar")
    window.addToolBar(bar)
    bar.addSeparator()
    form = TargetForm(controller)
    window.setCentralWidget(form)
    assert form.mode() == "gradual"
    options = form.options()
    # An older file's "delete" is Replace, which needs the destination Archive: with the prearchive it is Add.
    assert (options["workers"], options["overwrite"], options["destination"]) == (2, "add", "prearchive")

    action = install_settings_action(window, controller)
    assert bar.actions().index(action) == 0  # before the separator and the server area
    action.trigger()
    dialog = window.findChild(SettingsDialog, "settings_dialog")
    assert dialog is not None
    assert dialog.isVisible()
    assert dialog.defaults() == shared.defaults
    _choose(dialog.transport_combo, "zip")
    _choose(dialog.destination_combo, "archive")
    _choose(dialog.overwrite_combo, "refuse")
    _choose(dialog.deflate_combo, 1)
    dialog.workers_spin.setValue(0)  # the transport's own default
    _ok(qtbot, dialog)
    assert form.mode() == "zip"
    options = form.options()
    assert options["workers"] == 4
    assert options["overwrite"] == "refuse"
    assert options["destination"] == "archive"
    assert options["compress_level"] == 1
    again = TargetForm(controller)  # a form built later starts from the saved defaults too
    qtbot.addWidget(again)
    assert again.mode() == "zip"
    assert again.options()["compress_level"] == 1


def test_replace_is_offered_with_the_archive_only(qtbot):
    dialog = SettingsDialog(Settings(defaults=Defaults(destination="archive", overwrite="delete")))  # an older name
    qtbot.addWidget(dialog)
    combo = dialog.overwrite_combo
    assert [combo.itemData(i) for i in range(combo.count())] == ["refuse", "add", "replace"]
    assert combo.currentData() == "replace"
    _choose(dialog.destination_combo, "prearchive")
    assert combo.currentData() == "add"
    assert not combo.model().item(combo.findData("replace")).isEnabled()
    assert dialog.defaults().overwrite == "add"
    _choose(dialog.destination_combo, "archive")
    assert combo.model().item(combo.findData("replace")).isEnabled()
