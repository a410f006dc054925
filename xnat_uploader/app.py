"""GUI entry and composition root: the QApplication, the main window and the crash hooks."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING

from xnat_uploader import __version__

if TYPE_CHECKING:
    from PySide6.QtWidgets import QApplication, QWidget

    from xnat_uploader.demo import Demo
    from xnat_uploader.gui.dialogs.crash_dialog import CrashReporter
    from xnat_uploader.gui.single_instance import SingleInstance

log = logging.getLogger(__name__)


def run_gui(args: argparse.Namespace) -> int:
    """Start the Qt event loop with the main window. Returns the exit code."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from xnat_uploader.gui.inbox_action import install_inbox_action
    from xnat_uploader.gui.log_panel_action import install_log_panel
    from xnat_uploader.gui.main_window import MainWindow
    from xnat_uploader.gui.prearchive_tab import install_prearchive_tab, link_queue_to_prearchive
    from xnat_uploader.gui.servers import install_server_bar
    from xnat_uploader.gui.settings_action import install_settings_action
    from xnat_uploader.gui.upload_controller import UploadController
    from xnat_uploader.gui.upload_panels import install_upload_panels

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("xnat-uploader")
    app.setApplicationVersion(__version__)
    reporter = install_crash_hooks(show_dialog=not getattr(args, "no_crash_dialog", False))
    demo = _start_demo_if_wanted(args)
    guard = _first_copy_or_none(app)
    if guard is None:
        reporter.uninstall()
        if demo is not None:
            demo.stop()
        return 0
    window = MainWindow()
    reporter.window = window
    guard.come_forward_requested.connect(lambda: _bring_forward(window))
    uploads = UploadController(parent=app)
    panels = install_upload_panels(window, uploads)
    install_settings_action(window, uploads)
    log_panel = install_log_panel(window)
    servers = install_server_bar(window, uploads)
    prearchive = install_prearchive_tab(window, uploads)
    link_queue_to_prearchive(window, panels.queue, prearchive)
    inbox = install_inbox_action(window, uploads)
    if demo is not None:
        from xnat_uploader.gui import state

        uploads.connect(demo.url, demo.user, demo.password)
        servers.mark_signed_in(demo.url, demo.user, demo.server.app.settings.version)
        state.set_last_folder(str(demo.corpus))
        # Short enough for the status bar next to the totals; the sample folder's path goes in the tooltip.
        window.statusBar().showMessage(
            window.tr("Demo: a local XNAT sandbox with project DEMO. Open Folder starts in sample DICOM.")
        )
        window.statusBar().setToolTip(
            window.tr("Sandbox at {url}; sample DICOM in {folder}").format(url=demo.url, folder=demo.corpus)
        )
    window.show()
    if args.quit_after:
        QTimer.singleShot(int(args.quit_after * 1000), app.quit)
    log.info("xnat-uploader %s started", __version__)
    try:
        return app.exec()
    finally:
        window.close()  # after app.quit() too: saves the window state and stops the scan workers
        log_panel.detach()
        prearchive.shutdown()
        inbox.shutdown()
        uploads.shutdown()
        guard.release()
        reporter.uninstall()
        if demo is not None:
            demo.stop()


def _first_copy_or_none(app: QApplication) -> SingleInstance | None:
    """The guard of this data folder, or None when another copy of the app has it: that copy is asked to
    bring its window forward (or, if it does not answer, the user is told), and this one should exit."""
    from xnat_uploader import paths
    from xnat_uploader.gui.single_instance import SingleInstance

    guard = SingleInstance(paths.ensure(paths.data_dir()), parent=app)
    if guard.acquire():
        return guard
    if guard.ask_to_come_forward():
        log.info("Another copy of xnat-uploader is running: brought its window forward")
        return None
    from PySide6.QtWidgets import QMessageBox

    pid = guard.holder_pid()
    QMessageBox.information(
        None,
        "xnat-uploader",
        app.tr(
            "xnat-uploader is already running{} but does not answer. Switch to its window, or close it "
            "(or end it in the task manager) and start the app again."
        ).format(f" (process {pid})" if pid else ""),
    )
    return None


def _bring_forward(window: QWidget) -> None:
    """Another start of the app asked for this window: show it on top (restored if minimised)."""
    if window.isMinimized():
        window.showNormal()
    window.show()
    window.raise_()
    window.activateWindow()


def _start_demo_if_wanted(args: argparse.Namespace) -> Demo | None:
    """``xnat-uploader demo``, or a first start with no server configured: run on the built-in sandbox.

    The demo keeps its settings, queue and logs in its own temporary folder, so trying it never touches
    the user's real ones.
    """
    from xnat_uploader.core import settings

    if not getattr(args, "demo", False) and settings.load().servers:
        return None
    from xnat_uploader import paths
    from xnat_uploader.demo import start_demo

    demo = start_demo()
    paths.set_base(demo.root / "app")
    log.info("No server configured yet: starting the demo sandbox")
    return demo


def install_crash_hooks(show_dialog: bool = True) -> CrashReporter:
    """Route unexpected errors from any thread to the log and (unless ``show_dialog`` is False,
    ``--no-crash-dialog``) to the crash dialog on the GUI thread. Call on the GUI thread."""
    from xnat_uploader.gui.dialogs.crash_dialog import CrashReporter

    reporter = CrashReporter(show_dialog=show_dialog)
    reporter.install()
    return reporter
