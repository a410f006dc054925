"""Exam folders in the window: the tree lists the non-DICOM items of a dropped folder, the form offers them as
resources (tick, rename, overwrite) and what is ticked reaches the queued job's options."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLineEdit

from tests.gui.browse_helpers import wait_idle
from xnat_uploader.core.attach import OPT_RESOURCES
from xnat_uploader.core.exam import ExamItem
from xnat_uploader.core.queue.store import JobState
from xnat_uploader.core.xnat import PrearchiveRef
from xnat_uploader.gui.dialogs.prearchive_dialogs import ArchiveChoice
from xnat_uploader.gui.main_window import MainWindow
from xnat_uploader.gui.models.prearchive_model import COL_RESULT, GREEN
from xnat_uploader.gui.models.tree_text import OtherFiles, Problems
from xnat_uploader.gui.prearchive_tab import install_prearchive_tab
from xnat_uploader.gui.upload_panels import install_upload_panels
from xnat_uploader.gui.widgets import prearchive_panel
from xnat_uploader.gui.widgets.resource_table import ATTACH, FILES, ITEM, RESOURCE
from xnat_uploader.sandbox.synthetic import write_corpus


def exam_folder(root: Path) -> Path:
    """One study of DICOM, a folder of two PDFs and a loose text file (all synthetic)."""
    write_corpus(root, patients=1, series_per_study=1, instances_per_series=3, rows=16, columns=16)
    (root / "reports").mkdir()
    (root / "reports" / "protocol.pdf").write_bytes(b"%PDF-1.4\n% synthetic protocol\n%%EOF\n")
    (root / "reports" / "tech notes.pdf").write_bytes(b"%PDF-1.4\n% synthetic notes\n%%EOF\n" * 10)
    (root / "notes.txt").write_text("scanned on the research scanner\n", encoding="utf-8")
    return root


def _window(qtbot) -> MainWindow:
    window = MainWindow(scan_workers=1)
    qtbot.addWidget(window)
    window.resize(1280, 900)
    window.show()
    qtbot.waitExposed(window)
    return window


def _others_index(model):
    rows = [model.index(r, 0) for r in range(model.rowCount())]
    found = [i for i in rows if isinstance(model.item(i), OtherFiles)]
    return found[0] if found else None


def _rename(qtbot, grid, row: int, name: str) -> None:
    """Type a resource name into the table's own editor, as a user does (double-click, type, Enter)."""
    grid.editItem(grid.item(row, RESOURCE))
    [editor] = [e for e in grid.viewport().findChildren(QLineEdit) if e.isVisible()]
    editor.selectAll()
    qtbot.keyClicks(editor, name)
    qtbot.keyClick(editor, Qt.Key.Key_Return)  # the delegate commits through a queued call
    qtbot.waitUntil(lambda: grid.item(row, RESOURCE).text() == name, timeout=2000)


def test_the_tree_lists_the_other_files_apart_from_problems(qtbot, tmp_path, qtmodeltester):
    folder = exam_folder(tmp_path / "exam")
    (folder / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00")  # cut DICOM stays a problem
    window = _window(qtbot)
    model = window.tree_model
    qtmodeltester.check(model)
    window.add_paths([str(folder)])
    wait_idle(qtbot, window)
    qtbot.waitUntil(lambda: _others_index(model) is not None, timeout=10000)

    others = _others_index(model)
    assert others.data() == "Other files (not DICOM) (2)"
    assert others.siblingAtColumn(1).data() == "3"  # files
    rows = {model.index(r, 0, others).data(): model.index(r, 1, others).data() for r in range(model.rowCount(others))}
    assert rows == {"notes.txt": "1", "reports/": "2"}
    item = model.item(model.index(1, 0, others))
    assert isinstance(item, ExamItem)
    assert item.resource == "reports"
    assert "can be attached as resource reports" in model.index(1, 0, others).data(Qt.ItemDataRole.ToolTipRole)

    tops = [model.index(r, 0) for r in range(model.rowCount())]
    problems = [i for i in tops if isinstance(model.item(i), Problems)]
    assert len(problems) == 1  # only the broken file: the PDFs and the text file are not problems
    shown = [model.index(r, 0, problems[0]).data() for r in range(model.rowCount(problems[0]))]
    assert any(text.startswith("broken.dcm") for text in shown)
    assert not any("pdf" in text or "notes.txt" in text for text in shown)

    window.clear()
    assert _others_index(model) is None


def test_the_form_attaches_what_is_ticked_under_the_names_typed(qtbot, tmp_path, sandbox, make_controller):
    controller = make_controller()
    controller.connect(sandbox.url, "admin", "admin")
    window = _window(qtbot)
    panels = install_upload_panels(window, controller)
    form, table = panels.form, panels.form.resource_table
    assert not table.isVisible()
    window.add_paths([str(exam_folder(tmp_path / "exam"))])
    wait_idle(qtbot, window)
    qtbot.waitUntil(lambda: table.isVisible() and form.upload_button.isEnabled(), timeout=10000)
    grid = table.table
    assert [grid.item(r, ITEM).text() for r in range(grid.rowCount())] == ["notes.txt", "reports/"]
    assert [grid.item(r, FILES).text() for r in range(grid.rowCount())] == ["1", "2"]
    assert [grid.item(r, RESOURCE).text() for r in range(grid.rowCount())] == ["MISC", "reports"]
    assert table.note_label.isVisible()  # the default destination is the prearchive
    assert "attached once it is archived" in table.note_label.text()

    _rename(qtbot, grid, 1, "protocol pdfs")
    assert not form.upload_button.isEnabled()
    assert "Resource name for reports/ may only contain letters, digits, '_' and '-' (found space)" in (
        form.reason_label.text()
    )
    _rename(qtbot, grid, 1, "PROTOCOLS")
    assert form.upload_button.isEnabled()
    grid.item(0, ATTACH).setCheckState(Qt.CheckState.Unchecked)  # keep notes.txt out
    table.overwrite_check.setChecked(True)
    form.advanced_box.destination_combo.setCurrentIndex(form.advanced_box.destination_combo.findData("archive"))
    assert not table.note_label.isVisible()

    form.upload_button.click()
    qtbot.waitUntil(lambda: len(controller.jobs()) == 1, timeout=5000)
    options = controller.store.job(controller.jobs()[0].id).spec.options
    assert options["resource_overwrite"] is True
    [attached] = options[OPT_RESOURCES]
    assert attached["resource"] == "PROTOCOLS"
    assert attached["is_folder"] is True
    assert Path(attached["path"]).name == "reports"

    qtbot.waitUntil(lambda: {r.state for r in controller.jobs()} == {JobState.DONE}, timeout=30000)
    [session] = sandbox.inventory().values()
    assert "PROTOCOLS" in str(session["resources"])


def test_resources_wait_in_the_prearchive_and_are_attached_when_it_is_archived(
    qtbot, tmp_path, sandbox, make_controller, monkeypatch
):
    controller = make_controller()
    controller.connect(sandbox.url, "admin", "admin")
    window = _window(qtbot)
    panels = install_upload_panels(window, controller)
    prearchive = install_prearchive_tab(window, controller)
    form = panels.form
    window.add_paths([str(exam_folder(tmp_path / "exam"))])
    wait_idle(qtbot, window)
    qtbot.waitUntil(lambda: form.resource_table.isVisible() and form.upload_button.isEnabled(), timeout=10000)
    form.upload_button.click()  # to the prearchive (the default), both items ticked
    qtbot.waitUntil(lambda: [r.state for r in controller.jobs()] == [JobState.DONE], timeout=30000)
    [job] = controller.jobs()
    assert "2 item(s) to attach wait for the session to be archived" in job.message
    ref = PrearchiveRef.parse(job.uri)

    monkeypatch.setattr(prearchive_panel, "ask_archive", lambda parent, sessions: ArchiveChoice())
    prearchive.refresh()
    qtbot.waitUntil(lambda: prearchive.model.row_of(ref) >= 0, timeout=10000)
    prearchive.select([ref])
    prearchive.buttons["archive"].click()
    result = prearchive.model.index(prearchive.model.row_of(ref), COL_RESULT)
    qtbot.waitUntil(lambda: result.data(Qt.ItemDataRole.ForegroundRole) == GREEN, timeout=20000)
    assert result.data().endswith("; attached 2 item(s) (MISC, reports)"), result.data()
    [session] = sandbox.inventory().values()
    assert set(session["resources"]) >= {"MISC", "reports"}
    qtbot.waitUntil(lambda: "attached 2 item(s)" in controller.job(job.id).message, timeout=5000)  # the queue row
    assert prearchive.shutdown()
