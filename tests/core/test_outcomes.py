"""The words a job ends with when XNAT did not store some files, and what verification records as dropped."""

from __future__ import annotations

from xnat_uploader.core.queue import outcomes
from xnat_uploader.core.queue.store import FileSpec, FileState, JobSpec, QueueStore
from xnat_uploader.core.verify import SeriesCheck, VerifyResult


def _job(store: QueueStore, series: int, per_series: int = 2, filtered: list[dict] | None = None) -> int:
    spec = JobSpec("http://x", "u", "P", "S", "S_MR1", "zip", "1.2", {outcomes.OPT_FILTERED: filtered or []})
    files = [
        FileSpec(f"/d/{k}/{i}", 10, f"1.2.{k}.{i}", f"1.2.{k}", series_number=k)
        for k in range(1, series + 1)
        for i in range(per_series)
    ]
    return store.add_job(spec, files)


def test_dropped_series_are_named_with_counts_and_long_lists_are_cut(tmp_path):
    with QueueStore(tmp_path / "q.db") as store:
        filtered = [{"series_uid": "1.2.1", "description": "Localizer"}]
        job_id = _job(store, 8, filtered=filtered)
        files = store.files(job_id)
        store.mark_dropped(job_id, [f.id for f in files if f.series_number == 1], outcomes.DROPPED_REASON)
        note = outcomes.dropped_note(store.job(job_id), store.files(job_id))
        assert note == (
            "1 series (2 files) was dropped by the server (series import filter or anonymization script): "
            'series 1 "Localizer"'
        )
        store.mark_dropped(job_id, [f.id for f in files], outcomes.DROPPED_REASON)
        note = outcomes.dropped_note(store.job(job_id), store.files(job_id))
        assert note.startswith("8 series (16 files) were dropped by the server")
        assert 'series 1 "Localizer" (2 files), series 2 (2 files)' in note
        assert note.endswith("series 6 (2 files) and 2 more (see the receipt)")
        assert outcomes.nothing_stored(store.files(job_id)) is None  # every file dropped: an outcome
        assert outcomes.all_dropped_message(store.job(job_id), store.files(job_id)).startswith(
            "Nothing to commit: XNAT kept none of the files. 8 series (16 files)"
        )


def test_refused_files_are_counted_with_xnats_words(tmp_path):
    with QueueStore(tmp_path / "q.db") as store:
        job_id = _job(store, 1, per_series=3)
        a, b, c = store.files(job_id)
        assert outcomes.refused(store.files(job_id)) is None
        store.mark_failed(job_id, [a.id], "unable to read DICOM object 1.2.1.0.dcm")
        message, hint = outcomes.refused(store.files(job_id))
        assert message == (
            "1 file was not stored: XNAT refused it although it is valid DICOM "
            "(XNAT says: unable to read DICOM object 1.2.1.0.dcm). Everything else arrived."
        )
        assert "Retry" in hint
        store.mark_failed(job_id, [b.id, c.id], "unable to read DICOM object x.dcm")
        problem = outcomes.nothing_stored(store.files(job_id))
        assert problem is not None
        assert problem.message.startswith("3 files were not stored: XNAT refused them although they are valid")
        assert problem.message.endswith("Nothing was stored.")


def test_a_predicted_series_found_empty_is_recorded_as_dropped_and_leaves_the_result(tmp_path):
    with QueueStore(tmp_path / "q.db") as store:
        job_id = _job(store, 3, filtered=[{"series_uid": "1.2.1"}, {"series_uid": "1.2.3"}])
        store.mark_sent(job_id, [f.id for f in store.files(job_id)])
        sent = store.files(job_id, [FileState.SENT])
        result = VerifyResult(
            "/data/prearchive/projects/P/1/S",
            [
                SeriesCheck("1", ("1.2.1",), "", 2, 0),  # predicted and empty: dropped
                SeriesCheck("2", ("1.2.2",), "T1", 2, 0),  # not predicted: really missing
                SeriesCheck("3", ("1.2.3",), "T2", 2, 1),  # predicted, but partly there: not a filter's doing
            ],
        )
        settled = outcomes.settle_filtered(store, store.job(job_id), result, sent)
        assert [s.scan_id for s in settled.series] == ["2", "3"]
        assert settled.missing_series_uids() == {"1.2.2", "1.2.3"}
        dropped = store.files(job_id, [FileState.DROPPED])
        assert {f.series_uid for f in dropped} == {"1.2.1"}
        assert {f.message for f in dropped} == {outcomes.FILTERED_REASON}
        assert outcomes.settle_filtered(store, store.job(job_id), settled, sent) is settled  # nothing more to do
