"""The target form: where the selected studies go (server, project, subject, session) and how.

Reads the DICOM selection through :meth:`TargetForm.set_index`. Defaults and every check come from one place,
:func:`~xnat_uploader.core.plan.plan_jobs` (through :meth:`UploadController.plan`): XNAT's label rule at once,
and clashes with the archive, the prearchive and the queue once the project's listings arrive. Upload stays
disabled while anything is wrong or still being checked. Server listings run on worker threads (the
controller); this widget does no I/O. The other files of the dropped folders (:meth:`TargetForm.set_exam_items`)
are offered as resources in a table; the ticked ones go to :func:`~xnat_uploader.core.exam.assign_exam_items`.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from xnat_uploader.core.attach import OPT_RESOURCE_OVERWRITE
from xnat_uploader.core.dicom.index import DicomIndex
from xnat_uploader.core.exam import ExamItem, assign_exam_items
from xnat_uploader.core.plan import Plan, Target
from xnat_uploader.core.queue.store import JobRow
from xnat_uploader.core.settings import Defaults
from xnat_uploader.gui.upload_controller import ProjectListing, UploadController, UploadRequest
from xnat_uploader.gui.widgets.resource_table import ResourceTable
from xnat_uploader.gui.widgets.study_table import StudyTable
from xnat_uploader.gui.widgets.upload_options import UploadOptions

RED_STYLE = "color: #b00000"
WARN_STYLE = "color: #9a5b00"  # worth knowing before the upload, not stopping it
BAD_FIELD = "border: 1px solid #b00000; background: #ffecec"  # a field whose value is refused


class TargetForm(QWidget):
    upload_requested = Signal(object)  # UploadRequest

    def __init__(self, controller: UploadController, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self._index: DicomIndex | None = None
        self._selected: set[str] | None = None
        self._studies: frozenset[str] = frozenset()
        self._unplaceable = False
        self._listing: ProjectListing | None = None
        self._listing_error = ""
        self._subject_edited = self._session_edited = False
        self._per_study: dict[str, tuple[str, str]] = {}
        self._submitted: tuple[object, ...] | None = None
        self._last_project = ""
        self._blocked = ""
        self.plan_result: Plan | None = None

        self.server_combo = QComboBox(self)
        self.project_combo = QComboBox(self)
        self.project_combo.setMinimumContentsLength(12)
        self.refresh_button = QToolButton(self)
        self.refresh_button.setText("\u21bb")
        self.refresh_button.setToolTip(self.tr("Read the projects and sessions from the server again"))
        self.subject_combo = QComboBox(self)
        self.subject_combo.setEditable(True)
        self.subject_combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.subject_combo.setMinimumContentsLength(12)
        self.session_edit = QLineEdit(self)
        self.session_edit.setMinimumWidth(140)
        self.reason_label = QLabel(self)
        self.reason_label.setStyleSheet(RED_STYLE)
        self.reason_label.setWordWrap(True)
        self.warning_label = QLabel(self)  # e.g. the series the project's series import filter will drop
        self.warning_label.setStyleSheet(WARN_STYLE)
        self.warning_label.setWordWrap(True)
        self.warning_label.hide()
        self.status_label = QLabel(self)
        self.status_label.setWordWrap(True)

        self.transport_group = QButtonGroup(self)
        self.transport_buttons: dict[str, QRadioButton] = {}
        names = {"zip": self.tr("DICOM-zip"), "gradual": self.tr("gradual"), "cstore": self.tr("C-STORE")}
        for mode, available in controller.transports().items():
            button = QRadioButton(names[mode], self)
            button.setEnabled(available)
            if not available:
                button.setToolTip(self.tr("Not available in this version yet."))
            elif mode == "cstore":
                button.setToolTip(self.tr("DICOM network transfer to XNAT's receiver; not encrypted"))
            self.transport_group.addButton(button)
            self.transport_buttons[mode] = button
        self.transport_buttons["zip"].setChecked(True)

        self.advanced_button = QToolButton(self)
        self.advanced_button.setText(self.tr("Advanced"))
        self.advanced_button.setCheckable(True)
        self.advanced_button.setArrowType(Qt.ArrowType.RightArrow)
        self.advanced_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.advanced_box = UploadOptions(self)
        self.advanced_box.hide()

        self.study_table = StudyTable(self)
        self.study_table.hide()
        self.resource_table = ResourceTable(self)
        self.upload_button = QPushButton(self.tr("Upload"), self)
        self.upload_button.setDefault(True)

        grid = QGridLayout()
        grid.addWidget(QLabel(self.tr("<b>Target</b>"), self), 0, 0)
        grid.addWidget(QLabel(self.tr("Server"), self), 0, 1)
        grid.addWidget(self.server_combo, 0, 2)
        grid.addWidget(QLabel(self.tr("Project"), self), 0, 3)
        project_row = QHBoxLayout()
        project_row.addWidget(self.project_combo, 1)
        project_row.addWidget(self.refresh_button)
        grid.addLayout(project_row, 0, 4)
        self.subject_label = QLabel(self.tr("Subject"), self)
        self.session_label = QLabel(self.tr("Session"), self)
        grid.addWidget(self.subject_label, 0, 5)
        grid.addWidget(self.subject_combo, 0, 6)
        grid.addWidget(self.session_label, 0, 7)
        grid.addWidget(self.session_edit, 0, 8)
        messages = QVBoxLayout()
        messages.addWidget(self.reason_label)
        messages.addWidget(self.warning_label)
        grid.addLayout(messages, 1, 1, 1, 8)
        transport_row = QHBoxLayout()
        transport_row.addWidget(QLabel(self.tr("Transport"), self))
        for button in self.transport_buttons.values():
            transport_row.addWidget(button)
        transport_row.addSpacing(16)
        transport_row.addWidget(self.advanced_button)
        transport_row.addStretch(1)
        transport_row.addWidget(self.status_label, 2)
        transport_row.addWidget(self.upload_button)
        grid.addLayout(transport_row, 2, 1, 1, 8)
        grid.setColumnStretch(6, 1)
        grid.setColumnStretch(8, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(grid)
        layout.addWidget(self.advanced_box)
        layout.addWidget(self.study_table)
        layout.addWidget(self.resource_table)

        self.server_combo.currentIndexChanged.connect(lambda _i: self._load_projects())
        self.project_combo.currentIndexChanged.connect(lambda _i: self._load_project())
        self.refresh_button.clicked.connect(self._load_projects)
        self.subject_combo.lineEdit().textEdited.connect(self._on_subject_edited)
        self.subject_combo.activated.connect(lambda _i: self._on_subject_edited(self.subject_combo.currentText()))
        self.session_edit.textEdited.connect(self._on_session_edited)
        self.transport_group.buttonToggled.connect(self._on_transport)
        self.advanced_button.toggled.connect(self._on_advanced)
        self.advanced_box.changed.connect(self.refresh)
        self.study_table.edited.connect(self._on_study_edited)
        self.resource_table.changed.connect(self.refresh)
        self.upload_button.clicked.connect(self._upload)
        controller.servers_changed.connect(self._fill_servers)
        controller.projects_loaded.connect(self._on_projects)
        controller.project_loaded.connect(self._on_project_listing)
        controller.listing_failed.connect(self._on_listing_failed)
        controller.jobs_changed.connect(self.refresh)
        controller.job_updated.connect(self._on_job_updated)
        self.apply_defaults(controller.logins.settings.defaults)
        self._fill_servers()

    def apply_defaults(self, defaults: Defaults) -> None:
        """Take the saved defaults (transport, workers, destination, overwrite, deflate): at start and after
        the Settings dialog's OK."""
        self.advanced_box.apply_defaults(defaults)
        button = self.transport_buttons.get(defaults.transport)
        if button is not None and button.isEnabled() and not button.isChecked():
            button.setChecked(True)  # -> _on_transport -> set_mode
        else:
            self.advanced_box.set_mode(self.mode())

    # -- the selection (called by the main window) ------------------------------------------------------
    def set_index(self, index: DicomIndex | None, selected_series: set[str] | None = None) -> None:
        """The DICOM index and the ticked series (``None``: all). Call again whenever either changes."""
        self._index, self._selected = index, (set(selected_series) if selected_series is not None else None)
        wanted = [s.uid for s in (index.iter_studies() if index else ()) if self._wants(s)]
        studies = frozenset(uid for uid in wanted if uid)  # the studies that will be sent
        self._unplaceable = "" in wanted  # files without a StudyInstanceUID: the plan leaves them out
        if studies != self._studies:
            self._studies = studies
            self._subject_edited = self._session_edited = False
            self._per_study = {k: v for k, v in self._per_study.items() if k in studies}
            self._submitted = None
        self.refresh()

    def set_exam_items(self, items: list[ExamItem]) -> None:
        """The non-DICOM folders and files beside the DICOM (the scan controller's ``exam_items_changed``)."""
        self.resource_table.set_items(items)

    def set_blocked(self, reason: str) -> None:
        """Hold Upload with ``reason`` shown (e.g. while a scan runs); ``""`` lifts it."""
        self._blocked = reason
        self.refresh()

    def _wants(self, study: object) -> bool:
        return self._selected is None or any(s.uid in self._selected for s in study.series)  # type: ignore[attr-defined]

    # -- current values -----------------------------------------------------------------------------
    def server(self) -> tuple[str, str] | None:
        data = self.server_combo.currentData()
        return tuple(data) if data else None  # type: ignore[return-value]

    def project(self) -> str:
        return self.project_combo.currentText() if self.project_combo.isEnabled() else ""

    def mode(self) -> str:
        return next(m for m, b in self.transport_buttons.items() if b.isChecked())

    def options(self) -> dict[str, object]:
        server = self.server()
        options = self.advanced_box.options(server[0] if server else "")
        if self.resource_table.chosen():
            options[OPT_RESOURCE_OVERWRITE] = self.resource_table.overwrite()
        return options

    def target(self) -> Target:
        multi = len(self._studies) > 1
        return Target(
            project=self.project(),
            subject="" if multi or not self._subject_edited else self.subject_combo.currentText().strip(),
            session="" if multi or not self._session_edited else self.session_edit.text().strip(),
            mode=self.mode(),
            overwrite=self.advanced_box.overwrite(),
            per_study=dict(self._per_study) if multi else {},
        )

    # -- checking -----------------------------------------------------------------------------------
    @Slot()
    def refresh(self) -> None:
        """Plan again from the current values and show defaults, problems and the Upload button's state."""
        server, project = self.server(), self.project()
        multi = len(self._studies) > 1
        for widget in (self.subject_label, self.subject_combo, self.session_label, self.session_edit):
            widget.setVisible(not multi)
        self.study_table.setVisible(multi)
        if self._index is None or not (self._studies or self._unplaceable):
            self.plan_result = None
            self.warning_label.hide()
            return self._show([self.tr("Nothing selected: open a folder and tick the series to upload.")], False)
        submitted = self._submitted is not None and self._submitted == self._submission_key()
        plan = self.controller.plan(
            self._index, self.target(), self._listing.existing if self._listing else None, self._selected,
            server[0] if server else "",
        )  # fmt: skip
        self.plan_result = plan
        if multi and not submitted:  # after Upload, keep showing the labels that were queued
            described = {s.uid: _describe(s) for s in self._index.iter_studies() if s.uid in self._studies}
            self.study_table.show_jobs(plan.jobs, described, self._per_study)
        elif plan.jobs and not submitted:  # after Upload, keep showing the labels that were queued
            job = plan.jobs[0]
            if not self._subject_edited and self.subject_combo.currentText() != job.subject:
                self.subject_combo.setEditText(job.subject)
            if not self._session_edited and self.session_edit.text() != job.session_label:
                self.session_edit.setText(job.session_label)
        problems = list(plan.problems)
        if self.resource_table.items:
            problems += self.resource_table.problems() + assign_exam_items(plan, self.resource_table.chosen())
            self.resource_table.set_destination(str(self.options().get("destination", "")))
        if server is None:
            problems.insert(0, self.tr("Choose a server (sign in first)."))
        if self._blocked:
            problems.insert(0, self._blocked)
        option_problem = self.advanced_box.problem()
        if option_problem:
            problems.append(option_problem)
        if self._listing_error:
            problems.insert(0, self._listing_error)
        job_problems = [p for j in plan.jobs for p in j.problems] if not multi else []
        subject_bad = any(p.startswith("Subject label") for p in job_problems)
        self.subject_combo.setStyleSheet(BAD_FIELD if subject_bad else "")
        session_bad = any(not p.startswith("Subject label") for p in job_problems)
        self.session_edit.setStyleSheet(BAD_FIELD if session_bad else "")
        if not multi:
            problems += job_problems
        elif any(not j.ok for j in plan.jobs):
            problems.append(self.tr("Some studies have problems: see the table."))
        warnings = [f"{j.session_label}: {w}" if multi else w for j in plan.jobs for w in j.warnings]
        if plan.left_out and plan.jobs:
            warnings.append(
                self.tr(
                    "{} selected file(s) will be left out: they have no StudyInstanceUID, which XNAT needs to place "
                    "them in a session. The tree lists them under Problems."
                ).format(len(plan.left_out))
            )
        self.warning_label.setText("\n".join(dict.fromkeys(warnings)))
        self.warning_label.setToolTip("\n".join(i.record.display_path for i in plan.left_out[:30]))
        self.warning_label.setVisible(bool(warnings) and not submitted)
        checking = bool(project) and not self._listing_error and self._listing is None
        self._show([] if submitted else problems, checking, len(plan.jobs), submitted)
        return None

    def _show(self, problems: list[str], checking: bool, n: int = 0, submitted: bool = False) -> None:
        self.reason_label.setText("\n".join(dict.fromkeys(problems)))
        self.reason_label.setVisible(bool(problems))
        if checking:
            self.status_label.setStyleSheet("color: #606060")
            self.status_label.setText(self.tr("Checking existing sessions in {}\u2026").format(self.project()))
        elif submitted:
            self.status_label.setStyleSheet("color: #007000")
            self.status_label.setText(self.tr("Added to the upload queue."))
        else:
            self.status_label.setText("")
        self.upload_button.setText(self.tr("Upload 1 session") if n == 1 else self.tr("Upload {} sessions").format(n))
        self.upload_button.setEnabled(not problems and not checking and not submitted and n > 0)

    def _submission_key(self) -> tuple[object, ...]:
        resources = (self.resource_table.chosen(), self.resource_table.overwrite())
        return (self.server(), self.project(), self._studies, repr(self.target()), repr(resources))

    # -- slots --------------------------------------------------------------------------------------
    def _fill_servers(self) -> None:
        current = self.server()
        self.server_combo.blockSignals(True)
        self.server_combo.clear()
        for choice in self.controller.servers():
            self.server_combo.addItem(f"{choice.name} ({choice.user})", choice.key)
            self.server_combo.setItemData(self.server_combo.count() - 1, choice.url, Qt.ItemDataRole.ToolTipRole)
        saved = self.controller.logins.settings.current()
        wanted = current or ((saved.url, saved.user) if saved else None)
        keys = [tuple(self.server_combo.itemData(i)) for i in range(self.server_combo.count())]
        self.server_combo.setCurrentIndex(keys.index(wanted) if wanted in keys else (0 if keys else -1))
        self.server_combo.blockSignals(False)
        if self.server() != current:
            self._load_projects()

    def _load_projects(self) -> None:
        self._last_project = self.project() or self._last_project
        self._listing, self._listing_error = None, ""
        self.project_combo.blockSignals(True)
        self.project_combo.clear()
        self.project_combo.addItem(self.tr("Loading projects\u2026"))
        self.project_combo.setEnabled(False)
        self.project_combo.blockSignals(False)
        server = self.server()
        if server is not None:
            self.advanced_box.set_server(server[0], self.controller.logins.settings.find(server[0]))
            self.controller.load_projects(*server)
        self.refresh()

    @Slot(str, str, object)
    def _on_projects(self, url: str, user: str, projects: list[str]) -> None:
        if (url, user) != self.server():
            return
        previous = self._last_project
        self.project_combo.blockSignals(True)
        self.project_combo.clear()
        self.project_combo.addItems(projects)
        self.project_combo.setEnabled(bool(projects))
        if not projects:
            self.project_combo.addItem(self.tr("(no project you may upload to)"))
        elif previous in projects:
            self.project_combo.setCurrentText(previous)
        self.project_combo.blockSignals(False)
        self._load_project()

    def _load_project(self) -> None:
        self._listing, self._listing_error = None, ""
        server, project = self.server(), self.project()
        if server is not None and project:
            self.controller.load_project(*server, project)
        self.refresh()

    @Slot(object)
    def _on_project_listing(self, listing: ProjectListing) -> None:
        if (listing.url, listing.user) != self.server() or listing.project != self.project():
            return  # an answer to an earlier choice
        self._listing = listing
        text = self.subject_combo.currentText()
        self.subject_combo.blockSignals(True)
        self.subject_combo.clear()
        self.subject_combo.addItems(list(listing.subjects))
        self.subject_combo.setEditText(text)
        self.subject_combo.blockSignals(False)
        self.study_table.set_subjects(list(listing.subjects))
        self.refresh()

    @Slot(str, str, str, str, str)
    def _on_listing_failed(self, url: str, user: str, project: str, message: str, hint: str) -> None:
        if (url, user) != self.server() or (project and project != self.project()):
            return
        self._listing_error = f"{message} {hint}".strip()
        if not project:
            self.project_combo.setItemText(0, self.tr("(could not list projects)"))
        self.refresh()

    @Slot(object)
    def _on_job_updated(self, row: JobRow) -> None:
        """An upload into this project ended: what the server holds changed, so read it again."""
        server = self.server()
        if row.state.finished and server and row.spec.server_url == server[0] and row.spec.project == self.project():
            self._load_project()

    def _on_subject_edited(self, _text: str) -> None:
        self._subject_edited = True
        self.refresh()

    def _on_session_edited(self, _text: str) -> None:
        self._session_edited = True
        self.refresh()

    def _on_study_edited(self, uid: str, subject: str, session: str) -> None:
        self._per_study[uid] = (subject, session)
        self.refresh()

    def _on_transport(self, _button: object, checked: bool) -> None:
        if checked:
            self.advanced_box.set_mode(self.mode())
            self.refresh()

    def _on_advanced(self, shown: bool) -> None:
        self.advanced_box.setVisible(shown)
        self.advanced_button.setArrowType(Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow)

    def _upload(self) -> None:
        self.refresh()
        server, plan = self.server(), self.plan_result
        if server is None or plan is None or not self.upload_button.isEnabled():
            return
        request = UploadRequest(server[0], server[1], plan, self.mode(), self.options())
        self._submitted = self._submission_key()
        self.upload_requested.emit(request)
        self.refresh()


def _describe(study: object) -> str:
    patient = study.parent  # type: ignore[attr-defined]
    date = study.date  # type: ignore[attr-defined]
    when = f"{date[:4]}-{date[4:6]}-{date[6:]}" if len(date) == 8 else date
    return " ".join(x for x in (patient.patient_id, when, study.description) if x)  # type: ignore[attr-defined]
