"""The Prearchive tab against the sandbox: listing with counts, filter, details, archive/move/delete, errors in the
rows, auto-refresh, and the model under qtmodeltester."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialogButtonBox

from tests.integration._client_data import make_study
from xnat_uploader.core.upload_choices import OnExisting
from xnat_uploader.core.xnat import ImportHandler, ImportOptions, PrearchiveRef, XnatClient
from xnat_uploader.gui.dialogs.prearchive_dialogs import ArchiveChoice, ArchiveDialog
from xnat_uploader.gui.models.prearchive_model import (
    BLUE,
    COL_FILES,
    COL_RESULT,
    COL_SCANS,
    COL_STATUS,
    GREEN,
    RED,
    PrearchiveModel,
)
from xnat_uploader.gui.widgets import prearchive_panel
from xnat_uploader.gui.widgets.prearchive_panel import PrearchivePanel

SCREENSHOT_DIR = "XNAT_UPLOADER_SCREENSHOTS"  # set it to write prearchive.png there (for the README)


def _upload(client: XnatClient, tmp_path: Path, seed: int, label: str, *, commit: bool = True) -> PrearchiveRef:
    study = make_study(tmp_path, seed=seed)  # 2 series of 3 files
    opts = ImportOptions.for_uploader(ImportHandler.DICOM_ZIP, "DEMO", f"SUBJ{seed}", label, commit=commit)
    return client.import_data(study.zip_bytes(), opts).prearchive[0]


@pytest.fixture
def client(sandbox):
    with XnatClient(sandbox.url, "admin", "admin") as c:
        yield c


@pytest.fixture
def make_panel(qtbot, sandbox, make_controller):
    panels: list[PrearchivePanel] = []

    def make() -> PrearchivePanel:
        controller = make_controller()
        controller.connect(sandbox.url, "admin", "admin")
        panel = PrearchivePanel(controller)
        qtbot.addWidget(panel)
        panels.append(panel)
        return panel

    yield make
    for panel in panels:
        assert panel.shutdown()


def _cell(panel: PrearchivePanel, ref: PrearchiveRef, col: int, role=Qt.ItemDataRole.DisplayRole):
    row = panel.model.row_of(ref)
    return None if row < 0 else panel.model.index(row, col).data(role)


def _wait_listed(qtbot, panel, refs, timeout=8000):
    qtbot.waitUntil(lambda: all(panel.model.row_of(r) >= 0 for r in refs), timeout=timeout)


def test_lists_sessions_with_status_counts_filter_and_details(qtbot, qtmodeltester, client, tmp_path, make_panel):
    one, two = _upload(client, tmp_path, 1, "ONE"), _upload(client, tmp_path, 2, "TWO")
    panel = make_panel()
    _wait_listed(qtbot, panel, [one, two])
    assert panel.server.count() == 1
    assert _cell(panel, one, COL_STATUS) == "READY"
    assert _cell(panel, one, COL_STATUS, Qt.ItemDataRole.ForegroundRole) == GREEN
    qtbot.waitUntil(lambda: _cell(panel, two, COL_FILES) == "6", timeout=8000)  # counts load in a worker
    assert _cell(panel, two, COL_SCANS) == "2"
    assert [panel.project.itemData(i) for i in range(panel.project.count())] == ["", "DEMO"]

    panel.filter.setText("two")
    assert panel.proxy.rowCount() == 1
    assert panel.proxy.index(0, 2).data() == "TWO"
    panel.filter.setText("")
    panel.project.setCurrentIndex(panel.project.findData("DEMO"))
    assert panel.proxy.rowCount() == 2
    panel.table.sortByColumn(2, Qt.SortOrder.AscendingOrder)
    assert [panel.proxy.index(i, 2).data() for i in range(2)] == ["ONE", "TWO"]

    panel.select([one])
    assert panel.buttons["archive"].isEnabled()
    qtbot.waitUntil(lambda: panel.details.table.rowCount() == 2, timeout=8000)
    assert "2 scan(s), 6 file(s)" in panel.details.title.text()
    assert all(panel.details.table.item(i, 2).text() for i in range(2))  # series descriptions
    assert [panel.details.table.item(i, 3).text() for i in range(2)] == ["3", "3"]

    qtmodeltester.check(panel.model)
    qtmodeltester.check(panel.proxy)


def test_archive_with_relabel_then_each_choice_for_an_existing_session(
    qtbot, sandbox, client, tmp_path, make_panel, monkeypatch
):
    """Another study archived under a label already taken: "Refuse" stops before asking XNAT (the row stays
    READY), "Add" is refused by XNAT (another study: CONFLICT), "Replace" lets XNAT merge it (overrideExceptions)."""
    one, two = _upload(client, tmp_path, 3, "ONE"), _upload(client, tmp_path, 4, "TWO")
    panel = make_panel()
    _wait_listed(qtbot, panel, [one, two])
    choices = iter(
        [ArchiveChoice("NEWSUBJ", "RELABELED")]
        + [ArchiveChoice("NEWSUBJ", "RELABELED", c) for c in (OnExisting.REFUSE, OnExisting.ADD, OnExisting.REPLACE)]
    )
    monkeypatch.setattr(prearchive_panel, "ask_archive", lambda parent, sessions: next(choices))

    panel.select([one])
    panel.buttons["archive"].click()
    qtbot.waitUntil(lambda: _cell(panel, one, COL_RESULT, Qt.ItemDataRole.ForegroundRole) == GREEN, timeout=10000)
    assert _cell(panel, one, COL_RESULT) == "Archived as DEMO/NEWSUBJ/RELABELED"
    assert any(k.startswith("archive:DEMO/") and k.endswith("RELABELED") for k in sandbox.inventory())
    assert [e.label for e in client.experiments("DEMO")] == ["RELABELED"]
    qtbot.waitUntil(lambda: _cell(panel, one, COL_STATUS) == "(gone)", timeout=8000)  # kept with its result

    panel.select([two])
    seen = len(sandbox.request_log)
    panel.buttons["archive"].click()  # Refuse: checked by us, nothing sent to the archive service
    qtbot.waitUntil(lambda: _cell(panel, two, COL_RESULT, Qt.ItemDataRole.ForegroundRole) == RED, timeout=10000)
    assert _cell(panel, two, COL_RESULT).startswith(
        "Nothing was archived: a session RELABELED already exists in the archive of DEMO."
    )
    assert not any(r.path == "/data/services/archive" for r in sandbox.request_log[seen:])
    assert client.prearchive_session(two).status == "READY"

    panel.buttons["archive"].click()  # Add: XNAT merges, but not another study under that label
    qtbot.waitUntil(lambda: _cell(panel, two, COL_STATUS) == "CONFLICT", timeout=10000)
    assert _cell(panel, two, COL_RESULT).startswith("XNAT could not archive the session.")
    assert _cell(panel, two, COL_RESULT, Qt.ItemDataRole.ForegroundRole) == RED
    assert _cell(panel, two, COL_STATUS, Qt.ItemDataRole.ForegroundRole) == RED

    panel.buttons["archive"].click()  # Replace: overwrite=delete, XNAT lets it in
    qtbot.waitUntil(lambda: _cell(panel, two, COL_RESULT, Qt.ItemDataRole.ForegroundRole) == GREEN, timeout=10000)
    assert _cell(panel, two, COL_RESULT) == "Archived as DEMO/NEWSUBJ/RELABELED"
    [entry] = [e for e in sandbox.inventory().values() if e["where"] == "archive"]
    assert len(entry["series"]) == 4  # both studies' series, nothing deleted
    qtbot.waitUntil(lambda: _cell(panel, two, COL_STATUS) == "(gone)", timeout=8000)

    panel.refresh_button.click()  # a refresh the user asks for forgets the gone rows
    qtbot.waitUntil(lambda: panel.model.row_of(one) < 0, timeout=8000)


def test_move_rebuild_and_delete_after_confirmation(qtbot, sandbox, client, tmp_path, make_panel, monkeypatch):
    sandbox.add_project("OTHER")
    one, two = _upload(client, tmp_path, 5, "ONE"), _upload(client, tmp_path, 6, "TWO")
    panel = make_panel()
    _wait_listed(qtbot, panel, [one, two])
    offered: list[list[str]] = []
    monkeypatch.setattr(prearchive_panel, "ask_move", lambda parent, projects, n: offered.append(projects) or "OTHER")

    panel.select([one])
    panel.buttons["move"].click()
    moved = PrearchiveRef("OTHER", one.timestamp, one.folder)
    _wait_listed(qtbot, panel, [moved], timeout=10000)
    assert offered == [["OTHER"]]  # not the session's own project
    assert _cell(panel, one, COL_RESULT) == "Moved to OTHER"
    assert [s.ref for s in client.prearchive("OTHER")] == [moved]

    panel.select([two])
    panel.buttons["rebuild"].click()
    qtbot.waitUntil(lambda: _cell(panel, two, COL_RESULT) == "Rebuild queued", timeout=10000)
    assert _cell(panel, two, COL_RESULT, Qt.ItemDataRole.ForegroundRole) == GREEN

    asked: list[str] = []
    monkeypatch.setattr(prearchive_panel, "confirm", lambda parent, text: asked.append(text) or False)
    panel.select([two])
    panel.buttons["delete"].click()
    assert "cannot be undone" in asked[0]
    assert "DEMO/TWO" in asked[0]
    assert _cell(panel, two, COL_RESULT) == "Rebuild queued"  # declined: nothing happened
    monkeypatch.setattr(prearchive_panel, "confirm", lambda parent, text: True)
    panel.buttons["delete"].click()
    qtbot.waitUntil(lambda: _cell(panel, two, COL_RESULT) == "Deleted", timeout=10000)
    qtbot.waitUntil(lambda: not any(s.folder == "TWO" for s in client.prearchive("DEMO")), timeout=8000)


def test_auto_refresh_follows_a_receiving_session_until_ready(qtbot, client, tmp_path, make_panel):
    ref = _upload(client, tmp_path, 7, "LATE", commit=False)
    panel = make_panel()
    panel.timer.setInterval(200)
    _wait_listed(qtbot, panel, [ref])
    assert _cell(panel, ref, COL_STATUS) == "RECEIVING"
    assert _cell(panel, ref, COL_STATUS, Qt.ItemDataRole.ForegroundRole) == BLUE
    assert panel.timer.isActive() or panel._listing  # noqa: SLF001 - the auto-refresh is armed
    client.commit(ref)
    qtbot.waitUntil(lambda: _cell(panel, ref, COL_STATUS) == "READY", timeout=5000)
    qtbot.waitUntil(lambda: _cell(panel, ref, COL_FILES) == "6", timeout=5000)
    qtbot.wait(500)
    assert not panel.timer.isActive()  # nothing busy: no more polling


def test_archive_dialog_checks_labels(qtbot, client, tmp_path):
    ref = _upload(client, tmp_path, 8, "ONE")
    (session,) = [s for s in client.prearchive("DEMO") if s.ref == ref]
    dialog = ArchiveDialog([session])
    qtbot.addWidget(dialog)
    ok = dialog.buttons.button(QDialogButtonBox.StandardButton.Ok)
    assert ok.isEnabled()
    dialog.label.setText("bad label!")
    assert not ok.isEnabled()
    assert "Session label may only contain" in dialog.problem.text()
    dialog.label.setText("GOOD_1")
    dialog.on_existing.setCurrentIndex(1)
    assert ok.isEnabled()
    assert dialog.choice() == ArchiveChoice("", "GOOD_1", OnExisting.ADD)
    several = ArchiveDialog([session, session])
    qtbot.addWidget(several)
    assert not several.label.isEnabled()  # one label cannot name several sessions


def test_archive_dialog_offers_what_xnat_does_with_a_tip_each(qtbot, client, tmp_path):
    """XNAT archives one session into an existing one whatever ``overwrite`` says, and never deletes: the items
    are the upload's three choices (refusing is ours), each with what XNAT does as its tip and under the box."""
    ref = _upload(client, tmp_path, 15, "ONE")
    (session,) = [s for s in client.prearchive("DEMO") if s.ref == ref]
    dialog = ArchiveDialog([session])
    qtbot.addWidget(dialog)
    box = dialog.on_existing
    items = [box.itemText(i) for i in range(box.count())]
    assert items == ["Refuse if the session exists", "Add to the existing session", "Replace what is already there"]
    assert not any("None" in t or "Delete" in t or "fail" in t.lower() for t in items)  # promises XNAT did not keep
    tips = [box.itemData(i, Qt.ItemDataRole.ToolTipRole) for i in range(box.count())]
    assert tips == [c.archive_help for c in OnExisting]
    assert "this app looks before asking XNAT" in tips[0]
    assert "XNAT refuses" in tips[1]
    assert "CONFLICT" in tips[1]
    assert "nothing there is deleted or replaced" in tips[1]
    assert "replaced by these" in tips[2]
    assert "nothing is deleted" in tips[2]
    assert dialog.choice().on_existing is OnExisting.REFUSE  # the default changes nothing that exists
    for i, choice in enumerate(OnExisting):
        box.setCurrentIndex(i)
        assert dialog.on_existing_help.text() == box.toolTip() == choice.archive_help
        assert dialog.choice().on_existing is choice
    box.setCurrentIndex(1)
    dialog.resize(560, dialog.sizeHint().height())
    dialog.show()
    qtbot.waitExposed(dialog)
    folder = Path(os.environ.get(SCREENSHOT_DIR) or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    assert dialog.grab().save(str(folder / "archive_dialog.png"))


def test_install_in_main_window_and_screenshot(qtbot, sandbox, client, tmp_path, make_controller, monkeypatch):
    from xnat_uploader.gui.main_window import MainWindow
    from xnat_uploader.gui.prearchive_tab import install_prearchive_tab

    refs = [_upload(client, tmp_path, seed, label) for seed, label in ((9, "BASELINE"), (10, "FOLLOWUP"))]
    refs.append(_upload(client, tmp_path, 11, "INCOMING", commit=False))
    refs.append(_upload(client, tmp_path, 14, "SCREENING"))
    controller = make_controller()
    controller.connect(sandbox.url, "admin", "admin")
    window = MainWindow()
    qtbot.addWidget(window)
    panel = install_prearchive_tab(window, controller)
    try:
        assert panel.parent() is window.prearchive_area
        window.tabs.setCurrentWidget(window.prearchive_area)
        window.resize(1100, 600)
        window.show()
        _wait_listed(qtbot, panel, refs)
        qtbot.waitUntil(lambda: _cell(panel, refs[0], COL_FILES) == "6", timeout=8000)
        monkeypatch.setattr(prearchive_panel, "ask_archive", lambda parent, sessions: ArchiveChoice("", "SCREEN01"))
        panel.select([refs[3]])
        panel.buttons["archive"].click()
        qtbot.waitUntil(lambda: _cell(panel, refs[3], COL_STATUS) == "(gone)", timeout=8000)
        panel.select([refs[0]])
        qtbot.waitUntil(lambda: panel.details.table.rowCount() == 2, timeout=8000)
        folder = Path(os.environ.get(SCREENSHOT_DIR) or tmp_path)
        folder.mkdir(parents=True, exist_ok=True)
        assert window.prearchive_area.grab().save(str(folder / "prearchive.png"))
    finally:
        assert panel.shutdown()


def test_model_keeps_rows_in_place_and_gone_rows_with_results(qtmodeltester, client, tmp_path):
    a, b = _upload(client, tmp_path, 12, "A"), _upload(client, tmp_path, 13, "B")
    rows = client.prearchive("DEMO")
    model = PrearchiveModel()
    model.set_sessions(rows)
    assert model.rowCount() == 2
    model.set_result(a, "Deleted", True)
    model.set_sessions([s for s in rows if s.ref == b])
    assert model.row_data(a).gone
    assert model.sessions() == [s for s in rows if s.ref == b]
    model.set_sessions([s for s in rows if s.ref == b], drop_gone=True)
    assert model.row_of(a) == -1
    qtmodeltester.check(model)


def test_a_queue_row_links_to_its_prearchive_entry(qtbot, sandbox, make_controller, make_index):
    from tests.gui.test_queue_panel import _new_job, _submit
    from xnat_uploader.core.queue.store import JobState
    from xnat_uploader.gui.main_window import MainWindow
    from xnat_uploader.gui.prearchive_tab import install_prearchive_tab, link_queue_to_prearchive
    from xnat_uploader.gui.upload_panels import install_upload_panels

    controller = make_controller()
    controller.connect(sandbox.url, "admin", "admin")
    window = MainWindow()
    qtbot.addWidget(window)
    panels = install_upload_panels(window, controller)
    panel = install_prearchive_tab(window, controller)
    link_queue_to_prearchive(window, panels.queue, panel)
    try:
        job = _new_job(qtbot, controller, _submit(controller, sandbox, make_index()))
        qtbot.waitUntil(lambda: controller.job(job).state is JobState.DONE, timeout=20000)
        panels.queue.select_job(job)
        assert panels.queue.actions["prearchive"].isEnabled()
        panels.queue.actions["prearchive"].trigger()
        expected = PrearchiveRef.parse(controller.job(job).uri)
        qtbot.waitUntil(lambda: panel.selected_refs() == [expected], timeout=8000)
        assert window.tabs.currentWidget().isAncestorOf(panel) or window.tabs.currentWidget() is panel.parent()
    finally:
        assert panel.shutdown()
