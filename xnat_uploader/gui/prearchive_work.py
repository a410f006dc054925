"""The server calls of the Prearchive tab, as work functions for :class:`~xnat_uploader.gui.workers.Worker`.

No Qt here. Each function returns or yields plain tuples that name what they belong to (the listing
generation, the session), so the panel can drop answers that arrive after the user moved on. Errors are
turned into text for the table instead of failing the worker: one session's error never hides the others.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator
from typing import Any

from xnat_uploader.core.attach import attach_pending, jobs_waiting_for_archive
from xnat_uploader.core.errors import UserError
from xnat_uploader.core.prearchive_archive import archive_as_chosen
from xnat_uploader.core.queue.store import QueueStore
from xnat_uploader.core.upload_choices import OnExisting
from xnat_uploader.core.xnat import ArchiveRef, PrearchiveSession, XnatClient

WorkFn = Callable[[threading.Event], Generator[Any, None, Any]]
Op = Callable[[XnatClient, PrearchiveSession, threading.Event], str]  # the event: the worker's cancel


def error_text(exc: BaseException) -> str:
    if isinstance(exc, UserError):
        return f"{exc.message} {exc.hint}".strip()
    return f"Unexpected error: {type(exc).__name__}: {exc}"


def once(fn: Callable[[], Any]) -> WorkFn:
    """A one-shot blocking call as a generator function."""

    def work(cancel: threading.Event) -> Generator[Any, None, Any]:
        yield from ()
        return fn()

    return work


def guarded(tag: Any, fn: Callable[[], Any]) -> WorkFn:
    """``(tag, result, "")`` or ``(tag, None, error text)``."""

    def call() -> tuple[Any, Any, str]:
        try:
            return tag, fn(), ""
        except Exception as exc:  # noqa: BLE001 - shown to the user by the panel
            return tag, None, error_text(exc)

    return once(call)


def count_scans(client: XnatClient, sessions: list[PrearchiveSession], gen: int) -> WorkFn:
    """Yields ``(gen, ref, scans, files, lastmod)`` per session whose scans could be listed; returns ``gen``."""

    def work(cancel: threading.Event) -> Generator[Any, None, int]:
        for s in sessions:
            if cancel.is_set():
                break
            try:
                scans = client.prearchive_scans(s.ref)
            except Exception:  # noqa: BLE001 - counts stay empty; the details pane shows the error
                continue
            yield gen, s.ref, len(scans), sum(sc.file_count or 0 for sc in scans), s.lastmod
        return gen

    return work


def run_actions(client: XnatClient, sessions: list[PrearchiveSession], op: Op, gen: int) -> WorkFn:
    """Yields ``(gen, ref, ok, text)`` per session, one after the other; returns ``gen``."""

    def work(cancel: threading.Event) -> Generator[Any, None, int]:
        for s in sessions:
            if cancel.is_set():
                break
            try:
                yield gen, s.ref, True, op(client, s, cancel)
            except Exception as exc:  # noqa: BLE001 - every error goes to its row
                yield gen, s.ref, False, error_text(exc)
        return gen

    return work


ATTACH_WAIT = 10.0  # seconds XNAT gets to list a session it has just archived


def archive_op(
    subject: str,
    label: str,
    choice: OnExisting,
    done: str,
    attach: AttachAfter | None = None,
) -> Op:
    """``done`` is a translated template with one ``{}`` for ``project/subject/session``. With ``attach``, the
    resources of uploads that were waiting for this session to be archived are attached next."""

    def op(client: XnatClient, s: PrearchiveSession, cancel: threading.Event) -> str:
        # One request, never re-sent blindly: a lost answer is settled by watching XNAT (core.xnat.settle).
        result = archive_as_chosen(client, s.ref, choice, subject=subject or None, label=label or None, cancel=cancel)
        ref = result.archive_ref
        text = done.format(f"{ref.project}/{ref.subject}/{ref.experiment}" if ref else result.uri)
        return text + (attach.run(client, s, ref) if attach is not None else "")

    return op


class AttachAfter:
    """After an archive: attach the pending resources of the queue's jobs that uploaded that prearchive session.

    ``on_job_changed(job_id)`` is called (on the worker thread) for every job whose message changed.
    """

    def __init__(self, store: QueueStore, server_url: str, on_job_changed: Callable[[int], None]) -> None:
        self.store, self.server_url, self.on_job_changed = store, server_url, on_job_changed

    def run(self, client: XnatClient, s: PrearchiveSession, ref: ArchiveRef | None) -> str:
        """``"; attached 2 item(s) (PDF, MISC)"`` or ``""`` when no job was waiting for this session."""
        jobs = jobs_waiting_for_archive(self.store, s.project, s.timestamp, s.folder, server_url=self.server_url)
        notes = []
        for job_id in jobs:
            try:
                result = attach_pending(
                    self.store, client.session, job_id, subject=ref.subject if ref else None,
                    label=ref.experiment if ref else None, wait=ATTACH_WAIT,
                )  # fmt: skip
                notes.append(result.summary())
            except UserError as exc:
                notes.append(f"resources not attached: {exc.message}")
            except Exception as exc:  # noqa: BLE001 - the archive worked; say what went wrong with the rest
                notes.append(f"resources not attached: {error_text(exc)}")
            self.on_job_changed(job_id)
        return "".join(f"; {n}" for n in notes)


def move_op(project: str, done: str) -> Op:
    def op(client: XnatClient, s: PrearchiveSession, cancel: threading.Event) -> str:
        client.move(s.ref, project)
        return done

    return op


def rebuild_op(done: str) -> Op:
    def op(client: XnatClient, s: PrearchiveSession, cancel: threading.Event) -> str:
        client.rebuild([s.ref])
        return done

    return op


def delete_op(done: str) -> Op:
    def op(client: XnatClient, s: PrearchiveSession, cancel: threading.Event) -> str:
        client.delete(s.ref)
        return done

    return op
