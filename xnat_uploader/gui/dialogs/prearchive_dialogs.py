"""Dialogs of the prearchive tab: archive (subject/label override, overwrite choice), move, confirm."""

from __future__ import annotations

from dataclasses import dataclass

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
from xnat_uploader.core.xnat import ArchiveOverwrite, PrearchiveSession


@dataclass(frozen=True)
class ArchiveChoice:
    """What to archive with: empty subject/label keep the session's own."""

    subject: str = ""
    label: str = ""
    overwrite: ArchiveOverwrite | None = None


class ArchiveDialog(QDialog):
    """Subject and session label override (the label only for one session) and the overwrite choice."""

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
        self.overwrite = QComboBox()
        self.overwrite.addItem(self.tr("None: fail if the session exists"), None)
        self.overwrite.addItem(self.tr("Append: add new scans and files"), ArchiveOverwrite.APPEND)
        self.overwrite.addItem(
            self.tr("Delete: replace files already there; other scans stay"), ArchiveOverwrite.DELETE
        )
        self.problem = QLabel()
        self.problem.setStyleSheet("color: #be0000")
        self.problem.setWordWrap(True)
        form = QFormLayout()
        form.addRow(self.tr("Subject"), self.subject)
        form.addRow(self.tr("Session label"), self.label)
        form.addRow(self.tr("Overwrite"), self.overwrite)
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
        return ArchiveChoice(self.subject.text().strip(), self.label.text().strip(), self.overwrite.currentData())


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
