"""Helpers for the browsing tests: synthetic drags and drops, waiting for scans, a fast big corpus."""

from __future__ import annotations

import io
from pathlib import Path

from PySide6.QtCore import QMimeData, QModelIndex, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QWidget

from xnat_uploader.core.dicom.index import PatientNode
from xnat_uploader.sandbox.synthetic import make_dataset, plan_corpus


def url_mime(paths: list[Path | str]) -> QMimeData:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    return mime


def drag_enter(widget: QWidget, mime: QMimeData) -> bool:
    """Send a drag-enter (toolchain.md section 3); True when the widget accepts it."""
    try:  # PySide6 >= 6.12: QPointF overload; the QPoint one warns
        event = QDragEnterEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                                Qt.KeyboardModifier.NoModifier)  # fmt: skip
    except TypeError:  # PySide6 <= 6.11
        event = QDragEnterEvent(QPointF(10, 10).toPoint(), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                                Qt.KeyboardModifier.NoModifier)  # fmt: skip
    QApplication.sendEvent(widget, event)
    return event.isAccepted()


def drop(widget: QWidget, paths: list[Path | str]) -> None:
    """Drag ``paths`` onto ``widget`` and drop them (asserting the drag is accepted)."""
    mime = url_mime(paths)
    assert drag_enter(widget, mime)
    try:
        event = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                           Qt.KeyboardModifier.NoModifier)  # fmt: skip
    except TypeError:
        event = QDropEvent(QPointF(10, 10).toPoint(), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                           Qt.KeyboardModifier.NoModifier)  # fmt: skip
    QApplication.sendEvent(widget, event)


def wait_idle(qtbot, window, timeout: int = 20_000) -> None:
    """Wait until the window's scans and checks are over."""
    qtbot.waitUntil(lambda: not window.scan_controller.busy, timeout=timeout)


def counts(model) -> dict[str, int]:
    """Patients, studies, series and instances as the model shows them (walking its rows)."""
    out = {"patients": 0, "studies": 0, "series": 0, "instances": 0}
    for p in range(model.rowCount()):
        patient = model.index(p, 0)
        if not isinstance(model.item(patient), PatientNode):
            continue
        out["patients"] += 1
        for s in range(model.rowCount(patient)):
            study = model.index(s, 0, patient)
            out["studies"] += 1
            for r in range(model.rowCount(study)):
                out["series"] += 1
                out["instances"] += model.rowCount(model.index(r, 0, study))
    return out


def problems_index(model) -> QModelIndex:
    last = model.index(model.rowCount() - 1, 0)
    assert model.item(last) is model.problems
    return last


def problem_texts(model) -> list[str]:
    """Display and tooltip text of every row under "Problems" (and of a finding's files)."""
    parent = problems_index(model)
    out = []
    for row in range(model.rowCount(parent)):
        index = model.index(row, 0, parent)
        out.append(f"{model.data(index)}\n{model.data(index, Qt.ItemDataRole.ToolTipRole)}")
        for child in range(model.rowCount(index)):
            out.append(str(model.data(model.index(child, 0, index))))
    return out


def write_fast_corpus(root: Path, files: int = 20_000, series: int = 40, size: int = 16) -> int:
    """``files`` small DICOM files (``size`` x ``size`` pixels) in ``series`` series, fast.

    pydicom writes one file per series; the others are byte copies with another (same-length)
    SOPInstanceUID, so 20,000 files take a second or two instead of half a minute.
    """
    per_series = files // series
    corpus = plan_corpus(patients=4, studies_per_patient=1, series_per_study=series // 4, instances_per_series=1)
    written = 0
    for patient in corpus:
        for study in patient.studies:
            for spec in study.series:
                folder = root / patient.patient_id / spec.uid.rsplit(".", 1)[-1]
                folder.mkdir(parents=True, exist_ok=True)
                first = f"{spec.uid}.{100_001}"  # same-length UIDs without leading zeros
                ds = make_dataset(patient, study, spec, first, 1, rows=size, columns=size)
                ds.preamble = b"\0" * 128
                buf = io.BytesIO()
                ds.save_as(buf, enforce_file_format=True)
                template = buf.getvalue()
                for i in range(1, per_series + 1):
                    uid = f"{spec.uid}.{100_000 + i}".encode()
                    with open(folder / f"IM{i:06d}", "wb") as f:
                        f.write(template.replace(first.encode(), uid))
                    written += 1
    assert written == files, (written, files)
    return written


def write_rich_instance(path: Path, seed: int = 77) -> Path:
    """One instance with a sequence (two items) and a private block with text and 8,000 binary bytes."""
    import pydicom
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    from tests.dicomgen import write_one

    write_one(path, seed=seed, PatientName="RICH^HEADER")
    ds = pydicom.dcmread(path)
    items = []
    for n in (1, 2):
        item = Dataset()
        item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
        item.ReferencedSOPInstanceUID = f"2.25.4242.{n}"
        items.append(item)
    ds.ReferencedImageSequence = Sequence(items)
    block = ds.private_block(0x0029, "XNATUPL TEST", create=True)
    block.add_new(0x10, "OB", b"\x01" * 8000)
    block.add_new(0x11, "LO", "vendor secret sauce")
    ds.save_as(path, enforce_file_format=True)
    return path
