"""Archiving one prearchive session with a coordinator's choice: the Prearchive tab's Archive and the command
line's ``prearchive archive``.

XNAT's ``/data/services/archive`` of one session always merges into an archived session of the same label
(``Archiver.finishSingleSessionArchive`` passes allowSessionMerge=true): it cannot be told to refuse. So
"refuse if the session exists" is ours, checked against the archive before anything is sent; "add" sends no
``overwrite`` (XNAT merges and refuses images it already holds); "replace" sends ``overwrite=delete`` (XNAT
merges and overwrites them). See :mod:`core.upload_choices`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from xnat_uploader.core.upload_choices import OnExisting, archive_overwrite
from xnat_uploader.core.xnat import errors as E
from xnat_uploader.core.xnat.client import XnatClient
from xnat_uploader.core.xnat.listing import find_archived
from xnat_uploader.core.xnat.models import PrearchiveRef
from xnat_uploader.core.xnat.prearchive import ActionResult, ArchiveOverwrite


def archive_as_chosen(
    client: XnatClient,
    ref: PrearchiveRef,
    choice: OnExisting,
    *,
    subject: str | None = None,
    label: str | None = None,
    cancel: threading.Event | None = None,
    on_wait: Callable[[str], None] | None = None,
) -> ActionResult:
    """Archive ``ref`` (renamed to ``subject``/``label`` when given) as ``choice`` says; blocking.

    REFUSE raises :class:`~xnat_uploader.core.xnat.errors.SessionExistsError` without sending when the archive
    of the project already has a session of the label XNAT will use (``label``, else the row's own).
    """
    if choice is OnExisting.REFUSE:
        name = label or client.prearchive_session(ref).name or ref.folder
        if find_archived(client.session, ref.project, name, subject or "") is not None:
            raise E.SessionExistsError(
                f"Nothing was archived: a session {name} already exists in the archive of {ref.project}.",
                f'Choose "{OnExisting.ADD.label}" to add to it, "{OnExisting.REPLACE.label}" to also overwrite the '
                "images it already holds, or give another session label.",
            )
    overwrite = archive_overwrite(choice)
    return client.archive(
        ref, subject=subject, label=label, overwrite=ArchiveOverwrite(overwrite) if overwrite else None,
        cancel=cancel, on_wait=on_wait,
    )  # fmt: skip
