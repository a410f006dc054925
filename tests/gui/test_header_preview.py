"""The header preview: every element read off the GUI thread, sequences nested, private tags marked, search."""

from __future__ import annotations

import threading
import zipfile

from PySide6.QtCore import Qt

from tests.gui.browse_helpers import drop, wait_idle, write_rich_instance
from xnat_uploader.core.dicom import header
from xnat_uploader.core.dicom.header import ITEM_TAG, read_header
from xnat_uploader.gui.main_window import MainWindow
from xnat_uploader.gui.models.header_model import HeaderFilterModel, HeaderModel, tag_prefix

PATIENT_NAME = 0x00100010
PRIVATE_BINARY = 0x00291010


def test_read_header_rows_sequences_private_and_binary(tmp_path):
    path = write_rich_instance(tmp_path / "rich.dcm")
    rows = read_header(str(path))
    by_tag = {r.tag: r for r in rows if r.tag != ITEM_TAG}
    assert rows[0].tag >> 16 == 0x0002  # file meta first
    assert by_tag[PATIENT_NAME].keyword == "PatientName"
    assert by_tag[PATIENT_NAME].value == "RICH^HEADER"
    seq = by_tag[0x00081140]
    assert (seq.vr, seq.value, seq.depth) == ("SQ", "2 items", 0)
    nested = [r for r in rows if r.tag == 0x00081155]
    assert [r.value for r in nested] == ["2.25.4242.1", "2.25.4242.2"]
    assert {r.depth for r in nested} == {2}
    assert [r.keyword for r in rows if r.tag == ITEM_TAG] == ["Item 1", "Item 2"]
    assert by_tag[PRIVATE_BINARY].private
    assert by_tag[PRIVATE_BINARY].value == "<8,000 bytes>"
    assert by_tag[0x00290010].value == "XNATUPL TEST"
    assert by_tag[0x00290010].private
    assert 0x7FE00010 not in by_tag  # stopped before the pixels


def test_read_header_of_an_archive_member(tmp_path):
    path = write_rich_instance(tmp_path / "rich.dcm")
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(path, "DICOM/IM1")
    rows = read_header(str(archive), "DICOM/IM1")
    assert any(r.value == "RICH^HEADER" for r in rows)


def test_tag_queries():
    assert tag_prefix("0010,0010") == "00100010"
    assert tag_prefix("(0010,0010)") == "00100010"
    assert tag_prefix("00100010") == "00100010"
    assert tag_prefix("0010") == "0010"
    assert tag_prefix("PatientName") == ""


def test_header_models_pass_the_model_tester(qtmodeltester, tmp_path):
    rows = read_header(str(write_rich_instance(tmp_path / "rich.dcm")))
    model = HeaderModel()
    model.set_rows(rows)
    qtmodeltester.check(model, force_py=True)
    proxy = HeaderFilterModel()
    proxy.setSourceModel(model)
    proxy.set_query("ReferencedSOP")
    qtmodeltester.check(proxy, force_py=True)
    assert proxy.rowCount() == 1  # only the sequence, which holds the matches


def test_select_an_instance_and_find_tags_by_keyword_number_and_value(qtbot, tmp_path, monkeypatch):
    write_rich_instance(tmp_path / "export" / "rich.dcm")
    threads = []
    real_read = header.read_header

    def recording_read(path, member=""):
        threads.append(threading.current_thread())
        return real_read(path, member)

    monkeypatch.setattr(header, "read_header", recording_read)
    window = MainWindow()
    qtbot.addWidget(window)
    window.show()
    drop(window.tree_view.viewport(), [tmp_path / "export"])
    wait_idle(qtbot, window)
    model, view = window.tree_model, window.header_view
    series = model.index(0, 0, model.index(0, 0, model.index(0, 0)))
    instance = model.index(0, 0, series)
    with qtbot.waitSignal(window.header_loader.loaded, timeout=5000):
        window.tree_view.setCurrentIndex(instance)
    assert threads
    assert all(t is not threading.main_thread() for t in threads)
    assert "rich.dcm" in view.title.text()
    assert len(view.visible_rows()) > 40

    def found(query):
        view.search.clear()
        qtbot.keyClicks(view.search, query)
        return {r.tag for r in view.visible_rows()}

    assert PATIENT_NAME in found("PatientName")
    assert PATIENT_NAME in found("0010,0010")
    assert PATIENT_NAME in found("00100010")
    assert PATIENT_NAME in found("rich^header")  # by value, any case
    assert found("(0010,0010)") == {PATIENT_NAME}
    inside = found("2.25.4242.2")  # a value inside a sequence: the sequence and the item stay visible
    assert {0x00081140, ITEM_TAG, 0x00081155} <= inside
    assert PRIVATE_BINARY in found("0029")
    view.private.setChecked(False)
    assert PRIVATE_BINARY not in found("0029")
    view.private.setChecked(True)
    view.search.clear()
    assert view.tree.model().rowCount() == len([r for r in view.visible_rows() if r.depth == 0])

    # A series shows its first instance's header; a problem row shows no header.
    with qtbot.waitSignal(window.header_loader.loaded, timeout=5000):
        window.tree_view.setCurrentIndex(series)
    assert PATIENT_NAME in {r.tag for r in view.visible_rows()}
    private_row = next(
        i for i in range(view.model.rowCount()) if view.model.node(view.model.index(i, 0)).header.private
    )
    assert view.model.data(view.model.index(private_row, 1), Qt.ItemDataRole.FontRole).italic()


def test_an_unreadable_file_shows_a_message_not_a_dialog(qtbot, tmp_path):
    write_rich_instance(tmp_path / "export" / "rich.dcm")
    window = MainWindow()
    qtbot.addWidget(window)
    drop(window, [tmp_path / "export"])
    wait_idle(qtbot, window)
    (tmp_path / "export" / "rich.dcm").unlink()  # gone after the scan
    instance = window.tree_model.index(
        0, 0, window.tree_model.index(0, 0, window.tree_model.index(0, 0, window.tree_model.index(0, 0)))
    )
    with qtbot.waitSignal(window.header_loader.failed, timeout=5000):
        window.tree_view.setCurrentIndex(instance)
    assert "Cannot read the header" in window.header_view.title.text()
