"""GUI entry and composition root: the QApplication, the main window and the crash hooks."""

from __future__ import annotations

import argparse
import logging
import sys

from xnat_uploader import __version__

log = logging.getLogger(__name__)


def run_gui(args: argparse.Namespace) -> int:
    """Start the Qt event loop with the main window. Returns the exit code."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from xnat_uploader.gui.main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("xnat-uploader")
    app.setApplicationVersion(__version__)
    window = MainWindow()
    window.show()
    if args.quit_after:
        QTimer.singleShot(int(args.quit_after * 1000), app.quit)
    log.info("xnat-uploader %s started", __version__)
    return app.exec()
