"""The main window: drops and opens fill one merged tree with the right counts; problems; state remembered."""

from __future__ import annotations

import threading

from PySide6.QtCore import QMimeData, Qt
from PySide6.QtWidgets import QFileDialog, QVBoxLayout, QWidget

from tests.dicomgen import make_odd_corpus, write_archives, write_corpus
from tests.gui.browse_helpers import counts, drag_enter, drop, problem_texts, url_mime, wait_idle
from xnat_uploader.gui import state
from xnat_uploader.gui.main_window import MainWindow


def make_window(qtbot, **kw) -> MainWindow:
    window = MainWindow(**kw)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    return window


def test_drop_a_folder_shows_patients_studies_series_and_instances(qtbot, tmp_path):
    write_corpus(tmp_path / "export", patients=2, studies_per_patient=2, series_per_study=3,
                 instances_per_series=4, rows=16, columns=16)  # fmt: skip
    window = make_window(qtbot)
    drop(window.tree_view.viewport(), [tmp_path / "export"])
    assert window.scan_controller.scanning  # the scan runs in a worker; the drop returned at once
    wait_idle(qtbot, window)
    assert counts(window.tree_model) == {"patients": 2, "studies": 4, "series": 12, "instances": 48}
    model = window.tree_model
    patient = model.index(0, 0)
    assert model.data(patient.siblingAtColumn(1)) == "24"  # images below the patient
    assert "2 studies, 6 series, 24 images" in model.data(patient, Qt.ItemDataRole.ToolTipRole)
    assert "2 patients, 4 studies, 12 series, 48 images" in window.totals_label.text()
    assert not window.progress_bar.isVisible()
    assert not window.cancel_action.isEnabled()
    assert state.last_folder() == str(tmp_path)


def test_odd_files_are_listed_under_problems_with_reasons(qtbot, tmp_path):
    odd = make_odd_corpus(tmp_path / "odd")
    window = make_window(qtbot)
    drop(window, [odd.root])  # onto the window itself, not the tree
    wait_idle(qtbot, window)
    got = counts(window.tree_model)
    assert got["instances"] == len(odd.good) + 2  # + the DICOMDIR's two referenced files
    texts = "\n".join(problem_texts(window.tree_model))
    for key, path in odd.bad.items():
        assert str(path) in texts, key
    assert "not a DICOM file (PDF document)" in texts
    assert "symbolic link loop" in texts
    assert "compressed (JPEG Baseline" in texts  # a pre-flight finding, with its file as a child
    assert str(odd.root / "odd" / "jpeg.dcm") in texts


def test_several_drops_and_archives_merge_into_one_tree(qtbot, tmp_path):
    first = write_corpus(tmp_path / "a", patients=1, series_per_study=2, instances_per_series=3, seed=1,
                         rows=16, columns=16)  # fmt: skip
    write_corpus(tmp_path / "b", patients=2, series_per_study=1, instances_per_series=2, seed=2, rows=16, columns=16)
    zip_path, _tar = write_archives(tmp_path / "arch", first)  # the same instances again, inside archives
    window = make_window(qtbot)
    drop(window.tree_view.viewport(), [tmp_path / "a"])
    drop(window.tree_view.viewport(), [tmp_path / "b"])  # while the first may still run: it waits its turn
    wait_idle(qtbot, window)
    assert counts(window.tree_model) == {"patients": 3, "studies": 3, "series": 4, "instances": 10}
    drop(window, [zip_path])
    wait_idle(qtbot, window)
    got = counts(window.tree_model)
    assert got["patients"] == 3
    assert got["series"] == 4
    assert got["instances"] == 16  # archive members are other files than the originals
    assert any("duplicate" in t.lower() or "copies" in t for t in problem_texts(window.tree_model))


def test_text_drag_is_refused(qtbot):
    window = make_window(qtbot)
    mime = QMimeData()
    mime.setText("/some/path")
    assert not drag_enter(window.tree_view.viewport(), mime)
    assert not drag_enter(window, mime)
    assert drag_enter(window, url_mime(["/tmp"]))


def test_open_folder_and_open_files_actions(qtbot, tmp_path, monkeypatch):
    written = write_corpus(tmp_path / "export", patients=1, series_per_study=1, instances_per_series=3,
                           rows=16, columns=16)  # fmt: skip
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(tmp_path / "export"))
    monkeypatch.setattr(QFileDialog, "getOpenFileNames", lambda *a, **k: ([str(written[0].path)], ""))
    window = make_window(qtbot)
    window.open_folder_action.trigger()
    wait_idle(qtbot, window)
    assert counts(window.tree_model)["instances"] == 3
    assert state.last_folder() == str(tmp_path / "export")
    window.clear_action.trigger()
    assert counts(window.tree_model)["instances"] == 0
    window.open_files_action.trigger()
    wait_idle(qtbot, window)
    assert counts(window.tree_model)["instances"] == 1


def test_unreadable_path_is_a_problem_not_a_dialog(qtbot, tmp_path):
    window = make_window(qtbot)
    drop(window, [tmp_path / "gone"])
    wait_idle(qtbot, window)
    assert any(str(tmp_path / "gone") in t for t in problem_texts(window.tree_model))


def test_areas_for_the_form_and_queue_and_the_tabs(qtbot):
    window = make_window(qtbot)
    for area in (window.form_area, window.queue_area, window.server_area):
        assert isinstance(area, QWidget)
        assert area.layout() is not None
    assert isinstance(window.form_area.layout(), QVBoxLayout)
    window.form_area.layout().addWidget(QWidget())
    assert [window.tabs.tabText(i) for i in range(window.tabs.count())] == ["Upload", "Prearchive"]
    assert window.upload_splitter.indexOf(window.form_area) == 1
    assert window.upload_splitter.indexOf(window.queue_area) == 2


def test_geometry_splitters_and_columns_are_restored(qtbot):
    window = make_window(qtbot)
    window.resize(760, 540)  # inside the offscreen screen (800 x 600)
    window.upload_splitter.setSizes([300, 60, 60])
    window.browse_splitter.setSizes([450, 300])
    window.tree_view.setColumnWidth(0, 333)
    sizes = window.upload_splitter.sizes(), window.browse_splitter.sizes()
    window.close()
    again = make_window(qtbot)
    assert (again.width(), again.height()) == (760, 540)
    assert (again.upload_splitter.sizes(), again.browse_splitter.sizes()) == sizes
    assert again.tree_view.columnWidth(0) == 333


def test_scan_and_checks_run_off_the_gui_thread(qtbot, tmp_path, monkeypatch):
    from xnat_uploader.gui import scan_controller

    threads = {}
    real_scan, real_checks = scan_controller.iter_scan, scan_controller.run_checks

    def scan(*args, **kwargs):
        threads["scan"] = threading.current_thread()
        yield from real_scan(*args, **kwargs)

    def checks(index):
        threads["checks"] = threading.current_thread()
        return real_checks(index)

    monkeypatch.setattr(scan_controller, "iter_scan", scan)
    monkeypatch.setattr(scan_controller, "run_checks", checks)
    write_corpus(tmp_path / "export", patients=1, series_per_study=1, instances_per_series=2, rows=16, columns=16)
    window = make_window(qtbot)
    drop(window, [tmp_path / "export"])
    wait_idle(qtbot, window)
    assert set(threads) == {"scan", "checks"}
    assert all(t is not threading.main_thread() for t in threads.values())
