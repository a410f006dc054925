"""The "Log" toolbar action: shows or hides a dock with the :class:`LogPanel` at the bottom of the window.

``app.py`` calls :func:`install_log_panel` once after creating the window (after ``log.setup``, so the panel
finds the log file), and ``panel.detach()`` at shutdown.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDockWidget, QMainWindow, QToolBar

from xnat_uploader.gui.widgets.log_panel import LogPanel


def install_log_panel(window: QMainWindow, log_path: Path | None = None) -> LogPanel:
    """Add the log dock (hidden) and a checkable "Log" action in the toolbar that toggles it. Returns the panel."""
    panel = LogPanel(log_path=log_path)
    dock = QDockWidget(window.tr("Log"), window)
    dock.setObjectName("log_dock")
    dock.setWidget(panel)
    window.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, dock)
    dock.hide()
    action = dock.toggleViewAction()
    action.setText(window.tr("Log"))
    action.setObjectName("log_action")
    action.setToolTip(window.tr("Show the log; copy diagnostics for a support request"))
    bar = window.findChild(QToolBar, "main_toolbar") or window.findChild(QToolBar)
    if bar is None:
        window.addAction(action)
    else:
        separators = [a for a in bar.actions() if a.isSeparator()]
        if separators:
            bar.insertAction(separators[0], action)
        else:
            bar.addAction(action)
    return panel
