"""The DICOM index: tree, counts, incremental adds, merges, string sharing, JSON and memory."""

from __future__ import annotations

import functools
import gc
import itertools
import json
import random
import sys
import tracemalloc
from collections.abc import Iterator

import pytest

from xnat_uploader.core.dicom.index import DicomIndex, PatientNode, SeriesNode, StudyNode, build_index
from xnat_uploader.core.dicom.records import InstanceRecord, Rejected, ScanBatch
from xnat_uploader.sandbox.synthetic import iter_instances, plan_corpus


def _copy(s: str) -> str:
    """An equal string that is a different object, as separate parses of separate files give."""
    return (s + ".")[:-1]


def _interned(s: str) -> str:
    return sys.intern(str.__str__(s))  # str.__str__: a plain str even from pydicom's UID subclass


def records_for(corpus, size: int = 1000, root: str = "export", copy=_copy) -> Iterator[InstanceRecord]:
    """In-memory records for a planned corpus (no files); by default repeated strings are not shared."""
    _copy = copy
    for patient, study, series, sop_uid, number in iter_instances(corpus):
        yield InstanceRecord(
            path=f"{root}/{patient.patient_id}/{study.accession}/{series.number:03d}/IM_{number:05d}.dcm",
            size=size,
            patient_id=_copy(patient.patient_id),
            patient_name=_copy(patient.name),
            study_uid=_copy(study.uid),
            study_date=_copy(study.date),
            study_time=_copy(study.time),
            study_description=_copy(study.description),
            accession_number=_copy(study.accession),
            series_uid=_copy(series.uid),
            series_number=series.number,
            series_description=_copy(series.description),
            modality=_copy(series.modality),
            sop_class_uid=_copy(series.sop_class),
            sop_instance_uid=sop_uid,
            instance_number=number,
            transfer_syntax=_copy(series.transfer_syntax),
            image_type=_copy("ORIGINAL\\PRIMARY\\M"),
        )


def rec(path: str = "a/IM1", sop: str = "1.2.3.1", **fields) -> InstanceRecord:
    base = {
        "path": path,
        "size": 100,
        "patient_id": "P1",
        "patient_name": "Doe^Jane",
        "study_uid": "1.2.3",
        "study_date": "20240501",
        "study_time": "101500",
        "study_description": "BRAIN MR",
        "accession_number": "A1",
        "series_uid": "1.2.3.4",
        "series_number": 1,
        "series_description": "T1",
        "modality": "MR",
        "sop_class_uid": "1.2.840.10008.5.1.4.1.1.4",
        "sop_instance_uid": sop,
        "instance_number": 1,
        "transfer_syntax": "1.2.840.10008.1.2.1",
    }
    base.update(fields)
    return InstanceRecord(**base)


def test_counts_and_bytes_at_every_level():
    corpus = plan_corpus(patients=3, studies_per_patient=2, series_per_study=4, instances_per_series=5)
    index = build_index(records_for(corpus, size=1000))
    assert (index.patient_count, index.study_count, index.series_count) == (3, 6, 24)
    assert index.instance_count == len(index) == 120
    assert index.bytes == 120_000
    for patient, planned in zip(index.patients, corpus, strict=True):
        assert patient.patient_id == planned.patient_id
        assert patient.instance_count == 40
        assert patient.bytes == 40_000
        assert patient.series_count == 8
        for study in patient.studies:
            assert study.instance_count == 20
            assert study.bytes == 20_000
            assert study.modalities == (study.series[0].modality,)
            assert [s.number for s in study.series] == [1, 2, 3, 4]
            for series in study.series:
                assert series.instance_count == len(series.instances) == 5
                assert series.bytes == 5000
        first, last = patient.dates
        assert first == min(s.date for s in planned.studies)
        assert last == max(s.date for s in planned.studies)
    assert sum(1 for _ in index.iter_instances()) == 120


def test_incremental_adds_report_new_nodes_parents_first_and_keep_rows_stable():
    index = DicomIndex()
    assert index.generation == 0
    first = index.add([rec("a/1", "1.1"), rec("a/2", "1.2")])
    assert first.instances_added == 2
    kinds = [type(n) for n in first.new_nodes]
    assert kinds == [PatientNode, StudyNode, SeriesNode]
    assert first.generation == index.generation == 1
    series = index.patients[0].studies[0].series[0]
    assert first.touched_series == [series]

    second = index.add([rec("a/3", "1.3"), rec("b/1", "2.1", series_uid="1.2.3.5", series_number=2)])
    assert [type(n) for n in second.new_nodes] == [SeriesNode]
    assert second.new_nodes[0].row == 1
    assert second.new_nodes[0].parent is series.parent
    assert set(map(id, second.touched_series)) == {id(series), id(second.new_nodes[0])}
    assert series.row == 0
    assert index.patients[0].studies[0].series[0] is series
    assert index.generation == 2

    nothing = index.add([])
    assert nothing.empty
    assert index.generation == 2

    rejected = index.add_batch(ScanBatch(rejected=[Rejected("junk/notes.txt", "not DICOM")]))
    assert rejected.rejected_added == 1
    assert index.generation == 3
    assert [r.path for r in index.rejected] == ["junk/notes.txt"]


def test_growth_lets_a_model_announce_rows_after_each_add():
    """Replay what a lazy Qt model does with ``Changes``: its announced row counts always equal the index."""
    corpus = plan_corpus(patients=4, studies_per_patient=2, series_per_study=3, instances_per_series=4, seed=2)
    records = list(records_for(corpus))
    random.Random(7).shuffle(records)
    index = DicomIndex()
    announced = {id(index): 0}

    def key(node):
        return id(index) if node is None else id(node)

    start = 0
    for size in itertools.cycle([1, 5, 17, 2, 40]):
        batch = records[start : start + size]
        start += size
        if not batch:
            break
        changes = index.add(batch + batch[:1])  # a repeated file in the batch changes nothing
        new = {id(n) for n in changes.new_nodes}
        for growth in changes.grown:
            assert key(growth.parent) not in new
            assert growth.first == announced[key(growth.parent)]  # rows only append
            assert growth.last >= growth.first
            announced[key(growth.parent)] = growth.last + 1
        for node in changes.new_nodes:
            assert node.row < announced[key(node.parent)]  # inside an announced parent range
            announced[id(node)] = len(node.children)
        assert announced[id(index)] == len(index.patients)
        for patient in index.patients:
            assert announced[id(patient)] == len(patient.studies)
            for study in patient.studies:
                assert announced[id(study)] == len(study.series)
                for series in study.series:
                    assert announced[id(series)] == len(series.instances)
    assert index.instance_count == len(records)


def test_same_file_counts_once_same_uid_from_two_files_is_kept():
    index = DicomIndex()
    index.add([rec("a/1", "1.1")])
    again = index.add([rec("a/1", "1.1")])
    assert again.duplicates_ignored == 1
    assert again.instances_added == 0
    assert index.instance_count == 1
    assert index.bytes == 100
    index.add([rec("copy/1", "1.1")])  # another file, same SOPInstanceUID
    assert index.instance_count == 2
    assert "a/1" in index
    assert "copy/1" in index
    # archive members are files too: same member name in two archives are two files
    index.add([rec("x.zip", "9.1", member="IM1"), rec("y.zip", "9.2", member="IM1"), rec("x.zip", "9.1", member="IM1")])
    assert index.instance_count == 4
    index.add(rejected=[Rejected("n.txt", "not DICOM"), Rejected("n.txt", "not DICOM")])
    assert len(index.rejected) == 1


def test_patient_key_is_id_or_name_when_id_empty():
    index = build_index(
        [
            rec("1", "1", patient_id="P1", patient_name="A^A"),
            rec("2", "2", patient_id="P1", patient_name="A^B"),  # same ID, name typo: same patient
            rec("3", "3", patient_id="", patient_name="C^C", study_uid="9", series_uid="9.1"),
            rec("4", "4", patient_id="", patient_name="D^D", study_uid="8", series_uid="8.1"),
        ]
    )
    assert index.patient_count == 3
    assert index.patient("P1").instance_count == 2
    assert index.patient("", "C^C").instance_count == 1
    assert index.patient("", "D^D") is not index.patient("", "C^C")
    assert index.patient("nobody") is None


def test_one_study_uid_under_two_patients_gives_two_nodes():
    index = build_index([rec("1", "1", patient_id="P1"), rec("2", "2", patient_id="P2")])
    nodes = index.studies("1.2.3")
    assert len(nodes) == 2
    assert {n.parent.patient_id for n in nodes} == {"P1", "P2"}
    assert index.study_uids() == ["1.2.3"]


def test_merge_counts_shared_files_once():
    corpus = plan_corpus(patients=2, series_per_study=2, instances_per_series=3)
    records = list(records_for(corpus))
    a, b = build_index(records[:8]), build_index(records[4:])
    a.add(rejected=[Rejected("x.txt", "not DICOM")])
    b.add(rejected=[Rejected("x.txt", "not DICOM"), Rejected("y.pdf", "not DICOM")])
    changes = a.merge(b)
    assert changes.instances_added == len(records) - 8
    assert changes.duplicates_ignored == 4
    assert a.instance_count == len(records) == build_index(records).instance_count
    assert a.series_count == 4
    assert a.patient_count == 2
    assert sorted(r.path for r in a.rejected) == ["x.txt", "y.pdf"]


def test_repeated_strings_are_shared():
    corpus = plan_corpus(patients=1, series_per_study=2, instances_per_series=4)
    index = build_index(records_for(corpus))
    insts = list(index.iter_instances())
    for field in ("patient_name", "study_uid", "series_uid", "modality", "transfer_syntax", "image_type"):
        assert len({id(getattr(r, field)) for r in insts}) == len({getattr(r, field) for r in insts}), field
    members = build_index([rec(_copy("arch.zip"), str(i), member=f"IM{i}") for i in range(5)])
    assert len({id(r.path) for r in members.iter_instances()}) == 1


def test_json_round_trip_is_stable_sorted_and_versioned():
    corpus = plan_corpus(patients=2, studies_per_patient=2, series_per_study=2, instances_per_series=3, seed=4)
    records = list(records_for(corpus))
    odd = rec("odd/1", "7.1", patient_id="", patient_name="Müller^Jürgen", study_uid="7", series_uid="7.2")
    oddball = rec("odd/2", "7.2", patient_id="", patient_name="Müller^Jürgen", study_uid="7", series_uid="7.2")
    oddball = InstanceRecord(**{**{f: getattr(oddball, f) for f in oddball.__dataclass_fields__}, "modality": "OT"})
    member = rec("odd/a.zip", "7.3", member="IM1", series_number=None, instance_number=None, burned_in_annotation="YES")
    index = build_index([*reversed(records), odd, oddball, member], [Rejected("z.txt", "not DICOM")])
    text = index.to_json()
    data = json.loads(text)
    assert data["format"] == 1
    assert list(data) == sorted(data)
    again = DicomIndex.from_json(text)
    assert again.to_json() == text
    assert again.instance_count == index.instance_count
    assert again.bytes == index.bytes
    assert sorted(again.iter_instances(), key=lambda r: r.path) == sorted(index.iter_instances(), key=lambda r: r.path)
    # Arrival order does not change the text.
    assert build_index([odd, member, oddball, *records], [Rejected("z.txt", "not DICOM")]).to_json() == text
    ids = [p["patient_id"] for p in data["patients"]]
    assert ids == sorted(ids)
    with pytest.raises(ValueError, match="format"):
        DicomIndex.from_dict({"format": 99, "patients": []})
    with pytest.raises(ValueError, match="not a valid index"):
        DicomIndex.from_dict({"format": 1, "patients": [{"studies": [{"series": [{"instances": [{}]}]}]}]})
    with pytest.raises(json.JSONDecodeError):
        DicomIndex.from_json(text[: len(text) // 2])


def _batches(total: int, batch: int = 1000) -> Iterator[list[InstanceRecord]]:
    # 20 patients x 2 studies x 10 series x 250 instances = 100,000
    corpus = plan_corpus(patients=20, studies_per_patient=2, series_per_study=10, instances_per_series=total // 400)
    out: list[InstanceRecord] = []
    # Repeated strings interned, as the scanner delivers them (unshared input is tested above).
    for r in records_for(corpus, size=140_000, root="exports/site_a/2024_batch", copy=functools.cache(_interned)):
        out.append(r)
        if len(out) == batch:
            yield out
            out = []
    if out:
        yield out


def test_100k_instances_take_well_under_100_mb():
    gc.collect()
    tracemalloc.start()
    try:
        index = DicomIndex()
        for batch in _batches(100_000):
            index.add(batch)
        del batch
        gc.collect()
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert index.instance_count == 100_000
    assert index.series_count == 400
    print(f"\nindex of {index.instance_count:,} instances: {current / 1e6:.1f} MB held, {peak / 1e6:.1f} MB peak")
    assert current < 70e6, current
    assert peak < 100e6, peak
