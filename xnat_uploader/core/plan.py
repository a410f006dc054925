"""From a selection in the DICOM index and the form's values to upload jobs: one per XNAT session.

An XNAT image session is one study (StudyInstanceUID): XNAT merges everything with the same study
and label into one prearchive session, and refuses several studies in one session. So the plan
makes one job per selected study, with labels from the form or from the headers, and checks them
before anything is sent: XNAT's label rule, and no clash with sessions already in the archive, the
prearchive or the queue unless the user chose to merge.

Pure functions over plain data: what exists on the server is passed in (:class:`Existing`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from xnat_uploader.core.attach import OPT_RESOURCES, to_options
from xnat_uploader.core.dicom.index import DicomIndex, StudyNode, file_key
from xnat_uploader.core.dicom.records import InstanceRecord
from xnat_uploader.core.queue.outcomes import OPT_FILTERED
from xnat_uploader.core.queue.store import FileSpec, JobRow, JobSpec, QueueStore
from xnat_uploader.core.receipt import OPT_DUPLICATES
from xnat_uploader.core.redact import remember
from xnat_uploader.core.upload_choices import OnExisting, parse_on_existing
from xnat_uploader.core.xnat.listing import list_experiments, list_prearchive, list_subjects
from xnat_uploader.core.xnat.series_filter import FilteredSeries, SeriesFilters, describe, predict, read_series_filters
from xnat_uploader.core.xnat.transport import normalize_url

if TYPE_CHECKING:
    from xnat_uploader.core.exam import ExamItem
    from xnat_uploader.core.xnat.session import XnatSession

# XNAT's rule for subject and experiment labels (the web UI's validator and the REST layer):
# letters, digits, underscore and dash only.
LABEL_RE = re.compile(r"^[A-Za-z0-9_-]+$")
MAX_LABEL = 255


def label_problem(label: str, what: str = "Session label") -> str | None:
    """Why ``label`` cannot be an XNAT label, in plain words; ``None`` when it is fine."""
    if not label:
        return f"{what} is empty."
    if len(label) > MAX_LABEL:
        return f"{what} is longer than {MAX_LABEL} characters."
    if not LABEL_RE.match(label):
        bad = sorted({c for c in label if not re.match(r"[A-Za-z0-9_-]", c)})
        shown = " ".join("space" if c == " " else repr(c) for c in bad)
        return f"{what} may only contain letters, digits, '_' and '-' (found {shown})."
    return None


def make_label(text: str, fallback: str = "") -> str:
    """Turn header text into a valid label: other characters become '_', runs collapse, ends trimmed."""
    label = re.sub(r"[^A-Za-z0-9_-]+", "_", text.strip()).strip("_")
    label = re.sub(r"_+", "_", label)[:MAX_LABEL]
    return label or fallback


@dataclass(frozen=True)
class Existing:
    """Session labels that already exist, per place, in the target project (lower-case compare)."""

    archive: frozenset[str] = frozenset()
    prearchive: frozenset[str] = frozenset()
    queue: frozenset[str] = frozenset()
    subjects: frozenset[str] = frozenset()
    # StudyInstanceUID -> (place, session label) of studies already sent (prearchive rows carry the UID)
    studies: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    # The site's and the project's series import filters, where they could be read (None: not asked).
    series_filters: SeriesFilters | None = None

    def where(self, label: str) -> str | None:
        key = label.lower()
        for place in ("archive", "prearchive", "queue"):
            if key in {x.lower() for x in getattr(self, place)}:
                return place
        return None


@dataclass
class Target:
    """The form: where to upload and how. Empty subject/session mean "from the headers"."""

    project: str
    subject: str = ""
    session: str = ""
    mode: str = "zip"
    overwrite: OnExisting | str = OnExisting.REFUSE  # older names (""/none/append/delete) are read too
    # Per-study overrides (StudyInstanceUID -> (subject, session)), from the multi-study table.
    per_study: dict[str, tuple[str, str]] = field(default_factory=dict)


@dataclass
class PlannedJob:
    project: str
    subject: str
    session_label: str
    study_uid: str
    description: str
    files: list[InstanceRecord]
    problems: list[str] = field(default_factory=list)
    resources: list[ExamItem] = field(default_factory=list)  # non-DICOM items to attach (core.exam)
    # Other files holding an instance already in ``files`` (same SOPInstanceUID): (the copy, the one sent).
    duplicates: list[tuple[InstanceRecord, InstanceRecord]] = field(default_factory=list)
    # Series the server's series import filter will drop on arrival (they are sent; XNAT does not store them).
    filtered: list[FilteredSeries] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # worth knowing, not stopping the upload

    @property
    def bytes(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def ok(self) -> bool:
        return not self.problems


NO_STUDY_UID = "no StudyInstanceUID: XNAT cannot place this file in a session (left out of the upload)"


@dataclass(frozen=True)
class LeftOut:
    """A selected file the upload leaves out, and why in plain words (it never stops the other files)."""

    record: InstanceRecord
    reason: str


@dataclass
class Plan:
    jobs: list[PlannedJob]
    problems: list[str] = field(default_factory=list)  # problems of the whole plan (e.g. no project)
    left_out: list[LeftOut] = field(default_factory=list)  # selected files no session can take

    @property
    def ok(self) -> bool:
        return not self.problems and all(j.ok for j in self.jobs)


def default_subject(study: StudyNode) -> str:
    """The subject label from the headers: the PatientID made label-safe (else the name)."""
    patient = study.parent
    return make_label(patient.patient_id) or make_label(patient.patient_name, "subject")


def default_session(subject: str, modality: str, taken: set[str]) -> str:
    """``SUBJECT_MR1``, ``SUBJECT_MR2``, ...: the first one not in ``taken`` (lower-case)."""
    prefix = f"{subject}_{make_label(modality, 'XX').upper()}"
    n = 1
    while f"{prefix}{n}".lower() in taken:
        n += 1
    return f"{prefix}{n}"


def plan_jobs(
    index: DicomIndex,
    target: Target,
    existing: Existing | None = None,
    selected_series: Iterable[str] | None = None,
) -> Plan:
    """One job per selected study. ``selected_series`` (SeriesInstanceUIDs) limits what is sent.

    Files no XNAT session can take (no StudyInstanceUID) are listed in ``left_out`` with the reason; they
    never stop the studies that can go.
    """
    existing = existing or Existing()
    chosen = set(selected_series) if selected_series is not None else None
    plan = Plan(jobs=[])
    if not target.project:
        plan.problems.append("Choose a project.")
    choice = parse_on_existing(target.overwrite)
    if choice is None:
        plan.problems.append(f"Unknown choice for an existing session: {target.overwrite!r}.")
    merge = choice in (OnExisting.ADD, OnExisting.REPLACE)

    studies = _selected_studies(index, chosen)
    placeable = [uid for uid in studies if uid]
    if target.session and len(placeable) > 1 and not target.per_study:
        plan.problems.append(
            f"{len(placeable)} studies are selected but one session label was given: each study becomes its own "
            "XNAT session. Leave the session label empty to take labels from the headers, or set one per study."
        )
    taken = {x.lower() for x in existing.archive | existing.prearchive | existing.queue}
    planned_labels: dict[str, str] = {}
    for uid, nodes in studies.items():
        files, duplicates = one_per_instance(
            rec for node in nodes for series in node.series if _wanted(series.uid, chosen) for rec in series.instances
        )
        if not uid:
            plan.left_out += [LeftOut(rec, NO_STUDY_UID) for rec in files]
            plan.left_out += [LeftOut(copy, NO_STUDY_UID) for copy, _ in duplicates]
            continue
        first = nodes[0]
        subject, session = target.per_study.get(uid, (target.subject, target.session))
        subject = subject or default_subject(first)
        earlier = existing.studies.get(uid)
        if not session and earlier is not None:
            session = earlier[1]  # the same study again: same session, so a merge completes it
        if not session:
            modality = first.modalities[0] if first.modalities else ""
            session = default_session(subject, modality, taken | set(planned_labels))
        job = PlannedJob(
            project=target.project,
            subject=subject,
            session_label=session,
            study_uid=uid,
            description=" ".join(x for x in (first.date, first.description) if x),
            files=files,
            duplicates=duplicates,
        )
        remember(subject, session)  # labels are often the PatientID: never in a log line (core.redact)
        _check_job(job, existing, merge, planned_labels)
        if existing.series_filters is not None:
            job.filtered = predict(existing.series_filters, files)
            job.warnings += [w for w in (describe(job.filtered),) if w]
            job.warnings += existing.series_filters.unpredictable()
        planned_labels[session.lower()] = uid
        plan.jobs.append(job)
    if not plan.jobs and not plan.problems:
        if plan.left_out:
            plan.problems.append(
                "None of the selected files can be uploaded: they have no StudyInstanceUID, which XNAT needs to "
                "place them in a session."
            )
        else:
            plan.problems.append("Nothing selected: tick at least one series.")
    return plan


def one_per_instance(
    records: Iterable[InstanceRecord],
) -> tuple[list[InstanceRecord], list[tuple[InstanceRecord, InstanceRecord]]]:
    """Keep the first file of each SOPInstanceUID; the others come back as (copy, kept) pairs.

    XNAT keeps one file per instance, so a second copy (a file duplicated in the folder, or the same
    instance loose and inside a zip) is never sent: sending both would overwrite one with the other and
    make the per-series counts of the verification disagree. The pre-flight checks report such copies.
    """
    kept: dict[str, InstanceRecord] = {}
    files: list[InstanceRecord] = []
    duplicates: list[tuple[InstanceRecord, InstanceRecord]] = []
    for rec in records:
        first = kept.setdefault(rec.sop_instance_uid, rec) if rec.sop_instance_uid else rec
        if first is rec:
            files.append(rec)
        else:
            duplicates.append((rec, first))
    return files, duplicates


def _wanted(series_uid: str, chosen: set[str] | None) -> bool:
    return chosen is None or series_uid in chosen


def _selected_studies(index: DicomIndex, chosen: set[str] | None) -> dict[str, list[StudyNode]]:
    out: dict[str, list[StudyNode]] = {}
    for study in index.iter_studies():
        if any(_wanted(s.uid, chosen) for s in study.series):
            out.setdefault(study.uid, []).append(study)  # nodes of one UID under several patients
    return out


def _check_job(job: PlannedJob, existing: Existing, merge: bool, planned: Mapping[str, str]) -> None:
    """The label rules, and "refuse if the session exists": unless ``merge``, a session already in the archive or
    the prearchive refuses the job before anything is sent (XNAT itself would merge into it on commit)."""
    for what, value in (("Subject label", job.subject), ("Session label", job.session_label)):
        problem = label_problem(value, what)
        if problem:
            job.problems.append(problem)
    if not job.files:
        job.problems.append("No files selected in this study.")
    other = planned.get(job.session_label.lower())
    if other is not None and other != job.study_uid:
        job.problems.append(f"Session label {job.session_label} is used for two different studies in this upload.")
    place = existing.where(job.session_label)
    earlier = existing.studies.get(job.study_uid)
    same_session = earlier is not None and earlier[1].lower() == job.session_label.lower()
    if same_session and not merge and place != "queue":
        job.problems.append(
            f"This study was uploaded before: it is in the {earlier[0]} of {job.project} as {earlier[1]}. Choose "  # type: ignore[index]
            f'"{OnExisting.ADD.label}" to add what is missing, or give a new session label to keep both.'
        )
        return
    if place == "queue":
        job.problems.append(f"Session {job.session_label} is already in the upload queue.")
    elif place and not merge:
        job.problems.append(
            f"Session {job.session_label} already exists in the {place} of {job.project}. Choose another label, "
            f'or "{OnExisting.ADD.label}".'
        )


def queued_labels(jobs: Iterable[JobRow], project: str, server_url: str | None = None) -> frozenset[str]:
    """Session labels of unfinished jobs for ``project`` (on ``server_url`` when given) in the queue."""
    server = normalize_url(server_url) if server_url else None
    return frozenset(
        j.spec.session_label
        for j in jobs
        if j.spec.project == project and not j.state.finished and (server is None or j.spec.server_url == server)
    )


def existing_on_server(session: XnatSession, project: str, store: QueueStore | None = None) -> Existing:
    """What ``project`` already holds (archive, prearchive, subjects) plus the unfinished queue, and the series
    import filters that will act on uploads into it.

    Blocking server calls: run it on a worker thread (or the command line's main thread).
    """
    prearchived = list_prearchive(session, project)
    return Existing(
        archive=frozenset(e.label for e in list_experiments(session, project)),
        prearchive=frozenset(s.name for s in prearchived),
        queue=queued_labels(store.jobs(), project, session.base_url) if store is not None else frozenset(),
        subjects=frozenset(s.label for s in list_subjects(session, project)),
        studies={s.study_uid: ("prearchive", s.name) for s in prearchived if s.study_uid},
        series_filters=read_series_filters(session, project),
    )


def enqueue(
    store: QueueStore,
    job: PlannedJob,
    *,
    server_url: str,
    user: str,
    mode: str,
    options: Mapping[str, object],
    claim: bool = False,
) -> int:
    """Put a planned job into the persistent queue. Returns its id. ``claim``: this store sends it (no other
    process may start it first).

    Duplicate copies (:func:`one_per_instance`) are not queued; they are listed in the options
    (:data:`OPT_DUPLICATES`) so the receipt names them as not sent.

    The series the server's filter will drop go into the options (:data:`OPT_FILTERED`): DICOM-zip's
    verification needs them to tell a dropped series from a lost one.

    The job's ``resources`` go into its options (:data:`core.attach.OPT_RESOURCES`), attached once the session
    is in the archive.
    """
    opts = dict(options)
    if job.resources:
        opts[OPT_RESOURCES] = to_options(job.resources)
    if job.filtered:
        opts[OPT_FILTERED] = [s.as_option() for s in job.filtered]
    if job.duplicates:
        opts[OPT_DUPLICATES] = [
            {"path": copy.path, "member": copy.member, "same_as": file_key(kept.path, kept.member)}
            for copy, kept in job.duplicates
        ]
    spec = JobSpec(server_url, user, job.project, job.subject, job.session_label, mode, job.study_uid, opts)
    files = (
        FileSpec(
            f.path,
            f.size,
            f.sop_instance_uid,
            f.series_uid,
            f.member,
            f.series_number,
            f.sop_class_uid,
            f.transfer_syntax,
        )  # fmt: skip
        for f in job.files
    )
    return store.add_job(spec, files, claim=claim)
