"""The DICOM index: patient > study > series > instance, filled incrementally while a scan runs.

Design notes
------------
* Children lists are **append-only and in arrival order**, and every node knows its ``row`` in its
  parent, so a lazy Qt item model can map rows to nodes without copying anything and insert rows
  at the end when :meth:`DicomIndex.add` reports new nodes. Sorting for display belongs to a
  proxy model or to the caller (:func:`sorted_patients` and friends give the canonical order).
* Instances are the scanner's own :class:`InstanceRecord` objects (slotted, no pydicom objects).
  Repeated strings (patient, study and series fields, SOP class, transfer syntax, archive paths)
  are shared through one table per index, so 100,000 instances stay well under 100 MB even when
  records come from several scans or from JSON.
* The same file (path + archive member) added twice counts once. Two *different* files with the
  same SOPInstanceUID are both kept: the pre-flight checks report them.
* The index is not thread-safe: one thread (in the GUI, the GUI thread receiving scan batches)
  adds to it and reads it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from xnat_uploader.core.dicom.records import InstanceRecord, Rejected, ScanBatch
from xnat_uploader.core.redact import remember

FORMAT = 1

# Fields shared by many instances: stored once per index (see DicomIndex._share).
_SHARED_FIELDS = (
    "patient_id",
    "patient_name",
    "study_uid",
    "study_date",
    "study_time",
    "study_description",
    "accession_number",
    "series_uid",
    "series_description",
    "modality",
    "sop_class_uid",
    "transfer_syntax",
    "image_type",
    "burned_in_annotation",
)
# Fields that a node carries for its whole subtree; JSON stores them on the node, and on an
# instance only when that instance differs (headers are not always consistent within a series).
_PATIENT_FIELDS = ("patient_id", "patient_name")
_STUDY_FIELDS = ("study_uid", "study_date", "study_time", "study_description", "accession_number")
_SERIES_FIELDS = ("series_uid", "series_number", "series_description", "modality")
_INHERITED = _PATIENT_FIELDS + _STUDY_FIELDS + _SERIES_FIELDS
_INSTANCE_FIELDS = tuple(f for f in InstanceRecord.__dataclass_fields__ if f not in _INHERITED)

PatientKey = tuple[str, str]


def patient_key(patient_id: str, patient_name: str) -> PatientKey:
    """The key of a patient: the PatientID, or the name when the ID is empty."""
    return (patient_id, "") if patient_id else ("", patient_name)


def file_key(path: str, member: str = "") -> str:
    """One string per file, for de-duplication: ``path`` or ``archive!member``."""
    return f"{path}!{member}" if member else path


class _Counted:
    """Counts shared by patient, study and series nodes."""

    __slots__ = ("row", "instance_count", "bytes")

    def __init__(self, row: int) -> None:
        self.row = row
        self.instance_count = 0
        self.bytes = 0


class SeriesNode(_Counted):
    """One series (key: SeriesInstanceUID) with its instances in arrival order."""

    __slots__ = ("parent", "uid", "number", "description", "modality", "instances")

    def __init__(self, parent: StudyNode, row: int, rec: InstanceRecord) -> None:
        super().__init__(row)
        self.parent = parent
        self.uid = rec.series_uid
        self.number = rec.series_number
        self.description = rec.series_description
        self.modality = rec.modality
        self.instances: list[InstanceRecord] = []

    @property
    def children(self) -> list[InstanceRecord]:
        return self.instances

    def __repr__(self) -> str:
        return f"<SeriesNode {self.uid} #{self.number} {self.instance_count} inst>"


class StudyNode(_Counted):
    """One study (key: StudyInstanceUID) of one patient."""

    __slots__ = ("parent", "uid", "date", "time", "description", "accession", "series", "_by_uid", "modalities")

    def __init__(self, parent: PatientNode, row: int, rec: InstanceRecord) -> None:
        super().__init__(row)
        self.parent = parent
        self.uid = rec.study_uid
        self.date = rec.study_date
        self.time = rec.study_time
        self.description = rec.study_description
        self.accession = rec.accession_number
        self.series: list[SeriesNode] = []
        self._by_uid: dict[str, SeriesNode] = {}
        self.modalities: tuple[str, ...] = ()  # sorted, distinct, non-empty

    @property
    def children(self) -> list[SeriesNode]:
        return self.series

    def series_by_uid(self, uid: str) -> SeriesNode | None:
        """The series with this SeriesInstanceUID in this study, if any."""
        return self._by_uid.get(uid)

    def __repr__(self) -> str:
        return f"<StudyNode {self.uid} {self.date} {len(self.series)} series>"


class PatientNode(_Counted):
    """One patient (key: PatientID, or the name when IDs are empty)."""

    __slots__ = ("key", "patient_id", "patient_name", "studies", "_by_uid")

    def __init__(self, row: int, rec: InstanceRecord) -> None:
        super().__init__(row)
        self.key = patient_key(rec.patient_id, rec.patient_name)
        self.patient_id = rec.patient_id
        self.patient_name = rec.patient_name
        remember(rec.patient_id, rec.patient_name, pieces=True)  # never in a log line (core.redact)
        self.studies: list[StudyNode] = []
        self._by_uid: dict[str, StudyNode] = {}

    @property
    def parent(self) -> None:
        return None

    @property
    def children(self) -> list[StudyNode]:
        return self.studies

    def study_by_uid(self, uid: str) -> StudyNode | None:
        """This patient's study with this StudyInstanceUID, if any."""
        return self._by_uid.get(uid)

    @property
    def series_count(self) -> int:
        return sum(len(s.series) for s in self.studies)

    @property
    def dates(self) -> tuple[str, str]:
        """The first and last study dates (``YYYYMMDD``; empty when no study has a date)."""
        found = sorted(s.date for s in self.studies if s.date)
        return (found[0], found[-1]) if found else ("", "")

    def __repr__(self) -> str:  # no name or ID: reprs end up in logs and tracebacks
        return f"<PatientNode row={self.row} {len(self.studies)} studies>"


Node = PatientNode | StudyNode | SeriesNode


class Growth(NamedTuple):
    """Rows ``first..last`` (inclusive) appended to the children of ``parent`` (None: the patients)."""

    parent: Node | None
    first: int
    last: int


@dataclass
class Changes:
    """What one :meth:`DicomIndex.add` changed, for a view to update itself cheaply.

    ``new_nodes`` lists created nodes parents-first (a patient before its studies).
    ``grown`` lists every parent that existed before this add and received children (for a series:
    instances), as row ranges. ``touched_series`` are the series that received
    instances (their ancestors' counts changed too). ``generation`` is the index's generation after.

    How a Qt model uses it: the model keeps the row count it has announced per node and answers
    ``rowCount`` from that, never from the live list. After ``add`` returns, for each ``Growth`` it
    calls ``beginInsertRows(parent, first, last)``, raises its count to ``last + 1`` and calls
    ``endInsertRows``; nodes created in this add start with their live counts (their children came
    with them). Children only ever append, so rows below an announced count never move.
    """

    generation: int
    new_nodes: list[Node] = field(default_factory=list)
    grown: list[Growth] = field(default_factory=list)
    touched_series: list[SeriesNode] = field(default_factory=list)
    instances_added: int = 0
    duplicates_ignored: int = 0
    rejected_added: int = 0

    @property
    def empty(self) -> bool:
        return not (self.instances_added or self.rejected_added)


class DicomIndex:
    """Patients > studies > series > instances, with counts and bytes at every level.

    Call :meth:`add` (or :meth:`add_batch`) with each scan batch; :meth:`merge` adds another index.
    ``generation`` grows by one on every change, so a reader can tell cheaply whether to refresh.
    """

    def __init__(self) -> None:
        self.patients: list[PatientNode] = []
        self.rejected: list[Rejected] = []
        self.generation = 0
        self.instance_count = 0
        self.bytes = 0
        self.study_count = 0
        self.series_count = 0
        self._patients_by_key: dict[PatientKey, PatientNode] = {}
        self._studies_by_uid: dict[str, list[StudyNode]] = {}
        self._files: set[str] = set()
        self._rejected_files: set[str] = set()
        self._strings: dict[str, str] = {}

    # ---- filling ---------------------------------------------------------------------------

    def add_batch(self, batch: ScanBatch) -> Changes:
        """Add one scan batch (instances and rejected files)."""
        return self.add(batch.instances, batch.rejected)

    def add(self, instances: Iterable[InstanceRecord] = (), rejected: Iterable[Rejected] = ()) -> Changes:
        """Add instances and rejected files; the same file (path + member) added again is ignored."""
        changes = Changes(self.generation)
        # id(parent) -> (parent, child count before this add), for parents that existed before it.
        grown: dict[int, tuple[Node | None, int]] = {}
        new_ids: set[int] = set()
        touched: dict[int, SeriesNode] = {}
        for rec in instances:
            key = file_key(rec.path, rec.member)
            if key in self._files:
                changes.duplicates_ignored += 1
                continue
            self._files.add(key)
            rec = self._share(rec)
            series = self._series_for(rec, changes.new_nodes, grown, new_ids)
            sid = id(series)
            if sid not in touched:
                touched[sid] = series
                if sid not in new_ids:
                    grown[sid] = (series, len(series.instances))
            series.instances.append(rec)
            size = rec.size
            series.instance_count += 1
            series.bytes += size
            study = series.parent
            study.instance_count += 1
            study.bytes += size
            study.parent.instance_count += 1
            study.parent.bytes += size
            self.instance_count += 1
            self.bytes += size
            changes.instances_added += 1
        for rej in rejected:
            key = file_key(rej.path, rej.member)
            if key in self._rejected_files:
                continue
            self._rejected_files.add(key)
            self.rejected.append(rej)
            changes.rejected_added += 1
        changes.touched_series = list(touched.values())
        changes.grown = [
            Growth(parent, old, len(self.patients if parent is None else parent.children) - 1)
            for parent, old in grown.values()
        ]
        if not changes.empty:
            self.generation += 1
        changes.generation = self.generation
        return changes

    def merge(self, other: DicomIndex) -> Changes:
        """Add everything ``other`` holds; files present in both count once."""
        return self.add(other.iter_instances(), other.rejected)

    def _share(self, rec: InstanceRecord) -> InstanceRecord:
        # Re-use one string object per distinct value; rebuild the (frozen) record only when a
        # field is not already the shared object, which is rare when the scanner interns too.
        table = self._strings
        changed: dict[str, str] | None = None
        for name in _SHARED_FIELDS:
            value = getattr(rec, name)
            shared = table.setdefault(value, value)
            if shared is not value:
                if changed is None:
                    changed = {}
                changed[name] = shared
        if rec.member:  # many members share one archive path
            shared = table.setdefault(rec.path, rec.path)
            if shared is not rec.path:
                changed = changed or {}
                changed["path"] = shared
        return replace(rec, **changed) if changed else rec

    def _series_for(
        self, rec: InstanceRecord, new_nodes: list[Node], grown: dict[int, tuple[Node | None, int]], new_ids: set[int]
    ) -> SeriesNode:
        pkey = patient_key(rec.patient_id, rec.patient_name)
        patient = self._patients_by_key.get(pkey)
        if patient is None:
            if id(self) not in grown:
                grown[id(self)] = (None, len(self.patients))
            patient = PatientNode(len(self.patients), rec)
            new_ids.add(id(patient))
            self.patients.append(patient)
            self._patients_by_key[pkey] = patient
            new_nodes.append(patient)
        study = patient.study_by_uid(rec.study_uid)
        if study is None:
            if id(patient) not in new_ids and id(patient) not in grown:
                grown[id(patient)] = (patient, len(patient.studies))
            study = StudyNode(patient, len(patient.studies), rec)
            new_ids.add(id(study))
            patient.studies.append(study)
            patient._by_uid[rec.study_uid] = study
            self._studies_by_uid.setdefault(rec.study_uid, []).append(study)
            self.study_count += 1
            new_nodes.append(study)
        series = study.series_by_uid(rec.series_uid)
        if series is None:
            if id(study) not in new_ids and id(study) not in grown:
                grown[id(study)] = (study, len(study.series))
            series = SeriesNode(study, len(study.series), rec)
            new_ids.add(id(series))
            study.series.append(series)
            study._by_uid[rec.series_uid] = series
            self.series_count += 1
            if rec.modality and rec.modality not in study.modalities:
                study.modalities = tuple(sorted((*study.modalities, rec.modality)))
            new_nodes.append(series)
        return series

    # ---- reading ---------------------------------------------------------------------------

    @property
    def patient_count(self) -> int:
        return len(self.patients)

    def patient(self, patient_id: str, patient_name: str = "") -> PatientNode | None:
        """The patient with this ID (or, for an empty ID, this name)."""
        return self._patients_by_key.get(patient_key(patient_id, patient_name))

    def studies(self, study_uid: str) -> list[StudyNode]:
        """Every study node with this StudyInstanceUID (more than one when patients disagree)."""
        return list(self._studies_by_uid.get(study_uid, ()))

    def study_uids(self) -> list[str]:
        """Every distinct StudyInstanceUID (the empty string too, when some files lack one)."""
        return list(self._studies_by_uid)

    def iter_studies(self) -> Iterator[StudyNode]:
        """Every study node, in tree order."""
        for patient in self.patients:
            yield from patient.studies

    def iter_series(self) -> Iterator[SeriesNode]:
        """Every series node, in tree order."""
        for study in self.iter_studies():
            yield from study.series

    def iter_instances(self) -> Iterator[InstanceRecord]:
        """Every instance, in tree order."""
        for series in self.iter_series():
            yield from series.instances

    def __len__(self) -> int:
        return self.instance_count

    def __contains__(self, path: object) -> bool:
        """Whether a file (``path`` or ``archive!member``) is in the index as an instance."""
        return path in self._files

    # ---- JSON --------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A plain, sorted, versioned form (``"format": 1``) that :meth:`from_dict` reads back."""
        patients = []
        for p in sorted_patients(self.patients):
            studies = []
            for st in sorted_studies(p.studies):
                series = []
                for se in sorted_series(st.series):
                    series.append(
                        {
                            "uid": se.uid,
                            "number": se.number,
                            "description": se.description,
                            "modality": se.modality,
                            "instances": [_instance_dict(r, p, st, se) for r in sorted_instances(se.instances)],
                        }
                    )
                studies.append(
                    {
                        "uid": st.uid,
                        "date": st.date,
                        "time": st.time,
                        "description": st.description,
                        "accession": st.accession,
                        "series": series,
                    }
                )
            patients.append({"patient_id": p.patient_id, "patient_name": p.patient_name, "studies": studies})
        rejected = [
            {"path": r.path, "member": r.member, "reason": r.reason}
            for r in sorted(self.rejected, key=lambda r: (r.path, r.member, r.reason))
        ]
        return {"format": FORMAT, "patients": patients, "rejected": rejected}

    def to_json(self, indent: int | None = None) -> str:
        """:meth:`to_dict` as JSON text with sorted keys (identical content gives identical text)."""
        return json.dumps(self.to_dict(), sort_keys=True, indent=indent, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DicomIndex:
        """Rebuild an index from :meth:`to_dict` output. Raises ValueError for another format."""
        if data.get("format") != FORMAT:
            raise ValueError(f"unsupported index format {data.get('format')!r} (expected {FORMAT})")
        try:
            records, rejected = _records_from_dict(data)
        except (KeyError, TypeError) as exc:  # a hand-edited or truncated file
            raise ValueError(f"not a valid index: {exc!r}") from exc
        index = cls()
        index.add(records, rejected)
        return index

    @classmethod
    def from_json(cls, text: str) -> DicomIndex:
        """Rebuild an index from :meth:`to_json` text. Raises ValueError for anything else."""
        return cls.from_dict(json.loads(text))


def _records_from_dict(data: dict[str, Any]) -> tuple[list[InstanceRecord], list[Rejected]]:
    records: list[InstanceRecord] = []
    for p in data["patients"]:
        for st in p["studies"]:
            for se in st["series"]:
                base = {
                    "patient_id": p["patient_id"],
                    "patient_name": p["patient_name"],
                    "study_uid": st["uid"],
                    "study_date": st["date"],
                    "study_time": st["time"],
                    "study_description": st["description"],
                    "accession_number": st["accession"],
                    "series_uid": se["uid"],
                    "series_number": se["number"],
                    "series_description": se["description"],
                    "modality": se["modality"],
                }
                records.extend(InstanceRecord(**{**base, **inst}) for inst in se["instances"])
    rejected = [Rejected(r["path"], r["reason"], r.get("member", "")) for r in data.get("rejected", ())]
    return records, rejected


def _instance_dict(rec: InstanceRecord, p: PatientNode, st: StudyNode, se: SeriesNode) -> dict[str, Any]:
    out = {name: getattr(rec, name) for name in _INSTANCE_FIELDS}
    # Store inherited fields only where this instance disagrees with its node.
    node_values = (
        (p.patient_id, p.patient_name)
        + (st.uid, st.date, st.time, st.description, st.accession)
        + (se.uid, se.number, se.description, se.modality)
    )
    for name, node_value in zip(_INHERITED, node_values, strict=True):
        value = getattr(rec, name)
        if value != node_value:
            out[name] = value
    return out


# ---- canonical display order (children themselves stay in arrival order) ---------------------


def sorted_patients(patients: Iterable[PatientNode]) -> list[PatientNode]:
    """Patients by ID, then name."""
    return sorted(patients, key=lambda p: (p.patient_id, p.patient_name))


def sorted_studies(studies: Iterable[StudyNode]) -> list[StudyNode]:
    """Studies by date, time, UID."""
    return sorted(studies, key=lambda s: (s.date, s.time, s.uid))


def sorted_series(series: Iterable[SeriesNode]) -> list[SeriesNode]:
    """Series by number (unnumbered last), then UID."""
    return sorted(series, key=lambda s: (s.number is None, s.number or 0, s.uid))


def sorted_instances(instances: Iterable[InstanceRecord]) -> list[InstanceRecord]:
    """Instances by instance number (unnumbered last), then path and member."""
    return sorted(instances, key=lambda r: (r.instance_number is None, r.instance_number or 0, r.path, r.member))


def build_index(instances: Iterable[InstanceRecord] = (), rejected: Iterable[Rejected] = ()) -> DicomIndex:
    """A new index holding ``instances`` and ``rejected``."""
    index = DicomIndex()
    index.add(instances, rejected)
    return index
