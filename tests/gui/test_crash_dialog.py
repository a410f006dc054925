"""The crash hooks: an error on any thread reaches the dialog on the GUI thread; --no-crash-dialog only logs."""

from __future__ import annotations

import argparse
import logging
import sys
import threading

import pytest
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication

from xnat_uploader.app import install_crash_hooks, run_gui
from xnat_uploader.gui.dialogs import crash_dialog
from xnat_uploader.gui.dialogs.crash_dialog import CrashDialog


@pytest.fixture
def shown(monkeypatch):
    calls = []

    def fake_show(message, details, parent=None):
        calls.append((message, details, threading.current_thread()))

    monkeypatch.setattr(crash_dialog, "show_crash_dialog", fake_show)
    return calls


def boom():
    raise ZeroDivisionError("division by zero in a worker")


def test_thread_and_main_errors_reach_the_dialog_on_the_gui_thread(qtbot, shown, caplog):
    reporter = install_crash_hooks(show_dialog=True)
    try:
        worker = threading.Thread(target=boom, name="some-worker")
        worker.start()
        worker.join()
        qtbot.waitUntil(lambda: len(shown) == 1, timeout=2000)
        try:
            raise KeyError("on the GUI thread")
        except KeyError:
            sys.excepthook(*sys.exc_info())
        qtbot.waitUntil(lambda: len(shown) == 2, timeout=2000)
    finally:
        reporter.uninstall()
    assert shown[0][0] == "ZeroDivisionError: division by zero in a worker"
    assert "Traceback" in shown[0][1]
    assert "boom" in shown[0][1]
    assert all(t is threading.main_thread() for _, _, t in shown)
    assert "Unexpected error in thread some-worker" in caplog.text
    assert sys.excepthook is not reporter.excepthook


def test_the_dialog_copies_a_report(qtbot):
    dialog = CrashDialog("ValueError: bad", "Traceback (most recent call last):\n  ...\nValueError: bad")
    qtbot.addWidget(dialog)
    qtbot.mouseClick(dialog.copy_button, Qt.MouseButton.LeftButton)
    text = QGuiApplication.clipboard().text()
    assert "xnat-uploader" in text
    assert "ValueError: bad" in text
    assert "Python" in text


@pytest.mark.parametrize("no_dialog", [True, False])
def test_gui_command_with_and_without_no_crash_dialog(qtbot, shown, caplog, monkeypatch, no_dialog):
    def fail_in_a_slot():
        raise RuntimeError("unexpected in a slot")

    def short_exec(app):  # a real exec() here would leave later tests' worker threads stuck (Qt state)
        QTimer.singleShot(0, fail_in_a_slot)
        qtbot.wait(200)
        return 0

    monkeypatch.setattr(QApplication, "exec", short_exec)
    caplog.set_level(logging.ERROR)
    assert run_gui(argparse.Namespace(no_crash_dialog=no_dialog, quit_after=0)) == 0
    assert "Unexpected error" in caplog.text
    assert "unexpected in a slot" in caplog.text
    assert len(shown) == (0 if no_dialog else 1)


def test_no_crash_dialog_option_reaches_the_gui_command():
    from xnat_uploader.cli import build_parser

    assert build_parser().parse_args(["gui", "--no-crash-dialog"]).no_crash_dialog
