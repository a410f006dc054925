"""The main window: wiring only. Widgets, models, dialogs and controllers live in their own modules.

Layout (DESIGN.md, "GUI"): a toolbar (Open Folder, Open Files, Cancel, Clear, the server area); tabs
"Upload" and "Prearchive". Upload: the DICOM tree (drop target) beside the header preview, and below
them ``form_area`` and ``queue_area`` in one vertical splitter; a status bar with the scan progress and
the totals.

For the upload form and queue: add widgets to ``form_area.layout()`` / ``queue_area.layout()``; read the
index from ``scan_controller.index``; the checked series from ``tree_model.selected_series()`` (nodes)
or ``tree_model.selected_series_uids()``; ``tree_model.series_selection_changed`` says when they change.
"""

from __future__ import annotations

import os
import time

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDragMoveEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QProgressBar,
    QSplitter,
    QTabWidget,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from xnat_uploader import __version__
from xnat_uploader.core.dicom.records import InstanceRecord, ScanProgress
from xnat_uploader.gui import (
    state,
)
from xnat_uploader.gui.header_loader import HeaderLoader
from xnat_uploader.gui.models.tree_text import human_bytes
from xnat_uploader.gui.scan_controller import ScanController
from xnat_uploader.gui.widgets.dicom_tree_view import DicomTreeView, accept_drag, local_paths
from xnat_uploader.gui.widgets.header_view import HeaderView


def _area(parent: QWidget | None = None) -> QWidget:
    widget = QWidget(parent)
    layout = QVBoxLayout(widget)
    layout.setContentsMargins(0, 0, 0, 0)
    return widget


class MainWindow(QMainWindow):
    def __init__(self, *, scan_workers: int | None = None) -> None:
        super().__init__()
        self.setWindowTitle(self.tr("xnat-uploader {}").format(__version__))
        self.setAcceptDrops(True)
        self.scan_controller = ScanController(self, scan_workers=scan_workers)
        self.tree_model = self.scan_controller.model
        self.header_loader = HeaderLoader(self.scan_controller.runner, self)
        self._scan_started_at = 0.0

        self._build_toolbar()
        self._build_tabs()
        self._build_status_bar()
        self._connect()

        self.state = state.PreserveState("main_window", self)
        self.state.track("upload_splitter", self.upload_splitter)
        self.state.track("browse_splitter", self.browse_splitter)
        self.state.track("tree_columns", self.tree_view.header())
        if not self.state.restore():
            self.resize(1280, 860)
            self.upload_splitter.setSizes([520, 170, 170])
            self.browse_splitter.setSizes([700, 580])

    # ---- building ------------------------------------------------------------------------------

    def _build_toolbar(self) -> None:
        bar = QToolBar(self.tr("Main"), self)
        bar.setObjectName("main_toolbar")
        bar.setMovable(False)
        self.addToolBar(bar)
        self.open_folder_action = QAction(self.tr("Open Folder..."), self, shortcut=QKeySequence.StandardKey.Open)
        self.open_files_action = QAction(self.tr("Open Files..."), self)
        self.cancel_action = QAction(self.tr("Cancel Scan"), self, enabled=False)
        self.clear_action = QAction(self.tr("Clear"), self)
        self.clear_action.setToolTip(self.tr("Empty the tree (files on disk are not touched)"))
        for action in (self.open_folder_action, self.open_files_action, self.cancel_action, self.clear_action):
            bar.addAction(action)
        bar.addSeparator()
        self.server_area = QWidget(bar)  # issue 7: server selector and connection state
        self.server_area.setObjectName("server_area")
        QHBoxLayout(self.server_area).setContentsMargins(0, 0, 0, 0)
        bar.addWidget(self.server_area)

    def _build_tabs(self) -> None:
        self.tree_view = DicomTreeView()
        self.tree_view.setModel(self.tree_model)
        metrics = self.tree_view.fontMetrics()  # a patient's date column holds a range of dates
        self.tree_view.set_column_widths(
            [340, 70, 80, metrics.horizontalAdvance("2024-05-01 \u2013 2024-12-31") + 16, 80]
        )
        self.header_view = HeaderView()
        self.browse_splitter = QSplitter(Qt.Orientation.Horizontal)
        self.browse_splitter.setObjectName("browse_splitter")
        self.browse_splitter.addWidget(self.tree_view)
        self.browse_splitter.addWidget(self.header_view)
        self.form_area = _area()
        self.form_area.setObjectName("form_area")
        self.queue_area = _area()
        self.queue_area.setObjectName("queue_area")
        self.upload_splitter = QSplitter(Qt.Orientation.Vertical)
        self.upload_splitter.setObjectName("upload_splitter")
        for widget in (self.browse_splitter, self.form_area, self.queue_area):
            self.upload_splitter.addWidget(widget)
        self.upload_splitter.setStretchFactor(0, 3)
        self.upload_splitter.setChildrenCollapsible(False)

        self.prearchive_area = _area()  # issue 7 fills it
        self.prearchive_area.setObjectName("prearchive_area")
        placeholder = QLabel(self.tr("The prearchive of the selected server will be shown here."))
        placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.prearchive_area.layout().addWidget(placeholder)

        self.tabs = QTabWidget()
        self.tabs.addTab(self.upload_splitter, self.tr("Upload"))
        self.tabs.addTab(self.prearchive_area, self.tr("Prearchive"))
        self.setCentralWidget(self.tabs)

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 0)  # a scan does not know its total while it walks
        self.progress_bar.setMaximumWidth(160)
        self.progress_bar.setVisible(False)
        self.progress_label = QLabel()
        self.totals_label = QLabel(self.tr("Nothing loaded"))
        bar.addWidget(self.progress_bar)
        bar.addWidget(self.progress_label)
        bar.addPermanentWidget(self.totals_label)

    def _connect(self) -> None:
        self.open_folder_action.triggered.connect(self.open_folder)
        self.open_files_action.triggered.connect(self.open_files)
        self.cancel_action.triggered.connect(self.scan_controller.cancel)
        self.clear_action.triggered.connect(self.clear)
        self.tree_view.paths_dropped.connect(self.add_paths)
        self.tree_view.selectionModel().currentChanged.connect(self._on_current_changed)
        sc = self.scan_controller
        sc.scan_started.connect(self._on_scan_started)
        sc.scan_progressed.connect(self._on_scan_progress)
        sc.scan_ended.connect(self._on_scan_ended)
        sc.checks_finished.connect(self._on_checks_finished)
        sc.totals_changed.connect(self._update_totals)
        self.header_loader.loaded.connect(self.header_view.show_rows)
        self.header_loader.failed.connect(self._on_header_failed)

    # ---- input ---------------------------------------------------------------------------------

    def add_paths(self, paths: list[str]) -> None:
        """Scan folders, files, archives or DICOMDIRs into the tree (merged with what is there)."""
        if not paths:
            return
        state.set_last_folder(os.path.dirname(os.path.normpath(paths[0])))
        self.scan_controller.scan(paths)

    def open_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, self.tr("Open a DICOM folder"), state.last_folder())
        if folder:
            self.scan_controller.scan([folder])
            state.set_last_folder(folder)

    def open_files(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(
            self,
            self.tr("Open DICOM files, archives or a DICOMDIR"),
            state.last_folder(),
            self.tr("All files (*);;Archives (*.zip *.tar *.tar.gz *.tgz *.tar.bz2);;DICOMDIR (DICOMDIR)"),
        )
        if files:
            self.add_paths(files)

    def clear(self) -> None:
        self.scan_controller.clear()
        self.header_loader.forget()
        self.header_view.show_message(self.tr("Select an image, series or study to see its header."))

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802
        accept_drag(event)

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:  # noqa: N802
        accept_drag(event)

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        paths = local_paths(event.mimeData())
        if not paths:
            event.ignore()
            return
        event.acceptProposedAction()
        self.add_paths(paths)

    # ---- slots (GUI thread) --------------------------------------------------------------------

    def _on_scan_started(self, paths: list[str]) -> None:
        self._scan_started_at = time.monotonic()
        self.progress_bar.setVisible(True)
        self.cancel_action.setEnabled(True)
        self.progress_label.setText(self.tr("Scanning..."))

    def _on_scan_progress(self, progress: ScanProgress) -> None:
        self.progress_label.setText(self.scan_controller.progress_text(progress))

    def _on_scan_ended(self, outcome: str) -> None:
        if self.scan_controller.scanning:  # the next waiting scan has started
            return
        self.progress_bar.setVisible(False)
        self.cancel_action.setEnabled(False)
        seconds = time.monotonic() - self._scan_started_at
        texts = {
            "finished": self.tr("Scan finished in {:.1f} s; checking..."),
            "cancelled": self.tr("Scan cancelled after {:.1f} s; what was found is shown"),
            "failed": self.tr("Scan stopped after {:.1f} s; see Problems"),
        }
        self.progress_label.setText(texts.get(outcome, "{:.1f}").format(seconds))

    def _on_checks_finished(self, count: int) -> None:
        if not self.scan_controller.busy:
            text = self.tr("Pre-flight checks: 1 finding") if count == 1 else self.tr("Pre-flight checks: {} findings")
            self.progress_label.setText(text.format(count))
        self._update_totals()

    def _update_totals(self) -> None:
        index = self.scan_controller.index
        if not len(index) and not index.rejected:
            self.totals_label.setText(self.tr("Nothing loaded"))
            return
        self.totals_label.setText(
            self.tr("{} patients, {} studies, {} series, {} images, {}; {} problems").format(
                index.patient_count,
                index.study_count,
                index.series_count,
                f"{len(index):,}",
                human_bytes(index.bytes),
                self.tree_model.problems.count,
            )
        )

    def _on_current_changed(self, current, _previous) -> None:  # noqa: ANN001
        record = self.tree_model.first_instance(current)
        if record is None:
            self.header_loader.forget()
            self.header_view.show_message(self.tr("No DICOM header for this row."))
            return
        self.header_loader.request(record.path, record.member, self._title(record))

    def _title(self, rec: InstanceRecord) -> str:
        number = rec.series_number if rec.series_number is not None else ""
        series = f"{rec.modality} {number} {rec.series_description}".strip()
        return f"{series}, {os.path.basename(rec.member or rec.path)}"

    def _on_header_failed(self, title: str, message: str) -> None:
        self.header_view.show_message(self.tr("Cannot read the header of {}: {}").format(title, message))

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        self.state.save()
        self.header_loader.forget()
        self.scan_controller.shutdown()
        super().closeEvent(event)
