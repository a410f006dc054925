"""Before an "Add to the existing session" upload sends anything: would XNAT refuse the merge?

XNAT's commit merges an upload into the archived session of the same label, but refuses the whole merge
when the upload holds any file or instance that session already has, identical or not ("Session already
exists with matching files." or "... with the same resources.", ``MergeSessionsA.checkForConflict`` in
XNAT 1.8.11). It decides that only at the commit, after every file was sent, and leaves the upload in the
prearchive marked CONFLICT. So an ADD job that is about to archive into an existing session first lists that
session's scans: XNAT names scans after the SeriesNumber, so a series whose scan already holds files would
re-send images XNAT has. Then nothing is sent and the job ends with what to do (leave those series out, or
Replace). A series of new images beside old ones in the same scan is stopped too: only Replace can merge
that, as the refusal cannot be predicted from the listing (it names files, not instances). Another study
under that label is left to XNAT, which refuses it first, in its own words.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from xnat_uploader.core.queue.store import FileState
from xnat_uploader.core.transfer.base import TransferContext
from xnat_uploader.core.upload_choices import OnExisting, on_existing_for_job
from xnat_uploader.core.xnat import errors as E
from xnat_uploader.core.xnat.listing import ARCHIVE_UID, get_table, list_experiments, list_scans
from xnat_uploader.core.xnat.models import seg

if TYPE_CHECKING:
    from xnat_uploader.core.xnat.session import XnatSession

log = logging.getLogger(__name__)


def check_before_adding(ctx: TransferContext) -> None:
    """Raise :class:`~xnat_uploader.core.xnat.errors.SessionExistsError` when this ADD job would re-send series
    the archived session already holds. Only before the first file of a job that archives by commit is sent:
    a resumed job has its files in the prearchive already, and its commit says what XNAT thinks."""
    spec, store, job_id = ctx.job.spec, ctx.store, ctx.job.id
    if spec.mode == "cstore" or ctx.session is None or spec.options.get("direct_archive"):
        return
    adding = on_existing_for_job(spec.options, spec.mode) is OnExisting.ADD
    if not adding or spec.options.get("destination") != "archive":
        return
    files = store.files(job_id)
    if store.job(job_id).uri or any(f.state is not FileState.PENDING for f in files):
        return
    archived = ctx.retry.run(lambda: _archived(ctx.session, spec.project, spec.session_label), ctx.cancel)
    if archived is None:
        return
    experiment, study_uid = archived
    if study_uid and spec.study_uid and study_uid != spec.study_uid:
        return  # another study under this label: XNAT refuses that in its own words (the UID check comes first)
    scans = ctx.retry.run(lambda: list_scans(ctx.session, experiment), ctx.cancel)
    held = {s.id: s for s in scans if s.file_count}
    ours = {str(f.series_number) for f in files if f.series_number is not None}
    again = sorted((n for n in ours if n in held), key=lambda n: (not n.isdigit(), int(n) if n.isdigit() else 0, n))
    if not again:
        return
    words = [n + (f' "{held[n].series_description}"' if held[n].series_description else "") for n in again]
    named = words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"
    log.info("Add to %s stopped before sending: the archived session holds series %s", spec.study_uid, again)
    raise E.SessionExistsError(
        f"Session {spec.session_label} in the archive already holds images of series {named}. XNAT refuses to add "
        "images a session already has (even identical ones), so nothing was sent.",
        f'Leave out series {", ".join(again)} and upload again, or choose "{OnExisting.REPLACE.label}" to overwrite '
        "them.",
    )


def _archived(session: XnatSession, project: str, label: str) -> tuple[str, str] | None:
    """The archived session ``label`` of ``project``: (accession ID, its StudyInstanceUID or ``""`` when the server
    does not list it; xnat-api.md 5: the listings take XML paths as columns), or ``None``."""
    found = [e.id for e in list_experiments(session, project) if e.label == label]
    if not found:
        return None
    try:
        rows = get_table(
            session, f"/data/projects/{seg(project)}/experiments", {"columns": f"ID,label,{ARCHIVE_UID}"},
            action="looking for the session in the archive", project=project,
        )  # fmt: skip
    except E.XnatError as exc:
        if exc.transient:
            raise
        rows = []  # a server without that column: the study is not known, the scans decide
    uids = [v for r in rows if r.get("ID") == found[0] for k, v in r.items() if k.lower() == ARCHIVE_UID.lower()]
    return found[0], (uids[0] if uids else "")
