"""The receipt of an upload: what was sent where, with checksums and the server's verification.

Written as JSON (for machines and audits) and as readable text, next to each other in the data dir.
It holds file paths, UIDs and the subject and session labels, never passwords or patient names. Unlike the
log (:mod:`core.redact`), a receipt is the user's own record of what went where, so it keeps labels and paths;
that is why receipts and their folder are owner-only (:mod:`core.private`).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

from xnat_uploader import __version__
from xnat_uploader.core.private import private_dir, write_private_text
from xnat_uploader.core.queue.outcomes import dropped_series
from xnat_uploader.core.queue.store import FileRow, FileState, JobRow
from xnat_uploader.core.verify import VerifyResult
from xnat_uploader.core.xnat.series_filter import series_name

OPT_DUPLICATES = "duplicates_not_sent"  # job option (core.plan): copies of instances already in the job

FORMAT = 1


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def build_receipt(
    job: JobRow,
    files: list[FileRow],
    result: VerifyResult | None,
    started: float,
    resources: list[dict[str, Any]] | None = None,
    strays: list[dict[str, Any]] | None = None,
    notes: list[str] | None = None,
) -> dict[str, Any]:
    """The receipt as plain data. ``resources``: the attached items (``core.attach``), when the job had any;
    ``strays``: copies XNAT kept in the Unassigned prearchive while it ran the upload as guest (``core.strays``);
    ``notes``: what XNAT did with the commit (sent once, answer lost, found archived...).
    """
    sent = [f for f in files if f.state is FileState.SENT]
    spec = job.spec
    refused = (f for f in files if f.state is FileState.REJECTED)
    rejected = [{"path": f.path, "member": f.member, "reason": f.message} for f in refused]
    rejected += [
        {"path": d["path"], "member": d["member"],
         "reason": f"not sent: the same instance (SOPInstanceUID) as {d['same_as']}, which was sent"}
        for d in spec.options.get(OPT_DUPLICATES, ())
    ]  # fmt: skip
    dropped = [d.as_receipt() for d in dropped_series(job, files)]
    failed = [{"path": f.path, "member": f.member, "sop_uid": f.sop_uid, "reason": f.message}
              for f in files if f.state is FileState.FAILED]  # fmt: skip
    return {
        "format": FORMAT,
        "app": f"xnat-uploader {__version__}",
        "job": job.id,
        "server": spec.server_url,
        "user": spec.user,
        "project": spec.project,
        "subject": spec.subject,
        "session": spec.session_label,
        "study_uid": spec.study_uid,
        "mode": spec.mode,
        "options": spec.options,
        "destination": job.uri,
        "started": _when(started),
        "finished": _when(time.time()),
        "counts": {
            "files": len(sent),
            "bytes": sum(f.size for f in sent),
            "series": len({f.series_uid for f in sent}),
            "rejected": len(rejected),
            "dropped": sum(d["files"] for d in dropped),
            "failed": len(failed),
        },
        "verified": None
        if result is None
        else {
            "ok": result.ok,
            "summary": result.summary(),
            "series": [
                {"scan": s.scan_id, "series_uids": list(s.series_uids), "sent": s.expected, "on_server": s.found}
                for s in result.series
            ],
        },
        "files": [
            {
                "path": f.path,
                "member": f.member,
                "size": f.size,
                "sop_uid": f.sop_uid,
                "series_uid": f.series_uid,
                "sha256": f.sha256,
            }
            for f in sent
        ],  # fmt: skip
        "rejected": rejected,
        "dropped": dropped,  # per series: accepted by XNAT but not stored (filter or anonymization script)
        "failed": failed,  # refused by XNAT although valid DICOM; the job's Retry sends them again
        **({"resources": resources} if resources is not None else {}),
        **({"strays": strays} if strays else {}),
        **({"server_notes": notes} if notes else {}),
    }


def receipt_text(receipt: dict[str, Any]) -> str:
    c = receipt["counts"]
    lines = [
        f"Upload receipt ({receipt['app']})",
        f"  server       {receipt['server']} as {receipt['user']}",
        f"  destination  {receipt['destination']}",
        f"  project      {receipt['project']}   subject {receipt['subject']}   session {receipt['session']}",
        f"  study UID    {receipt['study_uid']}",
        f"  transport    {receipt['mode']}   options {json.dumps(receipt['options'], sort_keys=True)}",
        f"  time         {receipt['started']} -> {receipt['finished']}",
        f"  sent         {c['files']} files, {c['bytes']:,} bytes, {c['series']} series; {c['rejected']} rejected"
        + (f", {c['dropped']} dropped by the server" if c.get("dropped") else "")
        + (f", {c['failed']} refused by the server" if c.get("failed") else ""),
    ]
    verified = receipt["verified"]
    if verified:
        lines.append(f"  verification {verified['summary']}")
        for s in verified["series"]:
            mark = "ok " if s["on_server"] >= s["sent"] else "BAD"
            lines.append(f"    [{mark}] scan {s['scan'] or '?':>6}  sent {s['sent']:>6}  on server {s['on_server']:>6}")
    for note in receipt.get("server_notes") or ():
        lines.append(f"  server       {note}")
    for r in receipt["rejected"]:
        lines.append(f"  rejected     {r['path']}{'!' + r['member'] if r['member'] else ''}: {r['reason']}")
    for s in receipt.get("strays") or ():
        lines.append(f"  also sent to {s['uri']}  ({s['files']} file(s) while XNAT had signed the upload out)")
    for d in receipt.get("dropped") or ():
        name = series_name(d["series_number"], d["description"])
        lines.append(f"  dropped      {name}: {d['files']} file(s), {d['reason']}")
    for r in receipt.get("failed") or ():
        lines.append(f"  not stored   {r['path']}{'!' + r['member'] if r['member'] else ''}: {r['reason']}")
    for r in receipt.get("resources") or ():
        dups = f", {len(r['duplicates'])} already there (kept)" if r["duplicates"] else ""
        files = f", {r['files']} file(s)" if r.get("files") is not None else ""
        error = f": {r['error']}" if r["error"] else ""
        lines.append(f"  resource     {r['resource']} <- {r['item']}  [{r.get('state', '')}{files}{dups}{error}]")
    lines.append("  files (sha256, size, path):")
    lines.extend(f"    {f['sha256']}  {f['size']:>10}  {f['path']}{'!' + f['member'] if f['member'] else ''}"
                 for f in receipt["files"])  # fmt: skip
    return "\n".join(lines) + "\n"


def write_receipt(folder: Path, receipt: dict[str, Any]) -> Path:
    """Write ``job-N-SESSION.json`` and ``.txt`` atomically, owner-only; returns the JSON path.

    Raises ``OSError`` (a full disk: ``errno.ENOSPC``) with no partial file left behind: each file is written
    beside its final name and renamed into place only once complete.
    """
    private_dir(folder)
    stem = folder / f"job-{receipt['job']}-{receipt['session']}"
    # Compact JSON: the C encoder writes it ~10x faster than an indented one (the .txt receipt is for reading).
    for suffix, text in ((".json", json.dumps(receipt, separators=(",", ":"))), (".txt", receipt_text(receipt))):
        tmp = stem.with_suffix(suffix + ".tmp")
        try:
            write_private_text(tmp, text, errors="backslashreplace")  # undecodable file names stay visible
            os.replace(tmp, stem.with_suffix(suffix))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    return stem.with_suffix(".json")
