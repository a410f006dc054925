"""The Prearchive tab: the sessions of one server, their scans, and archive/move/rebuild/delete on a selection.

Every server call runs in a :class:`~xnat_uploader.gui.workers.Worker`; work functions return or yield plain
tuples that name the session (or the listing generation) they belong to, so answers that arrive late are
recognised. Results and errors of actions go to the table's Result column, never to message boxes.
"""

from __future__ import annotations

import time
from typing import Any

from PySide6.QtCore import QItemSelectionModel, Qt, QTimer, Slot
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from xnat_uploader.core.xnat import PrearchiveRef, PrearchiveSession, XnatClient
from xnat_uploader.core.xnat.transport import normalize_url
from xnat_uploader.gui.dialogs.prearchive_dialogs import ask_archive, ask_move, confirm
from xnat_uploader.gui.models.prearchive_model import COL_UPLOADED, PrearchiveFilter, PrearchiveModel, RefRole
from xnat_uploader.gui.prearchive_work import (
    AttachAfter,
    Op,
    archive_op,
    count_scans,
    delete_op,
    guarded,
    move_op,
    rebuild_op,
    run_actions,
)
from xnat_uploader.gui.widgets.prearchive_details import ScanDetails
from xnat_uploader.gui.workers import Worker, WorkerRunner

__all__ = ["PrearchivePanel", "ask_archive", "ask_move", "confirm"]

REFRESH_MS = 2500


class PrearchivePanel(QWidget):
    def __init__(self, controller, parent: QWidget | None = None) -> None:  # noqa: ANN001 - UploadController
        super().__init__(parent)
        self.controller = controller
        self.runner = WorkerRunner(self)
        self.model = PrearchiveModel(self)
        self.proxy = PrearchiveFilter(self)
        self.proxy.setSourceModel(self.model)
        self._generation = 0  # bumped when the server changes: older answers are dropped
        self._reveal: PrearchiveRef | None = None  # a session to select once the listing arrives
        self._listing = False
        self._again = False
        self._counting = False
        self._details_ref: PrearchiveRef | None = None
        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.setInterval(REFRESH_MS)
        self.timer.timeout.connect(self._auto_refresh)
        self._build()
        controller.servers_changed.connect(self._fill_servers)
        self._fill_servers()

    # -- building -------------------------------------------------------------------------------
    def _build(self) -> None:
        self.server = QComboBox()
        self.server.setMinimumContentsLength(24)
        self.project = QComboBox()
        self.project.addItem(self.tr("All projects"), "")
        self.filter = QLineEdit()
        self.filter.setPlaceholderText(self.tr("Filter (any column)"))
        self.filter.setClearButtonEnabled(True)
        self.refresh_button = QPushButton(self.tr("Refresh"))
        top = QHBoxLayout()
        for label, widget in ((self.tr("Server"), self.server), (self.tr("Project"), self.project)):
            top.addWidget(QLabel(label))
            top.addWidget(widget)
        top.addWidget(self.filter, 1)
        top.addWidget(self.refresh_button)

        self.buttons = {
            "archive": QPushButton(self.tr("Archive...")),
            "move": QPushButton(self.tr("Move...")),
            "rebuild": QPushButton(self.tr("Rebuild")),
            "delete": QPushButton(self.tr("Delete")),
        }
        self.buttons["delete"].setToolTip(self.tr("Delete the selected sessions and their files from the server"))
        actions = QHBoxLayout()
        for button in self.buttons.values():
            actions.addWidget(button)
        actions.addStretch(1)
        self.status = QLabel()
        actions.addWidget(self.status)

        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(COL_UPLOADED, Qt.SortOrder.DescendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        for col, width in enumerate((80, 100, 140, 120, 120, 90, 50, 50)):
            self.table.setColumnWidth(col, width)

        self.details = ScanDetails()
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(self.table)
        self.splitter.addWidget(self.details)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 1)

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(actions)
        layout.addWidget(self.splitter, 1)

        self.server.currentIndexChanged.connect(self._server_changed)
        self.project.currentIndexChanged.connect(lambda _i: self.proxy.set_project(self.project.currentData() or ""))
        self.filter.textChanged.connect(self.proxy.set_text)
        self.refresh_button.clicked.connect(lambda: self.refresh(drop_gone=True))
        self.buttons["archive"].clicked.connect(self.archive_selected)
        self.buttons["move"].clicked.connect(self.move_selected)
        self.buttons["rebuild"].clicked.connect(self.rebuild_selected)
        self.buttons["delete"].clicked.connect(self.delete_selected)
        self.table.selectionModel().selectionChanged.connect(self._selection_changed)
        self._selection_changed()

    # -- servers --------------------------------------------------------------------------------
    @Slot()
    def _fill_servers(self) -> None:
        current = self.server.currentData()
        self.server.blockSignals(True)
        self.server.clear()
        for choice in self.controller.servers():
            self.server.addItem(choice.name or f"{choice.user}@{choice.url}", (choice.url, choice.user))
        index = max(0, self.server.findData(current)) if current else 0
        self.server.setCurrentIndex(index if self.server.count() else -1)
        self.server.blockSignals(False)
        if self.server.currentData() != current:
            self._server_changed()

    def reveal(self, url: str, user: str, ref: PrearchiveRef) -> None:
        """Show this session (a queue row's link): choose its server, list, then select it."""
        self._reveal = ref
        index = self.server.findData((url, user))
        if index >= 0 and index != self.server.currentIndex():
            self.server.setCurrentIndex(index)  # lists again
        else:
            self.refresh(drop_gone=True)

    def _server_changed(self, _index: int = 0) -> None:
        self._generation += 1
        self._listing = self._again = self._counting = False
        self.model.clear()
        self._show_details(None)
        self.refresh()

    def _client(self) -> XnatClient | None:
        data = self.server.currentData()
        if not data:
            self.status.setText(self.tr("No server. Add one and sign in first."))
            return None
        client = self.controller.logins.client(*data)
        if client is None:
            self.status.setText(self.tr("Not signed in to {}.").format(data[0]))
        return client

    # -- listing --------------------------------------------------------------------------------
    def refresh(self, drop_gone: bool = False) -> None:
        """List the prearchive again (in a worker); with ``drop_gone`` forget rows earlier actions removed."""
        client = self._client()
        if client is None:
            return
        if self._listing:
            self._again = True
            return
        self._listing = True
        self.timer.stop()
        gen = self._generation
        self._start(guarded((gen, drop_gone), client.prearchive), "prearchive-list", finished=self._on_listed)

    @Slot()
    def _auto_refresh(self) -> None:
        if self.model.any_busy():
            self.refresh()

    @Slot(object)
    def _on_listed(self, result: tuple[tuple[int, bool], list[PrearchiveSession] | None, str]) -> None:
        (gen, drop_gone), sessions, error = result
        if gen != self._generation:
            return
        self._listing = False
        if sessions is None:
            self.status.setText(self.tr("Could not list the prearchive: {}").format(error))
        else:
            self.model.set_sessions(sessions, drop_gone=drop_gone)
            self.status.setText(
                self.tr("%n session(s), listed at {}", "", len(sessions)).format(time.strftime("%H:%M:%S"))
            )
            self._fill_projects()
            self._count_scans()
            if self._reveal is not None:
                self.select([self._reveal])
                self._reveal = None
            self._selection_changed()
        if self._again:
            self._again = False
            self.refresh()
        elif self.model.any_busy():
            self.timer.start()

    def _fill_projects(self) -> None:
        current = self.project.currentData() or ""
        self.project.blockSignals(True)
        while self.project.count() > 1:
            self.project.removeItem(1)
        for project in self.model.projects():
            self.project.addItem(project, project)
        self.project.setCurrentIndex(max(0, self.project.findData(current)))
        self.project.blockSignals(False)
        self.proxy.set_project(self.project.currentData() or "")

    def _count_scans(self) -> None:
        refs = self.model.needs_counts()
        client = self._client()
        if self._counting or not refs or client is None:
            return
        self._counting = True
        sessions = [self.model.row_data(r).session for r in refs]  # type: ignore[union-attr]
        work = count_scans(client, sessions, self._generation)
        self._start(work, "prearchive-counts", progressed=self._on_counted, finished=self._on_counts_done)

    @Slot(object)
    def _on_counted(self, event: tuple[int, PrearchiveRef, int, int, str]) -> None:
        gen, ref, scans, files, lastmod = event
        if gen == self._generation:
            self.model.set_counts(ref, scans, files, lastmod)

    @Slot(object)
    def _on_counts_done(self, gen: int) -> None:
        if gen == self._generation:
            self._counting = False

    # -- selection and details ------------------------------------------------------------------
    def selected_refs(self) -> list[PrearchiveRef]:
        rows = self.table.selectionModel().selectedRows()
        return [self.proxy.mapToSource(i).data(RefRole) for i in rows]

    def selected_sessions(self) -> list[PrearchiveSession]:
        return [self.model.row_data(r).session for r in self.selected_refs() if not self.model.row_data(r).gone]  # type: ignore[union-attr]

    def select(self, refs: list[PrearchiveRef]) -> None:
        """Select these sessions (tests, and a queue row's link to its prearchive entry)."""
        selection = self.table.selectionModel()
        selection.clearSelection()
        flags = QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows
        for ref in refs:
            row = self.model.row_of(ref)
            if row >= 0:
                index = self.proxy.mapFromSource(self.model.index(row, 0))
                if index.isValid():
                    selection.select(index, flags)
                    selection.setCurrentIndex(index, QItemSelectionModel.SelectionFlag.NoUpdate)

    @Slot()
    def _selection_changed(self, *_args: object) -> None:
        sessions = self.selected_sessions()
        for button in self.buttons.values():
            button.setEnabled(bool(sessions))
        self._show_details(sessions[0].ref if len(sessions) == 1 else None)

    def _show_details(self, ref: PrearchiveRef | None) -> None:
        if ref == self._details_ref:
            return
        self._details_ref = ref
        if ref is None:
            self.details.clear()
            return
        client = self._client()
        if client is None:
            return
        self.details.loading(ref.folder)

        self._start(guarded(ref, lambda: client.prearchive_scans(ref)), "prearchive-scans", finished=self._on_scans)

    @Slot(object)
    def _on_scans(self, result: tuple[PrearchiveRef, list | None, str]) -> None:
        ref, scans, error = result
        if ref != self._details_ref:
            return
        if scans is None:
            self.details.show_error(ref.folder, error)
            return
        self.details.show_scans(ref.folder, scans)
        files = sum(s.file_count or 0 for s in scans)
        row = self.model.row_data(ref)
        if row is not None:
            self.model.set_counts(ref, len(scans), files, row.session.lastmod)

    # -- actions --------------------------------------------------------------------------------
    def archive_selected(self) -> None:
        sessions = self.selected_sessions()
        if not sessions:
            return
        choice = ask_archive(self, sessions)
        if choice is None:
            return
        label = choice.label if len(sessions) == 1 else ""
        server = self.server.currentData()
        store, refresh = self.controller.store, self.controller.refresh_job
        attach = AttachAfter(store, normalize_url(server[0]), refresh) if server else None
        op = archive_op(choice.subject, label, choice.on_existing, self.tr("Archived as {}"), attach)
        self._act(sessions, self.tr("Archiving..."), op)

    def move_selected(self) -> None:
        sessions = self.selected_sessions()
        client = self._client()
        if not sessions or client is None:
            return

        def projects() -> list[str]:
            return sorted((p.id for p in client.projects()), key=str.lower)

        self._start(guarded(sessions, projects), "prearchive-projects", finished=self._on_projects)

    @Slot(object)
    def _on_projects(self, result: tuple[list[PrearchiveSession], list[str] | None, str]) -> None:
        sessions, projects, error = result
        if projects is None:
            for s in sessions:
                self.model.set_result(s.ref, self.tr("Could not list projects: {}").format(error), False)
            return
        here = {s.project for s in sessions}
        target = ask_move(self, [p for p in projects if not (len(here) == 1 and p in here)], len(sessions))
        if not target:
            return
        self._act(sessions, self.tr("Moving..."), move_op(target, self.tr("Moved to {}").format(target)))

    def rebuild_selected(self) -> None:
        self._act(self.selected_sessions(), self.tr("Rebuilding..."), rebuild_op(self.tr("Rebuild queued")))

    def delete_selected(self) -> None:
        sessions = self.selected_sessions()
        if not sessions:
            return
        names = ", ".join(f"{s.project}/{s.name or s.folder}" for s in sessions[:5])
        more = self.tr(" and %n more", "", len(sessions) - 5) if len(sessions) > 5 else ""
        text = self.tr("Delete %n session(s) and all their files from the server's prearchive?\n\n{}{}\n\n"
                       "This cannot be undone.", "", len(sessions)).format(names, more)  # fmt: skip
        if not confirm(self, text):
            return
        self._act(sessions, self.tr("Deleting..."), delete_op(self.tr("Deleted")))

    def _act(self, sessions: list[PrearchiveSession], running: str, op: Op) -> None:
        client = self._client()
        if not sessions or client is None:
            return
        for s in sessions:
            self.model.set_result(s.ref, running, None)
        work = run_actions(client, sessions, op, self._generation)
        self._start(work, "prearchive-action", progressed=self._on_action_result, finished=self._on_action_done)

    @Slot(object)
    def _on_action_result(self, event: tuple[int, PrearchiveRef, bool, str]) -> None:
        gen, ref, ok, text = event
        if gen == self._generation:
            self.model.set_result(ref, text, ok)

    @Slot(object)
    def _on_action_done(self, gen: int) -> None:
        if gen == self._generation:
            self.refresh()

    # -- plumbing -------------------------------------------------------------------------------
    def _start(self, fn: Any, name: str, *, finished: Any = None, progressed: Any = None) -> None:
        worker = Worker(fn, name=name, min_interval=0.0)  # min_interval 0: every per-session event arrives
        if finished is not None:
            worker.finished.connect(finished)
        if progressed is not None:
            worker.progressed.connect(progressed)
        worker.failed.connect(self._on_failed)
        self.runner.start(worker)

    @Slot(str, str)
    def _on_failed(self, message: str, _details: str) -> None:
        self.status.setText(message)

    def shutdown(self, timeout_ms: int = 5000) -> bool:
        """Stop the timer and every worker (call from the window's ``closeEvent``)."""
        self.timer.stop()
        return self.runner.shutdown(timeout_ms)
