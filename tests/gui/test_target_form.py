"""The target form with a real controller and the sandbox: defaults, label checks, clashes, the per-study table."""

from __future__ import annotations

from PySide6.QtCore import Qt

from tests.dicomgen import write_corpus, write_one
from xnat_uploader.core.dicom.index import build_index
from xnat_uploader.core.dicom.scan import scan_paths
from xnat_uploader.core.queue.runner import TRANSPORTS
from xnat_uploader.core.queue.store import JobState
from xnat_uploader.core.settings import ServerEntry, Settings
from xnat_uploader.gui.widgets.study_table import COL_PROBLEM, COL_SESSION, COL_SUBJECT
from xnat_uploader.gui.widgets.target_form import TargetForm


def _ready(form) -> bool:
    return form._listing is not None and form.project() == "DEMO"


def _form(qtbot, controller, index=None, selected=None) -> TargetForm:
    form = TargetForm(controller)
    qtbot.addWidget(form)
    form.show()
    if index is not None:
        form.set_index(index, selected)
    qtbot.waitUntil(lambda: _ready(form), timeout=10000)
    return form


def _type(qtbot, edit, text: str) -> None:
    edit.selectAll()
    qtbot.keyClick(edit, Qt.Key.Key_Backspace)
    qtbot.keyClicks(edit, text)


def test_defaults_from_headers_and_an_invalid_label_is_refused_with_the_reason(
    qtbot, sandbox, make_controller, make_index
):
    controller = make_controller()
    controller.connect(sandbox.url, "admin", "admin")
    index = make_index()
    form = _form(qtbot, controller, index)
    study = next(index.iter_studies())
    subject = study.parent.patient_id
    assert form.subject_combo.currentText() == subject
    assert form.session_edit.text() == f"{subject}_{study.modalities[0]}1"
    assert form.upload_button.isEnabled()
    assert form.upload_button.text() == "Upload 1 session"
    assert not form.study_table.isVisible()

    _type(qtbot, form.session_edit, "my session")
    assert not form.upload_button.isEnabled()
    assert form.reason_label.isVisible()
    assert "may only contain letters, digits, '_' and '-' (found space)" in form.reason_label.text()

    _type(qtbot, form.session_edit, "my_session")
    assert form.upload_button.isEnabled()
    assert not form.reason_label.isVisible()

    _type(qtbot, form.subject_combo.lineEdit(), "P/01")
    assert not form.upload_button.isEnabled()
    assert "Subject label may only contain" in form.reason_label.text()


def test_a_label_already_in_the_prearchive_is_refused_unless_appending(qtbot, sandbox, make_controller, make_index):
    controller = make_controller()
    controller.connect(sandbox.url, "admin", "admin")
    form = _form(qtbot, controller, make_index("first"))
    form.upload_requested.connect(controller.submit_request)
    with qtbot.waitSignal(form.upload_requested) as sent:
        qtbot.mouseClick(form.upload_button, Qt.MouseButton.LeftButton)
    assert not form.upload_button.isEnabled()  # no second click on the same selection
    assert form.status_label.text() == "Added to the upload queue."
    label = sent.args[0].plan.jobs[0].session_label
    qtbot.waitUntil(lambda: {r.state for r in controller.jobs()} == {JobState.DONE}, timeout=20000)

    other = make_index("second", seed=7)  # another patient and study
    form.set_index(other, None)
    form.refresh_button.click()  # read the server's listings again
    qtbot.waitUntil(lambda: _ready(form), timeout=10000)
    assert form.upload_button.isEnabled()
    _type(qtbot, form.session_edit, label.lower())  # XNAT labels clash case-insensitively
    assert not form.upload_button.isEnabled()
    assert f"Session {label.lower()} already exists in the prearchive of DEMO" in form.reason_label.text()

    form.advanced_button.click()
    assert form.advanced_box.isVisible()
    form.advanced_box.overwrite_combo.setCurrentIndex(form.advanced_box.overwrite_combo.findData("add"))
    assert form.upload_button.isEnabled()
    assert not form.reason_label.isVisible()
    assert form.options()["overwrite"] == "add"

    form.advanced_box.overwrite_combo.setCurrentIndex(0)
    form.set_index(make_index("first"), None)  # the first study again: it is known to be in the prearchive
    assert form.session_edit.text() == label  # same study, same session
    assert "This study was uploaded before" in form.reason_label.text()
    assert not form.upload_button.isEnabled()


def test_several_studies_get_a_table_with_a_row_each(qtbot, sandbox, make_controller, make_index):
    controller = make_controller()
    controller.connect(sandbox.url, "admin", "admin")
    index = make_index(patients=2, studies=2)
    form = _form(qtbot, controller, index)
    table = form.study_table
    assert table.isVisible()
    assert not form.session_edit.isVisible()
    assert table.rowCount() == 4
    assert form.upload_button.text() == "Upload 4 sessions"
    assert form.upload_button.isEnabled()
    sessions = [table.item(r, COL_SESSION).text() for r in range(4)]
    assert len(set(sessions)) == 4
    assert all(table.item(r, COL_PROBLEM).text() == "ok" for r in range(4))

    table.item(0, COL_SESSION).setText("bad label")  # as the cell editor does
    assert not form.upload_button.isEnabled()
    assert table.item(0, COL_SESSION).background().color().red() == 255
    assert "may only contain" in table.item(0, COL_PROBLEM).text()
    assert "see the table" in form.reason_label.text()

    table.item(0, COL_SESSION).setText("Visit_A")
    table.item(1, COL_SESSION).setText("visit_a")  # two studies, one label
    assert "used for two different studies" in table.item(1, COL_PROBLEM).text()
    assert not form.upload_button.isEnabled()

    table.item(1, COL_SESSION).setText("")  # back to the default
    table.item(1, COL_SUBJECT).setText("SUBJ-9")
    assert form.upload_button.isEnabled()
    assert table.item(1, COL_SESSION).text().startswith("SUBJ-9_")
    with qtbot.waitSignal(form.upload_requested) as sent:
        form.upload_button.click()
    jobs = {j.study_uid: j for j in sent.args[0].plan.jobs}
    assert jobs[table.uid_at(0)].session_label == "Visit_A"
    assert jobs[table.uid_at(1)].subject == "SUBJ-9"

    series = {s.uid for s in index.iter_series() if s.parent.uid == table.uid_at(2)}
    form.set_index(index, series)  # untick all but one study: back to the single fields
    assert not table.isVisible()
    assert form.session_edit.isVisible()
    assert form.upload_button.text() == "Upload 1 session"


def test_not_signed_in_then_signed_in_and_transports(qtbot, sandbox, make_controller, make_index):
    settings = Settings(servers=[ServerEntry(sandbox.url, "admin", name="Sandbox")])
    controller = make_controller(settings=settings)
    form = TargetForm(controller)
    qtbot.addWidget(form)
    form.set_index(make_index(), None)
    assert form.server_combo.currentText() == "Sandbox (admin)"
    qtbot.waitUntil(lambda: "Not signed in" in form.reason_label.text(), timeout=5000)
    assert not form.upload_button.isEnabled()

    controller.connect(sandbox.url, "admin", "admin")  # the sign-in dialog's job (issue 7)
    sandbox.add_user("alice", "pw", projects=["DEMO"])
    controller.connect(sandbox.url, "alice", "pw")  # a second login joins the list; the choice stays
    assert form.server_combo.count() == 2
    assert form.server_combo.currentText() == "Sandbox (admin)"
    form.refresh_button.click()
    qtbot.waitUntil(lambda: _ready(form), timeout=10000)
    assert form.upload_button.isEnabled()
    form.transport_buttons["gradual"].click()
    assert form.mode() == "gradual"
    assert form.options()["workers"] == 8

    cstore = form.transport_buttons["cstore"]
    assert cstore.isEnabled() == ("cstore" in TRANSPORTS)  # offered once its transport is registered
    form.advanced_box.set_mode("cstore")  # what choosing C-STORE does
    options = form.options()
    assert (options["cstore_host"], options["cstore_port"], options["called_aet"]) == ("127.0.0.1", 8104, "XNAT")
    assert options["route"] is True
    assert options["destination"] == "prearchive"
    assert not form.advanced_box.destination_combo.isEnabled()


def test_a_series_the_projects_filter_will_drop_is_named_before_the_upload(qtbot, sandbox, make_controller, make_index):
    sandbox.set_series_filter("localizer", project="DEMO")  # XNAT will not keep series 1 "Localizer"
    controller = make_controller()
    controller.connect(sandbox.url, "admin", "admin")
    form = _form(qtbot, controller, make_index(series=2, instances=3))
    assert form.warning_label.isVisible()
    text = form.warning_label.text()
    assert text.startswith("XNAT will not keep 1 series (3 files) of this upload")
    assert 'series 1 "Localizer"' in text
    assert form.upload_button.isEnabled()  # a warning, not a problem
    assert not form.reason_label.isVisible()

    sandbox.set_series_filter("localizer", project="DEMO", enabled=False)
    form.refresh_button.click()  # read the server's listings (and filters) again
    qtbot.waitUntil(lambda: _ready(form), timeout=10000)
    assert not form.warning_label.isVisible()


def test_files_without_a_study_uid_are_left_out_and_never_block_the_others(qtbot, sandbox, make_controller, tmp_path):
    controller = make_controller()
    controller.connect(sandbox.url, "admin", "admin")
    write_corpus(tmp_path / "src", patients=1, studies_per_patient=1, series_per_study=1, instances_per_series=2)
    write_one(tmp_path / "src" / "no_study.dcm", seed=5, StudyInstanceUID=None)
    result = scan_paths([tmp_path / "src"], workers=1)
    index = build_index(result.instances, result.rejected)
    form = _form(qtbot, controller, index)
    assert form.upload_button.isEnabled()
    assert form.upload_button.text() == "Upload 1 session"
    assert not form.study_table.isVisible()  # one study to send: the single-study form
    assert form.warning_label.isVisible()
    assert "1 selected file(s) will be left out: they have no StudyInstanceUID" in form.warning_label.text()
    assert form.warning_label.toolTip() == str(tmp_path / "src" / "no_study.dcm")
    with qtbot.waitSignal(form.upload_requested) as sent:
        qtbot.mouseClick(form.upload_button, Qt.MouseButton.LeftButton)
    plan = sent.args[0].plan
    assert [len(j.files) for j in plan.jobs] == [2]
    assert [i.record.path for i in plan.left_out] == [str(tmp_path / "src" / "no_study.dcm")]

    # Only such files ticked: nothing can go, and the form says why.
    lone = next(s for s in index.iter_studies() if not s.uid)
    form.set_index(index, {lone.series[0].uid})
    assert not form.upload_button.isEnabled()
    assert "None of the selected files can be uploaded" in form.reason_label.text()
