"""GUI state that is not a setting: window geometry, splitter and column positions, the last folder.

Stored with ``QSettings`` (INI format) as ``gui-state.ini`` in the config dir (Picard's
``PreserveGeometry`` idea); domain settings live in :mod:`xnat_uploader.core.settings`. GUI thread only.
"""

from __future__ import annotations

import contextlib

from PySide6.QtCore import QByteArray, QSettings
from PySide6.QtWidgets import QHeaderView, QMainWindow, QSplitter

from xnat_uploader import paths
from xnat_uploader.core.private import private_file

FILE_NAME = "gui-state.ini"


def gui_settings() -> QSettings:
    """The GUI state file (created on first save)."""
    folder = paths.ensure(paths.config_dir())
    return QSettings(str(folder / FILE_NAME), QSettings.Format.IniFormat)


class PreserveState:
    """Saves and restores a main window's geometry and state, and named splitters and headers.

    Usage: ``state = PreserveState("main", window)``, ``state.track("tree", splitter_or_header)``,
    ``state.restore()`` after building the window, ``state.save()`` in ``closeEvent``.
    """

    def __init__(self, name: str, window: QMainWindow) -> None:
        self.name = name
        self.window = window
        self._parts: dict[str, QSplitter | QHeaderView] = {}

    def track(self, key: str, part: QSplitter | QHeaderView) -> None:
        self._parts[key] = part

    def restore(self) -> bool:
        """Restore what was saved; False when nothing was (first start)."""
        settings = gui_settings()
        settings.beginGroup(self.name)
        geometry = settings.value("geometry")
        restored = isinstance(geometry, QByteArray) and self.window.restoreGeometry(geometry)
        window_state = settings.value("window_state")
        if isinstance(window_state, QByteArray):
            self.window.restoreState(window_state)
        for key, part in self._parts.items():
            value = settings.value(f"{key}_state")
            if isinstance(value, QByteArray):
                part.restoreState(value)
        settings.endGroup()
        return restored

    def save(self) -> None:
        settings = gui_settings()
        settings.beginGroup(self.name)
        settings.setValue("geometry", self.window.saveGeometry())
        settings.setValue("window_state", self.window.saveState())
        for key, part in self._parts.items():
            settings.setValue(f"{key}_state", part.saveState())
        settings.endGroup()
        _sync(settings)


def last_folder() -> str:
    """The folder last opened or dropped ("" the first time)."""
    value = gui_settings().value("paths/last_folder", "")
    return value if isinstance(value, str) else ""


def set_last_folder(folder: str) -> None:
    settings = gui_settings()
    settings.setValue("paths/last_folder", folder)
    _sync(settings)


def _sync(settings: QSettings) -> None:
    """Write the file, owner-only: it names the folders the user opened (often after a patient)."""
    settings.sync()
    with contextlib.suppress(OSError):
        private_file(settings.fileName())
