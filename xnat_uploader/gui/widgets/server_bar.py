"""The toolbar's server selector: servers (settings + signed in this run), connection state, and the
Sign in / Sign out / Add / Edit / Remove buttons. Several servers can be signed in at once.

Dialogs open window-modal with ``open()`` (tests reach them as ``bar.sign_in_dialog`` / ``bar.server_dialog``).
Questions go through :meth:`ServerBar.ask_forget_password` and :meth:`ServerBar.confirm_remove`, which tests patch.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QMessageBox, QPushButton, QWidget

from xnat_uploader.core import settings as settings_mod
from xnat_uploader.core.credentials import CredentialStore
from xnat_uploader.core.settings import ServerEntry
from xnat_uploader.core.xnat.transport import normalize_url
from xnat_uploader.gui.dialogs.server_dialog import ServerDialog
from xnat_uploader.gui.dialogs.sign_in_dialog import SignInDialog
from xnat_uploader.gui.upload_controller import UploadController

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (url, user)


def _data(key: Key) -> str:
    """Combo item data for a login (a plain string: ``findData`` compares strings by value)."""
    return f"{key[0]}\t{key[1]}"


class ServerBar(QWidget):
    signed_in = Signal(str, str)  # url, user
    signed_out = Signal(str, str)  # url, user

    def __init__(
        self, controller: UploadController, credentials: CredentialStore | None = None, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.controller = controller
        self.credentials = credentials or CredentialStore()
        self.sessions: dict[Key, str] = {}  # signed in through this bar -> XNAT version text
        self.sign_in_dialog: SignInDialog | None = None
        self.server_dialog: ServerDialog | None = None

        self.combo = QComboBox()
        self.combo.setMinimumContentsLength(18)
        self.combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.combo.setToolTip(self.tr("XNAT server"))
        self.state_label = QLabel()
        self.state_label.setObjectName("server_state")
        self.sign_in_button = QPushButton(self.tr("Sign in..."))
        self.sign_out_button = QPushButton(self.tr("Sign out"))
        self.add_button = QPushButton(self.tr("Add server..."))
        self.edit_button = QPushButton(self.tr("Edit..."))
        self.remove_button = QPushButton(self.tr("Remove"))

        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for widget in (self.combo, self.state_label, self.sign_in_button, self.sign_out_button):
            layout.addWidget(widget)
        for widget in (self.add_button, self.edit_button, self.remove_button):
            layout.addWidget(widget)

        self.combo.currentIndexChanged.connect(self._update_state)
        self.sign_in_button.clicked.connect(self.sign_in)
        self.sign_out_button.clicked.connect(self.sign_out)
        self.add_button.clicked.connect(self.add_server)
        self.edit_button.clicked.connect(self.edit_server)
        self.remove_button.clicked.connect(self.remove_server)
        controller.servers_changed.connect(self.refresh)
        self.refresh()

    # -- state ----------------------------------------------------------------------------------
    @property
    def settings(self) -> settings_mod.Settings:
        return self.controller.logins.settings

    def current(self) -> Key | None:
        data = self.combo.currentData()
        if not data:
            return None
        url, user = data.split("\t", 1)
        return (url, user)

    def select(self, url: str, user: str) -> None:
        index = self.combo.findData(_data((normalize_url(url), user)))
        if index >= 0:
            self.combo.setCurrentIndex(index)

    def mark_signed_in(self, url: str, user: str, version: str = "") -> None:
        """Show a login made elsewhere (the demo's) as signed in, and select it."""
        self.sessions[(normalize_url(url), user)] = version
        self.refresh()
        self.select(url, user)

    def is_signed_in(self, url: str, user: str) -> bool:
        return (normalize_url(url), user) in self.sessions

    @Slot()
    def refresh(self) -> None:
        """Refill the combo (keeps the selection) and the state text."""
        keep = self.current()
        if keep is None and self.settings.current_server:
            entry = self.settings.find(self.settings.current_server)
            keep = (entry.url, entry.user) if entry else None
        self.combo.blockSignals(True)
        self.combo.clear()
        for choice in self.controller.servers():
            mark = " \u2713" if choice.key in self.sessions else ""
            self.combo.addItem(f"{choice.name} ({choice.user}){mark}", _data(choice.key))
        index = self.combo.findData(_data(keep)) if keep else -1
        self.combo.setCurrentIndex(index if index >= 0 else (0 if self.combo.count() else -1))
        self.combo.blockSignals(False)
        self._update_state()

    @Slot()
    def _update_state(self) -> None:
        key = self.current()
        signed = key is not None and key in self.sessions
        if key is None:
            self.state_label.setText(self.tr("No server: add one"))
        elif signed:
            version = self.sessions[key]
            text = self.tr("Signed in as {}").format(key[1])
            self.state_label.setText(f"{text}, XNAT {version}" if version else text)
        else:
            self.state_label.setText(self.tr("Not signed in"))
        self.sign_in_button.setEnabled(key is not None)
        self.sign_out_button.setEnabled(signed)
        self.edit_button.setEnabled(key is not None and self.settings.find(key[0]) is not None)
        self.remove_button.setEnabled(key is not None)

    def _entry(self, key: Key) -> ServerEntry:
        entry = self.settings.find(key[0])
        if entry is not None and entry.user == key[1]:
            return entry
        name = entry.name if entry else ""
        tls = (entry.verify_tls, entry.ca_bundle) if entry else (True, None)
        plain_http_ok = entry.plain_http_ok if entry else False  # confirmed per server, whoever signs in
        return ServerEntry(url=key[0], user=key[1], name=name, verify_tls=tls[0], ca_bundle=tls[1],
                           plain_http_ok=plain_http_ok)  # fmt: skip

    # -- sign in / out --------------------------------------------------------------------------
    @Slot()
    def sign_in(self, entry: ServerEntry | None = None) -> SignInDialog | None:
        """Open the sign-in dialog for ``entry`` (default: the selected server)."""
        if entry is None:
            key = self.current()
            if key is None:
                return None
            entry = self._entry(key)
        if self.sign_in_dialog is not None and self.sign_in_dialog.isVisible():
            self.sign_in_dialog.raise_()
            return self.sign_in_dialog
        dialog = SignInDialog(self.controller, entry, self.credentials, self)
        dialog.accepted.connect(self._signed_in)
        self._replace("sign_in_dialog", dialog)
        dialog.open()
        return dialog

    @Slot()
    def _signed_in(self) -> None:
        dialog = self.sender()
        if not isinstance(dialog, SignInDialog):
            return
        key = (dialog.server.url, dialog.server.user)
        self.sessions[key] = dialog.info.version_string if dialog.info else ""
        log.info("Signed in to %s as %s", *key)
        self.refresh()
        self.select(*key)
        self.signed_in.emit(*key)

    @Slot()
    def sign_out(self) -> None:
        """Forget the selected login; asks whether to forget the saved password too."""
        key = self.current()
        if key is None:
            return
        forget_saved = False
        if self.credentials.secure:
            answer = self.ask_forget_password(*key)
            if answer is None:
                return
            forget_saved = answer
        self.forget_login(*key, keyring_too=forget_saved)

    def forget_login(self, url: str, user: str, *, keyring_too: bool) -> None:
        key = (normalize_url(url), user)
        self.controller.logins.disconnect(*key)
        self.credentials.forget(*key, keyring_too=keyring_too)
        self.sessions.pop(key, None)
        log.info("Signed out of %s as %s (saved password %s)", *key, "forgotten" if keyring_too else "kept")
        self.refresh()
        self.signed_out.emit(*key)

    def ask_forget_password(self, url: str, user: str) -> bool | None:
        """True: forget the saved password too; False: keep it; None: cancel."""
        answer = QMessageBox.question(
            self, self.tr("Sign out"),
            self.tr("Sign out of {} as {}.\n\nAlso forget the saved password on this computer?").format(url, user),
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.No,
        )  # fmt: skip
        if answer == QMessageBox.StandardButton.Cancel:
            return None
        return answer == QMessageBox.StandardButton.Yes

    # -- server list ----------------------------------------------------------------------------
    @Slot()
    def add_server(self) -> ServerDialog:
        return self._open_server_dialog(None)

    @Slot()
    def edit_server(self) -> ServerDialog | None:
        key = self.current()
        entry = self.settings.find(key[0]) if key else None
        return self._open_server_dialog(entry) if entry else None

    def _open_server_dialog(self, entry: ServerEntry | None) -> ServerDialog:
        dialog = ServerDialog(entry, self)
        old_url = entry.url if entry else None
        dialog.accepted.connect(lambda: self._server_saved(dialog.entry(), old_url))
        self._replace("server_dialog", dialog)
        dialog.open()
        return dialog

    def _server_saved(self, entry: ServerEntry, old_url: str | None) -> None:
        if old_url and old_url != entry.url:
            self.settings.remove(old_url)
        self.settings.upsert(entry)
        self.settings.current_server = entry.url
        self._save()
        self.controller.servers_changed.emit()  # the target form lists servers too
        self.select(entry.url, entry.user)

    @Slot()
    def remove_server(self) -> None:
        key = self.current()
        if key is None or not self.confirm_remove(*key):
            return
        if key in self.sessions or self.credentials.get(*key) is not None:
            self.forget_login(*key, keyring_too=True)
        self.settings.remove(key[0])
        self._save()
        self.controller.logins.forget_server(*key)
        self.controller.servers_changed.emit()
        self.refresh()

    def confirm_remove(self, url: str, user: str) -> bool:
        answer = QMessageBox.question(
            self, self.tr("Remove server"),
            self.tr("Remove {} ({}) from the list? Its saved password is forgotten too.").format(url, user),
        )  # fmt: skip
        return answer == QMessageBox.StandardButton.Yes

    def _replace(self, attribute: str, dialog: QWidget) -> None:
        """Keep the last dialog (its result stays readable) and delete the one before."""
        old = getattr(self, attribute)
        if old is not None:
            old.deleteLater()
        setattr(self, attribute, dialog)

    def _save(self) -> None:
        try:
            settings_mod.save(self.settings)
        except OSError as exc:
            QMessageBox.warning(
                self, self.tr("Settings"), self.tr("The settings could not be saved ({}).").format(exc.strerror)
            )
