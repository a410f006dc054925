"""The DICOM tree model: Qt's model rules across many batches, check boxes, problems, and speed at 100,000."""

from __future__ import annotations

import random
import time
from dataclasses import replace

from PySide6.QtCore import QModelIndex, Qt
from PySide6.QtWidgets import QTreeView

from xnat_uploader.core.dicom.checks import INVALID_UID, Finding, Severity, run_checks
from xnat_uploader.core.dicom.index import DicomIndex, PatientNode, SeriesNode
from xnat_uploader.core.dicom.records import InstanceRecord, Rejected
from xnat_uploader.core.exam import ExamItem
from xnat_uploader.gui.models.dicom_tree_model import DicomTreeModel

CHECK = Qt.ItemDataRole.CheckStateRole


def record(n: int, patient: int, study: int, series: int) -> InstanceRecord:
    return InstanceRecord(
        path=f"/data/p{patient}/s{study}/se{series}/IM{n:06d}", size=1000 + n % 7,
        patient_id=f"P{patient:03d}", patient_name=f"TEST^P{patient}",
        study_uid=f"1.2.3.{patient}.{study}", study_date="20240501", study_time="101010", study_description="BRAIN",
        accession_number="", series_uid=f"1.2.3.{patient}.{study}.{series}", series_number=series + 1,
        series_description=f"SERIES {series}", modality="MR", sop_class_uid="1.2.840.10008.5.1.4.1.1.4",
        sop_instance_uid=f"1.2.3.{patient}.{study}.{series}.{n}", instance_number=n,
        transfer_syntax="1.2.840.10008.1.2.1",
    )  # fmt: skip


def records(patients: int, studies: int, series: int, instances: int) -> list[InstanceRecord]:
    out, n = [], 0
    for i in range(instances):  # interleaved, as a scan meets files: every batch grows many nodes
        for p in range(patients):
            for s in range(studies):
                for se in range(series):
                    n += 1
                    out.append(record(i, p, s, se))
    return out


def feed(index: DicomIndex, model: DicomTreeModel, recs: list, batch: int, rejected: list | None = None) -> None:
    for start in range(0, len(recs), batch):
        changes = index.add(recs[start : start + batch], (rejected or [])[start // batch : start // batch + 1])
        model.apply(changes)


def no_tester_failures(qtlog) -> None:
    failures = [r.message for r in qtlog.records if "FAIL" in r.message or "QAbstractItemModelTester" in r.message]
    assert not failures, failures


def test_qtmodeltester_across_batches_findings_and_checks(qtbot, qtmodeltester, qtlog):
    index = DicomIndex()
    model = DicomTreeModel(index)
    qtmodeltester.check(model)  # Qt's tester watches every later signal too (failures are logged)
    view = QTreeView()  # a view and a persistent index follow the inserts, as in the window
    qtbot.addWidget(view)
    view.setModel(model)
    recs = records(patients=3, studies=2, series=3, instances=4)
    rejected = [Rejected(f"/data/junk{i}.txt", "not a DICOM file (text)") for i in range(5)]
    feed(index, model, recs[:20], batch=7, rejected=rejected)
    view.expandAll()
    kept = model.index(0, 0)
    view.setCurrentIndex(model.index(0, 0, model.index(0, 0, kept)))  # a persistent index the sorting must move
    feed(index, model, recs[20:][::-1], batch=11, rejected=rejected[3:])  # out of order: rows get sorted
    findings = [
        Finding("x", Severity.WARNING, "First. More text.", "log", ("/data/a", "/data/b")),
        Finding("y", Severity.ERROR, "Second.", "log", ("/data/c",)),
    ]
    model.set_findings(findings)
    model.setData(model.index(0, 0), Qt.CheckState.Unchecked.value, CHECK)
    model.set_findings(findings[:1])
    no_tester_failures(qtlog)
    qtmodeltester.check(model, force_py=True)  # and pytest-qt's Python tester, which asserts
    assert kept.isValid()
    assert model.item(kept) is index.patients[0]
    patients = [
        model.index(r, 0) for r in range(model.rowCount()) if isinstance(model.item(model.index(r, 0)), PatientNode)
    ]
    assert len(patients) == 3
    assert sum(model.rowCount(model.index(s, 0, p)) for p in patients for s in range(model.rowCount(p))) == 18
    for series in range(3):  # shown by instance number, whatever the arrival order
        rows = model.index(series, 0, model.index(0, 0, patients[0]))
        numbers = [model.item(model.index(r, 0, rows)).instance_number for r in range(model.rowCount(rows))]
        assert numbers == sorted(numbers)
    assert [model.data(p) for p in patients] == sorted(model.data(p) for p in patients)
    current = model.item(view.currentIndex())
    assert isinstance(current, SeriesNode)
    assert current.number == 1  # the current row followed its item
    problems = model.index(model.rowCount() - 1, 0)
    assert model.rowCount(problems) == 1 + 5  # one finding, five rejected files
    assert model.data(problems) == "Problems (6)"


def test_check_boxes_change_selected_series_and_tristate(qtbot):
    index = DicomIndex()
    model = DicomTreeModel(index)
    model.apply(index.add(records(patients=2, studies=1, series=3, instances=2)))
    assert len(model.selected_series_uids()) == 6  # everything starts included
    patient = model.index(0, 0)
    study = model.index(0, 0, patient)
    series = model.index(1, 0, study)
    with qtbot.waitSignal(model.series_selection_changed):
        assert model.setData(series, Qt.CheckState.Unchecked, CHECK)
    uid = model.item(series).uid
    assert uid not in model.selected_series_uids()
    assert len(model.selected_series_uids()) == 5
    assert model.data(study, CHECK) == Qt.CheckState.PartiallyChecked
    assert model.data(patient, CHECK) == Qt.CheckState.PartiallyChecked
    with qtbot.waitSignal(model.series_selection_changed):
        model.setData(patient, Qt.CheckState.Unchecked.value, CHECK)  # as a view sends it: an int
    assert model.data(patient, CHECK) == Qt.CheckState.Unchecked
    assert model.data(series, CHECK) == Qt.CheckState.Unchecked
    assert len(model.selected_series_uids()) == 3
    model.setData(study, Qt.CheckState.Checked, CHECK)
    assert model.data(patient, CHECK) == Qt.CheckState.Checked
    assert len(model.selected_series()) == 6
    assert all(isinstance(s, SeriesNode) for s in model.selected_series())
    assert model.flags(model.index(0, 0, series)) & Qt.ItemFlag.ItemIsUserCheckable == Qt.ItemFlag.NoItemFlags


def test_new_series_arrive_checked_and_announce_it(qtbot):
    index = DicomIndex()
    model = DicomTreeModel(index)
    model.apply(index.add(records(1, 1, 1, 1)))
    with qtbot.waitSignal(model.series_selection_changed):
        model.apply(index.add([record(0, 5, 0, 0)]))
    assert len(model.selected_series_uids()) == 2


def test_100k_instances_stay_fast(qtbot):
    recs = records(patients=10, studies=2, series=5, instances=1000)  # 100,000 instances, 100 series
    random.Random(6).shuffle(recs)  # files arrive in no particular order: every batch re-sorts rows
    index = DicomIndex()
    model = DicomTreeModel(index)
    view = QTreeView()
    qtbot.addWidget(view)
    view.setUniformRowHeights(True)
    view.setModel(model)
    view.resize(800, 600)
    view.show()
    started = time.perf_counter()
    for start in range(0, len(recs), 2500):  # batches as a scan delivers them
        model.apply(index.add(recs[start : start + 2500]))
    filled = time.perf_counter() - started
    assert len(index) == 100_000
    started = time.perf_counter()
    view.expandAll()  # every patient, study and series: 100,000 instance rows
    view.scrollToBottom()
    qtbot.wait(10)
    expanded = time.perf_counter() - started
    started = time.perf_counter()
    series = model.index(4, 0, model.index(0, 0, model.index(0, 0)))
    texts = [model.data(model.index(row, c, series)) for row in range(0, 1000, 10) for c in range(6)]
    read = time.perf_counter() - started
    print(f"\n100k instances: fill {filled:.2f} s (index + model), expand all {expanded:.2f} s, ", end="")
    print(f"600 cells {read * 1000:.1f} ms")
    assert texts[0].endswith("IM000000")
    assert model.rowCount(series) == 1000
    assert filled < 5.0
    assert expanded < 5.0
    assert read < 0.5


def test_first_instance_of_a_series_is_the_lowest_number():
    index = DicomIndex()
    model = DicomTreeModel(index)
    model.apply(index.add([record(3, 0, 0, 0), record(1, 0, 0, 0), record(2, 0, 0, 0)]))
    study = model.index(0, 0, model.index(0, 0))
    assert model.first_instance(model.index(0, 0, study)).instance_number == 1
    assert model.first_instance(model.index(0, 0)).instance_number == 1
    assert model.first_instance(QModelIndex()) is None


def test_other_files_node_takes_its_files_out_of_problems(qtbot, qtmodeltester, qtlog):
    index = DicomIndex()
    model = DicomTreeModel(index)
    qtmodeltester.check(model)
    others = [Rejected(f"/data/exam/reports/r{i}.pdf", "not a DICOM file (PDF)") for i in range(3)]
    broken = Rejected("/data/exam/IM_CUT", "truncated DICOM")
    feed(index, model, records(patients=1, studies=1, series=1, instances=3), batch=1, rejected=[*others[:2], broken])
    assert model.data(model.index(model.rowCount() - 1, 0)) == "Problems (3)"
    reports = ExamItem("/data/exam/reports", "reports", True, 3, 3000, "/data/exam")
    loose = ExamItem("/data/exam/notes.txt", "MISC", False, 1, 10, "/data/exam")
    model.set_exam_items([reports])
    assert model.data(model.index(model.rowCount() - 2, 0)) == "Problems (1)"  # only the broken file is left
    node = model.index(model.rowCount() - 1, 0)
    assert model.data(node) == "Other files (not DICOM) (1)"
    model.apply(index.add([], [others[2]]))  # a late file of the folder stays out of Problems too
    model.set_exam_items([reports, loose])
    node = model.index(model.rowCount() - 1, 0)
    assert [model.index(r, 0, node).data() for r in range(2)] == ["reports/", "notes.txt"]
    assert model.index(1, 2, node).data() == "10 bytes"
    assert model.item(model.index(0, 0, node)) is reports
    assert model.parent(model.index(0, 0, node)) == node
    assert model.first_instance(model.index(0, 0, node)) is None
    model.set_exam_items([loose])  # the folder is no longer an exam item: its files are problems again
    assert model.data(model.index(model.rowCount() - 2, 0)) == "Problems (4)"
    model.set_exam_items([])
    assert model.data(model.index(model.rowCount() - 1, 0)) == "Problems (4)"
    no_tester_failures(qtlog)
    qtmodeltester.check(model, force_py=True)


def test_an_invalid_uid_is_shown_under_problems(qtbot):
    index = DicomIndex()
    model = DicomTreeModel(index)
    good = records(patients=1, studies=1, series=1, instances=2)
    evil = replace(good[1], path="/data/evil.dcm", sop_instance_uid="../../../../x/evil")
    model.apply(index.add([good[0], evil]))
    findings = [f for f in run_checks(index, compare_content=False) if f.code == INVALID_UID]
    model.set_findings(findings)
    problems = model.index(model.rowCount() - 1, 0)
    assert model.data(problems) == "Problems (1)"
    shown = model.data(model.index(0, 0, problems))
    assert "invalid UID (SOP instance)" in shown
