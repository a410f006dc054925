"""Server > Import from Server Path...": opens the inbox import dialog (``app.py`` calls
:func:`install_inbox_action` once, after the upload panels)."""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMainWindow

from xnat_uploader.gui.dialogs.inbox_dialog import InboxDialog
from xnat_uploader.gui.inbox_runner import InboxRunner
from xnat_uploader.gui.upload_controller import UploadController


@dataclass
class InboxAction:
    action: QAction
    runner: InboxRunner  # shared by the dialogs, so a closed dialog never takes a running thread with it

    def shutdown(self, timeout_ms: int = 3000) -> bool:
        return self.runner.shutdown(timeout_ms)


def install_inbox_action(window: QMainWindow, controller: UploadController) -> InboxAction:
    """Add "Server > Import from Server Path..." to the window's menu bar; call ``shutdown()`` on quit.

    The dialog opens window-modal; tests reach the open one as ``window.inbox_dialog``.
    """
    runner = InboxRunner(controller, window)
    action = QAction(window.tr("Import from Server Path..."), window)
    action.setObjectName("inbox_action")
    action.setToolTip(window.tr("Import DICOM that is already on the XNAT server's disk, in its inbox folder"))
    menu = window.menuBar().addMenu(window.tr("&Server"))
    menu.setObjectName("server_menu")
    menu.addAction(action)

    def open_dialog() -> None:
        dialog = InboxDialog(controller, window, runner=runner)
        dialog.setObjectName("inbox_dialog")
        window.inbox_dialog = dialog  # type: ignore[attr-defined]
        dialog.finished.connect(dialog.deleteLater)
        dialog.open()

    action.triggered.connect(open_dialog)
    return InboxAction(action, runner)
