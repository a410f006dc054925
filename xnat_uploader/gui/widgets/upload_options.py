"""The target form's "Advanced" section: destination, what to do if the session exists, XNAT's import options
(quarantine, pipelines, rename, Ignore-Unparsable), parallel requests, and the DICOM receiver for C-STORE
(XNAT's defaults: the server's host, port 8104, AE title XNAT; with a note that the DICOM link is not encrypted).
Builds a job's ``options``.

Choices and their one-line help come from :mod:`xnat_uploader.core.upload_choices`, shared with the command line;
a choice XNAT cannot carry out for the chosen destination or transport is greyed out with the reason as its tip.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QCheckBox, QComboBox, QFormLayout, QLabel, QLineEdit, QSpinBox, QWidget

from xnat_uploader.core.settings import Defaults, ServerEntry
from xnat_uploader.core.transfer.dicom_zip import DEFAULT_BATCH_FILES
from xnat_uploader.core.upload_choices import (
    HELP,
    OPT_IGNORE_UNPARSABLE,
    OPT_OVERWRITE,
    OPT_QUARANTINE,
    OPT_RENAME,
    OPT_TRIGGER_PIPELINES,
    XnatParams,
    upload_problems,
)
from xnat_uploader.gui.widgets.dicom_link_note import DicomLinkNote
from xnat_uploader.gui.widgets.on_existing_combo import OnExistingCombo

DEFAULT_WORKERS = {"zip": 4, "gradual": 8, "cstore": 4}
XNAT_DICOM_PORT, XNAT_AE_TITLE = 8104, "XNAT"


class UploadOptions(QWidget):
    """``changed()`` when a choice that affects the plan changes (the merge choice, the destination)."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._mode = "zip"
        self._workers_edited = False
        self._compress_level: int | None = None  # the Settings dialog's deflate level (DICOM-zip)
        self.destination_combo = QComboBox(self)
        self.destination_combo.addItem(self.tr("Prearchive (review before archiving)"), "prearchive")
        self.destination_combo.addItem(self.tr("Archive"), "archive")
        self.overwrite_combo = OnExistingCombo(self)
        self.overwrite_help = QLabel(self)
        self.overwrite_help.setWordWrap(True)
        self.overwrite_help.setStyleSheet("color: #606060")
        self.overwrite_help.setMinimumWidth(460)
        self.overwrite_help.setMaximumWidth(560)
        self.quarantine_check = QCheckBox(self.tr("Quarantine the session when XNAT archives it"), self)
        self.no_pipelines_check = QCheckBox(self.tr("Don't start the project's pipelines after archiving"), self)
        self.rename_check = QCheckBox(self.tr("Let XNAT name the stored files"), self)
        self.ignore_check = QCheckBox(self.tr("Skip files XNAT cannot read as DICOM"), self)
        self._xnat_checks = {
            OPT_QUARANTINE: self.quarantine_check,
            OPT_TRIGGER_PIPELINES: self.no_pipelines_check,
            OPT_RENAME: self.rename_check,
            OPT_IGNORE_UNPARSABLE: self.ignore_check,
        }
        self.workers_spin = QSpinBox(self)
        self.workers_spin.setRange(1, 8)
        self.workers_spin.setValue(DEFAULT_WORKERS["zip"])
        self.host_edit = QLineEdit(self)
        self.host_edit.setPlaceholderText(self.tr("the server's host"))
        self.port_spin = QSpinBox(self)
        self.port_spin.setRange(1, 65535)
        self.port_spin.setValue(XNAT_DICOM_PORT)
        self.aet_edit = QLineEdit(XNAT_AE_TITLE, self)
        self.aet_edit.setMaxLength(16)
        self.route_check = QCheckBox(self.tr("Write project, subject and session into PatientComments"), self)
        self.route_check.setToolTip(self.tr("XNAT's receiver files sessions by this text; your files are not changed"))
        self.route_check.setChecked(True)
        self.form = QFormLayout(self)
        self.form.setContentsMargins(16, 0, 0, 0)
        self.form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.FieldsStayAtSizeHint)
        self.host_edit.setMinimumWidth(220)
        self.form.addRow(self.tr("Destination"), self.destination_combo)
        self.form.addRow(self.tr("If the session exists"), self.overwrite_combo)
        self.form.addRow("", self.overwrite_help)
        self.form.addRow(self.tr("XNAT options"), self.quarantine_check)
        for check in (self.no_pipelines_check, self.rename_check, self.ignore_check):
            self.form.addRow("", check)
        self.form.addRow(self.tr("Parallel requests"), self.workers_spin)
        self.link_note = DicomLinkNote(self)
        self._cstore_rows = (self.host_edit, self.port_spin, self.aet_edit, self.route_check, self.link_note)
        self.form.addRow(self.tr("DICOM receiver host"), self.host_edit)
        self.form.addRow(self.tr("Port"), self.port_spin)
        self.form.addRow(self.tr("AE title"), self.aet_edit)
        self.form.addRow("", self.route_check)
        self.form.addRow("", self.link_note)
        self._show_cstore(False)
        self._follow_choices()
        self.destination_combo.currentIndexChanged.connect(self._on_choice)
        self.overwrite_combo.currentIndexChanged.connect(self._on_choice)
        self.workers_spin.valueChanged.connect(self._on_workers)

    def set_mode(self, mode: str) -> None:
        """Follow the chosen transport: its default workers (unless edited), the receiver fields for C-STORE."""
        self._mode = mode
        if not self._workers_edited:
            self.workers_spin.blockSignals(True)
            self.workers_spin.setValue(DEFAULT_WORKERS.get(mode, 4))
            self.workers_spin.blockSignals(False)
        cstore = mode == "cstore"
        self._show_cstore(cstore)
        if cstore:  # XNAT's receiver decides where sessions go (the project's prearchive settings)
            self.destination_combo.setCurrentIndex(0)
        self.destination_combo.setEnabled(not cstore)
        self._follow_choices()

    def apply_defaults(self, defaults: Defaults) -> None:
        """Start from the saved defaults (Settings dialog); call :meth:`set_mode` with the transport afterwards."""
        self.destination_combo.setCurrentIndex(max(0, self.destination_combo.findData(defaults.destination)))
        self.overwrite_combo.blockSignals(True)
        self.overwrite_combo.set_choice(defaults.overwrite)
        self.overwrite_combo.blockSignals(False)
        self._follow_choices()
        self._compress_level = defaults.deflate
        self._workers_edited = defaults.workers is not None
        self.workers_spin.blockSignals(True)
        self.workers_spin.setValue(defaults.workers or DEFAULT_WORKERS.get(self._mode, 4))
        self.workers_spin.blockSignals(False)

    _calling_aet = ""

    def set_server(self, url: str, entry: ServerEntry | None = None) -> None:
        """Show the server's host as the receiver's default; take the receiver the server entry names."""
        self.host_edit.setPlaceholderText(urlsplit(url).hostname or self.tr("the server's host"))
        self.host_edit.setText(entry.dicom_host if entry else "")
        self.port_spin.setValue((entry.dicom_port if entry else 0) or XNAT_DICOM_PORT)
        self.aet_edit.setText((entry.called_aet if entry else "") or XNAT_AE_TITLE)
        self._calling_aet = entry.calling_aet if entry else ""

    def overwrite(self) -> str:
        """The chosen :class:`OnExisting` value (what the job's options store)."""
        return self.overwrite_combo.choice().value

    def xnat_params(self) -> XnatParams:
        """The ticked XNAT options that apply to the destination and transport (greyed-out ones send nothing)."""

        def on(check: QCheckBox) -> bool:
            return check.isEnabled() and check.isChecked()

        return XnatParams(
            quarantine=on(self.quarantine_check), trigger_pipelines=not on(self.no_pipelines_check),
            rename=on(self.rename_check), ignore_unparsable=on(self.ignore_check),
        )  # fmt: skip

    def problem(self) -> str | None:
        """Why these options cannot be used, or None."""
        if self._mode == "cstore" and not self.aet_edit.text().strip():
            return self.tr("Give the DICOM receiver's AE title (XNAT's is XNAT).")
        choice = self.overwrite_combo.choice()
        problems = upload_problems(choice, self.xnat_params(), destination=self._destination(), mode=self._mode)
        return problems[0] if problems else None

    def options(self, server_url: str) -> dict[str, object]:
        destination = self.destination_combo.currentData()
        out: dict[str, object] = {
            "workers": self.workers_spin.value(), OPT_OVERWRITE: self.overwrite(), "destination": destination,
            "direct_archive": False, "batch_files": DEFAULT_BATCH_FILES, "compress_level": self._compress_level,
            "prebuild": False, **self.xnat_params().to_options(),
        }  # fmt: skip
        if self._mode == "cstore":
            out.update(
                cstore_host=self.host_edit.text().strip() or urlsplit(server_url).hostname or "",
                cstore_port=self.port_spin.value(),
                called_aet=self.aet_edit.text().strip(),
                **({"calling_aet": self._calling_aet} if self._calling_aet else {}),
                route=self.route_check.isChecked(),
            )
        return out

    def _on_workers(self, _value: int) -> None:
        self._workers_edited = True

    def _destination(self) -> str:
        return str(self.destination_combo.currentData())

    def _on_choice(self, _index: int) -> None:
        self._follow_choices()
        self.changed.emit()

    def _follow_choices(self) -> None:
        """Grey out what XNAT cannot do for this destination and transport, saying why; show the choice's help."""
        destination, mode = self._destination(), self._mode
        self.overwrite_combo.blockSignals(True)  # the caller emits changed() once
        self.overwrite_combo.follow(destination, mode)
        self.overwrite_combo.blockSignals(False)
        self.overwrite_help.setText(self.overwrite_combo.choice().help)
        archiving = destination == "archive" and mode != "cstore"
        reasons = {
            OPT_QUARANTINE: None if archiving else self.tr("Only when the destination is Archive: XNAT applies it "
                                                          "when it archives the session."),
            OPT_TRIGGER_PIPELINES: None if archiving else self.tr("Only when the destination is Archive: XNAT "
                                                                 "starts pipelines when it archives the session."),
            OPT_RENAME: None if mode in ("zip", "gradual") else self.tr("C-STORE sends no import options."),
            OPT_IGNORE_UNPARSABLE: None if mode == "zip" else self.tr("DICOM-zip uploads only."),
        }  # fmt: skip
        for key, check in self._xnat_checks.items():
            check.setEnabled(reasons[key] is None)
            check.setToolTip(HELP[key] + (f"\n{reasons[key]}" if reasons[key] else ""))

    def _show_cstore(self, shown: bool) -> None:
        for widget in self._cstore_rows:
            self.form.setRowVisible(widget, shown)
