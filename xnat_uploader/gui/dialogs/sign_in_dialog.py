"""Sign in to one server: user, password, "Remember password".

"Sign in" checks the server on a worker thread (reachable, XNAT version, credentials) and shows the typed
error's message and hint under the fields; the dialog stays open. On success the password goes to the
keyring only when "Remember password" is ticked (and a secure keyring exists), the login is handed to
``controller.connect``, the server entry (never the password) is saved to the settings, and the dialog
accepts. ``info`` is then the server's :class:`~xnat_uploader.core.xnat.ServerInfo`.

Before the first sign-in to a plain ``http://`` server (not a loopback address) nothing is sent until the user
confirms (:class:`~xnat_uploader.gui.dialogs.plain_http.PlainHttpQuestion`); the saved entry remembers the answer.
"""

from __future__ import annotations

import threading
from collections.abc import Generator
from dataclasses import replace
from typing import Any

from PySide6.QtCore import Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

from xnat_uploader.core import settings as settings_mod
from xnat_uploader.core.credentials import CredentialStore
from xnat_uploader.core.secret import Secret
from xnat_uploader.core.settings import ServerEntry
from xnat_uploader.core.xnat import ServerInfo, XnatClient
from xnat_uploader.core.xnat.transport import PLAIN_HTTP_REASON, sends_in_clear
from xnat_uploader.gui.dialogs.plain_http import PlainHttpQuestion
from xnat_uploader.gui.upload_controller import UploadController
from xnat_uploader.gui.workers import Worker, WorkerRunner

CHECK_TIMEOUT = 15.0  # seconds for the server check (connect time-out is at most 10 s)


def check_server(entry: ServerEntry, user: str, password: Secret):
    """Work for a :class:`Worker`: log in, read the version, log out. Returns the ServerInfo."""

    def work(cancel: threading.Event) -> Generator[Any, None, ServerInfo]:
        client = XnatClient(entry.url, user, password, entry.connection_options(workers=1, read_timeout=CHECK_TIMEOUT))
        try:
            info = client.connect()
        finally:
            client.close()
        return info
        yield  # a generator function, as Worker expects

    return work


class SignInDialog(QDialog):
    def __init__(
        self,
        controller: UploadController,
        entry: ServerEntry,
        credentials: CredentialStore | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.controller = controller
        self.server = entry
        self.credentials = credentials or CredentialStore()
        self.info: ServerInfo | None = None
        self.remembered = False
        self._runner = WorkerRunner(self)
        self._worker: Worker | None = None
        self._remember = False
        self.http_question: PlainHttpQuestion | None = None
        self.setWindowTitle(self.tr("Sign in to {}").format(entry.name))

        self.url_label = QLabel(entry.url)
        self.user_edit = QLineEdit(entry.user)
        self.password_edit = QLineEdit()
        self.password_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.remember_check = QCheckBox(self.tr("Remember password"))
        self.note_label = QLabel()  # keyring state
        self.note_label.setObjectName("note_label")
        self.note_label.setWordWrap(True)
        self.error_label = QLabel()
        self.error_label.setObjectName("error_label")
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: #b00020;")
        self.error_label.hide()
        self.status_label = QLabel()
        self.status_label.setObjectName("status_label")

        if self.credentials.secure:
            self.note_label.hide()
            saved = self.credentials.get(entry.url, entry.user) if entry.user else None
            if saved:
                self.password_edit.setText(saved.reveal())
            self.remember_check.setChecked(bool(saved))
        else:
            self.remember_check.setChecked(False)
            self.remember_check.setEnabled(False)
            self.note_label.setText(
                self.tr(
                    "No secure password store (keychain) is available on this computer: the password is "
                    "kept for this run only, and you will be asked again next time."
                )
            )

        self.http_note = QLabel(self.tr("\u26a0 Plain http: the password is sent without encryption."))
        self.http_note.setObjectName("http_note")
        self.http_note.setStyleSheet("color: #8a5a00")
        self.http_note.setToolTip(self.tr("On plain http, {}. Ask for an https:// address.").format(PLAIN_HTTP_REASON))
        self.http_note.setVisible(sends_in_clear(entry.url))

        form = QFormLayout()
        form.addRow(self.tr("Server:"), self.url_label)
        form.addRow("", self.http_note)
        form.addRow(self.tr("User:"), self.user_edit)
        form.addRow(self.tr("Password:"), self.password_edit)
        form.addRow("", self.remember_check)

        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.sign_in_button = self.buttons.addButton(self.tr("Sign in"), QDialogButtonBox.ButtonRole.AcceptRole)
        self.sign_in_button.setDefault(True)
        self.buttons.accepted.connect(self.sign_in)
        self.buttons.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.note_label)
        layout.addWidget(self.error_label)
        layout.addWidget(self.status_label)
        layout.addWidget(self.buttons)
        (self.password_edit if self.user_edit.text() else self.user_edit).setFocus()
        self.resize(460, self.sizeHint().height())

    @property
    def busy(self) -> bool:
        return self._worker is not None

    @Slot()
    def sign_in(self) -> None:
        """Check the server with the entered login (on a worker thread)."""
        if self.busy:
            return
        user = self.user_edit.text().strip()
        if not user or not self.password_edit.text():
            self._show_error(self.tr("Enter your user name and password."), "")
            return
        if sends_in_clear(self.server.url) and not self.server.plain_http_ok:
            self._ask_plain_http()
            return
        self._remember = self.credentials.secure and self.remember_check.isChecked()  # read before disabling
        self.error_label.hide()
        self.status_label.setText(self.tr("Checking {}...").format(self.server.url))
        self._set_enabled(False)
        password = Secret(self.password_edit.text())
        worker = Worker(check_server(self.server, user, password), name="sign-in")
        worker.finished.connect(self._on_checked)
        worker.failed.connect(self._on_failed)
        worker.cancelled.connect(self._on_cancelled)
        self._worker = self._runner.start(worker)

    def _ask_plain_http(self) -> None:
        question = PlainHttpQuestion(self.server.url, self)
        question.finished.connect(lambda _result: self._on_plain_http_answer(question))
        self.http_question = question
        self.error_label.hide()
        question.open()

    def _on_plain_http_answer(self, question: PlainHttpQuestion) -> None:
        self.http_question = None
        question.deleteLater()
        if question.confirmed():
            self.server = replace(self.server, plain_http_ok=True)  # saved with the entry once signed in
            self.sign_in()
        else:
            self.status_label.setText(self.tr("Not signed in: nothing was sent to the server."))

    @Slot(object)
    def _on_checked(self, info: ServerInfo) -> None:
        self._worker = None
        user = self.user_edit.text().strip()
        password = Secret(self.password_edit.text())
        remember = self._remember
        if not remember:  # unticked: drop a password remembered earlier
            self.credentials.forget(self.server.url, user, keyring_too=True)
        outcome = self.credentials.set(self.server.url, user, password, remember=remember)
        self.remembered = outcome.remembered
        entry = replace(self.server, user=user)  # its DICOM receiver, time-outs and plain-http answer kept
        settings = self.controller.logins.settings
        settings.upsert(entry)
        settings.current_server = entry.url
        try:
            settings_mod.save(settings)
        except OSError as exc:
            self._show_error(self.tr("Signed in, but the settings could not be saved ({}).").format(exc.strerror), "")
        self.server = entry
        self.controller.connect(entry.url, user, password)
        self.info = info
        self.accept()

    @Slot(str, str)
    def _on_failed(self, message: str, hint: str) -> None:
        self._worker = None
        self._set_enabled(True)
        self.status_label.clear()
        self._show_error(message, hint)
        self.password_edit.setFocus()
        self.password_edit.selectAll()

    @Slot()
    def _on_cancelled(self) -> None:
        self._worker = None
        self._set_enabled(True)
        self.status_label.clear()

    def _show_error(self, message: str, hint: str) -> None:
        self.error_label.setText(f"{message}\n{hint}" if hint else message)
        self.error_label.show()

    def _set_enabled(self, enabled: bool) -> None:
        for widget in (self.user_edit, self.password_edit, self.sign_in_button):
            widget.setEnabled(enabled)
        self.remember_check.setEnabled(enabled and self.credentials.secure)

    def done(self, result: int) -> None:
        self._runner.shutdown(int((CHECK_TIMEOUT + 1) * 1000))  # a check in flight: its answer is dropped
        super().done(result)
