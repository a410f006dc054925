"""The upload queue panel: a table of jobs with progress bars and the per-job actions.

Actions (buttons, and the same actions in the row's context menu): Pause, Resume, Cancel, Retry, Remove,
Re-send missing, Open receipt, Details; "Remove finished" clears done and cancelled rows. Every action goes
to the :class:`~xnat_uploader.gui.upload_controller.UploadController`; nothing here does I/O. A job another
copy of the program is sending is shown, never acted on: only Details and Open receipt are offered for it.
"""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QPoint, Qt, QUrl, Signal, Slot
from PySide6.QtGui import QAction, QDesktopServices, QPainter
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMenu,
    QMessageBox,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionProgressBar,
    QStyleOptionViewItem,
    QTableView,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from xnat_uploader.core.queue.store import JobRow, JobState
from xnat_uploader.core.xnat.models import PrearchiveRef
from xnat_uploader.gui.models.queue_model import COL_PROGRESS, ProgressRole, QueueModel
from xnat_uploader.gui.upload_controller import JobDetails, UploadController

ACTIVE = (JobState.QUEUED, JobState.RUNNING, JobState.COMMITTING, JobState.VERIFYING)


class ProgressDelegate(QStyledItemDelegate):
    """Paints the model's ``ProgressRole`` (0-100) as a progress bar."""

    def paint(
        self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> None:
        value = index.data(ProgressRole)
        if value is None or value < 0:
            super().paint(painter, option, index)
            return
        if option.state & QStyle.StateFlag.State_Selected:  # type: ignore[operator]
            painter.fillRect(option.rect, option.palette.highlight())  # type: ignore[attr-defined]
        bar = QStyleOptionProgressBar()
        bar.rect = option.rect.adjusted(2, 3, -2, -3)  # type: ignore[attr-defined]
        bar.minimum, bar.maximum, bar.progress = 0, 100, int(value)
        bar.text = f"{int(value)}%"
        bar.textVisible = True
        bar.state = QStyle.StateFlag.State_Enabled | QStyle.StateFlag.State_Horizontal
        style = option.widget.style() if option.widget else QApplication.style()  # type: ignore[attr-defined]
        style.drawControl(QStyle.ControlElement.CE_ProgressBar, bar, painter)


class QueuePanel(QWidget):
    prearchive_requested = Signal(str, str, object)  # server url, user, PrearchiveRef

    def __init__(self, controller: UploadController, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self.model = QueueModel(self, owned_elsewhere=controller.owned_elsewhere)
        self.model.set_jobs(controller.jobs())
        self.details_box: QMessageBox | None = None

        self.view = QTableView(self)
        self.view.setModel(self.model)
        self.view.setItemDelegateForColumn(COL_PROGRESS, ProgressDelegate(self.view))
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.view.verticalHeader().hide()
        self.view.setAlternatingRowColors(True)
        header = self.view.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(COL_PROGRESS, QHeaderView.ResizeMode.Interactive)
        header.resizeSection(COL_PROGRESS, 160)
        header.setStretchLastSection(True)
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.view.customContextMenuRequested.connect(self._context_menu)
        self.view.doubleClicked.connect(lambda _i: self.show_details())

        self.actions: dict[str, QAction] = {}
        buttons = QHBoxLayout()
        buttons.addWidget(QLabel(self.tr("<b>Queue</b>"), self))
        for key, text, slot in (
            ("pause", self.tr("Pause"), controller.pause),
            ("resume", self.tr("Resume"), controller.resume),
            ("cancel", self.tr("Cancel"), controller.cancel),
            ("retry", self.tr("Retry"), controller.retry),
            ("remove", self.tr("Remove"), controller.remove),
            ("resend", self.tr("Re-send missing"), controller.resend_missing),
            ("receipt", self.tr("Open receipt"), lambda _id: self.open_receipt()),
            ("details", self.tr("Details"), lambda _id: self.show_details()),
            ("prearchive", self.tr("Show in prearchive"), lambda _id: self.show_in_prearchive()),
        ):
            action = QAction(text, self)
            action.triggered.connect(lambda _c=False, s=slot: self._on_selected(s))
            self.actions[key] = action
            button = QToolButton(self)
            button.setDefaultAction(action)
            buttons.addWidget(button)
        buttons.addStretch(1)
        clear = QAction(self.tr("Remove finished"), self)
        clear.setToolTip(self.tr("Remove every upload that is done or cancelled (receipts are kept)"))
        clear.triggered.connect(controller.remove_finished)
        self.actions["remove_finished"] = clear
        clear_button = QToolButton(self)
        clear_button.setDefaultAction(clear)
        buttons.addWidget(clear_button)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(buttons)
        layout.addWidget(self.view)
        self.status = QLabel(self)
        self.status.setStyleSheet("color: #b00000")
        self.status.setWordWrap(True)
        self.status.hide()
        layout.addWidget(self.status)

        controller.job_updated.connect(self._on_job_updated)
        controller.job_removed.connect(self.model.remove_job)
        controller.job_progress.connect(self.model.update_progress)
        controller.details_ready.connect(self._on_details)
        controller.action_failed.connect(self._on_action_failed)
        self.view.selectionModel().selectionChanged.connect(lambda *_: self._update_actions())
        self.model.modelReset.connect(self._update_actions)
        self.model.rowsRemoved.connect(self._update_actions)
        self._update_actions()

    # -- selection -----------------------------------------------------------------------------------
    def selected_job(self) -> JobRow | None:
        rows = self.view.selectionModel().selectedRows()
        return self.model.job_at(rows[0].row()) if rows else None

    def select_job(self, job_id: int) -> None:
        row = self.model.row_of(job_id)
        if row is not None:
            self.view.selectRow(row)

    def _on_selected(self, slot: object) -> None:
        job = self.selected_job()
        if job is not None:
            self.status.hide()
            slot(job.id)  # type: ignore[operator]

    def _update_actions(self) -> None:
        job = self.selected_job()
        elsewhere = job is not None and self.controller.owned_elsewhere(job) is not None
        state = None if job is None or elsewhere else job.state
        running = state in ACTIVE
        enable = {
            "pause": running,
            "resume": state is JobState.PAUSED,
            "cancel": running or state is JobState.PAUSED,
            "retry": state in (JobState.FAILED, JobState.CANCELLED),
            "remove": job is not None and not running and not elsewhere,
            "resend": state in (JobState.FAILED, JobState.DONE) and bool(job and job.receipt),
            "receipt": bool(job and job.receipt),
            "details": job is not None,
            "prearchive": job is not None and _prearchive_ref(job.uri) is not None,
        }
        for key, on in enable.items():
            self.actions[key].setEnabled(on)

    # -- slots ---------------------------------------------------------------------------------------
    @Slot(object)
    def _on_job_updated(self, row: JobRow) -> None:
        self.model.update_job(row)
        selected = self.selected_job()
        if selected is not None and selected.id == row.id:
            self._update_actions()

    @Slot(int, str, str)
    def _on_action_failed(self, job_id: int, message: str, hint: str) -> None:
        self.status.setText(f"{message} {hint}".strip())
        self.status.show()

    def _context_menu(self, pos: QPoint) -> None:
        index = self.view.indexAt(pos)
        if not index.isValid():
            return
        self.view.selectRow(index.row())
        menu = QMenu(self)
        for key in ("pause", "resume", "cancel", "retry", "resend", "remove", "receipt", "details"):
            menu.addAction(self.actions[key])
        menu.popup(self.view.viewport().mapToGlobal(pos))

    def show_in_prearchive(self) -> None:
        """Ask the window to show this job's session in the Prearchive tab (``prearchive_requested``)."""
        job = self.selected_job()
        ref = _prearchive_ref(job.uri) if job else None
        if job is not None and ref is not None:
            self.prearchive_requested.emit(job.spec.server_url, job.spec.user, ref)

    def open_receipt(self) -> bool:
        """Open the selected job's human-readable receipt in the system viewer."""
        job = self.selected_job()
        if job is None or not job.receipt:
            return False
        return QDesktopServices.openUrl(QUrl.fromLocalFile(str(Path(job.receipt).with_suffix(".txt"))))

    def show_details(self) -> None:
        job = self.selected_job()
        if job is not None:
            self.controller.request_details(job.id)

    @Slot(object)
    def _on_details(self, details: JobDetails) -> None:
        row = details.row
        box = QMessageBox(self)
        box.setWindowTitle(self.tr("Upload {}").format(row.spec.session_label))
        box.setIcon(QMessageBox.Icon.Critical if row.state is JobState.FAILED else QMessageBox.Icon.Information)
        box.setText(f"{row.spec.project} / {row.spec.subject} / {row.spec.session_label}: {row.state.value}")
        box.setInformativeText("\n".join(x for x in (row.message, row.hint) if x))
        lines = [self.tr("Server: {} (as {})").format(row.spec.server_url, row.spec.user)]
        if row.uri:
            lines.append(self.tr("On the server: {}").format(row.uri))
        if details.verified:
            lines.append(self.tr("Verification: {}").format(details.verified.get("summary", "")))
            for s in details.verified.get("series", []):
                mark = "ok" if s["on_server"] >= s["sent"] else "MISSING"
                lines.append(f"  scan {s['scan'] or '?'}: {s['on_server']}/{s['sent']} files  {mark}")
        lines.append(self.tr("History:"))
        for when, event, detail in details.history:
            lines.append(f"  {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(when))}  {event}  {detail}".rstrip())
        box.setDetailedText("\n".join(lines))
        box.setStandardButtons(QMessageBox.StandardButton.Close)
        if self.details_box is not None:
            self.details_box.close()
        self.details_box = box
        box.open()


def _prearchive_ref(uri: str) -> PrearchiveRef | None:
    try:
        return PrearchiveRef.parse(uri) if uri else None
    except ValueError:
        return None
