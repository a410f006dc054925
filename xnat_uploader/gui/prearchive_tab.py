"""Puts the prearchive panel into the main window's Prearchive tab (``app.py`` calls this)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtWidgets import QLabel, QVBoxLayout

from xnat_uploader.gui.widgets.prearchive_panel import PrearchivePanel

if TYPE_CHECKING:
    from xnat_uploader.core.xnat.models import PrearchiveRef
    from xnat_uploader.gui.main_window import MainWindow
    from xnat_uploader.gui.upload_controller import UploadController
    from xnat_uploader.gui.widgets.queue_panel import QueuePanel


def install_prearchive_tab(window: MainWindow, controller: UploadController) -> PrearchivePanel:
    """Replace the tab's placeholder with a :class:`PrearchivePanel` over ``controller`` and return it.

    Call ``panel.shutdown()`` when the window closes (it stops the auto-refresh timer and its workers).
    """
    area = window.prearchive_area
    layout = area.layout()
    if layout is None:
        layout = QVBoxLayout(area)
        layout.setContentsMargins(0, 0, 0, 0)
    for i in reversed(range(layout.count())):  # the "will be shown here" placeholder
        widget = layout.itemAt(i).widget()
        if isinstance(widget, QLabel):
            layout.takeAt(i)
            widget.deleteLater()
    panel = PrearchivePanel(controller, area)
    layout.addWidget(panel)
    return panel


def link_queue_to_prearchive(window: MainWindow, queue: QueuePanel, panel: PrearchivePanel) -> None:
    """A queue row's "Show in prearchive" switches to the Prearchive tab and selects that session."""

    def show(url: str, user: str, ref: PrearchiveRef) -> None:
        for i in range(window.tabs.count()):
            page = window.tabs.widget(i)
            if page is window.prearchive_area or page.isAncestorOf(window.prearchive_area):
                window.tabs.setCurrentIndex(i)
        panel.reveal(url, user, ref)

    queue.prearchive_requested.connect(show)
