"""The question before a password goes to a plain ``http://`` server, shared by the server and sign-in dialogs.

XNAT's sign-in is HTTP Basic: over plain http the password (and then the images) cross the network readable by
anyone on the way. The user confirms once per server; the answer is kept in the server's settings entry
(``ServerEntry.plain_http_ok``). Loopback addresses are never asked about (``transport.sends_in_clear``).
The box opens window-modal (``open()``), so the dialog that asks goes on in a slot and tests click the real
buttons. GUI thread only.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from PySide6.QtWidgets import QMessageBox, QWidget

from xnat_uploader.core.xnat.transport import PLAIN_HTTP_REASON


class PlainHttpQuestion(QMessageBox):
    """ "Use plain http?" for ``url``; after ``finished``, :meth:`confirmed` tells the answer."""

    def __init__(self, url: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        host = urlsplit(url).netloc or url
        self.setObjectName("plain_http_question")
        self.setIcon(QMessageBox.Icon.Warning)
        self.setWindowTitle(self.tr("Plain http"))
        self.setText(self.tr("{host} uses plain http, without encryption.").format(host=host))
        self.setInformativeText(
            self.tr(
                "If you go on, {reason}: anyone on the way (the Wi-Fi, the hospital network) can read it, and the "
                "images you upload too.\n\nAsk your XNAT administrator for an https:// address. Go on only on a "
                "network you trust; you will not be asked again for this server."
            ).format(reason=PLAIN_HTTP_REASON)
        )
        self.use_button = self.addButton(self.tr("Use plain http"), QMessageBox.ButtonRole.AcceptRole)
        self.cancel_button = self.addButton(QMessageBox.StandardButton.Cancel)
        self.setDefaultButton(self.cancel_button)
        self.setEscapeButton(self.cancel_button)

    def confirmed(self) -> bool:
        return self.clickedButton() is self.use_button
