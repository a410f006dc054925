"""Independent peers the tests and benchmarks check us against: Debian's dcmtk programs."""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path


@functools.cache
def find_dcmtk(tool: str) -> str | None:
    """dcmtk's ``tool`` on PATH, or None. pynetdicom installs Python apps of the same names (storescu,
    storescp, echoscu) that come first on a venv's PATH: only a program whose --version says dcmtk counts."""
    for folder in os.get_exec_path():
        candidate = Path(folder) / tool
        if not (candidate.is_file() and os.access(candidate, os.X_OK)):
            continue
        probe = subprocess.run([str(candidate), "--version"], capture_output=True, text=True, timeout=30)
        if "dcmtk" in (probe.stdout + probe.stderr).lower():
            return str(candidate)
    return None


def dcmtk(tool: str) -> str:
    """dcmtk's ``tool``; a missing one fails the test (``./dev.sh`` installs dcmtk with apt)."""
    found = find_dcmtk(tool)
    if found is None:
        raise AssertionError(f"dcmtk's {tool} is not installed (./dev.sh installs it with apt)")
    return found
