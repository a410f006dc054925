"""What became of the files XNAT did not store, in the words a job ends with.

Two kinds (xnat-api.md 14), both recorded per file in the queue store:

* **dropped** (:attr:`FileState.DROPPED`): XNAT accepted the file and kept nothing, by a series import filter
  or an anonymization script's reject (200 with an empty body; for DICOM-zip, a batch answered that way, or a
  series missing after the commit that the project's filter was seen to drop before the upload). An outcome:
  the job ends done, with a warning naming the series; they are never sent again.
* **refused** (:attr:`FileState.FAILED`): XNAT answered 400 "unable to read DICOM object" for a valid file,
  even after a few tries (a fault on the server). The job ends failed, naming them; Retry sends only those.

Pure functions over the store's rows, plus :func:`settle_filtered`, which records what verification proved
dropped. Any thread.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xnat_uploader.core.errors import UserError
from xnat_uploader.core.queue.store import FileRow, FileState, JobRow, QueueStore
from xnat_uploader.core.verify import VerifyResult
from xnat_uploader.core.xnat.series_filter import series_name

DROPPED_REASON = "dropped by the server (series import filter or anonymization script)"
FILTERED_REASON = "dropped by the project's series import filter (as shown before the upload)"
# Job option (core.plan): the series the server's series import filter was seen to drop before the upload,
# as FilteredSeries.as_option() dicts. DICOM-zip has no per-file answer, so verification needs them.
OPT_FILTERED = "filtered_series"
SHOWN = 6  # series named in a job's message; the receipt lists them all


@dataclass(frozen=True)
class DroppedSeries:
    series_uid: str
    number: int | None
    description: str
    files: int
    reason: str

    @property
    def name(self) -> str:
        return series_name(self.number, self.description)

    def as_receipt(self) -> dict[str, Any]:
        return {
            "series_uid": self.series_uid, "series_number": self.number, "description": self.description,
            "files": self.files, "reason": self.reason,
        }  # fmt: skip


def dropped_series(job: JobRow, files: Iterable[FileRow]) -> list[DroppedSeries]:
    """The job's dropped files, per series (in the order of the files), described where the plan knew it."""
    described = {s.get("series_uid"): s.get("description", "") for s in job.spec.options.get(OPT_FILTERED) or ()}
    groups: dict[str, list[FileRow]] = {}
    for f in files:
        if f.state is FileState.DROPPED:
            groups.setdefault(f.series_uid, []).append(f)
    return [
        DroppedSeries(uid, rows[0].series_number, str(described.get(uid) or ""), len(rows), rows[0].message)
        for uid, rows in groups.items()
    ]


def dropped_note(job: JobRow, files: Iterable[FileRow]) -> str:
    """``1 series (12 files) was dropped by the server (...): series 1 "Localizer"``, or "" when none was."""
    series = dropped_series(job, files)
    if not series:
        return ""
    count = sum(s.files for s in series)
    names = ", ".join(s.name + ("" if len(series) == 1 else f" ({s.files} files)") for s in series[:SHOWN])
    names += f" and {len(series) - SHOWN} more (see the receipt)" if len(series) > SHOWN else ""
    verb = "was" if len(series) == 1 else "were"
    return f"{len(series)} series ({count} file{'s' * (count != 1)}) {verb} {DROPPED_REASON}: {names}"


def refused(files: Iterable[FileRow], rest_arrived: bool = True) -> tuple[str, str] | None:
    """(message, hint) for files XNAT refused for good, or ``None`` when there are none."""
    failed = [f for f in files if f.state is FileState.FAILED]
    if not failed:
        return None
    words = sorted({f.message for f in failed if f.message})
    said = f" (XNAT says: {'; '.join(words[:3])}{'; ...' if len(words) > 3 else ''})" if words else ""
    n = len(failed)
    return (
        f"{n} file{'s were' if n != 1 else ' was'} not stored: XNAT refused {'them' if n != 1 else 'it'} although "
        f"{'they are' if n != 1 else 'it is'} valid DICOM{said}. "
        + ("Everything else arrived." if rest_arrived else "Nothing was stored."),
        "XNAT answers this way for trouble on the server (database, disk, anonymization script). Press Retry to "
        "send just these files again; if it keeps failing, send the details to your XNAT administrator.",
    )


def not_delivered(files: list[FileRow], shown: int = 3) -> tuple[str, str] | None:
    """(message, hint) for a C-STORE job's files the receiver refused or that failed, or ``None`` when none.

    The job ends failed although the others arrived: the user must see which did not. File names (which may
    carry a patient's name) go in the hint only; the message is also written to the app's log.
    """
    missing = [f for f in files if f.state in (FileState.REJECTED, FileState.FAILED)]
    if not missing:
        return None
    named = [f"{Path(f.member or f.path).name} ({f.message.removeprefix('Not sent: ').rstrip('.')})" for f in missing]
    more = f"; and {len(missing) - shown} more" if len(missing) > shown else ""
    if any(f.state is FileState.FAILED for f in missing):
        what = "Retry the job to send the failed files again."
    else:
        what = "The receiver refused them for good."
    return (
        f"{len(missing)} of {len(files)} files not delivered.",
        f"{'; '.join(named[:shown])}{more}. {what} The receipt lists each file with its reason.",
    )


def nothing_stored(files: list[FileRow]) -> UserError | None:
    """Why a job holds no session to commit, or ``None`` when every file was dropped (an outcome, not an error)."""
    if files and all(f.state is FileState.DROPPED for f in files):
        return None
    problem = refused(files, rest_arrived=False)
    if problem is not None:
        return UserError(*problem)
    return UserError("Nothing was sent: every file was rejected.", "See the rejected files in the receipt.")


def all_dropped_message(job: JobRow, files: Iterable[FileRow]) -> str:
    """The done message of a job whose every file XNAT dropped: nothing to commit."""
    return f"Nothing to commit: XNAT kept none of the files. {dropped_note(job, files)}."


def settle_filtered(store: QueueStore, job: JobRow, result: VerifyResult, sent: list[FileRow]) -> VerifyResult:
    """Record as dropped the series verification found empty that the project's filter was seen to drop.

    DICOM-zip gets no answer per file: a series whose files were all in accepted batches, of which the server
    holds none, and which the plan predicted the filter would drop (:data:`OPT_FILTERED`), was dropped. Its
    files become :attr:`FileState.DROPPED` and leave the result (so it is neither short nor re-sent).
    """
    predicted = {s.get("series_uid") for s in job.spec.options.get(OPT_FILTERED) or ()}
    gone = [s for s in result.series if s.found == 0 and set(s.series_uids) <= predicted]
    if not gone:
        return result
    empty = {uid for s in gone for uid in s.series_uids}
    store.mark_dropped(job.id, [f.id for f in sent if f.series_uid in empty], FILTERED_REASON)
    kept = [s for s in result.series if s not in gone]
    return VerifyResult(result.uri, kept, result.extra_scans)
