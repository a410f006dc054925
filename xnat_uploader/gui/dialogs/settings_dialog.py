"""The Settings dialog: upload defaults (transport, parallel requests, destination, what to do if the session
exists, deflate level) and where the settings, the queue with its receipts, and the logs are kept.

OK writes the defaults into the given :class:`~xnat_uploader.core.settings.Settings` (the one the app shares,
``controller.logins.settings``, so a later save of the servers keeps them) and saves the file. No secrets are
edited or stored here.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from xnat_uploader import paths
from xnat_uploader.core import settings as settings_mod
from xnat_uploader.core.settings import Defaults, Settings
from xnat_uploader.gui.widgets.on_existing_combo import OnExistingCombo

log = logging.getLogger(__name__)


class SettingsDialog(QDialog):
    """``defaults_saved(Defaults)`` after OK has saved the file."""

    defaults_saved = Signal(object)

    def __init__(self, settings: Settings, parent: QWidget | None = None, *, path: Path | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(self.tr("Settings"))
        self.settings = settings
        self._path = path
        defaults = settings.defaults

        self.transport_combo = QComboBox(self)
        self.transport_combo.addItem(self.tr("DICOM-zip (one archive per session)"), "zip")
        self.transport_combo.addItem(self.tr("gradual (file by file)"), "gradual")
        self.transport_combo.addItem(self.tr("C-STORE (DICOM receiver)"), "cstore")
        self.workers_spin = QSpinBox(self)
        self.workers_spin.setRange(0, 8)
        self.workers_spin.setSpecialValueText(self.tr("the transport's default"))
        self.destination_combo = QComboBox(self)
        self.destination_combo.addItem(self.tr("Prearchive (review before archiving)"), "prearchive")
        self.destination_combo.addItem(self.tr("Archive"), "archive")
        self.overwrite_combo = OnExistingCombo(self)
        self.deflate_combo = QComboBox(self)
        self.deflate_combo.addItem(self.tr("none (stored, fastest)"), None)
        for level in range(1, 10):
            hint = {1: self.tr(" (fast; for slow links)"), 9: self.tr(" (smallest)")}.get(level, "")
            self.deflate_combo.addItem(f"{level}{hint}", level)
        self.deflate_combo.setToolTip(self.tr("Compress DICOM-zip uploads: fewer bytes, more CPU time"))

        upload_box = QGroupBox(self.tr("New uploads start with"), self)
        form = QFormLayout(upload_box)
        form.addRow(self.tr("Transport"), self.transport_combo)
        form.addRow(self.tr("Parallel requests"), self.workers_spin)
        form.addRow(self.tr("Destination"), self.destination_combo)
        form.addRow(self.tr("If the session exists"), self.overwrite_combo)
        form.addRow(self.tr("Deflate level"), self.deflate_combo)

        places_box = QGroupBox(self.tr("Where things are kept"), self)
        places = QFormLayout(places_box)
        self.folder_edits: dict[str, QLineEdit] = {}
        for key, label, folder in (
            ("config", self.tr("Settings"), paths.config_dir()),
            ("data", self.tr("Queue and receipts"), paths.data_dir()),
            ("logs", self.tr("Logs"), paths.log_dir()),
        ):
            places.addRow(label, self._folder_row(key, folder))

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        self.button_box = buttons
        layout = QVBoxLayout(self)
        layout.addWidget(upload_box)
        layout.addWidget(places_box)
        layout.addWidget(buttons)
        self.transport_combo.currentIndexChanged.connect(self._on_transport)
        self.destination_combo.currentIndexChanged.connect(self._on_transport)
        self.show_defaults(defaults)

    def _folder_row(self, key: str, folder: Path) -> QWidget:
        row = QWidget(self)
        layout = QHBoxLayout(row)
        layout.setContentsMargins(0, 0, 0, 0)
        edit = QLineEdit(str(folder), row)
        edit.setReadOnly(True)
        edit.setMinimumWidth(360)
        edit.setCursorPosition(0)
        button = QPushButton(self.tr("Open folder"), row)
        button.setObjectName(f"open_{key}")
        button.clicked.connect(lambda _checked=False, f=folder: self.open_folder(f))
        layout.addWidget(edit, 1)
        layout.addWidget(button)
        self.folder_edits[key] = edit
        return row

    # -- values ---------------------------------------------------------------------------------------
    def show_defaults(self, defaults: Defaults) -> None:
        """Put ``defaults`` into the widgets."""
        for combo, value in (
            (self.transport_combo, defaults.transport),
            (self.destination_combo, defaults.destination),
            (self.deflate_combo, defaults.deflate),
        ):
            combo.setCurrentIndex(max(0, combo.findData(value)))
        self.overwrite_combo.set_choice(defaults.overwrite)
        self.workers_spin.setValue(defaults.workers or 0)
        self._on_transport()

    def defaults(self) -> Defaults:
        """The defaults as the widgets show them."""
        return Defaults(
            transport=str(self.transport_combo.currentData()),
            workers=self.workers_spin.value() or None,
            destination=str(self.destination_combo.currentData()),
            overwrite=str(self.overwrite_combo.currentData()),
            deflate=self.deflate_combo.currentData(),
        )

    def _on_transport(self, _index: int = 0) -> None:
        mode = self.transport_combo.currentData()
        # C-STORE: XNAT's receiver decides the destination; deflate applies to DICOM-zip only
        self.destination_combo.setEnabled(mode != "cstore")
        self.deflate_combo.setEnabled(mode == "zip")
        self.overwrite_combo.follow(str(self.destination_combo.currentData()), str(mode))

    # -- actions --------------------------------------------------------------------------------------
    def open_folder(self, folder: Path) -> bool:
        """Show ``folder`` in the system's file manager (created first, so there is something to open)."""
        try:
            paths.ensure(folder)
        except OSError as exc:
            log.warning("Cannot create %s: %s", folder, exc.strerror)
        return QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))

    def accept(self) -> None:
        previous = self.settings.defaults
        self.settings.defaults = self.defaults()
        try:
            settings_mod.save(self.settings, self._path)
        except OSError as exc:
            self.settings.defaults = previous
            log.warning("Cannot save the settings: %s", exc.strerror)
            QMessageBox.warning(
                self, self.tr("Settings"), self.tr("The settings could not be saved: {}").format(exc.strerror)
            )
            return
        log.info("Upload defaults saved: %s", self.settings.defaults)
        self.defaults_saved.emit(self.settings.defaults)
        super().accept()
