"""The "Import from Server Path" dialog: which signed-in server and project, the path on the server's disk,
optional labels, whether to keep the files; then each status of the import as the server reports it.

No I/O here: projects come from the controller's listing workers, the import from an :class:`InboxRunner`.
"""

from __future__ import annotations

import time

from PySide6.QtCore import Slot
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from xnat_uploader.core.plan import label_problem
from xnat_uploader.core.xnat import InboxStatus
from xnat_uploader.gui.inbox_runner import InboxOutcome, InboxRequest, InboxRunner
from xnat_uploader.gui.upload_controller import UploadController

RED, GREEN, GREY, AMBER = "color: #b00000", "color: #007000", "color: #606060", "color: #8a5a00"


class InboxDialog(QDialog):
    """Without a ``runner`` the dialog makes its own (and waits for its thread when it closes); the window's
    runner (:func:`~xnat_uploader.gui.inbox_action.install_inbox_action`) outlives the dialog instead."""

    def __init__(
        self,
        controller: UploadController,
        parent: QWidget | None = None,
        interval: float = 2.0,
        runner: InboxRunner | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle(self.tr("Import from Server Path"))
        self.controller = controller
        self._own_runner = runner is None
        self.runner = runner if runner is not None else InboxRunner(controller, self, interval)
        self._projects_error = ""

        self.server_combo = QComboBox()
        self.project_combo = QComboBox()
        self.project_combo.setMinimumContentsLength(14)
        self.path_edit = QLineEdit()
        self.path_edit.setPlaceholderText(self.tr("e.g. /data/xnat/inbox/PROJECT/exam01"))
        self.path_edit.setMinimumWidth(380)
        self.subject_edit = QLineEdit()
        self.subject_edit.setPlaceholderText(self.tr("(from the data)"))
        self.session_edit = QLineEdit()
        self.session_edit.setPlaceholderText(self.tr("(from the data)"))
        self.keep_check = QCheckBox(self.tr("Keep the files on the server after the import"))
        self.keep_check.setChecked(True)  # XNAT deletes them by default; deleting must be a choice
        help_text = QLabel(self.tr("A folder or archive that is already on the XNAT server's disk, inside its "
                                   "inbox folder, in a folder named after the project."))  # fmt: skip
        help_text.setWordWrap(True)
        help_text.setStyleSheet(GREY)
        self.problem_label = QLabel()
        self.problem_label.setWordWrap(True)
        self.problem_label.setStyleSheet(RED)
        self.status_list = QPlainTextEdit()
        self.status_list.setReadOnly(True)
        self.status_list.setMaximumBlockCount(200)
        self.status_list.setFixedHeight(110)
        self.status_list.setPlaceholderText(self.tr("The import's status on the server is shown here."))
        self.result_label = QLabel()
        self.result_label.setWordWrap(True)

        form = QFormLayout()
        form.addRow(self.tr("Server"), self.server_combo)
        form.addRow(self.tr("Project"), self.project_combo)
        form.addRow(self.tr("Path on the server"), self.path_edit)
        form.addRow("", help_text)
        form.addRow(self.tr("Subject"), self.subject_edit)
        form.addRow(self.tr("Session"), self.session_edit)
        form.addRow("", self.keep_check)
        self.buttons = QDialogButtonBox()
        role = QDialogButtonBox.ButtonRole.ActionRole  # not AcceptRole: Import keeps the dialog open
        self.import_button: QPushButton = self.buttons.addButton(self.tr("Import"), role)
        self.import_button.setDefault(True)
        self.close_button = self.buttons.addButton(QDialogButtonBox.StandardButton.Close)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.problem_label)
        layout.addWidget(self.status_list)
        layout.addWidget(self.result_label)
        layout.addWidget(self.buttons)

        self.import_button.clicked.connect(self.start)
        self.close_button.clicked.connect(self._close_or_cancel)
        self.server_combo.currentIndexChanged.connect(lambda _i: self._load_projects())
        for edit in (self.path_edit, self.subject_edit, self.session_edit):
            edit.textChanged.connect(self._check)
        self.project_combo.currentIndexChanged.connect(lambda _i: self._check())
        controller.projects_loaded.connect(self._on_projects)
        controller.listing_failed.connect(self._on_listing_failed)
        self.runner.status_changed.connect(self._on_status)
        self.runner.finished.connect(self._on_finished)
        self.runner.failed.connect(self._on_failed)
        self._fill_servers()

    # -- values -------------------------------------------------------------------------------------
    def server(self) -> tuple[str, str] | None:
        data = self.server_combo.currentData()
        return tuple(data) if data else None  # type: ignore[return-value]

    def request(self) -> InboxRequest | None:
        server = self.server()
        if server is None or not self.project_combo.isEnabled():
            return None
        return InboxRequest(
            server[0], server[1], self.project_combo.currentText(), self.path_edit.text().strip(),
            self.subject_edit.text().strip(), self.session_edit.text().strip(), self.keep_check.isChecked(),
        )  # fmt: skip

    def problems(self) -> list[str]:
        if self.server() is None:
            return [self.tr("Sign in to a server first (Sign in... in the toolbar): the import runs on the server.")]
        out = [self._projects_error] if self._projects_error else []
        if not self.path_edit.text().strip():
            out.append(self.tr("Give the path of a folder or archive on the server."))
        for edit, what in ((self.subject_edit, "Subject label"), (self.session_edit, "Session label")):
            text = edit.text().strip()
            problem = label_problem(text, self.tr(what)) if text else None
            if problem:
                out.append(problem)
        return out

    # -- actions ------------------------------------------------------------------------------------
    def start(self) -> None:
        request = self.request()
        if request is None or self.problems() or self.runner.running:
            return
        self.status_list.clear()
        self._show_result(self.tr("Starting the import of {}\u2026").format(request.path), GREY)
        if self.runner.start(request):
            self._set_running(True)

    def cancel_following(self) -> None:
        """Stop following the import (it goes on on the server); the dialog is free again at once."""
        if not self.runner.running:
            return
        self.runner.cancel()
        self._set_running(False)
        self._show_result(self.tr("Stopped following. The import goes on on the server; look for the session in "
                                  "the project's prearchive."), AMBER)  # fmt: skip

    def _close_or_cancel(self) -> None:
        if self.runner.running:
            self.cancel_following()
        else:
            self.reject()

    def done(self, result: int) -> None:  # Esc, Close, or the window closing
        self.runner.cancel()  # a cancelled import thread ends at its next check (at once while it waits to poll)
        if self._own_runner:
            self.runner.shutdown()
        super().done(result)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        self.runner.cancel()
        super().closeEvent(event)

    # -- slots --------------------------------------------------------------------------------------
    def _fill_servers(self) -> None:
        self.server_combo.blockSignals(True)
        self.server_combo.clear()
        for choice in self.controller.servers():
            if self.controller.signed_in(choice.url, choice.user):
                self.server_combo.addItem(f"{choice.name} ({choice.user})", choice.key)
        saved = self.controller.logins.settings.current()
        keys = [tuple(self.server_combo.itemData(i)) for i in range(self.server_combo.count())]
        wanted = (saved.url, saved.user) if saved else None
        self.server_combo.setCurrentIndex(keys.index(wanted) if wanted in keys else (0 if keys else -1))
        self.server_combo.setEnabled(bool(keys))
        self.server_combo.blockSignals(False)
        self._load_projects()

    def _load_projects(self) -> None:
        self._projects_error = ""
        self.project_combo.clear()
        self.project_combo.setEnabled(False)
        server = self.server()
        if server is not None:
            self.project_combo.addItem(self.tr("Loading projects\u2026"))
            self.controller.load_projects(*server)
        self._check()

    @Slot(str, str, object)
    def _on_projects(self, url: str, user: str, projects: list[str]) -> None:
        if (url, user) != self.server():
            return
        self.project_combo.blockSignals(True)
        self.project_combo.clear()
        self.project_combo.addItems(projects)
        self.project_combo.setEnabled(bool(projects))
        if not projects:
            self.project_combo.addItem(self.tr("(no project you may import into)"))
        self.project_combo.blockSignals(False)
        self._check()

    @Slot(str, str, str, str, str)
    def _on_listing_failed(self, url: str, user: str, project: str, message: str, hint: str) -> None:
        if (url, user) == self.server() and not project:
            self._projects_error = f"{message} {hint}".strip()
            self.project_combo.setItemText(0, self.tr("(could not list projects)"))
            self._check()

    def _check(self) -> None:
        problems = self.problems()
        shown = [p for p in problems if self.path_edit.text().strip() or "path" not in p]  # no nagging at first
        self.problem_label.setText("\n".join(shown))
        self.problem_label.setVisible(bool(shown))
        self.import_button.setEnabled(not problems and not self.runner.running and self.project_combo.isEnabled())

    def _set_running(self, running: bool) -> None:
        for widget in (self.server_combo, self.project_combo, self.path_edit, self.subject_edit, self.session_edit,
                       self.keep_check):  # fmt: skip
            widget.setEnabled(not running)
        if not running:
            self.server_combo.setEnabled(self.server_combo.count() > 0)
            self.project_combo.setEnabled(self.project_combo.count() > 0 and self.server() is not None)
        self.close_button.setText(self.tr("Cancel") if running else self.tr("Close"))
        self._check()

    @Slot(object)
    def _on_status(self, status: InboxStatus) -> None:
        self.status_list.appendPlainText(f"{time.strftime('%H:%M:%S')}  {status.status}")
        self._show_result(self.tr("Import {}: {}\u2026").format(status.id, status.status), GREY)

    @Slot(object)
    def _on_finished(self, outcome: InboxOutcome) -> None:
        self._set_running(False)
        status = outcome.status
        if status is None:
            self._show_result(outcome.note, AMBER)
        elif status.failed:
            reason = status.resolution or self.tr("XNAT gave no reason.")
            self._show_result(self.tr("Failed: {}").format(reason), RED)
        else:
            said = status.resolution or self.tr("Look for the session in the project's prearchive.")
            self._show_result(self.tr("Completed. {}").format(said), GREEN)

    @Slot(str, str)
    def _on_failed(self, message: str, hint: str) -> None:
        self._set_running(False)
        self._show_result(f"{message} {hint}".strip(), RED)

    def _show_result(self, text: str, style: str) -> None:
        self.result_label.setStyleSheet(style)
        self.result_label.setText(text)
