"""Copies of an upload that XNAT kept in the Unassigned prearchive while it ran our session as its guest.

On an open XNAT (``requireLogin=false``) an import sent after the login session ended is not refused: XNAT
files it under Unassigned (core.xnat.session tells that case apart, signs in again and sends the data again
to the chosen project). The first copy stays on the server. It is never deleted behind the user's back: it is
recorded in the job's history here, and the receipt and the job's final message name it, so someone who may
see the Unassigned prearchive can delete it. Thread-safe like the queue store.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from xnat_uploader.core.queue.store import QueueStore

EVENT = "stray"  # the history event


def record(store: QueueStore, job_id: int, uris: Iterable[str], files: int) -> None:
    """Note that ``files`` files of job ``job_id`` also went to each of ``uris`` (Unassigned sessions)."""
    for uri in uris:
        store.log(job_id, EVENT, json.dumps({"uri": uri, "files": files}))


def listed(store: QueueStore, job_id: int) -> list[dict[str, Any]]:
    """The job's strays, one entry per Unassigned session: ``{"uri": ..., "files": n}`` in order of arrival."""
    out: dict[str, int] = {}
    for _, event, detail in store.history(job_id):
        if event != EVENT:
            continue
        try:
            entry = json.loads(detail)
            out[str(entry["uri"])] = out.get(str(entry["uri"]), 0) + int(entry["files"])
        except (ValueError, KeyError, TypeError):
            continue  # a hand-edited or foreign row: not ours
    return [{"uri": uri, "files": files} for uri, files in out.items()]


def note(strays: list[dict[str, Any]]) -> str:
    """A sentence for the job's final message, or ``""`` when there are none."""
    if not strays:
        return ""
    files = sum(s["files"] for s in strays)
    where = "1 session" if len(strays) == 1 else f"{len(strays)} sessions"
    return (
        f"XNAT signed this upload out for a moment: {files} file(s) also went to the Unassigned prearchive "
        f"({where}, listed in the receipt) before they were sent again to the project; an XNAT administrator "
        "can delete those copies"
    )
