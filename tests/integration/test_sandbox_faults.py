"""Fault injection: 500 every Nth request, dropped connections mid-body, slow answers, expiring sessions."""

from __future__ import annotations

import time

import pytest
import requests

from tests.integration.sandbox_data import Api, study, zip_of
from xnat_uploader.sandbox.faults import FaultSpec


def test_fault_spec_parse_and_errors():
    spec = FaultSpec.parse("http500_every=5, drop_body_at=3,slow=0.5,expire_after=20,path=/data/services/import")
    assert (spec.http500_every, spec.drop_body_at, spec.slow, spec.expire_after) == (5, 3, 0.5, 20)
    assert FaultSpec.parse(str(spec)) == spec
    assert not FaultSpec.parse("").active
    assert not FaultSpec.parse("none").active
    for bad in ("explode=1", "slow=fast", "http500_every=-1", "http500_every"):
        with pytest.raises(ValueError, match="fault"):
            FaultSpec.parse(bad)


def test_http500_every_nth_request_on_a_path_prefix(sandbox):
    api = Api(sandbox.url)
    sandbox.set_faults("http500_every=3,path=/data/projects")
    statuses = [api.get("/data/projects").status_code for _ in range(6)]
    assert statuses == [200, 200, 500, 200, 200, 500]
    assert all(api.get("/xapi/siteConfig/buildInfo").status_code == 200 for _ in range(4))  # other paths unaffected
    sandbox.faults = None  # off again on the running server
    assert all(api.get("/data/projects").status_code == 200 for _ in range(4))
    assert sandbox.stats["http500"] == 0  # counters restart with every new spec


def test_failed_import_stores_nothing(sandbox, tmp_path):
    api = Api(sandbox.url)
    sandbox.set_faults("http500_every=1,path=/data/services/import")
    r = api.import_zip(zip_of(study(tmp_path, seed=41)), PROJECT_ID="DEMO")
    assert r.status_code == 500
    assert "HTTP Status 500" in r.text
    assert sandbox.inventory() == {}


def test_connection_dropped_in_the_middle_of_a_body(sandbox, tmp_path):
    api = Api(sandbox.url)
    data = zip_of(study(tmp_path, seed=42, instances=20)) * 4  # big enough to be cut half-way
    sandbox.set_faults("drop_body_at=2")
    assert (
        api.post(
            "/data/services/import",
            params={"import-handler": "DICOM-zip", "PROJECT_ID": "DEMO"},
            data=data[: len(data) // 4],
            headers={"Content-Type": "application/zip"},
        ).status_code
        == 200
    )
    with pytest.raises(requests.ConnectionError):
        api.post(
            "/data/services/import",
            params={"import-handler": "DICOM-zip", "PROJECT_ID": "DEMO", "EXPT_LABEL": "CUT"},
            data=data,
            headers={"Content-Type": "application/zip"},
        )
    assert sandbox.stats["drop"] == 1
    assert all(v["label"] != "CUT" for v in sandbox.inventory().values())
    deadline = time.monotonic() + 2  # the server notices the reset a moment after the client
    while any((sandbox.data_dir / "cache").iterdir()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not any((sandbox.data_dir / "cache").iterdir())  # no partial upload left behind
    # Only once: the next body goes through on a fresh connection.
    assert api.get("/data/projects").status_code == 200


def test_slow_responses(sandbox):
    sandbox.set_faults("slow=0.3")
    with pytest.raises(requests.ReadTimeout):
        requests.get(sandbox.url + "/data/projects", auth=("admin", "admin"), timeout=0.1)
    t = time.monotonic()
    assert requests.get(sandbox.url + "/data/projects", auth=("admin", "admin"), timeout=2).status_code == 200
    assert time.monotonic() - t >= 0.3


def test_sessions_expire_after_n_requests(sandbox):
    sandbox.set_faults("expire_after=3")
    api = Api(sandbox.url)
    sid = api.get("/data/JSESSION").text  # use 1 (the login)
    api.auth = None
    assert [api.get("/data/projects").status_code for _ in range(3)] == [200, 200, 401]
    api.cookies.clear()
    api.auth = ("admin", "admin")
    assert api.get("/data/JSESSION").text != sid  # a fresh login gets a fresh allowance
