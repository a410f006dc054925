"""Put the target form and the upload queue into the main window and connect them to the controller.

``app.py`` (the composition root) calls :func:`install_upload_panels` once, after creating the window and the
controller, and calls ``controller.shutdown()`` when the application quits.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QVBoxLayout, QWidget

from xnat_uploader.gui.upload_controller import UploadController
from xnat_uploader.gui.widgets.queue_panel import QueuePanel
from xnat_uploader.gui.widgets.target_form import TargetForm


@dataclass
class UploadPanels:
    form: TargetForm
    queue: QueuePanel


def install_upload_panels(window: QWidget, controller: UploadController) -> UploadPanels:
    """Add the form to ``window.form_area`` and the queue to ``window.queue_area``; wire Upload to the queue.

    With the main window (``tree_model``, ``scan_controller``) the form follows the ticked series by itself;
    another window keeps it in step with ``panels.form.set_index(index, selected_series)``.
    """
    form = TargetForm(controller, window.form_area)  # type: ignore[attr-defined]
    queue = QueuePanel(controller, window.queue_area)  # type: ignore[attr-defined]
    for area, widget in ((window.form_area, form), (window.queue_area, queue)):  # type: ignore[attr-defined]
        layout = area.layout()
        if layout is None:
            layout = QVBoxLayout(area)
            layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(widget)
    form.upload_requested.connect(controller.submit_request)
    form.upload_requested.connect(lambda _request: queue.view.scrollToBottom())
    _follow_selection(window, form)
    return UploadPanels(form, queue)


def _follow_selection(window: QWidget, form: TargetForm) -> None:
    """With the main window's tree: keep the form on the index and the ticked series (re-planned at most every
    0.15 s while a scan adds series), offer the dropped folders' other files as resources, and hold Upload while
    a scan runs."""
    tree_model = getattr(window, "tree_model", None)
    scans = getattr(window, "scan_controller", None)
    if tree_model is None or scans is None:
        return  # a window without the tree: its owner calls form.set_index itself
    timer = QTimer(form)
    timer.setSingleShot(True)
    timer.setInterval(150)
    timer.timeout.connect(lambda: form.set_index(scans.index, set(tree_model.selected_series_uids())))
    tree_model.series_selection_changed.connect(timer.start)
    tree_model.modelReset.connect(timer.start)
    scans.scan_started.connect(lambda _paths: form.set_blocked(form.tr("Wait for the scan to finish.")))
    scans.scan_ended.connect(lambda _outcome: (form.set_blocked(""), timer.start()))
    scans.exam_items_changed.connect(form.set_exam_items)
    form.set_exam_items(scans.exam_items)
    timer.start()
