"""``xnat-uploader inbox SERVER_PATH -P PROJECT``: import data already on the server's disk.

Uses the importer's ``inbox`` handler: ``SERVER_PATH`` is a folder or archive on the XNAT server, inside its
inbox folder for the project (XNAT refuses anything else). XNAT runs the import as a background job; the
command follows it until it ends, printing each status change on stderr, then prints the new sessions (or,
when none can be told apart, the job URI) on stdout. Exit 0 when the import completed, 1 when it failed.
``--no-wait`` only prints the job URI. The source is deleted after the import unless ``--keep-source``.
"""

from __future__ import annotations

import argparse
import json
import sys

from xnat_uploader.commands._connect import EXIT_OK, add_server_args, connect, report
from xnat_uploader.core.errors import UserError
from xnat_uploader.core.xnat import ImportHandler, ImportOptions, InboxStatus, XnatClient
from xnat_uploader.core.xnat import errors as E
from xnat_uploader.core.xnat.inbox import job_id


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("inbox", help="import a folder or archive that is already on the server (inbox)")
    p.add_argument("server_path", metavar="SERVER_PATH", help="folder or archive on the server, in its inbox")
    add_server_args(p)
    p.add_argument("-P", "--project", required=True, help="XNAT project ID")
    p.add_argument("-S", "--subject", help="subject label (default: from the data)")
    p.add_argument("-E", "--session", help="session label (default: from the data)")
    p.add_argument("--keep-source", action="store_true", help="leave the files on the server after the import")
    p.add_argument("--no-wait", action="store_true", help="only start the import and print its job URI")
    p.add_argument(
        "--wait-timeout", type=float, metavar="SECONDS", help="stop following after this long (default: no limit)"
    )
    p.add_argument("--interval", type=float, default=2.0, metavar="SECONDS", help="time between status checks")
    p.add_argument("--json", action="store_true", help="print the final status as JSON instead of the sessions")


def inbox_options(args: argparse.Namespace) -> ImportOptions:
    """The importer options for one inbox import (``cleanupAfterImport=false`` with ``--keep-source``)."""
    return ImportOptions(
        handler=ImportHandler.INBOX, project=args.project, subject=args.subject or None,
        session=args.session or None, inbox_path=args.server_path,
        cleanup_after_import=False if args.keep_source else None,
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    try:
        with connect(args) as client:
            before = None if args.no_wait else _sessions(client, args.project)
            result = client.import_data(None, inbox_options(args))
            uri = next((u for u in result.uris if job_id(u) is not None), None)
            if args.no_wait or uri is None:
                return _print_started(args, result.uris)
            print(f"Inbox import of {args.server_path} started: {uri}", file=sys.stderr)
            status = _follow(client, uri, args)
            if status is None:
                print(uri)
                return EXIT_OK
            after = _sessions(client, args.project) if before is not None else None
            new = sorted(after - before) if after is not None and before is not None else []
    except E.BadRequestError as exc:
        return report(_outside_inbox(args, exc), "Inbox import")
    except UserError as exc:
        return report(exc, "Inbox import")
    if args.json:
        print(json.dumps({**_as_dict(status), "sessions": new}, indent=2))
    if status.failed:
        return report(UserError(status.resolution or "XNAT gave no reason.", f"Job: {uri}"), "Inbox import")
    if status.resolution:
        print(status.resolution, file=sys.stderr)
    if not args.json:
        print("\n".join(new or [uri]))
    return EXIT_OK


def _print_started(args: argparse.Namespace, uris: tuple[str, ...]) -> int:
    if not uris:
        print("XNAT accepted the request but started no import.", file=sys.stderr)
        return EXIT_OK
    print(f"Inbox import of {args.server_path} started; follow it at:", file=sys.stderr)
    for uri in uris:
        print(uri)
    return EXIT_OK


def _follow(client: XnatClient, uri: str, args: argparse.Namespace) -> InboxStatus | None:
    """The final status, or None when the server does not report progress. Ctrl-C leaves the job running."""

    def show(status: InboxStatus) -> None:
        print(f"Inbox import {status.id}: {status.status}", file=sys.stderr)

    try:
        return client.follow_inbox(uri, interval=args.interval, timeout=args.wait_timeout, on_status=show)
    except E.ProgressUnavailableError:
        print("XNAT accepted the import; this server does not report its progress.", file=sys.stderr)
        return None
    except KeyboardInterrupt:
        print(f"Stopped following; the import goes on on the server: {uri}", file=sys.stderr)
        raise


def _sessions(client: XnatClient, project: str) -> set[str] | None:
    """The project's prearchive and archive session URIs, to tell the new ones apart; None if unreadable."""
    try:
        rows = {s.url if s.url.startswith("/data") else f"/data{s.url}" for s in client.prearchive(project)}
        return rows | {e.uri or f"/data/experiments/{e.id}" for e in client.experiments(project)}
    except UserError:
        return None


def _as_dict(status: InboxStatus) -> dict[str, object]:
    return {"id": status.id, "status": status.status, "resolution": status.resolution, "path": status.session_path}


def _outside_inbox(args: argparse.Namespace, exc: E.BadRequestError) -> UserError:
    """XNAT's long 400 for a bad inbox path, said plainly; other 400s are passed on as they are."""
    if "inbox path" not in f"{exc.message} {exc.detail}".lower():
        return exc
    return UserError(
        f"The server refused '{args.server_path}': it is not a folder or archive inside its inbox for "
        f"project {args.project}.",
        f"Put the data below the server's inbox folder, in a folder named {args.project}, and give that path "
        f"(XNAT said: {exc.message})",
    )
