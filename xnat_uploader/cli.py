"""The ``xnat-uploader`` command: the GUI by default, sub-commands over the same core."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from xnat_uploader import __version__, log, paths
from xnat_uploader.commands import COMMANDS, module_for

TOP_OPTIONS_WITH_VALUE = ("--dev-config",)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line, or with ``only`` (a command module) just that sub-command: each command
    module imports what it runs, so registering one command keeps start-up short."""
    parser = argparse.ArgumentParser(prog="xnat-uploader", description="Upload DICOM folders to XNAT.")
    parser.add_argument("--version", action="version", version=f"xnat-uploader {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument("--dev-config", metavar="DIR", help="keep settings, queue and logs under DIR")
    parser.add_argument("--self-test", action="store_true", help="check that every part loads, print versions, exit")
    # Also accepted before the sub-command (``xnat-uploader --no-crash-dialog``), e.g. by the frozen app in CI.
    parser.add_argument("--no-crash-dialog", dest="no_crash_dialog_top", action="store_true", help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS if only is None else [only]:
        module = importlib.import_module(f"xnat_uploader.commands.{name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_command_module(argv))
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args([*argv, "gui"])
    if args.no_crash_dialog_top:
        args.no_crash_dialog = True
    if args.dev_config:
        paths.set_base(args.dev_config)
    if args.self_test:
        from xnat_uploader import selftest

        return selftest.run(verbose=args.verbose)
    tightened = paths.tighten_app_folders()  # an older install made them readable by every account
    log.setup(verbose=args.verbose)
    if tightened:
        logging.getLogger(__name__).info("Made %d settings, queue and log entries owner-only", tightened)
    module = importlib.import_module(f"xnat_uploader.commands.{args.command}")
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130


def _command_module(argv: Sequence[str]) -> str | None:
    """The module of the sub-command in ``argv`` (``gui`` when none is given); None (all) for help or typos."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in TOP_OPTIONS_WITH_VALUE:
            skip = True
        elif arg in ("-h", "--help"):
            return None
        elif not arg.startswith("-"):
            return module_for(arg)
    return "gui"


if __name__ == "__main__":
    sys.exit(main())
