"""Exam folders: which top-level items of a dropped folder become resources, and which job they go with."""

from __future__ import annotations

import os

from tests.dicomgen import write_corpus
from tests.exam_data import PDF, index_of, make_exam
from xnat_uploader.core.attach import MISC, OPT_RESOURCES, attach_command, from_options
from xnat_uploader.core.exam import ExamItem, assign_exam_items, find_exam_items
from xnat_uploader.core.plan import Target, enqueue, plan_jobs
from xnat_uploader.core.queue.store import QueueStore
from xnat_uploader.core.transfer.folders import folder_files


def test_find_exam_items_gives_exactly_the_non_dicom_items(tmp_path):
    root = make_exam(tmp_path / "exam")
    items = find_exam_items([str(root)], index_of(root))
    assert [(os.path.basename(i.path), i.resource, i.is_folder, i.files) for i in items] == [
        ("Reports", "Reports", True, 2),
        ("docs.zip", MISC, False, 1),
        ("protocol.txt", MISC, False, 1),
    ]
    assert all(i.root == str(root) for i in items)
    reports = items[0]
    assert reports.bytes == len(PDF) + len("second page\n")
    assert [name for _, name in folder_files(reports.path)] == ["report.pdf", "sub/notes.txt"]


def test_folder_names_become_labels_and_links_out_of_the_root_are_not_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.pdf").write_bytes(PDF)
    root = tmp_path / "exam"
    write_corpus(root / "DICOM", patients=1, series_per_study=1, instances_per_series=1)
    (root / "Scan notes (v2)").mkdir()
    (root / "Scan notes (v2)" / "a.txt").write_text("a\n")
    os.symlink(outside / "secret.pdf", root / "Scan notes (v2)" / "linked.pdf")
    os.symlink(outside, root / "linked_folder")
    os.symlink(outside / "secret.pdf", root / "linked.pdf")
    items = find_exam_items([str(root)], index_of(root))
    assert [(os.path.basename(i.path), i.resource, i.files) for i in items] == [("Scan notes (v2)", "Scan_notes_v2", 1)]


def test_a_file_given_as_root_and_a_folder_without_extras_give_nothing(tmp_path):
    written = write_corpus(tmp_path / "d", patients=1, series_per_study=1, instances_per_series=2)
    index = index_of(tmp_path / "d")
    assert find_exam_items([str(written[0].path), str(tmp_path / "d")], index) == []


def test_assign_gives_items_to_the_job_of_their_folder_and_enqueue_keeps_them(tmp_path):
    root = make_exam(tmp_path / "exam", dicomdir=False)
    index = index_of(root)
    plan = plan_jobs(index, Target("P1"))
    items = find_exam_items([str(root)], index)
    assert len(plan.jobs) == 1
    assert assign_exam_items(plan, items) == []
    assert plan.jobs[0].resources == items
    with QueueStore(tmp_path / "q.sqlite3") as store:
        job_id = enqueue(store, plan.jobs[0], server_url="http://x", user="u", mode="zip", options={"a": 1})
        options = store.job(job_id).spec.options
    assert options[OPT_RESOURCES][0] == {"path": items[0].path, "resource": "Reports", "is_folder": True}
    assert [a.path for a in from_options(options)] == [i.path for i in items]
    assert assign_exam_items(plan, []) == []
    assert plan.jobs[0].resources == []  # a second call replaces the choice


def test_assign_reports_a_folder_that_makes_several_sessions(tmp_path):
    root = tmp_path / "two"
    write_corpus(root / "DICOM", patients=1, studies_per_patient=2, series_per_study=1, instances_per_series=1)
    (root / "report.pdf").write_bytes(PDF)
    index = index_of(root)
    plan = plan_jobs(index, Target("P1"))
    items = find_exam_items([str(root)], index)
    problems = assign_exam_items(plan, items)
    assert len(plan.jobs) == 2
    assert all(not j.resources for j in plan.jobs)
    assert len(problems) == 1
    assert "report.pdf" in problems[0]
    assert "2 sessions" in problems[0]
    assert "xnat-uploader resource upload" in problems[0]
    stray = ExamItem(str(tmp_path / "x.pdf"), MISC, False, 1, 3, str(tmp_path / "elsewhere"))
    assert "nothing to attach them to" in assign_exam_items(plan, [stray])[0]


def test_attach_command_is_quoted_per_resource():
    items = [ExamItem("/a b/Reports", "Reports", True, 1, 1, "/a b"), ExamItem("/a b/p.txt", MISC, False, 1, 1, "/a b")]
    cmd = attach_command("P1", "S1", "E1", items)
    assert cmd.count("xnat-uploader resource upload") == 2
    assert "'/a b/Reports' -P P1 -S S1 -E E1 --name Reports" in cmd


def test_attach_command_quotes_for_windows_shells(monkeypatch):
    monkeypatch.setattr("sys.platform", "win32")
    items = [ExamItem(r"C:\Exams\Case 1\Reports", "Reports", True, 1, 1, r"C:\Exams\Case 1")]
    cmd = attach_command("P1", "S1", "E1", items)
    assert r'resource upload "C:\Exams\Case 1\Reports" -P P1' in cmd
