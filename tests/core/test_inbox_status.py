"""``InboxStatus``: XNAT's DicomInboxImportRequest JSON (``GET /xapi/dicom/<id>``) and job URIs."""

from __future__ import annotations

import json

import pytest

from xnat_uploader.core.xnat.inbox import FINAL, InboxStatus, job_id

# The entity as XNAT's Jackson writes it: AbstractHibernateEntity fields (id, enabled, created, timestamp,
# disabled) plus DicomInboxImportRequest's own (username, parameters, sessionPath, status,
# cleanupAfterImport, resolution).
RUNNING = json.loads(
    '{"id":7,"enabled":true,"created":1714558272345,"timestamp":1714558272345,"disabled":0,'
    '"username":"jdoe","parameters":{"import-handler":"inbox","PROJECT_ID":"P1","path":"/data/xnat/inbox/P1/s1"},'
    '"sessionPath":"/data/xnat/inbox/P1/s1","status":"Importing","cleanupAfterImport":true,"resolution":null}'
)


def test_running_request():
    status = InboxStatus.parse(RUNNING)
    assert status == InboxStatus(7, "Importing", "", "/data/xnat/inbox/P1/s1")
    assert not status.done
    assert not status.failed


@pytest.mark.parametrize(("state", "failed"), [("Completed", False), ("Failed", True)])
def test_final_states(state, failed):
    status = InboxStatus.parse({**RUNNING, "status": state, "resolution": "why"})
    assert status.done
    assert status.failed is failed
    assert status.resolution == "why"
    assert state in FINAL


@pytest.mark.parametrize("state", ["Queued", "Trawling", "Importing", "Accepted", "Processed"])
def test_states_that_go_on(state):
    assert not InboxStatus.parse({**RUNNING, "status": state}).done


@pytest.mark.parametrize("body", [[], {"status": "Queued"}, {"id": 1}, {"id": 1, "status": None}, "text"])
def test_not_a_request(body):
    with pytest.raises(ValueError, match="inbox"):
        InboxStatus.parse(body)


def test_job_uri():
    assert job_id("/xapi/dicom/7") == 7
    assert job_id("/xnat/xapi/dicom/12/") == 12  # context path
    assert job_id("https://xnat.example.org/xnat/xapi/dicom/3?x=1") == 3
    assert job_id("/data/prearchive/projects/P/1/S") is None
    assert job_id("/xapi/dicomscp") is None
