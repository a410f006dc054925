"""The upload queue as a table: one row per job, live progress from the scheduler's events.

Fed with plain data only (:class:`JobRow` from the queue store, :class:`TransferProgress` events) by GUI-thread
slots; a progress event changes its own row only (``dataChanged`` over that row's live columns).
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QColor

from xnat_uploader.core.queue.claims import Owner
from xnat_uploader.core.queue.store import JobRow, JobState
from xnat_uploader.core.transfer.base import TransferProgress

ProgressRole = Qt.ItemDataRole.UserRole + 1  # int 0-100 for the progress-bar delegate, -1 for none
JobIdRole = Qt.ItemDataRole.UserRole + 2
StateRole = Qt.ItemDataRole.UserRole + 3  # the JobState value

COL_SESSION, COL_PROJECT, COL_STATE, COL_PROGRESS, COL_BYTES, COL_FILES, COL_RATE, COL_ETA, COL_RESULT = range(9)
GREEN = QColor(0, 128, 0)
RED = QColor(190, 0, 0)
GREY = QColor(110, 110, 110)

AnyIndex = QModelIndex | QPersistentModelIndex


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class QueueModel(QAbstractTableModel):
    """Rows in job-id order; fed by set_jobs, update_job, remove_job and update_progress (GUI-thread slots).

    ``owned_elsewhere(row)`` names the other live copy of the program sending a job (its row then says so);
    the default: none. It is asked when a row arrives, not on every paint (it looks at the owner's process):
    a row whose owner stops changes soon after anyway, when this copy takes the job over.
    """

    def __init__(self, parent: object = None, owned_elsewhere: Callable[[JobRow], Owner | None] | None = None) -> None:
        super().__init__(parent)  # type: ignore[arg-type]
        self.owned_elsewhere = owned_elsewhere or (lambda _row: None)
        self._elsewhere: set[int] = set()  # ids of the rows another copy is sending
        self._rows: list[JobRow] = []
        self._where: dict[int, int] = {}
        self._progress: dict[int, TransferProgress] = {}
        self._headers = [
            self.tr("Session"), self.tr("Project"), self.tr("State"), self.tr("Progress"), self.tr("Sent"),
            self.tr("Files"), self.tr("Rate"), self.tr("ETA"), self.tr("Result"),
        ]  # fmt: skip
        self._states = {
            JobState.QUEUED: self.tr("Queued"), JobState.RUNNING: self.tr("Sending"),
            JobState.PAUSED: self.tr("Paused"), JobState.COMMITTING: self.tr("Committing"),
            JobState.VERIFYING: self.tr("Verifying"), JobState.DONE: self.tr("Done"),
            JobState.FAILED: self.tr("Failed"), JobState.CANCELLED: self.tr("Cancelled"),
        }  # fmt: skip
        self._phases = {
            "sending": self.tr("Sending"), "retrying": self.tr("Retrying"), "committing": self.tr("Committing"),
            "verifying": self.tr("Verifying"), "attaching": self.tr("Attaching resources"),
            # XNAT builds and archives after the commit (or a Direct-Archive): the app watches until it is done.
            "archiving": self.tr("XNAT is archiving..."),
        }  # fmt: skip

    # -- Qt model interface -------------------------------------------------------------------------
    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._headers)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> object:
        horizontal = orientation == Qt.Orientation.Horizontal
        if horizontal and role == Qt.ItemDataRole.DisplayRole and 0 <= section < len(self._headers):
            return self._headers[section]
        return None

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> object:
        if not index.isValid() or not (0 <= index.row() < len(self._rows)):
            return None
        row = self._rows[index.row()]
        col = index.column()
        if role == JobIdRole:
            return row.id
        if role == StateRole:
            return row.state.value
        if role == ProgressRole:
            return self._percent(row) if col == COL_PROGRESS else None
        if role == Qt.ItemDataRole.DisplayRole:
            return self._text(row, col)
        if role == Qt.ItemDataRole.ToolTipRole:
            if col == COL_STATE and row.id in self._elsewhere:
                return self.tr(
                    "Being sent by another copy of the app. This window leaves it alone: pause or cancel it there."
                )
            if col == COL_RESULT:
                return "\n".join(x for x in (row.message, row.hint) if x) or None
            if col == COL_SESSION:
                return f"{row.spec.project} / {row.spec.subject} / {row.spec.session_label}\n{row.spec.server_url}"
            return None
        if role == Qt.ItemDataRole.ForegroundRole and col in (COL_STATE, COL_RESULT):
            return self._colour(row)
        if role == Qt.ItemDataRole.TextAlignmentRole and col in (COL_BYTES, COL_FILES, COL_RATE, COL_ETA):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    # -- feeding (GUI-thread slots) -------------------------------------------------------------------
    def set_jobs(self, rows: list[JobRow]) -> None:
        self.beginResetModel()
        self._rows = sorted(rows, key=lambda r: r.id)
        self._where = {r.id: i for i, r in enumerate(self._rows)}
        self._elsewhere = {r.id for r in self._rows if self.owned_elsewhere(r) is not None}
        self._progress = {k: v for k, v in self._progress.items() if k in self._where}
        self.endResetModel()

    def update_job(self, row: JobRow) -> None:
        """Add the job or refresh its row."""
        if self.owned_elsewhere(row) is None:
            self._elsewhere.discard(row.id)
        else:
            self._elsewhere.add(row.id)
        where = self._where.get(row.id)
        if where is None:
            n = len(self._rows)  # ids only grow, so a new job goes last
            self.beginInsertRows(QModelIndex(), n, n)
            self._rows.append(row)
            self._where[row.id] = n
            self.endInsertRows()
            return
        self._rows[where] = row
        if row.state.finished or row.state in (JobState.QUEUED, JobState.PAUSED):
            self._progress.pop(row.id, None)  # no live rate/ETA outside a run
        self.dataChanged.emit(self.index(where, 0), self.index(where, self.columnCount() - 1))

    def remove_job(self, job_id: int) -> None:
        where = self._where.get(job_id)
        if where is None:
            return
        self.beginRemoveRows(QModelIndex(), where, where)
        del self._rows[where]
        self._progress.pop(job_id, None)
        self._elsewhere.discard(job_id)
        self._where = {r.id: i for i, r in enumerate(self._rows)}
        self.endRemoveRows()

    def update_progress(self, progress: TransferProgress) -> None:
        where = self._where.get(progress.job_id)
        if where is None or self._rows[where].state.finished:
            return
        self._progress[progress.job_id] = progress
        self.dataChanged.emit(self.index(where, COL_STATE), self.index(where, COL_RESULT))

    # -- reading --------------------------------------------------------------------------------------
    def job_at(self, row: int) -> JobRow | None:
        return self._rows[row] if 0 <= row < len(self._rows) else None

    def row_of(self, job_id: int) -> int | None:
        return self._where.get(job_id)

    def progress_of(self, job_id: int) -> TransferProgress | None:
        return self._progress.get(job_id)

    # -- inside ---------------------------------------------------------------------------------------
    def _percent(self, row: JobRow) -> int:
        if row.state is JobState.DONE:
            return 100
        p = self._progress.get(row.id)
        done, total = (p.bytes_done, p.bytes_total) if p else (row.bytes_sent, row.bytes_total)
        return int(100 * done / total) if total else 0

    def _text(self, row: JobRow, col: int) -> str:
        p = self._progress.get(row.id)
        if col == COL_SESSION:
            return row.spec.session_label
        if col == COL_PROJECT:
            return row.spec.project
        if col == COL_STATE:
            if row.id in self._elsewhere:
                return self.tr("Being sent by another copy of the app")
            if p is not None and not row.state.finished and row.state is not JobState.PAUSED:
                return self._phases.get(p.phase, self._states[row.state])
            return self._states[row.state]
        if col == COL_PROGRESS:
            return f"{self._percent(row)}%"
        if col == COL_BYTES:
            done, total = (p.bytes_done, p.bytes_total) if p else (row.bytes_sent, row.bytes_total)
            return f"{human_bytes(done)} / {human_bytes(total)}"
        if col == COL_FILES:
            done, total = (p.files_done, p.files_total) if p else (row.files_sent, row.files_total)
            return f"{done:,} / {total:,}"
        if col == COL_RATE:
            return f"{human_bytes(p.rate)}/s" if p and p.phase == "sending" else ""
        if col == COL_ETA:
            return human_duration(p.eta) if p and p.phase == "sending" else ""
        if col == COL_RESULT:
            if p is not None and not row.state.finished and p.message:
                return p.message
            return row.message
        return ""

    def _colour(self, row: JobRow) -> QColor | None:
        if row.id in self._elsewhere:
            return GREY
        if row.state is JobState.DONE:
            return GREEN
        if row.state is JobState.FAILED:
            return RED
        if row.state in (JobState.CANCELLED, JobState.PAUSED):
            return GREY
        return None
