"""``xnat-uploader echo --host H --port P --called-aet A``: test a DICOM receiver with C-ECHO.

Prints one plain line: that the receiver answered (and how fast), or why not (connection refused,
association rejected with its reason, wrong AE title, time-out). Exit 0 when it answered, 1 otherwise.
Runs on the main thread of a command-line process.
"""

from __future__ import annotations

import argparse
import time

from xnat_uploader.commands._connect import EXIT_FAIL, EXIT_OK, report
from xnat_uploader.core.transfer.cstore import DEFAULT_CALLING_AET, check_receiver
from xnat_uploader.core.transfer.dimse import DicomError, Endpoint


def add_receiver_args(p: argparse.ArgumentParser, *, required: bool) -> None:
    """``--host --port --called-aet --calling-aet`` (shared with ``upload --mode cstore``)."""
    p.add_argument("--host", required=required, help="DICOM receiver host (XNAT: the server's host name)")
    p.add_argument("--port", type=int, required=required, help="DICOM receiver port (XNAT's default: 8104)")
    p.add_argument("--called-aet", required=required, metavar="AET", help="the receiver's AE title (XNAT's: XNAT)")
    p.add_argument("--calling-aet", default=DEFAULT_CALLING_AET, metavar="AET",
                   help=f"our AE title (default {DEFAULT_CALLING_AET})")  # fmt: skip


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("echo", help="test a DICOM receiver (C-ECHO)")
    add_receiver_args(p, required=True)
    p.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS", help="answer time-out (default 10)")


def run(args: argparse.Namespace) -> int:
    timeout = args.timeout
    start = time.monotonic()
    try:
        endpoint = Endpoint(args.host, args.port, args.called_aet, args.calling_aet,
                            connect_timeout=timeout, acse_timeout=timeout, dimse_timeout=timeout)  # fmt: skip
        check_receiver(endpoint)
    except DicomError as exc:
        report(exc, "DICOM echo")
        return EXIT_FAIL
    print(f"The DICOM receiver {endpoint} answered (C-ECHO in {(time.monotonic() - start) * 1000:.0f} ms).")
    return EXIT_OK
