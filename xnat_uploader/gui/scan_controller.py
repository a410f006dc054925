"""Runs scans and pre-flight checks in workers and feeds the one :class:`DicomIndex` and its tree model.

Lives on the GUI thread. Every drop or open adds to the same index (one tree, merged). A scan asked
for while another runs waits for it, then scans all waiting paths together. When no scan is left, the
pre-flight checks run in a worker too; their findings replace those under "Problems", and the non-DICOM
folders and files at the top of the dropped folders (exam items) fill "Other files". A problem with
the scan itself (an unreadable folder, a crash of the scan) becomes a rejected entry under "Problems",
never a modal dialog.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Generator, Sequence
from typing import Any

from PySide6.QtCore import QObject, Signal

from xnat_uploader.core.dicom.checks import Finding, run_checks
from xnat_uploader.core.dicom.index import DicomIndex
from xnat_uploader.core.dicom.records import Rejected, ScanBatch, ScanProgress
from xnat_uploader.core.dicom.scan import iter_scan
from xnat_uploader.core.exam import ExamItem, find_exam_items
from xnat_uploader.gui.models.dicom_tree_model import DicomTreeModel
from xnat_uploader.gui.workers import Worker, WorkerRunner

log = logging.getLogger(__name__)


def scan_work(paths: list[str], workers: int | None = None):  # noqa: ANN201
    """The scan as a worker function: yields :class:`ScanBatch` objects (plain data)."""

    def work(cancel: threading.Event) -> Generator[ScanBatch, None, None]:
        yield from iter_scan(paths, cancel=cancel, workers=workers, batch_interval=0.25)

    return work


def checks_work(index: DicomIndex, roots: Sequence[str] = ()):  # noqa: ANN201
    """The pre-flight checks and the exam items of ``roots`` as a worker function (both read the disk: never
    on the GUI thread). Returns ``(findings, exam items)``."""

    def work(cancel: threading.Event) -> Generator[Any, None, tuple[list[Finding], list[ExamItem]]]:
        yield from ()
        findings = run_checks(index)
        try:
            items = find_exam_items(roots, index)
        except Exception:  # noqa: BLE001 - the findings still count; the other files are an extra
            log.warning("Listing the other files of %d folders failed", len(roots), exc_info=True)
            items = []
        return findings, items

    return work


class ScanController(QObject):
    """Owns the index, the tree model and the scan/check workers.

    Signals (plain data): ``scan_started(paths)``, ``scan_progressed(ScanProgress)``,
    ``scan_ended(str)`` with "finished", "cancelled" or "failed", ``checks_finished(int)`` with the
    number of findings, ``totals_changed()`` whenever the index grew, ``exam_items_changed(list[ExamItem])``
    when the other files of the dropped folders are known (after the checks; ``[]`` after a clear).
    """

    scan_started = Signal(list)
    scan_progressed = Signal(object)
    scan_ended = Signal(str)
    checks_finished = Signal(int)
    totals_changed = Signal()
    exam_items_changed = Signal(list)

    def __init__(self, parent: QObject | None = None, *, scan_workers: int | None = None) -> None:
        super().__init__(parent)
        self.index = DicomIndex()
        self.model = DicomTreeModel(self.index, self)
        self.runner = WorkerRunner(self)
        self.scan_workers = scan_workers
        self._scan: Worker | None = None
        self._checks: Worker | None = None
        self._checks_generation = -1
        self._waiting: list[str] = []
        self._paths: list[str] = []
        self._roots: list[str] = []  # everything scanned since the last clear (exam items come from these)

    # ---- state -------------------------------------------------------------------------------

    @property
    def scanning(self) -> bool:
        return self._scan is not None

    @property
    def checking(self) -> bool:
        return self._checks is not None

    @property
    def busy(self) -> bool:
        return self.scanning or self.checking

    # ---- actions -----------------------------------------------------------------------------

    def scan(self, paths: Sequence[str]) -> None:
        """Add folders, files, archives or DICOMDIRs to the tree (a scan in a worker)."""
        paths = [p for p in paths if p]
        if not paths:
            return
        self._roots.extend(p for p in paths if p not in self._roots)
        if self._scan is not None:
            self._waiting.extend(paths)
            return
        self._start_scan(paths)

    def cancel(self) -> None:
        """Stop the running scan (and forget waiting ones); what was found so far stays."""
        self._waiting.clear()
        if self._scan is not None:
            self._scan.cancel()

    def clear(self) -> None:
        """Empty the tree (cancels a running scan)."""
        self.cancel()
        self._drop_checks()
        self.index = DicomIndex()
        self._roots = []
        self.model.set_dicom_index(self.index)
        self.exam_items_changed.emit([])
        # The old index is cyclic garbage (nodes point at their parents). Collect it now, on the click,
        # rather than in a collection that pauses the GUI thread for ~0.2 s per 100,000 images mid-scan.
        gc.collect()
        self.totals_changed.emit()

    def shutdown(self, timeout_ms: int = 5000) -> bool:
        """Cancel everything and wait for the worker threads (window close, app quit)."""
        self._waiting.clear()
        self._scan = self._checks = None
        return self.runner.shutdown(timeout_ms)

    # ---- the scan ------------------------------------------------------------------------------

    def _start_scan(self, paths: list[str]) -> None:
        self._drop_checks()  # the index is about to grow: their result would be stale
        self._paths = paths
        worker = Worker(scan_work(paths, self.scan_workers), name="scan", min_interval=0)  # never drop a batch
        # Bound methods of this GUI-thread object, never lambdas: PySide6 runs a lambda slot on the emitting
        # (worker) thread, a bound method through a queued connection on this object's thread.
        worker.progressed.connect(self._on_batch)
        worker.finished.connect(self._on_scan_finished)
        worker.cancelled.connect(self._on_scan_cancelled)
        worker.failed.connect(self._on_scan_failed)
        self._scan = worker
        self.scan_started.emit(list(paths))
        self.runner.start(worker)

    def _on_batch(self, batch: ScanBatch) -> None:
        if self.sender() is not self._scan:  # a batch from a scan cancelled by clear()
            return
        self._add(batch.instances, batch.rejected)
        self.scan_progressed.emit(batch.progress)

    def _add(self, instances: Sequence[Any], rejected: Sequence[Rejected]) -> None:
        if not instances and not rejected:
            return
        changes = self.index.add(instances, rejected)
        self.model.apply(changes)
        if not changes.empty:
            self.totals_changed.emit()

    def _on_scan_finished(self, _result: object) -> None:
        self._on_scan_end(self.sender(), "finished")

    def _on_scan_cancelled(self) -> None:
        self._on_scan_end(self.sender(), "cancelled")

    def _on_scan_failed(self, message: str, details: str) -> None:
        worker = self.sender()
        log.warning("Scan failed: %s", message)
        if worker is self._scan:
            where = ", ".join(self._paths)
            self._add((), [Rejected(where, self.tr("the scan stopped: {}").format(message))])
        self._on_scan_end(worker, "failed")

    def _on_scan_end(self, worker: QObject, outcome: str) -> None:
        if worker is not self._scan:
            return
        self._scan = None
        self.scan_ended.emit(outcome)
        if self._waiting:
            waiting, self._waiting = self._waiting, []
            self._start_scan(waiting)
        else:
            self._start_checks()

    # ---- the checks ----------------------------------------------------------------------------

    def _start_checks(self) -> None:
        if not len(self.index):
            self.model.set_findings([])
            self._set_exam_items([])
            self.checks_finished.emit(0)
            return
        worker = Worker(checks_work(self.index, list(self._roots)), name="checks")
        # The index is not thread-safe: the checks only read it, and a result computed while a new scan
        # grew it is thrown away (the generation differs) and the checks run again after that scan.
        self._checks_generation = self.index.generation
        worker.finished.connect(self._on_checks_finished)
        worker.failed.connect(self._on_checks_failed)
        worker.cancelled.connect(self._on_checks_cancelled)
        self._checks = worker
        self.runner.start(worker)

    def _drop_checks(self) -> None:
        if self._checks is not None:
            self._checks.cancel()
            self._checks = None

    def _on_checks_finished(self, result: tuple[list[Finding], list[ExamItem]]) -> None:
        self._on_checks(self.sender(), result)

    def _on_checks_cancelled(self) -> None:
        self._on_checks(self.sender(), None)

    def _on_checks(self, worker: QObject, result: tuple[list[Finding], list[ExamItem]] | None) -> None:
        if worker is not self._checks:
            return
        self._checks = None
        if result is None or self.index.generation != self._checks_generation:
            return
        findings, items = result
        self.model.set_findings(findings)
        self._set_exam_items(items)
        self.checks_finished.emit(len(findings))

    def _set_exam_items(self, items: list[ExamItem]) -> None:
        self.model.set_exam_items(items)
        self.exam_items_changed.emit(list(items))

    @property
    def exam_items(self) -> list[ExamItem]:
        """The other files of the dropped folders, as the tree shows them."""
        return self.model.exam_items

    def _on_checks_failed(self, message: str, details: str) -> None:
        worker = self.sender()
        if worker is self._checks:
            log.warning("Pre-flight checks failed: %s", message)
            self._add((), [Rejected("", self.tr("the pre-flight checks stopped: {}").format(message))])
        self._on_checks(worker, None)

    def progress_text(self, progress: ScanProgress) -> str:
        """``12,345 files, 4,210 files/s`` for the status bar."""
        return self.tr("{} files, {} files/s").format(f"{progress.files_seen:,}", f"{progress.files_per_second:,.0f}")
