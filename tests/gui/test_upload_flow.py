"""The whole upload half of the window: form and queue installed in a window, Upload pressed, rows verified."""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QVBoxLayout, QWidget

from tests.gui.browse_helpers import wait_idle
from xnat_uploader.core.queue.store import JobState
from xnat_uploader.gui.main_window import MainWindow
from xnat_uploader.gui.models.queue_model import COL_PROGRESS, COL_RATE, COL_RESULT, COL_STATE, GREEN, ProgressRole
from xnat_uploader.gui.upload_panels import install_upload_panels
from xnat_uploader.sandbox.synthetic import write_corpus

SCREENSHOT_DIR = "XNAT_UPLOADER_SCREENSHOTS"  # set it to write upload.png there (for the README)


class StandInWindow(QWidget):
    """What the main window offers the upload panels: two empty areas."""

    def __init__(self) -> None:
        super().__init__()
        self.setWindowTitle("xnat-uploader")
        self.form_area = QWidget(self)
        self.queue_area = QWidget(self)
        QVBoxLayout(self.queue_area).setContentsMargins(0, 0, 0, 0)  # one area with a layout, one without
        layout = QVBoxLayout(self)
        layout.addWidget(self.form_area)
        layout.addWidget(self.queue_area, 1)


def _install(qtbot, controller):
    window = StandInWindow()
    qtbot.addWidget(window)
    panels = install_upload_panels(window, controller)
    window.resize(1180, 560)
    window.show()
    qtbot.waitExposed(window)
    return window, panels


def _cell(panels, row, col, role=Qt.ItemDataRole.DisplayRole):
    return panels.queue.model.index(row, col).data(role)


def test_two_studies_uploaded_from_the_form_end_verified(qtbot, sandbox, make_controller, make_index):
    controller = make_controller()
    controller.connect(sandbox.url, "admin", "admin")
    window, panels = _install(qtbot, controller)
    assert panels.form.parent() is window.form_area
    assert panels.queue.parent() is window.queue_area
    panels.form.set_index(make_index(patients=2), None)
    qtbot.waitUntil(lambda: panels.form.upload_button.isEnabled(), timeout=10000)
    assert panels.form.upload_button.text() == "Upload 2 sessions"
    labels = [panels.form.study_table.item(r, 3).text() for r in range(2)]

    qtbot.mouseClick(panels.form.upload_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panels.queue.model.rowCount() == 2, timeout=5000)
    assert not panels.form.upload_button.isEnabled()
    qtbot.waitUntil(lambda: {r.state for r in controller.jobs()} == {JobState.DONE}, timeout=30000)
    for row in range(2):
        assert _cell(panels, row, COL_STATE) == "Done"
        assert _cell(panels, row, COL_RESULT).startswith("verified: 2/2 series, 8 files")
        assert _cell(panels, row, COL_RESULT, Qt.ItemDataRole.ForegroundRole) == GREEN
    assert sorted(e["label"] for e in sandbox.inventory().values()) == sorted(labels)


def test_main_window_drop_untick_upload_in_progress(qtbot, sandbox_factory, make_controller, tmp_path):
    server = sandbox_factory(faults="slow=0.12,path=/data/services/import")
    controller = make_controller()
    controller.connect(server.url, "admin", "admin")
    window = MainWindow(scan_workers=1)
    qtbot.addWidget(window)
    panels = install_upload_panels(window, controller)
    window.resize(1280, 900)
    window.show()
    qtbot.waitExposed(window)
    assert panels.form.parent() is window.form_area
    assert panels.queue.parent() is window.queue_area
    write_corpus(tmp_path / "export", patients=4, series_per_study=2, instances_per_series=6, rows=16, columns=16)
    window.add_paths([str(tmp_path / "export")])
    wait_idle(qtbot, window)
    form = panels.form
    qtbot.waitUntil(lambda: form.upload_button.text() == "Upload 4 sessions" and form.upload_button.isEnabled())

    tree = window.tree_model  # untick the last patient in the tree: three sessions remain
    last = tree.index(tree.rowCount() - 2, 0)  # the last row is "Problems"
    assert tree.setData(last, Qt.CheckState.Unchecked.value, Qt.ItemDataRole.CheckStateRole)
    qtbot.waitUntil(lambda: form.upload_button.text() == "Upload 3 sessions", timeout=5000)

    form.transport_buttons["gradual"].click()
    form.advanced_box.workers_spin.setValue(1)
    form.upload_button.click()
    qtbot.waitUntil(lambda: len(controller.jobs()) == 3, timeout=5000)
    first, second, third = (r.id for r in controller.jobs())
    qtbot.waitUntil(lambda: controller.job(first).state is JobState.DONE, timeout=20000)
    qtbot.waitUntil(lambda: 35 <= (_cell(panels, 1, COL_PROGRESS, ProgressRole) or 0) <= 80, timeout=20000)

    assert _cell(panels, 1, COL_STATE) == "Sending"
    assert _cell(panels, 1, COL_RATE).endswith("/s")
    assert controller.job(third).state is JobState.QUEUED  # one job at a time per server
    assert _cell(panels, 2, COL_STATE) == "Queued"
    panels.queue.select_job(second)
    assert panels.queue.actions["pause"].isEnabled()
    assert panels.queue.actions["cancel"].isEnabled()
    assert not panels.queue.actions["retry"].isEnabled()
    window.tree_view.expand(tree.index(0, 0))
    folder = Path(os.environ.get(SCREENSHOT_DIR) or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    assert window.grab().save(str(folder / "upload.png"))

    qtbot.waitUntil(lambda: {r.state for r in controller.jobs()} == {JobState.DONE}, timeout=30000)
    assert len(server.inventory()) == 3
