"""Start-up cost: a command loads what it runs, nothing more (C-STORE must keep up with dcmtk's storescu).

Each check runs in a fresh interpreter and looks at ``sys.modules``: the heavy libraries (requests,
keyring, pydicom, pynetdicom, Qt) must stay unloaded on the paths that do not need them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from xnat_uploader.commands import COMMANDS, module_for
from xnat_uploader.sandbox.synthetic import write_corpus

HEAVY = ("requests", "urllib3", "keyring", "pydicom", "pynetdicom", "PySide6")

PROBE = """
import json, sys
from xnat_uploader.cli import build_parser
build_parser("upload").parse_args(["upload", "x", "--mode", "cstore"])
from xnat_uploader.core.dicom.scan import scan_paths
from xnat_uploader.core.transfer import cstore
from xnat_uploader.core.queue import runner
found = scan_paths(sys.argv[1:], workers=1)
print(json.dumps({"instances": len(found.instances),
                  "loaded": sorted({m.split(".")[0] for m in sys.modules} & set(%r))}))
"""


def _probe(*paths: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", PROBE % (HEAVY,), *paths], capture_output=True, text=True, check=True, timeout=60
    )
    return json.loads(out.stdout)


def test_cstore_upload_path_loads_no_heavy_library(tmp_path: Path) -> None:
    written = write_corpus(tmp_path, patients=1, series_per_study=2, instances_per_series=3)
    report = _probe(str(tmp_path))
    assert report["instances"] == len(written) == 6
    assert report["loaded"] == []


def test_http_and_pydicom_load_when_needed() -> None:
    """The lazy names still resolve: the client brings requests, the header preview pydicom."""
    code = (
        "import sys\n"
        "from xnat_uploader.core.xnat import XnatClient, ConnectionOptions\n"
        "from xnat_uploader.core.dicom import header\n"
        "print(XnatClient.__name__, ConnectionOptions().read_timeout,"
        " 'requests' in sys.modules, 'pydicom' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.split() == ["XnatClient", "120.0", "True", "True"]


def test_every_command_name_maps_to_its_module() -> None:
    """``module_for`` must know every sub-command, or the command line would load all of them."""
    code = (
        "import argparse, importlib, json\n"
        "from xnat_uploader.commands import COMMANDS\n"
        "names = {}\n"
        "for m in COMMANDS:\n"
        "    sub = argparse.ArgumentParser().add_subparsers()\n"
        "    importlib.import_module('xnat_uploader.commands.' + m).register(sub)\n"
        "    names.update({n: m for n in sub.choices})\n"
        "print(json.dumps(names))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    names = json.loads(out.stdout)
    assert set(names.values()) == set(COMMANDS)
    for name, module in names.items():
        assert module_for(name) == module, name
    assert module_for("no-such-command") is None
