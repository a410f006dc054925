"""Dialogs of the prearchive tab: archive (subject/label override, what to do if the session exists), move,
confirm."""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QVBoxLayout,
    QWidget,
)

from xnat_uploader.core.plan import label_problem
from xnat_uploader.core.upload_choices import OnExisting
from xnat_uploader.core.xnat import PrearchiveSession


@dataclass(frozen=True)
class ArchiveChoice:
    """What to archive with: empty subject/label keep the session's own; ``on_existing`` as in
    :func:`~xnat_uploader.core.prearchive_archive.archive_as_chosen`."""

    subject: str = ""
    label: str = ""
    on_existing: OnExisting = OnExisting.REFUSE


class ArchiveDialog(QDialog):
    """Subject and session label override (the label only for one session) and what to do when the archive
    already has a session of that label: the upload's three choices, each saying what XNAT does with it here
    (:attr:`OnExisting.archive_help`, as the item's tip and under the box)."""

    def __init__(self, sessions: list[PrearchiveSession], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(self.tr("Archive %n session(s)", "", len(sessions)))
        single = len(sessions) == 1
        self.subject = QLineEdit()
        self.subject.setPlaceholderText(sessions[0].subject if single else self.tr("(each session's own)"))
        self.label = QLineEdit()
        self.label.setEnabled(single)
        self.label.setPlaceholderText(
            (sessions[0].name or sessions[0].folder) if single else self.tr("(each session's own)")
        )
        self.on_existing = QComboBox()
        for choice in OnExisting:
            self.on_existing.addItem(choice.label, choice.value)
            self.on_existing.setItemData(self.on_existing.count() - 1, choice.archive_help, Qt.ItemDataRole.ToolTipRole)
        self.on_existing_help = QLabel()
        self.on_existing_help.setWordWrap(True)
        self.on_existing_help.setStyleSheet("color: #606060")
        self.on_existing_help.setMinimumWidth(420)
        self.on_existing.currentIndexChanged.connect(self._explain)
        self._explain()
        self.problem = QLabel()
        self.problem.setStyleSheet("color: #be0000")
        self.problem.setWordWrap(True)
        form = QFormLayout()
        form.addRow(self.tr("Subject"), self.subject)
        form.addRow(self.tr("Session label"), self.label)
        form.addRow(self.tr("If the session exists"), self.on_existing)
        form.addRow("", self.on_existing_help)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText(self.tr("Archive"))
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.problem)
        layout.addWidget(self.buttons)
        self.subject.textChanged.connect(self._check)
        self.label.textChanged.connect(self._check)
        self._check()

    def _explain(self) -> None:
        choice = self.existing_choice()
        self.on_existing_help.setText(choice.archive_help)
        self.on_existing.setToolTip(choice.archive_help)

    def _check(self) -> None:
        problems = []
        if self.subject.text().strip():
            problems.append(label_problem(self.subject.text().strip(), self.tr("Subject label")))
        if self.label.text().strip():
            problems.append(label_problem(self.label.text().strip(), self.tr("Session label")))
        text = " ".join(p for p in problems if p)
        self.problem.setText(text)
        self.problem.setVisible(bool(text))
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(not text)

    def choice(self) -> ArchiveChoice:
        return ArchiveChoice(self.subject.text().strip(), self.label.text().strip(), self.existing_choice())

    def existing_choice(self) -> OnExisting:
        return OnExisting(self.on_existing.currentData())


class MoveDialog(QDialog):
    def __init__(self, projects: list[str], count: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(self.tr("Move %n session(s)", "", count))
        self.project = QComboBox()
        self.project.addItems(projects)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText(self.tr("Move"))
        buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(bool(projects))
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form = QFormLayout(self)
        form.addRow(self.tr("To project"), self.project)
        form.addRow(buttons)


def ask_archive(parent: QWidget, sessions: list[PrearchiveSession]) -> ArchiveChoice | None:
    dialog = ArchiveDialog(sessions, parent)
    return dialog.choice() if dialog.exec() == QDialog.DialogCode.Accepted else None


def ask_move(parent: QWidget, projects: list[str], count: int) -> str | None:
    dialog = MoveDialog(projects, count, parent)
    return dialog.project.currentText() if dialog.exec() == QDialog.DialogCode.Accepted else None


def confirm(parent: QWidget, text: str) -> bool:
    answer = QMessageBox.warning(
        parent, parent.tr("Delete"), text,
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel, QMessageBox.StandardButton.Cancel,
    )  # fmt: skip
    return answer == QMessageBox.StandardButton.Yes
