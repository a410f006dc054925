"""``xnat-uploader sandbox``: run the built-in XNAT-compatible server until Ctrl-C."""

from __future__ import annotations

import argparse
import signal


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("sandbox", help="run a local XNAT-compatible server (demo mode, tests, benchmarks)")
    p.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (default: any free port)")
    p.add_argument("--data", metavar="DIR", help="keep the data under DIR (default: a temporary folder)")
    p.add_argument("--user", default="admin", help="administrator login (default: admin)")
    p.add_argument("--password", default="admin", help="administrator password (default: admin)")
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


def run(args: argparse.Namespace) -> int:
    from xnat_uploader.sandbox.faults import FaultSpec
    from xnat_uploader.sandbox.server import SandboxServer

    try:
        faults = FaultSpec.parse(args.faults)
    except ValueError as exc:
        print(f"xnat-uploader sandbox: {exc}")
        return 2
    try:
        server = SandboxServer(
            args.data,
            port=args.port,
            user=args.user,
            password=args.password,
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
