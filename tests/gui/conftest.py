"""GUI test fixtures: the sandbox server (real loopback HTTP) and upload controllers that are always shut down."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import sandbox, sandbox_factory  # noqa: F401
from xnat_uploader.core.dicom.index import DicomIndex, build_index
from xnat_uploader.core.dicom.scan import scan_paths
from xnat_uploader.gui.upload_controller import UploadController
from xnat_uploader.sandbox.synthetic import write_corpus


@pytest.fixture
def make_controller(tmp_path) -> Iterator[Callable[..., UploadController]]:
    """``make_controller(**kw)``: an :class:`UploadController` on ``tmp_path/queue.sqlite3`` (shared by every
    controller of the test, as after a restart) with no saved password; shut down after the test."""
    made: list[UploadController] = []

    def make(**kw) -> UploadController:
        kw.setdefault("store_path", tmp_path / "queue.sqlite3")
        kw.setdefault("receipts_dir", tmp_path / "receipts")
        kw.setdefault("credentials", lambda url, user: None)
        controller = UploadController(**kw)
        made.append(controller)
        return controller

    yield make
    for controller in made:
        assert controller.shutdown(), "upload threads did not stop"


@pytest.fixture
def make_index(tmp_path) -> Callable[..., DicomIndex]:
    """``make_index(name, patients=1, studies=1, series=2, instances=4, seed=0)``: a generated corpus, scanned
    (in this process) and indexed. Different seeds give different patients and UIDs."""

    def make(
        name: str = "src", patients: int = 1, studies: int = 1, series: int = 2, instances: int = 4, seed: int = 0
    ) -> DicomIndex:
        root: Path = tmp_path / name
        write_corpus(
            root, patients=patients, studies_per_patient=studies, series_per_study=series,
            instances_per_series=instances, seed=seed,
        )  # fmt: skip
        result = scan_paths([root], workers=1)
        return build_index(result.instances, result.rejected)

    return make


@pytest.fixture
def fresh_memory():
    """No password kept in memory from another test (the keyring-less fallback), before and after."""
    from xnat_uploader.core.credentials import forget_memory

    forget_memory()
    yield
    forget_memory()


@pytest.fixture
def bar(qtbot, make_controller):
    """The toolbar's server bar over a controller with empty settings."""
    from xnat_uploader.core.settings import Settings
    from xnat_uploader.gui.widgets.server_bar import ServerBar

    widget = ServerBar(make_controller(settings=Settings()))
    qtbot.addWidget(widget)
    return widget
