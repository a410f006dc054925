"""The target form's "Advanced" section: destination, merge choice, parallel requests, and the DICOM receiver
for C-STORE (XNAT's defaults: the server's host, port 8104, AE title XNAT). Builds a job's ``options``."""

from __future__ import annotations

from urllib.parse import urlsplit

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QCheckBox, QComboBox, QFormLayout, QLineEdit, QSpinBox, QWidget

from xnat_uploader.core.settings import Defaults, ServerEntry
from xnat_uploader.core.transfer.dicom_zip import DEFAULT_BATCH_FILES

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
        self.overwrite_combo = QComboBox(self)
        self.overwrite_combo.addItem(self.tr("none: never merge into an existing session"), "")
        self.overwrite_combo.addItem(self.tr("append: add to an existing session"), "append")
        self.overwrite_combo.addItem(self.tr("delete: replace an existing session"), "delete")
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
        self.form.addRow(self.tr("Overwrite"), self.overwrite_combo)
        self.form.addRow(self.tr("Parallel requests"), self.workers_spin)
        self._cstore_rows = (self.host_edit, self.port_spin, self.aet_edit, self.route_check)
        self.form.addRow(self.tr("DICOM receiver host"), self.host_edit)
        self.form.addRow(self.tr("Port"), self.port_spin)
        self.form.addRow(self.tr("AE title"), self.aet_edit)
        self.form.addRow("", self.route_check)
        self._show_cstore(False)
        self.destination_combo.currentIndexChanged.connect(lambda _i: self.changed.emit())
        self.overwrite_combo.currentIndexChanged.connect(lambda _i: self.changed.emit())
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

    def apply_defaults(self, defaults: Defaults) -> None:
        """Start from the saved defaults (Settings dialog); call :meth:`set_mode` with the transport afterwards."""
        self.destination_combo.setCurrentIndex(max(0, self.destination_combo.findData(defaults.destination)))
        overwrite = "" if defaults.overwrite == "none" else defaults.overwrite
        self.overwrite_combo.setCurrentIndex(max(0, self.overwrite_combo.findData(overwrite)))
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
        return str(self.overwrite_combo.currentData())

    def problem(self) -> str | None:
        """Why these options cannot be used, or None."""
        if self._mode == "cstore" and not self.aet_edit.text().strip():
            return self.tr("Give the DICOM receiver's AE title (XNAT's is XNAT).")
        return None

    def options(self, server_url: str) -> dict[str, object]:
        destination = self.destination_combo.currentData()
        out: dict[str, object] = {
            "workers": self.workers_spin.value(), "overwrite": self.overwrite(), "destination": destination,
            "direct_archive": False, "batch_files": DEFAULT_BATCH_FILES, "compress_level": self._compress_level,
            "prebuild": False,
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

    def _show_cstore(self, shown: bool) -> None:
        for widget in self._cstore_rows:
            self.form.setRowVisible(widget, shown)
