"""``xnat-uploader import-archive FILE -P PROJECT``: send a zip/tar of DICOM, or a XAR, as it is.

The session importer (SI, the default) builds one session; ``--handler dicom-zip`` accepts several studies
and leaves them in the prearchive; a ``.xar`` file (or ``--handler xar``) is a session document with its
files and goes straight to the archive. The resulting URI(s) are printed, one a line.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from xnat_uploader.commands._connect import EXIT_OK, add_server_args, connect, report
from xnat_uploader.core.errors import UserError
from xnat_uploader.core.xnat import ImportHandler, ImportOptions
from xnat_uploader.core.xnat.importer import ArchiveFormat

HANDLERS = {"si": ImportHandler.SI, "dicom-zip": ImportHandler.DICOM_ZIP, "xar": ImportHandler.XAR}


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("import-archive", help="upload a zip/tar of DICOM, or a XAR, as it is")
    p.add_argument("file", metavar="FILE", help="a .zip, .tar, .tar.gz or .xar file")
    add_server_args(p)
    p.add_argument("-P", "--project", required=True, help="XNAT project ID")
    p.add_argument("-S", "--subject", help="subject label (default: from the data)")
    p.add_argument("-E", "--session", help="session label (default: from the data)")
    p.add_argument("--handler", choices=sorted(HANDLERS), help="import handler (default: xar for .xar, else si)")
    p.set_defaults(command="archive_import")  # the module that runs it (the command name has a dash)


def handler_for(path: str, choice: str | None) -> ImportHandler:
    """The handler asked for, else XAR for a ``.xar`` file and SI for anything else."""
    if choice:
        return HANDLERS[choice]
    return ImportHandler.XAR if path.lower().endswith(".xar") else ImportHandler.SI


def sniff_format(path: Path) -> ArchiveFormat:
    """The archive type from the first bytes (a ``.xar`` is usually a zip), else from the name."""
    with open(path, "rb") as handle:
        head = handle.read(4)
    if head.startswith(b"PK"):
        return ArchiveFormat.ZIP
    if head.startswith(b"\x1f\x8b"):
        return ArchiveFormat.TAR_GZ
    return ArchiveFormat.for_name(path.name)


def options_for_import(args: argparse.Namespace, handler: ImportHandler, fmt: ArchiveFormat) -> ImportOptions:
    """Importer options: a XAR names its own project and session, the others are routed by the arguments."""
    if handler is ImportHandler.XAR:
        return ImportOptions(handler=handler, project=args.project, archive_format=fmt)
    commit = handler is ImportHandler.DICOM_ZIP
    return ImportOptions(handler=handler, project=args.project, subject=args.subject or None,
                         session=args.session or None, commit=commit, archive_format=fmt)  # fmt: skip


def run(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        return report(UserError(f"Not a file: {args.file}", "Give a .zip, .tar, .tar.gz or .xar file."))
    handler = handler_for(args.file, args.handler)
    size = os.path.getsize(path)
    try:
        with connect(args) as client:
            result = client.import_data(path, options_for_import(args, handler, sniff_format(path)))
    except UserError as exc:
        return report(exc, f"Import ({handler.value})")
    if not result.uris:
        print("XNAT accepted the file but kept no session (nothing usable in it?).", file=sys.stderr)
        return EXIT_OK
    print(f"Imported {path.name} ({size:,} bytes) with {handler.value}:", file=sys.stderr)
    for uri in result.uris:
        print(uri)
    return EXIT_OK
