"""``xnat-uploader upload PATH... -P PROJECT``: scan, plan one session per study, send, commit, verify.

Jobs go through the persistent queue (in the data dir), so an upload interrupted by a crash, a
kill or Ctrl-C continues with ``xnat-uploader upload --resume``, sending only what was not
acknowledged. Exit 0 when every job ended verified, 1 when one failed, 2 for bad input, 3 when every job ended
verified but some selected files were left out (no StudyInstanceUID: no XNAT session can take them; they are listed).

A job is sent by one process at a time: new jobs are claimed as they are queued, and ``--resume`` skips
(and says so) the jobs another live copy of the program is sending; it takes over those whose copy stopped.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from xnat_uploader import paths
from xnat_uploader.commands._connect import (
    EXIT_FAIL,
    EXIT_OK,
    add_server_args,
    read_password,
    report,
    resolve_target,
    timeout_args,
)
from xnat_uploader.commands.echo import add_receiver_args
from xnat_uploader.commands.scan import ProgressLine, _is_terminal, human_bytes, scan_into_index
from xnat_uploader.core.attach import OPT_RESOURCE_OVERWRITE
from xnat_uploader.core.credentials import CredentialStore
from xnat_uploader.core.errors import UserError
from xnat_uploader.core.exam import assign_exam_items, find_exam_items
from xnat_uploader.core.plan import Existing, LeftOut, Plan, Target, enqueue, existing_on_server, plan_jobs
from xnat_uploader.core.queue.claims import JobOwnedElsewhere
from xnat_uploader.core.queue.runner import JobControl, run_job
from xnat_uploader.core.queue.store import JobState, QueueStore
from xnat_uploader.core.transfer import cstore
from xnat_uploader.core.transfer.base import TransferProgress
from xnat_uploader.core.transfer.dicom_zip import DEFAULT_BATCH_FILES
from xnat_uploader.core.upload_choices import (
    CLI_NAMES,
    HELP,
    OPT_IGNORE_UNPARSABLE,
    OPT_OVERWRITE,
    OPT_QUARANTINE,
    OPT_RENAME,
    OPT_TRIGGER_PIPELINES,
    OnExisting,
    XnatParams,
    parse_on_existing,
    upload_problems,
)
from xnat_uploader.core.xnat.listing import list_dicom_receivers
from xnat_uploader.core.xnat.series_filter import series_name

if TYPE_CHECKING:
    from xnat_uploader.core.xnat.client import XnatClient

log = logging.getLogger(__name__)

EXIT_BAD_INPUT = 2
EXIT_LEFT_OUT = 3  # done, but files that no session can take were left out (listed on stderr and in --json)
DEFAULT_WORKERS = {"zip": 4, "gradual": 8, "cstore": 4}


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("upload", help="upload DICOM folders, files or archives to XNAT")
    p.add_argument("paths", nargs="*", metavar="PATH", help="folders, files, zip/tar archives or DICOMDIR")
    add_server_args(p)
    p.add_argument("-P", "--project", help="XNAT project ID")
    p.add_argument("-S", "--subject", default="", help="subject label (default: from PatientID)")
    p.add_argument("-E", "--session", default="", help="session label (default: SUBJECT_MODALITYn)")
    p.add_argument("--mode", choices=("zip", "gradual", "cstore"), default="zip", help="transport (default zip)")
    p.add_argument("--workers", type=int, default=0, help="parallel requests (default 4 for zip, 8 for gradual)")
    dest = p.add_mutually_exclusive_group()
    dest.add_argument("--prearchive", dest="destination", action="store_const", const="prearchive",
                      help="leave sessions in the prearchive for review (the default)")  # fmt: skip
    dest.add_argument("--archive", dest="destination", action="store_const", const="archive",
                      help="archive the sessions after the upload")  # fmt: skip
    dest.add_argument("--direct-archive", dest="destination", action="store_const", const="direct",
                      help="write straight into the archive (XNAT 1.8.3+)")  # fmt: skip
    add_overwrite_args(p)
    p.add_argument("--with-resources", action="store_true",
                   help="attach the non-DICOM folders (a resource each) and files (MISC) beside the DICOM")  # fmt: skip
    p.add_argument("--resource-overwrite", action="store_true",
                   help="with --with-resources: replace files already in a resource")  # fmt: skip
    p.add_argument("--dry-run", action="store_true", help="scan and plan, send nothing")
    p.add_argument("--json", action="store_true", help="print the receipts (or the plan) as JSON")
    p.add_argument("--resume", action="store_true", help="first finish the unfinished uploads in the queue")
    p.add_argument("--deflate", type=int, choices=range(1, 10), metavar="LEVEL",
                   help="zip mode: compress (1 is fast; for slow links only)")  # fmt: skip
    p.add_argument(
        "--prebuild-zip",
        action="store_true",
        help="zip mode: write each batch to a temp file first (for proxies that refuse streamed uploads)",
    )
    p.add_argument("--batch-files", type=int, default=DEFAULT_BATCH_FILES, help=argparse.SUPPRESS)
    # C-STORE: the receiver; with --url also set, host/port/AE title default to XNAT's receiver on that server.
    add_receiver_args(p, required=False)
    p.add_argument("--route", action="store_true",
                   help="cstore: write Project/Subject/Session into PatientComments of the sent copies")  # fmt: skip


def add_overwrite_args(p: argparse.ArgumentParser) -> None:
    """``--overwrite`` and XNAT's import parameters, each with the help :mod:`core.upload_choices` gives."""
    names = "; ".join(f"{c.value}: {c.short}" for c in OnExisting)
    p.add_argument("--overwrite", type=str.lower, choices=CLI_NAMES, default=OnExisting.REFUSE.value,
                   metavar="{refuse,add,replace}",
                   help=f"if the session exists. {names} (old names none, append, delete work too)")  # fmt: skip
    p.add_argument("--quarantine", action="store_true", help=HELP[OPT_QUARANTINE] + " Needs --archive.")
    p.add_argument("--no-pipelines", dest="trigger_pipelines", action="store_false",
                   help=HELP[OPT_TRIGGER_PIPELINES] + " Needs --archive.")  # fmt: skip
    p.add_argument("--rename", action="store_true", help=HELP[OPT_RENAME] + " zip and gradual.")
    p.add_argument(
        "--ignore-unparsable",
        action="store_true",
        help=HELP[OPT_IGNORE_UNPARSABLE] + " zip only; skipped files show as missing when checked.",
    )
    p.add_argument("--dest", help=argparse.SUPPRESS)  # refused with a reason: see import-archive


def _choices(args: argparse.Namespace) -> tuple[OnExisting, XnatParams] | UserError:
    """The overwrite choice and XNAT's parameters from the arguments, or why XNAT would refuse or ignore them."""
    if args.dest:
        return UserError(
            "--dest is for import-archive only: upload sends every study to its own session (-P, -S, -E) after "
            "checking it against the archive, and one destination for all would bypass that.",
            "Leave out --dest, or send a zip as it is with: xnat-uploader import-archive FILE --dest ...",
        )
    choice = parse_on_existing(args.overwrite) or OnExisting.REFUSE
    params = XnatParams(quarantine=args.quarantine, trigger_pipelines=args.trigger_pipelines, rename=args.rename,
                        ignore_unparsable=args.ignore_unparsable)  # fmt: skip
    problems = upload_problems(choice, params, destination=args.destination or "prearchive", mode=args.mode)
    if problems:
        return UserError(" ".join(problems), "Change the options and run again.")
    return choice, params


def run(args: argparse.Namespace) -> int:
    if not args.paths and not args.resume:
        return report(UserError("Nothing to upload.", "Give one or more folders, or --resume."))
    chosen = _choices(args)
    if isinstance(chosen, UserError):
        report(chosen)
        return EXIT_BAD_INPUT
    on_existing, xnat_params = chosen
    missing = [p for p in args.paths if not os.path.exists(p)]
    if missing:
        report(UserError(f"Not found: {', '.join(missing)}", "Check the path."))
        return EXIT_BAD_INPUT
    if args.paths and not args.project:
        report(UserError("No project given.", "Add -P PROJECT (the project ID, not its title)."))
        return EXIT_BAD_INPUT
    if args.mode == "cstore":
        problem = _cstore_args(args)
        if problem is not None:
            report(problem)
            return EXIT_BAD_INPUT
    # C-STORE needs no REST login; with --url it is used for planning and to verify in the prearchive.
    rest = args.mode != "cstore" or bool(args.url)
    try:
        target = resolve_target(args) if rest else None
        password = read_password(args, target.entry, CredentialStore()) if target else None
    except UserError as exc:
        return report(exc)
    workers = args.workers or DEFAULT_WORKERS[args.mode]
    try:
        store = QueueStore(paths.ensure(paths.data_dir()) / "queue.sqlite3")
    except UserError as exc:  # a full disk, a queue locked by another program: said in plain words
        return report(exc, "Upload")
    if target is not None:
        server_url, user = target.entry.url, target.entry.user
        options = target.entry.connection_options(workers=max(workers, 2), **timeout_args(args))
        from xnat_uploader.core.xnat.client import XnatClient  # loads requests: C-STORE alone does without

        connection: Any = XnatClient(target.entry.url, target.entry.user, password, options)  # type: ignore[arg-type]
    else:
        server_url, user = f"dicom://{args.host}:{args.port}", args.called_aet
        connection = contextlib.nullcontext()
    try:
        with connection as client:
            info = client.connect() if client is not None else None
            if args.mode == "cstore" and client is not None:
                _receiver_from_server(args, client)
            if args.destination == "direct" and info is not None and not info.supports_direct_archive:
                return report(
                    UserError(
                        f"This XNAT ({info.version_string}) cannot archive directly (1.8.3+ can).", "Use --archive."
                    )
                )
            job_ids = _resumable(store, server_url, user) if args.resume else []
            left_out: list[LeftOut] = []
            if args.paths:
                planned = _plan(args, client, store, on_existing)
                if planned is None:
                    return EXIT_BAD_INPUT
                left_out = planned.left_out
                if args.dry_run:
                    _print_plan(planned, args.json)
                    return EXIT_LEFT_OUT if left_out else EXIT_OK
                opts = {"workers": workers, OPT_OVERWRITE: on_existing.value, **xnat_params.to_options(),
                        "destination": args.destination or "prearchive",
                        "direct_archive": args.destination == "direct", "batch_files": args.batch_files,
                        "compress_level": args.deflate, "prebuild": args.prebuild_zip,
                        OPT_RESOURCE_OVERWRITE: args.resource_overwrite}  # fmt: skip
                if args.mode == "cstore":
                    opts.update({cstore.OPT_HOST: args.host, cstore.OPT_PORT: args.port,
                                 cstore.OPT_CALLED: args.called_aet, cstore.OPT_CALLING: args.calling_aet,
                                 cstore.OPT_ROUTE: args.route})  # fmt: skip
                job_ids += [
                    enqueue(store, job, server_url=server_url, user=user, mode=args.mode, options=opts, claim=True)
                    for job in planned.jobs
                ]
            return _run_jobs(store, job_ids, client, args, left_out)
    except UserError as exc:
        return report(exc, "Upload")
    finally:
        store.close()


def _cstore_args(args: argparse.Namespace) -> UserError | None:
    """Fill the receiver from ``--url`` (XNAT's default receiver) where not given; say what is missing."""
    if args.url:
        args.host = args.host or urlsplit(args.url).hostname  # port and AE title: from the server, once connected
    elif not (args.host and args.port and args.called_aet):
        return UserError("The DICOM receiver is not given.", "Add --host, --port and --called-aet (or --url).")
    if args.destination in ("archive", "direct"):
        return UserError(
            "With C-STORE, XNAT's receiver decides where sessions go (the project's prearchive settings).",
            "Leave out --archive/--direct-archive, or use --mode zip.",
        )
    return None


def _receiver_from_server(args: argparse.Namespace, client: XnatClient) -> None:
    """Port and AE title of the server's first enabled DICOM receiver, unless given; else XNAT's defaults."""
    if args.port and args.called_aet:
        return
    try:
        receivers = list_dicom_receivers(client.session)
    except UserError as exc:  # an old or locked-down server: fall back to XNAT's default receiver
        log.info("Could not list the DICOM receivers (%s); using XNAT's defaults", type(exc).__name__)
        receivers = []
    chosen = next((r for r in receivers if r.enabled), None)
    args.port = args.port or (chosen.port if chosen else 8104)
    args.called_aet = args.called_aet or (chosen.ae_title if chosen else "XNAT")


def _resumable(store: QueueStore, url: str, user: str) -> list[int]:
    """The unfinished jobs for this login, each claimed for this process; those another live copy of the
    program is sending are skipped (and said so), those whose copy stopped are taken over."""
    jobs = []
    for j in store.jobs([JobState.QUEUED, JobState.RUNNING, JobState.COMMITTING, JobState.VERIFYING,
                         JobState.PAUSED]):  # fmt: skip
        if j.spec.server_url != url or j.spec.user != user:
            continue
        other = store.claim(j.id)
        if other is None:
            jobs.append(j.id)
        else:
            _say_skipped(JobOwnedElsewhere(j.id, j.spec.project, other))
    if jobs:
        print(f"Resuming {len(jobs)} unfinished upload(s).", file=sys.stderr)
    return jobs


def _say_skipped(exc: JobOwnedElsewhere) -> None:
    # The job's number and project only: its labels may be patient IDs.
    print(f"{exc.summary}; skipped.", file=sys.stderr)


def _plan(
    args: argparse.Namespace, client: XnatClient | None, store: QueueStore, on_existing: OnExisting
) -> Plan | None:
    line = ProgressLine(sys.stderr) if _is_terminal(sys.stderr) else None
    index, progress = scan_into_index(list(args.paths), on_progress=line)
    if line:
        line.clear()
    print(
        f"Found {index.instance_count:,} DICOM files ({human_bytes(index.bytes)}) in {index.study_count} study(ies); "
        f"{len(index.rejected):,} other files skipped.",
        file=sys.stderr,
    )
    # Without a REST login (C-STORE only) nothing on the server can be checked.
    existing = existing_on_server(client.session, args.project, store) if client else Existing()
    target = Target(args.project, args.subject, args.session, args.mode, on_existing)
    plan = plan_jobs(index, target, existing)
    items = find_exam_items(args.paths, index)
    if args.with_resources:
        plan.problems += assign_exam_items(plan, items)
    elif items:
        print(f"Found {len(items)} non-DICOM item(s) next to the DICOM (folders, documents); "
              "--with-resources attaches them to the session.", file=sys.stderr)  # fmt: skip
    for job in plan.jobs:  # e.g. the series the project's series import filter will drop
        for warning in job.warnings:
            print(f"Warning ({job.session_label}): {warning}", file=sys.stderr)
    _print_left_out(plan.left_out)
    if not plan.ok:
        for problem in plan.problems:
            print(f"Error: {problem}", file=sys.stderr)
        for job in plan.jobs:
            for problem in job.problems:
                print(f"Error ({job.session_label}): {problem}", file=sys.stderr)
        if any(OnExisting.ADD.label in p for j in plan.jobs for p in j.problems):
            print("Hint: --overwrite add merges into the existing session; --overwrite replace (with --archive) "
                  "also replaces its files.", file=sys.stderr)  # fmt: skip
        return None
    return plan


def _print_left_out(left_out: list[LeftOut], limit: int = 20) -> None:
    """Files the upload leaves out, grouped by reason (the first ``limit`` of each named)."""
    by_reason: dict[str, list[str]] = {}
    for item in left_out:
        by_reason.setdefault(item.reason, []).append(item.record.display_path)
    for reason, shown in by_reason.items():
        print(f"Left out {len(shown)} file(s): {reason}.", file=sys.stderr)
        for path in shown[:limit]:
            print(f"  {path}", file=sys.stderr)
        if len(shown) > limit:
            print(f"  ... and {len(shown) - limit} more", file=sys.stderr)


def _left_out_rows(left_out: list[LeftOut]) -> list[dict[str, str]]:
    return [{"path": i.record.path, "member": i.record.member, "reason": i.reason} for i in left_out]


def _print_plan(plan: Plan, as_json: bool) -> None:
    rows = [
        {"project": j.project, "subject": j.subject, "session": j.session_label, "study_uid": j.study_uid,
         "files": len(j.files), "bytes": j.bytes, "description": j.description,
         "resources": [{"path": i.path, "resource": i.resource, "is_folder": i.is_folder, "files": i.files,
                        "bytes": i.bytes} for i in j.resources],
         "dropped_by_filter": [d.as_option() for d in j.filtered], "warnings": j.warnings}
        for j in plan.jobs
    ]  # fmt: skip
    if as_json:
        print(json.dumps({"plan": rows, "left_out": _left_out_rows(plan.left_out)}, indent=1))
        return
    for r in rows:
        print(f"{r['project']}/{r['subject']}/{r['session']}: {r['files']:,} files, {human_bytes(r['bytes'])}")
        for i in r["resources"]:
            print(f"  + resource {i['resource']} <- {i['path']} ({i['files']} file(s), {human_bytes(i['bytes'])})")
        for d in r["dropped_by_filter"]:
            name = series_name(d["number"], d["description"])
            print(f"  - {name}: {d['files']} of {d['total']} file(s) will be dropped by {d['reason']}")


def _run_jobs(
    store: QueueStore, job_ids: list[int], client: XnatClient | None, args: argparse.Namespace, left_out: list[LeftOut]
) -> int:
    receipts_dir = paths.ensure(paths.data_dir() / "receipts")
    receipts = []
    worst = EXIT_OK
    for job_id in job_ids:
        job = store.job(job_id)
        bar = _Bar(job.spec.session_label) if _is_terminal(sys.stderr) else None
        control = JobControl()
        try:
            state = run_job(store, job_id, client.session if client else None, receipts_dir=receipts_dir,
                            server=client.server_info() if client else None,
                            progress=bar.update if bar else None, control=control)  # fmt: skip
        except JobOwnedElsewhere as exc:  # another copy claimed it first (or took it over): it sends it
            _say_skipped(exc)
            continue
        except KeyboardInterrupt:
            control.pause()
            store.set_state(job_id, JobState.PAUSED, "Interrupted; continue with: xnat-uploader upload --resume")
            raise
        finally:
            if bar:
                bar.clear()
        job = store.job(job_id)
        line = f"{job.spec.session_label}: {state.value}. {job.message}"
        print(line if state is JobState.DONE else f"{line} {job.hint}".rstrip(), file=sys.stderr)
        if job.receipt:
            receipts.append(json.loads(Path(job.receipt).read_text(encoding="utf-8")))
        if state is not JobState.DONE:
            worst = EXIT_FAIL
    if args.json:
        print(json.dumps({"receipts": receipts, "left_out": _left_out_rows(left_out)}, indent=1))
    if left_out and worst == EXIT_OK:
        print(f"Done; {len(left_out)} file(s) left out (listed above).", file=sys.stderr)
        return EXIT_LEFT_OUT
    return worst


class _Bar:
    """``LABEL [#####-----] 45%  120/300 files  12.3 MB/s  ETA 0:12`` on a terminal."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.line = ProgressLine(sys.stderr, interval=0.25)
        self._last = 0.0

    def update(self, p: TransferProgress) -> None:
        now = time.monotonic()
        if now - self._last < 0.25 and p.phase == "sending":
            return
        self._last = now
        filled = int(p.fraction * 20)
        eta = "" if p.eta is None else f"  ETA {int(p.eta) // 60}:{int(p.eta) % 60:02d}"
        self.line.write(
            f"{self.label} [{'#' * filled}{'-' * (20 - filled)}] {p.fraction:4.0%}  {p.files_done}/{p.files_total} "
            f"files  {p.rate / 1e6:.1f} MB/s{eta}  {p.phase}"
        )

    def clear(self) -> None:
        self.line.clear()
