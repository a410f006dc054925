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
from xnat_uploader.core.upload_choices import (
    HELP,
    OPT_IGNORE_UNPARSABLE,
    OPT_QUARANTINE,
    OPT_RENAME,
    OPT_TRIGGER_PIPELINES,
    XnatParams,
    dest_problems,
    parse_dest,
)
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
    p.add_argument("--dest", metavar="URI", help=HELP["dest"] + " Must agree with -P, -S and -E.")
    p.add_argument("--quarantine", action="store_true", help=HELP[OPT_QUARANTINE] + " si only.")
    p.add_argument("--no-pipelines", dest="trigger_pipelines", action="store_false",
                   help=HELP[OPT_TRIGGER_PIPELINES] + " si only.")  # fmt: skip
    p.add_argument("--rename", action="store_true", help=HELP[OPT_RENAME] + " dicom-zip only.")
    p.add_argument("--ignore-unparsable", action="store_true",
                   help=HELP[OPT_IGNORE_UNPARSABLE] + " dicom-zip only; XNAT does it anyway when it builds the "
                        "session at once, as import-archive asks.")  # fmt: skip
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
    """Importer options: a XAR names its own project and session, the others are routed by the arguments
    (and ``--dest``). XNAT's parameters go only to the handler that reads them (:func:`import_problems`)."""
    if handler is ImportHandler.XAR:
        return ImportOptions(handler=handler, project=args.project, archive_format=fmt)
    commit = handler is ImportHandler.DICOM_ZIP
    params = XnatParams(quarantine=args.quarantine, trigger_pipelines=args.trigger_pipelines, rename=args.rename,
                        ignore_unparsable=args.ignore_unparsable)  # fmt: skip
    archiving = params.archive_params()  # SI hands every import parameter on to its archive step
    return ImportOptions(handler=handler, project=args.project, subject=args.subject or None,
                         session=args.session or None, commit=commit, archive_format=fmt, dest=args.dest or None,
                         quarantine=True if "quarantine" in archiving else None,
                         trigger_pipelines=False if "triggerPipelines" in archiving else None,
                         **params.import_fields(handler.value))  # fmt: skip


def import_problems(args: argparse.Namespace, handler: ImportHandler) -> list[str]:
    """Where XNAT would misroute, refuse or ignore what was asked (checked before anything is sent)."""
    problems = []
    if args.dest:
        try:
            dest = parse_dest(args.dest)
        except ValueError as exc:
            return [str(exc)]
        problems += dest_problems(dest, handler=handler.value, project=args.project, subject=args.subject or "",
                                  session=args.session or "")  # fmt: skip
    if (args.quarantine or not args.trigger_pipelines) and handler is not ImportHandler.SI:
        problems.append(
            "Quarantine and the pipeline choice reach XNAT's archive step only with the session importer (si): "
            "XNAT's dicom-zip and xar importers do not pass them on."
        )
    if args.rename and handler is not ImportHandler.DICOM_ZIP:
        problems.append("XNAT names files from their headers (--rename) only with --handler dicom-zip.")
    if args.ignore_unparsable and handler is not ImportHandler.DICOM_ZIP:
        problems.append("Skipping non-DICOM files (--ignore-unparsable) applies to --handler dicom-zip only.")
    return problems


def run(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        return report(UserError(f"Not a file: {args.file}", "Give a .zip, .tar, .tar.gz or .xar file."))
    handler = handler_for(args.file, args.handler)
    problems = import_problems(args, handler)
    if problems:
        return report(UserError(" ".join(problems), "Change the options and run again."))
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
