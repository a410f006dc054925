"""``xnat-uploader resource upload PATH... -P PROJECT -E SESSION --name NAME``: attach files to a session.

A file is PUT as it is; a folder is sent as one ZIP_STORED zip (streamed, names relative to the folder) and
unpacked by XNAT (``extract=true``). Files already in the resource are kept unless ``--overwrite``. The
session must be in the archive: resources cannot be added to a prearchive session.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from xnat_uploader.commands._connect import EXIT_OK, add_server_args, connect, report
from xnat_uploader.core.errors import UserError
from xnat_uploader.core.transfer.zipstream import ZipMember, ZipStream, stored_length
from xnat_uploader.core.xnat import StreamBody, XnatClient
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


def find_session(client: XnatClient, project: str, session: str, subject: str | None = None) -> str:
    """The accession ID of archived session ``session`` (label or ID) in ``project``. Raises :class:`UserError`,
    saying so when the session is only in the prearchive."""
    for exp in client.experiments(project, subject or None):
        if session in (exp.label, exp.id):
            return exp.id
    waiting = [s for s in client.prearchive(project) if s.name == session]
    if waiting:
        raise UserError(
            f"Session '{session}' is in the prearchive of {project}, not in the archive.",
            "It must be archived first: xnat-uploader prearchive archive "
            f"{waiting[0].project}/{waiting[0].timestamp}/{waiting[0].folder}",
        )
    where = f"subject '{subject}' of project {project}" if subject else f"project {project}"
    raise UserError(
        f"Session '{session}' does not exist in the archive of {where}.",
        "Check the label; a session must be uploaded and archived before resources can be attached.",
    )


def folder_body(folder: Path) -> StreamBody:
    """A streamed ZIP_STORED archive of every file below ``folder``, named relative to it."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    if not files:
        raise UserError(f"The folder {folder} holds no files.", "Give a folder with files in it.")
    members = [ZipMember.from_path(p, p.relative_to(folder).as_posix()) for p in files]
    return StreamBody(lambda: ZipStream(members), stored_length(members))


def run(args: argparse.Namespace) -> int:
    missing = [p for p in args.paths if not os.path.exists(p)]
    if missing:
        return report(UserError(f"Not found: {', '.join(missing)}", "Check the path."))
    try:
        with connect(args) as client:
            exp_id = find_session(client, args.project, args.session, args.subject)
            parent = scan_path(exp_id, args.scan) if args.scan else experiment_path(exp_id)
            duplicates: list[str] = []
            for raw in args.paths:
                duplicates += _send(client, parent, args.name, Path(raw), args.overwrite)
    except UserError as exc:
        return report(exc, "Resource upload")
    where = f"scan {args.scan} of {args.session}" if args.scan else args.session
    sent = len(args.paths)
    print(f"Uploaded {sent} item(s) to resource {args.name} of {where}.", file=sys.stderr)
    if duplicates:
        print(f"Already there, not replaced: {len(duplicates)} files; use --overwrite to replace them.")
        for name in duplicates:
            print(f"  {name}")
    return EXIT_OK


def _send(client: XnatClient, parent: str, resource: str, path: Path, overwrite: bool) -> list[str]:
    """Upload one file or folder; returns the names XNAT kept unchanged."""
    if path.is_dir():
        body = folder_body(path)
        result = client.upload_file(parent, resource, f"{path.name}.zip", body, extract=True, overwrite=overwrite,
                                    content_type="application/zip")  # fmt: skip
    else:
        result = client.upload_file(parent, resource, path.name, path, overwrite=overwrite)
    return list(result.duplicates)
