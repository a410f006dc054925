"""Puts the prearchive panel into the main window's Prearchive tab (``app.py`` calls this)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtWidgets import QLabel, QVBoxLayout

from xnat_uploader.gui.widgets.prearchive_panel import PrearchivePanel

if TYPE_CHECKING:
    from xnat_uploader.gui.main_window import MainWindow
    from xnat_uploader.gui.upload_controller import UploadController


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
