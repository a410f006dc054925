"""``xnat-uploader demo``: the main window on the built-in sandbox server, with sample DICOM to upload."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("demo", help="try the app on a built-in XNAT sandbox with sample data")
    p.add_argument("--no-crash-dialog", action="store_true", help="log unexpected errors instead of showing a dialog")
    p.add_argument("--quit-after", type=float, default=0, metavar="SECONDS", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    from xnat_uploader.app import run_gui

    args.demo = True
    return run_gui(args)
