"""``xnat-uploader sandbox``: run the built-in XNAT-compatible server until Ctrl-C.

The administrator's password comes from standard input (``--password-stdin``) or the environment
(:data:`PASSWORD_ENV`): a command-line argument is visible to every user of the computer (``ps``), so
``--password`` is kept for tests and marked unsafe.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

PASSWORD_ENV = "XNAT_SANDBOX_PASSWORD"
DEFAULT_PASSWORD = "admin"


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("sandbox", help="run a local XNAT-compatible server (demo mode, tests, benchmarks)")
    p.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (default: any free port)")
    p.add_argument("--data", metavar="DIR", help="keep the data under DIR (default: a temporary folder)")
    p.add_argument("--user", default="admin", help="administrator login (default: admin)")
    p.add_argument(
        "--password-stdin",
        action="store_true",
        help=f"read the administrator password from the first line of standard input (or set {PASSWORD_ENV}; "
        f"default: {DEFAULT_PASSWORD})",
    )
    p.add_argument(
        "--password",
        metavar="PW",
        help=f"UNSAFE: other users of this computer see it in the process list (ps); for tests only. Use "
        f"--password-stdin or {PASSWORD_ENV} instead",
    )
    p.add_argument("--project", action="append", metavar="ID", help="a project to create (repeatable; default DEMO)")
    p.add_argument("--faults", default="", metavar="SPEC", help="faults to inject, e.g. http500_every=5,slow=0.5")
    p.add_argument("--xnat-version", default="1.8.10", metavar="V", help="version reported by buildInfo")
    p.add_argument(
        "--auto-build-after",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="build idle RECEIVING sessions after this many seconds (XNAT: 5 minutes)",
    )
    p.add_argument(
        "--dicom-port",
        type=int,
        nargs="?",
        const=8104,
        metavar="N",
        help="also run a DICOM C-STORE receiver on this port (alone: XNAT's 8104; 0: any free port)",
    )
    p.add_argument("--ae-title", default="XNAT", metavar="AET", help="the receiver's AE title (default: XNAT)")


def admin_password(args: argparse.Namespace) -> str:
    """The administrator password: ``--password-stdin``, else ``--password``, else :data:`PASSWORD_ENV`, else
    the default. Raises ``ValueError`` with a plain message when it cannot be had."""
    if args.password_stdin:
        if args.password is not None:
            raise ValueError("give the password once: --password-stdin or --password, not both")
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise ValueError("--password-stdin: no password on the first line of standard input")
        return password
    if args.password is not None:
        print(
            f"xnat-uploader sandbox: warning: --password is visible to other users of this computer; use "
            f"--password-stdin or {PASSWORD_ENV}",
            file=sys.stderr,
        )
        return args.password
    return os.environ.get(PASSWORD_ENV) or DEFAULT_PASSWORD


def run(args: argparse.Namespace) -> int:
    from xnat_uploader.sandbox.faults import FaultSpec
    from xnat_uploader.sandbox.server import SandboxServer

    try:
        faults = FaultSpec.parse(args.faults)
        password = admin_password(args)
    except ValueError as exc:
        print(f"xnat-uploader sandbox: {exc}")
        return 2
    try:
        server = SandboxServer(
            args.data,
            port=args.port,
            user=args.user,
            password=password,
            projects=tuple(args.project or ("DEMO",)),
            faults=faults,
            version=args.xnat_version,
            auto_build_after=args.auto_build_after,
            dicom_port=args.dicom_port,
            ae_title=args.ae_title,
        ).start()
    except (OSError, ValueError) as exc:  # port in use, an AE title DICOM does not allow...
        print(f"xnat-uploader sandbox: {exc}")
        return 2
    projects = ", ".join(sorted(server.app.store.projects))
    print(f"XNAT sandbox ready at {server.url}  (user {args.user}; projects {projects})", flush=True)
    if server.dicom is not None:
        dicom = server.dicom
        print(f"DICOM receiver: AE title {dicom.ae_title} at {dicom.host} port {dicom.port}", flush=True)
    print(f"Data in {server.data_dir}" + (" (restored from an earlier run)" if server.restored else ""), flush=True)
    if faults.active:
        print(f"Faults: {faults}", flush=True)
    print("Press Ctrl-C to stop.", flush=True)
    # SIGTERM (a service manager, a script's kill) stops it as cleanly as Ctrl-C: the state is saved. A
    # background job of a shell ignores SIGINT, so scripts stop it this way.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("Stopped.")
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
