"""``xnat-uploader inbox SERVER_PATH -P PROJECT``: import data already on the server's disk.

Uses the importer's ``inbox`` handler: ``SERVER_PATH`` is a folder or archive on the XNAT server, inside its
inbox folder for the project (XNAT refuses anything else). XNAT runs the import as a job and answers its URI,
which is printed. The source is deleted after the import unless ``--keep-source``.
"""

from __future__ import annotations

import argparse
import sys

from xnat_uploader.commands._connect import EXIT_OK, add_server_args, connect, report
from xnat_uploader.core.errors import UserError
from xnat_uploader.core.xnat import ImportHandler, ImportOptions
from xnat_uploader.core.xnat import errors as E


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("inbox", help="import a folder or archive that is already on the server (inbox)")
    p.add_argument("server_path", metavar="SERVER_PATH", help="folder or archive on the server, in its inbox")
    add_server_args(p)
    p.add_argument("-P", "--project", required=True, help="XNAT project ID")
    p.add_argument("-S", "--subject", help="subject label (default: from the data)")
    p.add_argument("-E", "--session", help="session label (default: from the data)")
    p.add_argument("--keep-source", action="store_true", help="leave the files on the server after the import")


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
            result = client.import_data(None, inbox_options(args))
    except E.BadRequestError as exc:
        return report(_outside_inbox(args, exc), "Inbox import")
    except UserError as exc:
        return report(exc, "Inbox import")
    if not result.uris:
        print("XNAT accepted the request but started no import.", file=sys.stderr)
        return EXIT_OK
    print(f"Inbox import of {args.server_path} started; follow it at:", file=sys.stderr)
    for uri in result.uris:
        print(uri)
    return EXIT_OK


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
