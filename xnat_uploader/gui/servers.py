"""Puts the server bar (server selector, connection state, sign-in) into the main window's toolbar."""

from __future__ import annotations

from PySide6.QtWidgets import QHBoxLayout

from xnat_uploader.core.credentials import CredentialStore
from xnat_uploader.gui.upload_controller import UploadController
from xnat_uploader.gui.widgets.server_bar import ServerBar


def install_server_bar(window, controller: UploadController, credentials: CredentialStore | None = None) -> ServerBar:
    """Add a :class:`ServerBar` to ``window.server_area`` (a QHBoxLayout is made if it has no layout)."""
    area = window.server_area
    layout = area.layout()
    if layout is None:
        layout = QHBoxLayout(area)
        layout.setContentsMargins(0, 0, 0, 0)
    bar = ServerBar(controller, credentials, area)
    layout.addWidget(bar)
    window.server_bar = bar
    return bar
