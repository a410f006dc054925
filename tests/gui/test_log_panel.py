"""The log panel: lines logged on any thread appear live, the level filter, and "Copy diagnostics" (redacted)."""

from __future__ import annotations

import logging
import threading

import pytest
from PySide6.QtCore import Qt, QThread
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QMainWindow, QToolBar

from xnat_uploader.gui.log_panel_action import install_log_panel
from xnat_uploader.gui.widgets.log_panel import LogPanel, QtLogHandler

log = logging.getLogger("tests.gui.log_panel")


@pytest.fixture
def info_logging():
    """The app logs at INFO (``log.setup``); pytest leaves the root at WARNING."""
    root = logging.getLogger()
    before = root.level
    root.setLevel(logging.INFO)
    yield
    root.setLevel(before)


@pytest.fixture
def panel(qtbot, tmp_path, info_logging):
    log_file = tmp_path / "xnat-uploader.log"
    log_file.write_text(
        "2026-11-23 10:00:00,000 INFO MainThread xnat_uploader.app: started\n"
        "2026-11-23 10:00:01,000 DEBUG worker xnat_uploader.x: login password=hunter2 JSESSIONID=ABCDEF\n"
        "2026-11-23 10:00:02,000 WARNING worker xnat_uploader.core.plan: PatientID=P001 name DOE^JANE\n"
        "2026-11-23 10:00:03,000 DEBUG worker requests: Authorization: Basic YWRtaW46czNjcmV0\n",
        encoding="utf-8",
    )
    widget = LogPanel(log_path=log_file)
    qtbot.addWidget(widget)
    yield widget
    widget.detach()


def test_a_record_from_a_worker_thread_appears(qtbot, panel):
    seen: list[bool] = []

    def work() -> None:
        seen.append(QThread.currentThread() is not QGuiApplication.instance().thread())
        log.info("hello from the worker")
        log.debug("too chatty to show")

    thread = threading.Thread(target=work, name="upload-worker")
    thread.start()
    thread.join()
    # the worker only emitted a signal: the line reaches the widget later, through the GUI thread's event loop
    assert "hello from the worker" not in panel.shown_text()
    qtbot.waitUntil(lambda: "hello from the worker" in panel.shown_text(), timeout=5000)
    assert seen == [True]
    line = next(x for x in panel.shown_text().splitlines() if "hello from the worker" in x)
    assert " INFO upload-worker tests.gui.log_panel: hello from the worker" in line
    assert "started" in panel.shown_text()  # the log file's last lines are shown first
    assert "too chatty" not in panel.shown_text()


def test_level_filter(qtbot, panel):
    log.warning("careful")
    qtbot.waitUntil(lambda: "careful" in panel.shown_text())
    panel.set_level(logging.WARNING)
    assert "careful" in panel.shown_text()
    assert "started" not in panel.shown_text()
    panel.set_level(logging.DEBUG)
    assert "started" in panel.shown_text()
    assert "login" in panel.shown_text()


def test_copy_diagnostics_puts_redacted_text_on_the_clipboard(qtbot, panel):
    qtbot.mouseClick(panel.copy_button, Qt.MouseButton.LeftButton)
    text = QGuiApplication.clipboard().text()
    assert text.startswith("xnat-uploader diagnostics")
    assert "Qt:" in text
    assert "PySide6:" in text
    assert "pydicom:" in text
    assert "started" in text
    assert "login password=[redacted]" in text
    for secret in ("hunter2", "ABCDEF", "P001", "DOE^JANE", "YWRtaW46czNjcmV0"):
        assert secret not in text, secret
    assert panel.note_label.text() == "Copied to the clipboard"


def test_the_handler_leaves_with_the_panel(qtbot, tmp_path, info_logging):
    widget = LogPanel(log_path=tmp_path / "none.log")
    handler = widget.handler
    assert handler in logging.getLogger().handlers
    widget.deleteLater()
    qtbot.waitUntil(lambda: handler not in logging.getLogger().handlers)
    log.info("nobody listens")  # must not raise


def test_install_adds_a_log_action_and_a_hidden_dock(qtbot, tmp_path):
    window = QMainWindow()
    qtbot.addWidget(window)
    bar = QToolBar(window)
    bar.setObjectName("main_toolbar")
    window.addToolBar(bar)
    bar.addSeparator()
    panel = install_log_panel(window, tmp_path / "none.log")
    try:
        window.show()
        action = bar.actions()[0]
        assert action.text() == "Log"
        assert action.isCheckable()
        assert not panel.isVisible()
        action.trigger()
        assert panel.isVisible()
        assert isinstance(panel.handler, QtLogHandler)
    finally:
        panel.detach()
