"""``xnat-uploader [gui]``: open the main window."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("gui", help="open the main window (the default)")
    p.add_argument("--no-crash-dialog", action="store_true", help="log unexpected errors instead of showing a dialog")
    p.add_argument("--quit-after", type=float, default=0, metavar="SECONDS", help=argparse.SUPPRESS)
    p.add_argument("--demo", action="store_true", help="run on the built-in sandbox server with sample data")


def run(args: argparse.Namespace) -> int:
    from xnat_uploader.app import run_gui

    return run_gui(args)
