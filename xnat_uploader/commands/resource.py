"""``xnat-uploader resource upload PATH... -P PROJECT -E SESSION --name NAME``: attach files to a session.

A file is PUT as it is; a folder is sent as one ZIP_STORED zip (streamed, names relative to the folder) and
unpacked by XNAT (``extract=true``). Files already in the resource are kept unless ``--overwrite``. The
session must be in the archive: resources cannot be added to a prearchive session.
"""

from __future__ import annotations

import argparse
import os
import sys

from xnat_uploader.commands._connect import EXIT_FAIL, EXIT_OK, add_server_args, connect, report
from xnat_uploader.core.attach import Attachment, attach_items, find_archived_session
from xnat_uploader.core.errors import UserError
from xnat_uploader.core.xnat.listing import experiment_path
from xnat_uploader.core.xnat.resources import scan_path


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("resource", help="attach non-DICOM files (PDFs, logs...) to an archived session")
    actions = p.add_subparsers(dest="resource_action", metavar="ACTION", required=True)
    up = actions.add_parser("upload", help="upload files or folders into a session (or scan) resource")
    up.add_argument("paths", nargs="+", metavar="PATH", help="files (sent as they are) or folders (sent as a zip)")
    add_server_args(up)
    up.add_argument("-P", "--project", required=True, help="XNAT project ID")
    up.add_argument("-E", "--session", required=True, help="session label (or accession ID) in the archive")
    up.add_argument("-S", "--subject", help="subject label (narrows the session look-up)")
    up.add_argument("--scan", metavar="ID", help="attach to this scan of the session instead")
    up.add_argument("--name", required=True, help="resource name, e.g. PDF or MISC")
    up.add_argument("--overwrite", action="store_true", help="replace files that are already in the resource")


def run(args: argparse.Namespace) -> int:
    missing = [p for p in args.paths if not os.path.exists(p)]
    if missing:
        return report(UserError(f"Not found: {', '.join(missing)}", "Check the path."))
    items = [Attachment(p, args.name, os.path.isdir(p)) for p in args.paths]
    try:
        with connect(args) as client:
            exp_id = find_archived_session(client.session, args.project, args.session, args.subject)
            parent = scan_path(exp_id, args.scan) if args.scan else experiment_path(exp_id)
            result = attach_items(client.session, parent, items, overwrite=args.overwrite)
    except UserError as exc:
        return report(exc, "Resource upload")
    where = f"scan {args.scan} of {args.session}" if args.scan else args.session
    print(f"Uploaded {len(result.sent)} item(s) to resource {args.name} of {where}.", file=sys.stderr)
    for failed in result.failed:
        print(f"Error ({failed.path}): {failed.error}", file=sys.stderr)
    if result.duplicates:
        print(f"Already there, not replaced: {len(result.duplicates)} files; use --overwrite to replace them.")
        for name in result.duplicates:
            print(f"  {name}")
    return EXIT_FAIL if result.failed else EXIT_OK
