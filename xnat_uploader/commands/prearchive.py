"""``xnat-uploader prearchive list|archive|move|delete``: review and act on the server's prearchive."""

from __future__ import annotations

import argparse
import json
import sys

from xnat_uploader import paths
from xnat_uploader.commands._connect import EXIT_FAIL, EXIT_OK, add_server_args, connect, report
from xnat_uploader.core.attach import attach_pending, jobs_waiting_for_archive
from xnat_uploader.core.errors import UserError
from xnat_uploader.core.prearchive_archive import archive_as_chosen
from xnat_uploader.core.queue.store import QueueStore
from xnat_uploader.core.upload_choices import CLI_NAMES, OnExisting, parse_on_existing
from xnat_uploader.core.xnat import PrearchiveRef, XnatClient
from xnat_uploader.core.xnat.models import PrearchiveSession


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("prearchive", help="list, archive, move or delete prearchive sessions")
    actions = p.add_subparsers(dest="prearchive_action", metavar="ACTION", required=True)

    ls = actions.add_parser("list", help="list prearchive sessions")
    ls.add_argument("--project", help="only this project (Unassigned for unassigned sessions)")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_server_args(ls)

    session_help = "a session as listed: PROJECT/TIMESTAMP/FOLDER or /prearchive/projects/PROJECT/TIMESTAMP/FOLDER"

    ar = actions.add_parser("archive", help="archive prearchive sessions")
    ar.add_argument("sessions", nargs="+", metavar="SESSION", help=session_help)
    ar.add_argument("--subject", help="archive under this subject label (one session only)")
    ar.add_argument("--label", help="archive with this session label (one session only)")
    ar.add_argument(
        "--overwrite",
        nargs="?",
        type=str.lower,
        const=OnExisting.ADD.value,
        default=OnExisting.REFUSE.value,
        choices=CLI_NAMES,
        metavar="{refuse,add,replace}",
        help="if the archive already has a session of that label. "
        + "; ".join(f"{c.value}: {c.archive_short}" for c in OnExisting)
        + ". --overwrite alone means add; the old names none, append and delete mean refuse, add and replace",
    )
    add_server_args(ar)

    mv = actions.add_parser("move", help="move prearchive sessions to another project")
    mv.add_argument("sessions", nargs="+", metavar="SESSION", help=session_help)
    mv.add_argument("--to-project", required=True, metavar="PROJECT", help="the destination project ID")
    add_server_args(mv)

    rm = actions.add_parser("delete", help="delete prearchive sessions")
    rm.add_argument("sessions", nargs="+", metavar="SESSION", help=session_help)
    rm.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    add_server_args(rm)


def parse_session(text: str) -> PrearchiveRef:
    """``P/TS/FOLDER`` or any prearchive URI -> :class:`PrearchiveRef`."""
    text = text.strip()
    if "/prearchive/" in text:
        return PrearchiveRef.parse(text)
    parts = [p for p in text.split("/") if p]
    if len(parts) != 3:
        raise UserError(f"'{text}' is not a prearchive session.", "Use PROJECT/TIMESTAMP/FOLDER as 'list' shows it.")
    return PrearchiveRef(*parts)


def _short(ref: PrearchiveRef) -> str:
    return f"{ref.project}/{ref.timestamp}/{ref.folder}"


def run(args: argparse.Namespace) -> int:
    doing = {"list": "Listing", "archive": "Archiving", "move": "Moving", "delete": "Deleting"}
    action = args.prearchive_action
    try:
        refs = [parse_session(s) for s in getattr(args, "sessions", [])]
        if action == "archive" and (args.subject or args.label) and len(refs) != 1:
            raise UserError("--subject and --label apply to one session at a time.", "Archive the others separately.")
        if action == "delete" and not args.yes and not _confirm(refs):
            print("Nothing deleted.")
            return EXIT_FAIL
        client = connect(args)
    except (UserError, ValueError) as exc:
        err = exc if isinstance(exc, UserError) else UserError(str(exc), "Use PROJECT/TIMESTAMP/FOLDER.")
        return report(err, doing[action])
    with client:
        if action == "list":
            return _list(client, args)
        return _act(client, args, refs, doing[action])


def _list(client: XnatClient, args: argparse.Namespace) -> int:
    try:
        sessions = client.prearchive(args.project)
    except UserError as exc:
        return report(exc, "Listing")
    if args.json:
        print(json.dumps([s.as_dict() for s in sessions], indent=2))
        return EXIT_OK
    if not sessions:
        print("The prearchive is empty." if not args.project else f"No prearchive sessions in {args.project}.")
        return EXIT_OK
    _table(sessions)
    return EXIT_OK


def _table(sessions: list[PrearchiveSession]) -> None:
    headers = ("SESSION", "SUBJECT", "LABEL", "STATUS", "UPLOADED")
    rows = [(_short(s.ref), s.subject, s.name, s.status, s.uploaded.split(".")[0]) for s in sessions]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    for row in (headers, *rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _act(client: XnatClient, args: argparse.Namespace, refs: list[PrearchiveRef], doing: str) -> int:
    failures = 0
    for ref in refs:
        try:
            if args.prearchive_action == "archive":
                choice = parse_on_existing(args.overwrite) or OnExisting.REFUSE
                result = archive_as_chosen(client, ref, choice, subject=args.subject, label=args.label,
                                           on_wait=_Said().say)  # fmt: skip
                print(f"Archived {_short(ref)} -> {result.uri}")
                failures += _attach_waiting(client, ref, args)
            elif args.prearchive_action == "move":
                new = client.move(ref, args.to_project)
                print(f"Moved {_short(ref)} -> {_short(new)}")
            else:
                client.delete(ref)
                print(f"Deleted {_short(ref)}")
        except UserError as exc:
            failures += 1
            report(exc, f"{doing} {_short(ref)}")
    return EXIT_FAIL if failures else EXIT_OK


class _Said:
    """Prints what XNAT is doing while an archive's answer is awaited, each different line once."""

    def __init__(self) -> None:
        self.last = ""

    def say(self, message: str) -> None:
        if message != self.last:
            self.last = message
            print(message, file=sys.stderr)


def _attach_waiting(client: XnatClient, ref: PrearchiveRef, args: argparse.Namespace) -> int:
    """Attach the resources that upload jobs of this session kept pending (see ``upload --with-resources``).

    Returns the number of jobs whose items could not all be attached.
    """
    queue = paths.data_dir() / "queue.sqlite3"
    if not queue.exists():
        return 0
    failures = 0
    with QueueStore(queue) as store:
        waiting = jobs_waiting_for_archive(store, ref.project, ref.timestamp, ref.folder,
                                           server_url=client.session.base_url)  # fmt: skip
        for job_id in waiting:
            try:
                result = attach_pending(store, client.session, job_id, subject=args.subject, label=args.label, wait=30)
            except UserError as exc:
                report(exc, f"Attaching the resources of upload job {job_id}")
                failures += 1
                continue
            print(f"  job {job_id}: {result.summary()}")
            for item in result.items:
                state = f"error: {item.error}" if item.error else f"{item.files} file(s)"
                kept = f", {len(item.duplicates)} already there (kept)" if item.duplicates else ""
                print(f"    {item.resource} <- {item.path} ({state}{kept})")
            failures += bool(result.failed)
    return failures


def _confirm(refs: list[PrearchiveRef]) -> bool:
    if sys.stdin is None or not sys.stdin.isatty():
        raise UserError("Deleting needs confirmation.", "Add --yes to delete without being asked.")
    names = ", ".join(_short(r) for r in refs)
    answer = input(f"Delete {names} from the prearchive? [y/N] ")
    return answer.strip().lower() in ("y", "yes")
