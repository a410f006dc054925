"""The demo: the built-in sandbox server with a small synthetic corpus, so the app can be tried at once.

Used by ``xnat-uploader demo`` and by the plain start when no server is configured yet. Everything
lives in one temporary folder that is removed when the demo stops; nothing is written to the
user's settings, and the sandbox account is only ever held in memory.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from xnat_uploader.sandbox.server import SandboxServer
from xnat_uploader.sandbox.synthetic import write_corpus

log = logging.getLogger(__name__)

USER = "demo"
PASSWORD = "demo"  # a throwaway account on a server that lives for this run only
PROJECT = "DEMO"


@dataclass
class Demo:
    """A running demo: the sandbox, its account, and the folder of sample DICOM to open."""

    server: SandboxServer
    corpus: Path
    root: Path
    user: str = USER
    password: str = field(default=PASSWORD, repr=False)

    @property
    def url(self) -> str:
        return self.server.url

    def stop(self) -> None:
        self.server.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def start_demo(patients: int = 3, root: Path | None = None) -> Demo:
    """Start the sandbox (HTTP and DICOM receiver on free loopback ports) and write the sample corpus."""
    root = Path(root) if root else Path(tempfile.mkdtemp(prefix="xnat-uploader-demo-"))
    corpus = root / "sample-dicom"
    write_corpus(corpus, patients=patients, studies_per_patient=1, series_per_study=3, instances_per_series=12)
    server = SandboxServer(root / "server", user="admin", password="admin", projects=(PROJECT, "PILOT"), dicom_port=0)
    server.add_user(USER, PASSWORD, projects=[PROJECT, "PILOT"])
    server.start()
    log.info("Demo sandbox at %s; sample data in %s", server.url, corpus)
    return Demo(server, corpus, root)
