"""The "Settings..." toolbar action: opens the Settings dialog; after OK, every upload form takes the new defaults.

``app.py`` calls :func:`install_settings_action` once, after :func:`~xnat_uploader.gui.upload_panels.
install_upload_panels`, with the controller so the dialog edits the settings object the app shares.
"""

from __future__ import annotations

from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMainWindow, QToolBar

from xnat_uploader.core import settings as settings_mod
from xnat_uploader.core.settings import Defaults, Settings
from xnat_uploader.gui.dialogs.settings_dialog import SettingsDialog
from xnat_uploader.gui.upload_controller import UploadController
from xnat_uploader.gui.widgets.target_form import TargetForm


def install_settings_action(window: QMainWindow, controller: UploadController | None = None) -> QAction:
    """Add "Settings..." to the window's toolbar (before the server area). Returns the action.

    Without a ``controller`` the dialog edits a freshly loaded copy of the settings file.
    """
    action = QAction(window.tr("Settings..."), window)
    action.setObjectName("settings_action")
    action.setToolTip(window.tr("Upload defaults, and where data and logs are kept"))
    _add_to_toolbar(window, action)

    def shared_settings() -> Settings:
        return controller.logins.settings if controller is not None else settings_mod.load()

    def apply(defaults: Defaults) -> None:
        for form in window.findChildren(TargetForm):
            form.apply_defaults(defaults)

    def open_dialog() -> None:
        dialog = SettingsDialog(shared_settings(), window)
        dialog.setObjectName("settings_dialog")
        dialog.defaults_saved.connect(apply)
        dialog.finished.connect(dialog.deleteLater)
        dialog.open()

    action.triggered.connect(open_dialog)
    return action


def _add_to_toolbar(window: QMainWindow, action: QAction) -> None:
    """Into the main toolbar, before its separator and the server area; a window without one gets the action
    itself (shortcut only)."""
    bar = window.findChild(QToolBar, "main_toolbar") or window.findChild(QToolBar)
    if bar is None:
        window.addAction(action)
        return
    separators = [a for a in bar.actions() if a.isSeparator()]
    if separators:
        bar.insertAction(separators[0], action)
    else:
        bar.addAction(action)
