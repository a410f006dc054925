"""Run every benchmark in this folder, one after the other: ``./dev.sh bench [--quick]``.

Each benchmark is a script ``benchmarks/NAME.py`` that runs our tool and its peers side by side in
one run and prints a table with ratios. Extra arguments are passed to each script.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    scripts = sorted(p for p in HERE.glob("*.py") if p.name not in {"run_all.py"} and not p.name.startswith("_"))
    worst = 0
    for script in scripts:
        print(f"\n=== {script.stem} ===", flush=True)
        worst = max(worst, subprocess.call([sys.executable, str(script), *argv], cwd=HERE.parent))
    return worst


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
