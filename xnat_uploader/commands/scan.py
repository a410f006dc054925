"""``xnat-uploader scan PATH... [--json]``: what is in these folders, files and archives.

Prints the patient > study > series tree with counts and sizes, the pre-flight findings and the
rejected files with their reasons. Patient names appear on the user's own terminal (they asked for
them) but never in the log. The files are only read, never changed.

Exit codes: 0 when the scan completed (even with rejected files), 2 for bad arguments or a path
that does not exist, 130 when interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import sys
import textwrap
import threading
import time
from collections import Counter, defaultdict
from typing import TYPE_CHECKING, Any, TextIO

from xnat_uploader.core.errors import Cancelled, UserError

if TYPE_CHECKING:
    from xnat_uploader.core.dicom.checks import Finding
    from xnat_uploader.core.dicom.index import DicomIndex
    from xnat_uploader.core.dicom.records import Rejected, ScanProgress

# The core modules (and pydicom behind them) are imported inside the functions: the parser registers
# every command on each start, and `xnat-uploader --version` should not pay for pydicom.

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_USAGE, EXIT_INTERRUPTED = 0, 2, 130
REJECTED_LISTED = 10  # up to this many rejected files are listed one by one, beyond it grouped by reason
PATHS_PER_GROUP = 5  # paths shown per reason group or per finding


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "scan",
        help="show what is in folders, files, zip/tar archives or DICOMDIRs",
        description="Scan folders, files, zip/tar archives or DICOMDIRs; print the patients, studies and "
        "series found, the pre-flight findings and the files that are not usable DICOM. Files are never changed.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="a folder, a file, a zip/tar archive or a DICOMDIR")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--workers", type=_positive_int, default=None, help="parallel readers (default: automatic)")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def run(args: argparse.Namespace) -> int:
    """Scan ``args.paths`` and print the result; returns the exit code."""
    missing = [p for p in args.paths if not os.path.lexists(p)]
    if missing:
        for p in missing:
            print(f"xnat-uploader scan: no such file or folder: {p}", file=sys.stderr)
        return EXIT_USAGE
    progress_line = ProgressLine(sys.stderr) if _is_terminal(sys.stderr) else None
    started = time.monotonic()
    try:
        index, progress = scan_into_index(args.paths, workers=args.workers, on_progress=progress_line)
    except (KeyboardInterrupt, Cancelled):
        if progress_line:
            progress_line.clear()
        print("Interrupted.", file=sys.stderr)
        return EXIT_INTERRUPTED
    except UserError as exc:
        if progress_line:
            progress_line.clear()
        print(f"xnat-uploader scan: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if progress_line:
        progress_line.clear()
    from xnat_uploader.core.dicom.checks import run_checks

    findings = run_checks(index)
    elapsed = time.monotonic() - started
    # Counts and codes only: the log never holds names, IDs or paths that might contain them.
    logger.info(
        "scan of %d paths: %d instances, %d bytes, %d series, %d rejected, findings %s, %.1f s",
        len(args.paths),
        index.instance_count,
        index.bytes,
        index.series_count,
        len(index.rejected),
        dict(Counter(f.code for f in findings)),
        elapsed,
    )
    try:
        if args.json:
            sys.stdout.write(json.dumps(report(index, findings, progress, elapsed), indent=2, ensure_ascii=False))
            sys.stdout.write("\n")
        else:
            print_human(index, findings, elapsed, sys.stdout)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`scan ... | head`): not an error of ours. Point stdout at devnull so
        # the interpreter's final flush does not complain again.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_OK


def scan_into_index(
    paths: list[str], *, workers: int | None = None, on_progress: ProgressLine | None = None
) -> tuple[DicomIndex, ScanProgress]:
    """Run a scan to completion, filling a new index batch by batch.

    On KeyboardInterrupt the scan's cancel event is set and its generator closed, so worker
    threads or processes stop before the exception goes on.
    """
    from xnat_uploader.core.dicom.index import DicomIndex
    from xnat_uploader.core.dicom.records import ScanProgress
    from xnat_uploader.core.dicom.scan import iter_scan

    index = DicomIndex()
    cancel = threading.Event()
    progress = ScanProgress()
    batches = iter_scan(paths, cancel=cancel, workers=workers)
    try:
        for batch in batches:
            index.add_batch(batch)
            progress = batch.progress
            if on_progress:
                on_progress.update(progress)
    except BaseException:
        cancel.set()
        batches.close()
        raise
    return index, progress


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # replaced or closed streams
        return False


class ProgressLine:
    """One self-overwriting status line on a terminal; :meth:`update` shows a scan at most ~10 times a second."""

    def __init__(self, stream: TextIO, interval: float = 0.1) -> None:
        self.stream = stream
        self.interval = interval
        self._last = 0.0
        self._width = 0

    def update(self, progress: ScanProgress) -> None:
        now = time.monotonic()
        if now - self._last < self.interval and not progress.done:
            return
        self._last = now
        self.write(
            f"Scanning: {progress.files_seen:,} files, {progress.bytes_seen / 1e6:,.1f} MB, "
            f"{progress.files_per_second:,.0f} files/s, {progress.rejected:,} rejected"
        )

    def write(self, line: str) -> None:
        """Replace the status line with ``line``."""
        self._width = max(self._width, len(line))
        self.stream.write("\r" + line.ljust(self._width))
        self.stream.flush()

    def clear(self) -> None:
        if self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0


# ---- JSON -----------------------------------------------------------------------------------------


def report(index: DicomIndex, findings: list[Finding], progress: ScanProgress, elapsed: float) -> dict[str, Any]:
    """The ``--json`` object: totals, the tree with counts, findings and rejected files."""
    from xnat_uploader.core.dicom.index import sorted_patients, sorted_series, sorted_studies

    tree = []
    for p in sorted_patients(index.patients):
        studies = []
        for st in sorted_studies(p.studies):
            series = [
                {
                    "uid": se.uid,
                    "number": se.number,
                    "description": se.description,
                    "modality": se.modality,
                    "instances": se.instance_count,
                    "bytes": se.bytes,
                }
                for se in sorted_series(st.series)
            ]
            studies.append(
                {
                    "uid": st.uid,
                    "date": st.date,
                    "time": st.time,
                    "description": st.description,
                    "accession": st.accession,
                    "modalities": list(st.modalities),
                    "instances": st.instance_count,
                    "bytes": st.bytes,
                    "series": series,
                }
            )
        tree.append(
            {
                "patient_id": p.patient_id,
                "patient_name": p.patient_name,
                "instances": p.instance_count,
                "bytes": p.bytes,
                "studies": studies,
            }
        )
    return {
        "patients": index.patient_count,
        "studies": index.study_count,
        "series": index.series_count,
        "instances": index.instance_count,
        "bytes": index.bytes,
        "files_seen": progress.files_seen,
        "seconds": round(elapsed, 3),
        "tree": tree,
        "findings": [f.to_dict() for f in findings],
        "rejected": [{"path": r.display_path, "reason": r.reason} for r in _sorted_rejected(index.rejected)],
    }


def _sorted_rejected(rejected: list[Rejected]) -> list[Rejected]:
    return sorted(rejected, key=lambda r: (r.path, r.member))


# ---- text -----------------------------------------------------------------------------------------


def human_bytes(n: float) -> str:
    """``1.2 MB``: decimal units, as file managers and transfer rates use."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def _plural(n: int, word: str, many: str = "") -> str:
    return f"{n:,} {word}" if n == 1 else f"{n:,} {many or word + 's'}"


def _date(value: str) -> str:
    return f"{value[:4]}-{value[4:6]}-{value[6:8]}" if len(value) == 8 and value.isdigit() else (value or "no date")


def print_human(index: DicomIndex, findings: list[Finding], elapsed: float, out: TextIO) -> None:
    """The text report: tree, findings, rejected files, then a one-line total."""
    from xnat_uploader.core.dicom.checks import Severity
    from xnat_uploader.core.dicom.index import sorted_patients, sorted_series, sorted_studies

    width = max(60, min(shutil.get_terminal_size((100, 20)).columns, 120))
    w = out.write
    if index.patients:
        w("Patients, studies and series\n")
    for p in sorted_patients(index.patients):
        name = p.patient_name or "(no name)"
        ident = f"ID {p.patient_id}" if p.patient_id else "no patient ID"
        w(f"  {name} ({ident}): {_plural(len(p.studies), 'study', 'studies')}, "
          f"{_plural(p.instance_count, 'file')}, {human_bytes(p.bytes)}\n")  # fmt: skip
        for st in sorted_studies(p.studies):
            modalities = f"[{'/'.join(st.modalities)}]" if st.modalities else ""
            label = " ".join(x for x in (_date(st.date), st.description, modalities) if x)
            w(f"    {label}: {_plural(len(st.series), 'series', 'series')}, "
              f"{_plural(st.instance_count, 'file')}, {human_bytes(st.bytes)}\n")  # fmt: skip
            for se in sorted_series(st.series):
                number = f"#{se.number}" if se.number is not None else "#?"
                desc = se.description or "(no description)"
                w(f"      {number:>5} {desc}  {se.modality or '--'}  "
                  f"{_plural(se.instance_count, 'file')}, {human_bytes(se.bytes)}\n")  # fmt: skip
    if findings:
        w(f"\nFindings ({len(findings)})\n")
        for f in findings:
            head = f"  {f.severity.value.upper()} [{f.code}] "
            w(textwrap.fill(f.message, width, initial_indent=head, subsequent_indent=" " * 6) + "\n")
            w(_list_paths(f.paths, indent=6, label="files: "))
    if index.rejected:
        w(f"\nRejected ({_plural(len(index.rejected), 'file')} not uploadable)\n")
        rejected = _sorted_rejected(index.rejected)
        if len(rejected) <= REJECTED_LISTED:
            for r in rejected:
                w(f"  {r.display_path}: {r.reason}\n")
        else:
            groups: dict[str, list[str]] = defaultdict(list)
            for r in rejected:
                groups[r.reason].append(r.display_path)
            for reason, paths in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
                w(f"  {reason} ({_plural(len(paths), 'file')}):\n")
                w(_list_paths(paths, indent=4))
    if index.patients or findings or index.rejected:
        w("\n")
    by_severity = Counter(f.severity for f in findings)
    finding_text = ", ".join(
        _plural(by_severity[s], s.value, "info" if s is Severity.INFO else "")
        for s in sorted(by_severity, key=lambda s: s.rank)
    )
    w(
        f"Total: {_plural(index.instance_count, 'DICOM file')} ({human_bytes(index.bytes)}) in "
        f"{_plural(index.patient_count, 'patient')}, {_plural(index.study_count, 'study', 'studies')}, "
        f"{_plural(index.series_count, 'series', 'series')}; {_plural(len(index.rejected), 'rejected file')}; "
        f"{finding_text or 'no findings'}; {elapsed:.1f} s.\n"
    )


def _list_paths(paths: tuple[str, ...] | list[str], indent: int, label: str = "") -> str:
    pad = " " * indent
    shown = [f"{pad}{label if i == 0 else ' ' * len(label)}{p}\n" for i, p in enumerate(paths[:PATHS_PER_GROUP])]
    if len(paths) > PATHS_PER_GROUP:
        shown.append(f"{pad}{' ' * len(label)}... and {len(paths) - PATHS_PER_GROUP:,} more\n")
    return "".join(shown)
