"""The upload form's Advanced section: the "if the session exists" choice and XNAT's import options, ticked in the
real widgets, reach the queued job's options and then the requests the sandbox receives."""

from __future__ import annotations

from urllib.parse import parse_qs

from PySide6.QtCore import Qt

from xnat_uploader.core.queue.store import JobState
from xnat_uploader.core.upload_choices import OnExisting
from xnat_uploader.gui.widgets.target_form import TargetForm

IMPORT, ARCHIVE = "/data/services/import", "/data/services/archive"


def _form(qtbot, controller, index) -> TargetForm:
    form = TargetForm(controller)
    qtbot.addWidget(form)
    form.upload_requested.connect(controller.submit_request)
    form.show()
    form.set_index(index, None)
    qtbot.waitUntil(lambda: form._listing is not None and form.project() == "DEMO", timeout=10000)
    form.advanced_button.click()
    return form


def _choose(combo, data) -> None:
    combo.setCurrentIndex(combo.findData(data))
    assert combo.currentData() == data


def _upload_and_wait(qtbot, form, controller) -> None:
    done = {r.id for r in controller.jobs()}
    qtbot.waitUntil(form.upload_button.isEnabled, timeout=10000)
    qtbot.mouseClick(form.upload_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: any(r.id not in done for r in controller.jobs()), timeout=5000)
    qtbot.waitUntil(lambda: all(r.state.finished for r in controller.jobs()), timeout=30000)


def _params(entry) -> dict[str, list[str]]:
    found = parse_qs(entry.query, keep_blank_values=True)
    for key, values in parse_qs(entry.form, keep_blank_values=True).items():
        found.setdefault(key, []).extend(values)
    return found


def _replace_enabled(box) -> bool:
    combo = box.overwrite_combo
    return combo.model().item(combo.findData(OnExisting.REPLACE.value)).isEnabled()


def test_ticked_options_reach_the_job_and_the_requests(qtbot, sandbox, make_controller, make_index):
    controller = make_controller()
    controller.connect(sandbox.url, "admin", "admin")
    form = _form(qtbot, controller, make_index())
    box = form.advanced_box
    assert box.isVisible()
    assert not box.quarantine_check.isEnabled()  # the prearchive: XNAT does not archive during the upload
    assert "Only when the destination is Archive" in box.quarantine_check.toolTip()
    _choose(box.destination_combo, "archive")
    for check in (box.quarantine_check, box.no_pipelines_check, box.rename_check, box.ignore_check):
        assert check.isEnabled()
        qtbot.mouseClick(check, Qt.MouseButton.LeftButton)
        assert check.isChecked()
    assert "status 'quarantine'" in box.quarantine_check.toolTip()
    _upload_and_wait(qtbot, form, controller)

    [job] = controller.jobs()
    assert job.state is JobState.DONE, job.message
    options = job.spec.options  # as the queue stored them: a resumed job reads the same
    assert options["overwrite"] == "refuse"
    assert (options["quarantine"], options["trigger_pipelines"]) == (True, False)
    assert (options["rename"], options["ignore_unparsable"]) == (True, True)
    imports = [_params(r) for r in sandbox.request_log if r.path == IMPORT]
    assert imports
    assert all(p["rename"] == ["true"] and p["Ignore-Unparsable"] == ["true"] for p in imports)
    assert not any("overwrite" in p or "quarantine" in p for p in imports)
    [commit] = [_params(r) for r in sandbox.request_log if "action=commit" in r.query]
    assert (commit["quarantine"], commit["triggerPipelines"], commit["AA"]) == (["true"], ["false"], ["true"])
    [entry] = sandbox.inventory().values()
    assert entry["where"] == "archive"


def test_replace_is_offered_only_with_archive_and_replaces(qtbot, sandbox, make_controller, make_index):
    controller = make_controller()
    controller.connect(sandbox.url, "admin", "admin")
    index = make_index()
    form = _form(qtbot, controller, index)
    box = form.advanced_box
    _choose(box.destination_combo, "archive")
    _upload_and_wait(qtbot, form, controller)
    [entry] = sandbox.inventory().values()
    label = entry["label"]

    form.set_index(make_index("again"), None)  # the same corpus again: same study, same files
    form.refresh_button.click()
    qtbot.waitUntil(lambda: form._listing is not None and form.project() == "DEMO", timeout=10000)
    form.session_edit.setText(label)
    form.session_edit.textEdited.emit(label)
    assert f"Session {label} already exists in the archive of DEMO" in form.reason_label.text()
    assert not form.upload_button.isEnabled()  # refuse: checked by us, nothing sent

    _choose(box.destination_combo, "prearchive")
    assert not _replace_enabled(box)
    combo = box.overwrite_combo
    tip = combo.itemData(combo.findData("replace"), Qt.ItemDataRole.ToolTipRole)
    assert "XNAT replaces files only when archiving" in tip
    _choose(box.destination_combo, "archive")
    assert _replace_enabled(box)
    _choose(combo, "replace")
    assert box.overwrite_help.text() == OnExisting.REPLACE.help
    _choose(box.destination_combo, "prearchive")  # no archiving step any more: what XNAT then does is add
    assert combo.currentData() == "add"
    assert box.overwrite_help.text() == OnExisting.ADD.help
    _choose(box.destination_combo, "archive")
    _choose(combo, "replace")
    assert not form.reason_label.isVisible()
    seen = len(sandbox.request_log)
    _upload_and_wait(qtbot, form, controller)

    assert {r.state for r in controller.jobs()} == {JobState.DONE}
    assert controller.jobs()[-1].spec.options["overwrite"] == "replace"
    later = sandbox.request_log[seen:]
    [archived] = [_params(r) for r in later if r.path == ARCHIVE]
    assert (archived["overwrite"], archived["session"]) == (["delete"], [label])
    assert not any("action=commit" in r.query for r in later)
    [entry] = sandbox.inventory().values()  # still one session, now holding the files sent again
    assert entry["label"] == label
    assert all(copies == 2 for series in entry["counts"].values() for copies in series.values())


def test_the_transport_greys_out_what_it_cannot_send(qtbot, make_controller):
    controller = make_controller()
    form = TargetForm(controller)
    qtbot.addWidget(form)
    box = form.advanced_box
    _choose(box.destination_combo, "archive")
    assert box.ignore_check.isEnabled()
    assert box.rename_check.isEnabled()
    assert _replace_enabled(box)
    box.ignore_check.setChecked(True)
    form.transport_buttons["gradual"].setChecked(True)
    assert not box.ignore_check.isEnabled()
    assert box.ignore_check.toolTip().endswith("DICOM-zip uploads only.")
    assert box.options("")["ignore_unparsable"] is False  # greyed out: not sent, even though ticked
    assert box.rename_check.isEnabled()
    assert _replace_enabled(box)
    _choose(box.overwrite_combo, "replace")
    form.transport_buttons["cstore"].setChecked(True)
    assert not box.rename_check.isEnabled()
    assert not box.quarantine_check.isEnabled()
    assert not _replace_enabled(box)
    assert box.overwrite() == "add"
