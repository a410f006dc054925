"""Attaching non-DICOM files and folders to an archived session as resources (xnat-api.md 6).

A folder goes as one streamed ZIP_STORED zip (``<folder>.zip``, names relative to the folder) that XNAT
unpacks (``extract=true``); a file goes as itself. Without ``overwrite`` files already in the resource are
kept and reported as duplicates, so attaching the same items twice sends nothing twice. Used by the queue
runner (a job's exam items), by ``xnat-uploader resource upload`` and by the prearchive actions.

The items a queued job carries (options key :data:`OPT_RESOURCES`) are attached once its session is in the
archive, or kept pending on the job. Each attached item leaves an ``attached`` event (``RESOURCE: PATH``) in
the job's history; the items without one are pending. So attaching again (after a crash, a failure, or a
prearchive session archived later) sends only what is missing, and a finished job keeps its state: the DICOM
upload is never lost to an attach problem. Blocking server calls: run them on a worker thread or the
command line's thread.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from xnat_uploader.core.errors import Cancelled, UserError
from xnat_uploader.core.queue.store import JobRow, JobState, QueueStore
from xnat_uploader.core.receipt import write_receipt
from xnat_uploader.core.transfer.folders import folder_body
from xnat_uploader.core.xnat.listing import experiment_path, list_experiments, list_prearchive
from xnat_uploader.core.xnat.models import PrearchiveRef
from xnat_uploader.core.xnat.resources import create_resource, upload_file
from xnat_uploader.core.xnat.transport import normalize_url

if TYPE_CHECKING:
    from xnat_uploader.core.xnat.session import XnatSession

log = logging.getLogger(__name__)

MISC = "MISC"
OPT_RESOURCES = "resources"  # job option: [{"path", "resource", "is_folder"}, ...]
OPT_RESOURCE_OVERWRITE = "resource_overwrite"  # job option: replace files already in a resource (default False)
EVENT_ATTACHED = "attached"
EVENT_NOT_ATTACHED = "attach failed"
WAITING = "wait for the session to be archived"
NOTE = "resources: "  # starts the attach note in a job's DONE message, after "; "
ARCHIVE_WAIT = 120.0  # seconds a job waits for XNAT to show its archived session


class AttachItem(Protocol):
    """What :func:`attach_items` needs of an item (:class:`Attachment` and ``exam.ExamItem`` both fit)."""

    @property
    def path(self) -> str: ...
    @property
    def resource(self) -> str: ...
    @property
    def is_folder(self) -> bool: ...


@dataclass(frozen=True)
class Attachment:
    """A file or folder to attach to a session's resource, as a job keeps it in its options."""

    path: str
    resource: str
    is_folder: bool


def to_options(items: Iterable[AttachItem]) -> list[dict[str, Any]]:
    """The JSON-able form of ``items`` stored under :data:`OPT_RESOURCES`."""
    return [{"path": i.path, "resource": i.resource, "is_folder": bool(i.is_folder)} for i in items]


def from_options(options: Mapping[str, Any]) -> list[Attachment]:
    """The attachments a job's options hold (none when there are none)."""
    return [Attachment(str(d["path"]), str(d["resource"]), bool(d.get("is_folder")))
            for d in options.get(OPT_RESOURCES) or ()]  # fmt: skip


@dataclass
class ItemOutcome:
    """What happened to one item: ``files`` sent (the folder's count), names kept as they were, or an error."""

    path: str
    resource: str
    files: int = 0
    duplicates: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error

    def as_dict(self) -> dict[str, Any]:
        return {"item": self.path, "resource": self.resource, "files": self.files,
                "duplicates": list(self.duplicates), "error": self.error}  # fmt: skip


@dataclass
class AttachResult:
    items: list[ItemOutcome] = field(default_factory=list)

    @property
    def sent(self) -> list[ItemOutcome]:
        return [i for i in self.items if i.ok]

    @property
    def failed(self) -> list[ItemOutcome]:
        return [i for i in self.items if not i.ok]

    @property
    def duplicates(self) -> list[str]:
        return [d for i in self.items for d in i.duplicates]

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        """E.g. ``attached 2 item(s) (PDF, MISC); 3 file(s) already there kept``."""
        if not self.items:
            return "nothing to attach"
        parts = []
        if self.sent:
            names = ", ".join(dict.fromkeys(i.resource for i in self.sent))
            parts.append(f"attached {len(self.sent)} item(s) ({names})")
        if self.duplicates:
            parts.append(f"{len(self.duplicates)} file(s) already there kept")
        if self.failed:
            parts.append(f"{len(self.failed)} item(s) not attached")
        return "; ".join(parts)


def attach_items(
    session: XnatSession,
    parent_path: str,
    items: Sequence[AttachItem],
    *,
    overwrite: bool = False,
    cancel: threading.Event | None = None,
) -> AttachResult:
    """Upload ``items`` into resources of ``parent_path`` (a session or scan path, or an experiment ID).

    Resource and file names may carry patient names (folders named after them): the log gets error types only.
    Each resource is created first when missing (an existing one is fine). One item's failure is recorded in
    its outcome and the others go on; only the cancel event (checked between items) stops it, raising
    :class:`Cancelled`.
    """
    result = AttachResult()
    created: set[str] = set()
    for item in items:
        if cancel is not None and cancel.is_set():
            raise Cancelled()
        outcome = ItemOutcome(item.path, item.resource)
        result.items.append(outcome)
        try:
            if item.resource not in created:
                create_resource(session, parent_path, item.resource)
                created.add(item.resource)
            if item.is_folder:
                body, outcome.files = folder_body(item.path)
                sent = upload_file(session, parent_path, item.resource, f"{os.path.basename(item.path)}.zip", body,
                                   extract=True, overwrite=overwrite, content_type="application/zip")  # fmt: skip
            else:
                outcome.files = 1
                sent = upload_file(session, parent_path, item.resource, os.path.basename(item.path),
                                   item.path, overwrite=overwrite)  # fmt: skip
            outcome.duplicates = list(sent.duplicates)
        except UserError as exc:  # XnatError is a UserError: a refused or failed request
            outcome.error = str(exc)
            log.warning("Attaching an item to a resource failed: %s", type(exc).__name__)
        except OSError as exc:
            outcome.error = f"cannot be read: {exc.strerror or type(exc).__name__}"
            log.warning("Attaching an item to a resource failed: %s", type(exc).__name__)
    return result


def find_archived_session(session: XnatSession, project: str, label: str, subject: str | None = None) -> str:
    """The accession ID of session ``label`` (or ID) in the archive of ``project``.

    Raises :class:`UserError`, saying so when the session is only in the prearchive (it must be archived
    first) or nowhere.
    """
    for exp in list_experiments(session, project, subject or None):
        if label in (exp.label, exp.id):
            return exp.id
    waiting = [s for s in list_prearchive(session, project) if s.name == label]
    if waiting:
        w = waiting[0]
        raise UserError(
            f"Session '{label}' is in the prearchive of {project}, not in the archive.",
            f"It must be archived first: xnat-uploader prearchive archive {w.project}/{w.timestamp}/{w.folder}",
        )
    where = f"subject '{subject}' of project {project}" if subject else f"project {project}"
    raise UserError(
        f"Session '{label}' does not exist in the archive of {where}.",
        "Check the label; a session must be uploaded and archived before resources can be attached.",
    )


def wait_until_archived(
    session: XnatSession,
    project: str,
    label: str,
    *,
    timeout: float = 120.0,
    interval: float = 1.0,
    cancel: threading.Event | None = None,
) -> str | None:
    """Poll the project's sessions until ``label`` is in the archive; its accession ID, or None after ``timeout``.

    XNAT may archive in the background after a commit or a Direct-Archive upload; labels are unique within
    a project, so the project's list is enough. The cancel event is checked at least every second (raising
    :class:`Cancelled`).
    """
    deadline = time.monotonic() + timeout
    while True:
        for exp in list_experiments(session, project):
            if exp.label == label:
                return exp.id
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        if cancel is not None:
            if cancel.wait(min(interval, left, 1.0)):
                raise Cancelled()
        else:
            time.sleep(min(interval, left))


def _quote(arg: str) -> str:
    """``arg`` quoted for the user's shell: POSIX quoting, or on Windows the double quotes cmd and PowerShell read."""
    return subprocess.list2cmdline([arg]) if sys.platform == "win32" else shlex.quote(arg)


def attach_command(project: str, subject: str, label: str, items: Iterable[AttachItem], server_url: str = "") -> str:
    """The ``xnat-uploader resource upload ...`` command line(s) that attach ``items`` by hand, one per resource."""
    by_resource: dict[str, list[str]] = {}
    for item in items:
        by_resource.setdefault(item.resource, []).append(item.path)
    url = f" --url {_quote(server_url)}" if server_url else ""
    return "; ".join(
        f"xnat-uploader resource upload {' '.join(_quote(p) for p in paths)} -P {_quote(project)} "
        f"-S {_quote(subject)} -E {_quote(label)} --name {_quote(name)}{url}"
        for name, paths in by_resource.items()
    )


# -- the items a queued job carries ------------------------------------------------------------------


def _key(item: Attachment) -> str:
    return f"{item.resource}: {item.path}"


def pending_attachments(store: QueueStore, job_id: int) -> list[Attachment]:
    """The job's items not attached yet (its options' resources without an ``attached`` history event)."""
    done = {detail for _, event, detail in store.history(job_id) if event == EVENT_ATTACHED}
    return [a for a in from_options(store.job(job_id).spec.options) if _key(a) not in done]


def in_prearchive(job: JobRow) -> bool:
    """Whether the job's session stays in the prearchive (its URI is a prearchive row)."""
    try:
        PrearchiveRef.parse(job.uri)
    except ValueError:
        return False
    return True


def jobs_waiting_for_archive(
    store: QueueStore, project: str, timestamp: str, folder: str, *, server_url: str | None = None
) -> list[int]:
    """Jobs whose session is the prearchive row ``project/timestamp/folder`` and that still have items to attach."""
    out = []
    server = normalize_url(server_url) if server_url else None
    for job in store.jobs([JobState.DONE]):
        if server is not None and normalize_url(job.spec.server_url) != server:
            continue
        try:
            ref = PrearchiveRef.parse(job.uri)
        except ValueError:
            continue
        if (ref.project, ref.timestamp, ref.folder) == (project, timestamp, folder) and pending_attachments(
            store, job.id
        ):
            out.append(job.id)
    return out


def _record(store: QueueStore, job_id: int, items: list[Attachment], result: AttachResult) -> None:
    for item, outcome in zip(items, result.items, strict=False):
        if outcome.ok:
            store.log(job_id, EVENT_ATTACHED, _key(item))
        else:
            store.log(job_id, EVENT_NOT_ATTACHED, f"{_key(item)}: {outcome.error}")


def _failed_note(job: JobRow, failed: list[Attachment], why: str) -> str:
    names = ", ".join(Path(a.path).name for a in failed)
    spec = job.spec
    command = attach_command(spec.project, spec.subject, spec.session_label, failed, spec.server_url)
    return f"{len(failed)} item(s) not attached ({names}: {why}); attach them with: {command}"


def attach_for_job(
    store: QueueStore, session: XnatSession | None, job_id: int, *, cancel: threading.Event | None = None
) -> tuple[str, list[dict[str, Any]] | None]:
    """Called by the runner once the DICOM is verified: attach the job's pending items where they can go.

    Returns a note for the job's DONE message (``resources: ...``; "" when there is nothing to say) and the receipt's
    ``resources`` section (``None`` when the job carries no items). A session that stays in the prearchive
    keeps its items pending (see :func:`attach_pending`); an archived one is waited for (bounded, cancel-aware)
    and then gets them.
    """
    job = store.job(job_id)
    if not from_options(job.spec.options):
        return "", None
    items = pending_attachments(store, job_id)
    if not items:
        return "", _section(store, job_id, None)
    spec = job.spec
    if session is None or in_prearchive(job) or spec.mode == "cstore":
        how = (
            f" (archiving it with `xnat-uploader prearchive archive {_short(job.uri)}` attaches them)"
            if in_prearchive(job)
            else ""
        )
        note = f"{len(items)} item(s) to attach {WAITING}{how}"
        store.log(job_id, "resources", note)
        return NOTE + note, _section(store, job_id, None)
    exp_id = wait_until_archived(session, spec.project, spec.session_label, timeout=ARCHIVE_WAIT, cancel=cancel)
    if exp_id is None:
        note = _failed_note(job, items, f"the session did not appear in the archive within {ARCHIVE_WAIT:.0f} s")
        store.log(job_id, EVENT_NOT_ATTACHED, note)
        return NOTE + note, _section(store, job_id, None)
    result = _attach(store, session, job, exp_id, items, cancel)
    return NOTE + _note(job, items, result), _section(store, job_id, result)


def _short(uri: str) -> str:
    ref = PrearchiveRef.parse(uri)
    return f"{ref.project}/{ref.timestamp}/{ref.folder}"


def _attach(
    store: QueueStore, session: XnatSession, job: JobRow, exp_id: str, items: list[Attachment],
    cancel: threading.Event | None,
) -> AttachResult:  # fmt: skip
    overwrite = bool(job.spec.options.get(OPT_RESOURCE_OVERWRITE))
    result = attach_items(session, experiment_path(exp_id), items, overwrite=overwrite, cancel=cancel)
    _record(store, job.id, items, result)
    return result


def _note(job: JobRow, items: list[Attachment], result: AttachResult) -> str:
    failed = [a for a, o in zip(items, result.items, strict=False) if not o.ok]
    note = result.summary()
    if failed:
        why = next(o.error for o in result.items if not o.ok)
        note = f"{note}; {_failed_note(job, failed, why)}"
    return note


def _section(store: QueueStore, job_id: int, result: AttachResult | None) -> list[dict[str, Any]]:
    """The receipt's ``resources``: each item with its resource, files, duplicates, error or pending state."""
    outcomes = {(o.resource, o.path): o for o in result.items} if result else {}
    done = {detail for _, event, detail in store.history(job_id) if event == EVENT_ATTACHED}
    rows = []
    for item in from_options(store.job(job_id).spec.options):
        outcome = outcomes.get((item.resource, item.path))
        if outcome is not None:
            row = outcome.as_dict()
            row["state"] = "attached" if outcome.ok else "failed"
        else:
            state = "attached" if _key(item) in done else "pending"
            row = {"item": item.path, "resource": item.resource, "files": None, "duplicates": [], "error": "",
                   "state": state}  # fmt: skip
        rows.append(row)
    return rows


def attach_pending(
    store: QueueStore,
    session: XnatSession,
    job_id: int,
    *,
    cancel: threading.Event | None = None,
    subject: str | None = None,
    label: str | None = None,
    wait: float = 0.0,
) -> AttachResult:
    """Attach a finished job's pending items to its session, now archived (found by project + subject + label).

    ``subject``/``label`` name the archived session when it was archived under other labels than the job's;
    ``wait`` gives XNAT that many seconds to list a session it has just archived. Raises :class:`UserError`
    when the session is not in the archive (still in the prearchive, or nowhere). Updates the job's history,
    message and receipt; the job stays DONE.
    """
    job = store.job(job_id)
    items = pending_attachments(store, job_id)
    if not items:
        return AttachResult()
    spec = job.spec
    label, subject = label or spec.session_label, subject or spec.subject
    exp_id = wait_until_archived(session, spec.project, label, timeout=wait, cancel=cancel) if wait else None
    exp_id = exp_id or find_archived_session(session, spec.project, label, subject)
    result = _attach(store, session, job, exp_id, items, cancel)
    if job.state is JobState.DONE:
        base = job.message.split(f"; {NOTE}")[0]
        store.set_state(job_id, JobState.DONE, f"{base}; {NOTE}{_note(job, items, result)}", job.hint)
    _update_receipt(store, job_id, result)
    return result


def _update_receipt(store: QueueStore, job_id: int, result: AttachResult) -> None:
    job = store.job(job_id)
    if not job.receipt:
        return
    path = Path(job.receipt)
    try:
        receipt = json.loads(path.read_text(encoding="utf-8"))
        receipt["resources"] = _section(store, job_id, result)
        write_receipt(path.parent, receipt)
    except (OSError, ValueError, UserError) as exc:
        log.warning("Could not update the receipt of job %d: %s", job_id, type(exc).__name__)
