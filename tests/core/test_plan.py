"""Planning: one job per study, labels from the form or the headers, XNAT's rules checked first."""

from __future__ import annotations

import pytest

from xnat_uploader.core.dicom.index import build_index
from xnat_uploader.core.dicom.records import InstanceRecord
from xnat_uploader.core.plan import Existing, Target, label_problem, make_label, plan_jobs
from xnat_uploader.core.upload_choices import OnExisting


def rec(study="1.1", series="1.1.1", sop="1.1.1.1", patient="P 001", modality="MR", name="Doe^Jane", path=None):
    return InstanceRecord(
        path=path or f"/x/{sop}",
        size=100,
        patient_id=patient,
        patient_name=name,
        study_uid=study,
        study_date="20240501",
        study_time="101112",
        study_description="BRAIN",
        accession_number="A1",
        series_uid=series,
        series_number=1,
        series_description="T1",
        modality=modality,
        sop_class_uid="1.2.840.10008.5.1.4.1.1.4",
        sop_instance_uid=sop,
        instance_number=1,
        transfer_syntax="1.2.840.10008.1.2.1",
    )


@pytest.mark.parametrize(
    ("label", "problem"),
    [
        ("P001_MR1", None),
        ("a-b_c", None),
        ("", "empty"),
        ("P 001", "space"),
        ("P.001", "'.'"),
        ("Müller", "'ü'"),
        ("x" * 256, "longer"),
    ],
)
def test_label_rule(label, problem):
    found = label_problem(label)
    if problem is None:
        assert found is None
    else:
        assert problem in found


def test_make_label():
    assert make_label(" P 001/2 ") == "P_001_2"
    assert make_label("Doe^Jane") == "Doe_Jane"
    assert make_label("///", "subject") == "subject"


def test_one_job_per_study_with_labels_from_headers():
    index = build_index([rec(), rec(sop="1.1.1.2"), rec(study="2.2", series="2.2.1", sop="2.2.1.1", modality="CT")])
    plan = plan_jobs(index, Target(project="DEMO"))
    assert plan.ok, plan
    assert [(j.subject, j.session_label, len(j.files)) for j in plan.jobs] == [
        ("P_001", "P_001_MR1", 2),
        ("P_001", "P_001_CT1", 1),
    ]


def test_labels_skip_existing_sessions_and_each_other():
    index = build_index([rec(), rec(study="2.2", series="2.2.1", sop="2.2.1.1")])
    plan = plan_jobs(index, Target(project="DEMO"), Existing(archive=frozenset({"p_001_mr1"})))
    assert [j.session_label for j in plan.jobs] == ["P_001_MR2", "P_001_MR3"]


def test_given_label_that_exists_needs_merge():
    index = build_index([rec()])
    existing = Existing(prearchive=frozenset({"S1"}))
    refused = plan_jobs(index, Target(project="DEMO", subject="SUBJ", session="S1"), existing)
    assert not refused.ok
    assert "already exists in the prearchive" in refused.jobs[0].problems[0]
    merged = plan_jobs(index, Target(project="DEMO", subject="SUBJ", session="S1", overwrite="append"), existing)
    assert merged.ok
    queued = plan_jobs(
        index, Target(project="DEMO", session="S1", overwrite="append"), Existing(queue=frozenset({"s1"}))
    )
    assert "already in the upload queue" in queued.jobs[0].problems[0]


def test_bad_labels_and_missing_project_are_reported():
    index = build_index([rec()])
    plan = plan_jobs(index, Target(project="", subject="a b", session="x.y"))
    assert plan.problems == ["Choose a project."]
    assert len(plan.jobs[0].problems) == 2


def test_one_label_for_several_studies_is_refused_unless_per_study():
    index = build_index([rec(), rec(study="2.2", series="2.2.1", sop="2.2.1.1")])
    plan = plan_jobs(index, Target(project="DEMO", session="S1"))
    assert "2 studies are selected" in plan.problems[0]
    per = plan_jobs(index, Target(project="DEMO", per_study={"1.1": ("A", "A_1"), "2.2": ("B", "B_1")}))
    assert per.ok
    assert [(j.subject, j.session_label) for j in per.jobs] == [("A", "A_1"), ("B", "B_1")]
    clash = plan_jobs(index, Target(project="DEMO", per_study={"1.1": ("A", "X"), "2.2": ("B", "X")}))
    assert "two different studies" in clash.jobs[1].problems[0]


def test_selection_limits_series_and_studies():
    index = build_index([rec(), rec(series="1.1.2", sop="1.1.2.1"), rec(study="2.2", series="2.2.1", sop="2.2.1.1")])
    plan = plan_jobs(index, Target(project="DEMO"), selected_series={"1.1.2"})
    assert len(plan.jobs) == 1
    assert [f.sop_instance_uid for f in plan.jobs[0].files] == ["1.1.2.1"]
    nothing = plan_jobs(index, Target(project="DEMO"), selected_series=set())
    assert nothing.problems == ["Nothing selected: tick at least one series."]


def test_a_study_split_over_two_patients_is_still_one_job():
    index = build_index([rec(), rec(sop="1.1.1.2", patient="OTHER", path="/x/other")])
    plan = plan_jobs(index, Target(project="DEMO"))
    assert len(plan.jobs) == 1
    assert len(plan.jobs[0].files) == 2


def test_the_same_study_again_is_caught_and_reuses_its_label():
    index = build_index([rec()])
    existing = Existing(prearchive=frozenset({"OLD_1"}), studies={"1.1": ("prearchive", "OLD_1")})
    again = plan_jobs(index, Target(project="DEMO"), existing)
    assert again.jobs[0].session_label == "OLD_1"
    assert "uploaded before" in again.jobs[0].problems[0]
    merge = plan_jobs(index, Target(project="DEMO", overwrite="append"), existing)
    assert merge.ok
    assert merge.jobs[0].session_label == "OLD_1"
    both = plan_jobs(index, Target(project="DEMO", session="NEW_1"), existing)
    assert both.ok  # a new label on purpose keeps both sessions


def test_one_file_per_instance_the_copies_listed_with_the_file_kept():
    first, copy, other = rec(sop="1.1.1.1", path="/x/a"), rec(sop="1.1.1.1", path="/x/b"), rec(sop="1.1.1.2")
    plan = plan_jobs(build_index([first, copy, other]), Target(project="P"))
    (job,) = plan.jobs
    assert sorted(f.path for f in job.files) == ["/x/1.1.1.2", "/x/a"]
    assert [(c.path, k.path) for c, k in job.duplicates] == [("/x/b", "/x/a")]
    assert plan.ok  # a copy is reported by the pre-flight checks, not a reason to refuse the upload


def test_refuse_names_the_session_add_and_replace_go_ahead():
    index = build_index([rec()])
    existing = Existing(archive=frozenset({"S1"}))
    refused = plan_jobs(index, Target(project="DEMO", subject="SUBJ", session="S1"), existing)
    assert refused.jobs[0].problems == [
        'Session S1 already exists in the archive of DEMO. Choose another label, or "Add to the existing session".'
    ]
    for choice in (OnExisting.ADD, OnExisting.REPLACE, "append", "delete"):  # old names are read too
        assert plan_jobs(index, Target(project="DEMO", subject="SUBJ", session="S1", overwrite=choice), existing).ok
    assert "Unknown choice" in plan_jobs(index, Target(project="DEMO", overwrite="sometimes")).problems[0]
