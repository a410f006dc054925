"""Add or edit a server: URL, user, display name, TLS verification, an optional CA bundle, and its DICOM
receiver (host, port, AE titles) for C-STORE uploads. No password here (the sign-in dialog asks for it).

A plain ``http://`` address (not a loopback one) is confirmed before OK closes the dialog
(:class:`~xnat_uploader.gui.dialogs.plain_http.PlainHttpQuestion`); the entry then remembers it.
"""

from __future__ import annotations

from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from xnat_uploader.core.settings import ServerEntry
from xnat_uploader.core.xnat.transport import normalize_url, sends_in_clear
from xnat_uploader.gui.dialogs.plain_http import PlainHttpQuestion
from xnat_uploader.gui.widgets.dicom_link_note import DicomLinkNote


class ServerDialog(QDialog):
    """``ServerDialog(entry=None)``: ``exec()``, then :meth:`entry` gives the new or edited server."""

    def __init__(self, entry: ServerEntry | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(self.tr("Edit server") if entry else self.tr("Add server"))
        self.url_edit = QLineEdit(entry.url if entry else "")
        self.url_edit.setPlaceholderText("https://xnat.example.org")
        self.user_edit = QLineEdit(entry.user if entry else "")
        self.name_edit = QLineEdit(entry.name if entry else "")
        self.name_edit.setPlaceholderText(self.tr("(the server's address)"))
        self.verify_check = QCheckBox(self.tr("Check the server's certificate (recommended)"))
        self.verify_check.setChecked(entry.verify_tls if entry else True)
        self.ca_edit = QLineEdit((entry.ca_bundle or "") if entry else "")
        self.ca_edit.setPlaceholderText(self.tr("(system certificates)"))
        self.ca_button = QPushButton(self.tr("Choose..."))
        self.ca_button.clicked.connect(self._choose_ca)
        ca_row = QHBoxLayout()
        ca_row.addWidget(self.ca_edit, 1)
        ca_row.addWidget(self.ca_button)

        form = QFormLayout()
        form.addRow(self.tr("Server URL:"), self.url_edit)
        form.addRow(self.tr("User:"), self.user_edit)
        form.addRow(self.tr("Name:"), self.name_edit)
        form.addRow("", self.verify_check)
        form.addRow(self.tr("CA bundle:"), ca_row)
        self.dicom_host_edit = QLineEdit(entry.dicom_host if entry else "")
        self.dicom_host_edit.setPlaceholderText(self.tr("(the server's host)"))
        self.dicom_port_spin = QSpinBox()
        self.dicom_port_spin.setRange(0, 65535)
        self.dicom_port_spin.setSpecialValueText(self.tr("8104 (XNAT's default)"))
        self.dicom_port_spin.setValue(entry.dicom_port if entry else 0)
        self.called_edit = QLineEdit(entry.called_aet if entry else "")
        self.called_edit.setMaxLength(16)
        self.called_edit.setPlaceholderText("XNAT")
        self.calling_edit = QLineEdit(entry.calling_aet if entry else "")
        self.calling_edit.setMaxLength(16)
        self.calling_edit.setPlaceholderText("XNATUPLOAD")
        form.addRow(self.tr("DICOM host:"), self.dicom_host_edit)
        form.addRow(self.tr("DICOM port:"), self.dicom_port_spin)
        form.addRow(self.tr("Called AE title:"), self.called_edit)
        form.addRow(self.tr("Calling AE title:"), self.calling_edit)
        self.dicom_note = DicomLinkNote(self)
        form.addRow("", self.dicom_note)
        # The plain-http URL the user has confirmed (an edited entry confirmed earlier counts), else None.
        self._plain_http_url = entry.url if entry and entry.plain_http_ok else None
        self.http_question: PlainHttpQuestion | None = None

        self.error_label = QLabel()
        self.error_label.setObjectName("error_label")
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: #b00020;")
        self.error_label.hide()
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.error_label)
        layout.addWidget(self.buttons)
        self.resize(480, self.sizeHint().height())

    def _choose_ca(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, self.tr("Certificate authorities (PEM)"), self.ca_edit.text(),
            self.tr("Certificates (*.pem *.crt *.cer);;All files (*)"),
        )  # fmt: skip
        if path:
            self.ca_edit.setText(path)

    def validation_error(self) -> str | None:
        """A sentence on what is wrong with the fields, or None."""
        url = self.url_edit.text().strip()
        if not url:
            return self.tr("Enter the server's address, e.g. https://xnat.example.org")
        try:
            normalize_url(url)
        except ValueError:
            if "@" in url.split("://", 1)[-1].split("/", 1)[0]:
                return self.tr("Put the user name in the User field, not in the URL.")
            return self.tr("The URL must start with https:// or http:// followed by the server name.")
        if not self.user_edit.text().strip():
            return self.tr("Enter your XNAT user name.")
        return None

    def entry(self) -> ServerEntry:
        """The server as entered (call after validation)."""
        return ServerEntry(
            url=self.url_edit.text().strip(),
            user=self.user_edit.text().strip(),
            name=self.name_edit.text().strip(),
            verify_tls=self.verify_check.isChecked(),
            ca_bundle=self.ca_edit.text().strip() or None,
            dicom_host=self.dicom_host_edit.text().strip(),
            dicom_port=self.dicom_port_spin.value(),
            called_aet=self.called_edit.text().strip(),
            calling_aet=self.calling_edit.text().strip(),
            plain_http_ok=self._plain_http_url == normalize_url(self.url_edit.text()),
        )

    def accept(self) -> None:
        error = self.validation_error()
        if error:
            self.error_label.setText(error)
            self.error_label.show()
            return
        url = normalize_url(self.url_edit.text())
        if sends_in_clear(url) and url != self._plain_http_url:
            self.error_label.hide()
            self._ask_plain_http(url)
            return
        super().accept()

    def _ask_plain_http(self, url: str) -> None:
        question = PlainHttpQuestion(url, self)
        question.finished.connect(lambda _result: self._on_plain_http_answer(question, url))
        self.http_question = question
        question.open()

    def _on_plain_http_answer(self, question: PlainHttpQuestion, url: str) -> None:
        self.http_question = None
        question.deleteLater()
        if question.confirmed():
            self._plain_http_url = url
            super().accept()
