"""Copy diagnostics: versions and the last log lines, with passwords, session ids and patient data removed."""

from __future__ import annotations

import logging
import logging.handlers

import pytest

from xnat_uploader import __version__
from xnat_uploader.core import diagnostics
from xnat_uploader.core.diagnostics import REDACTED, diagnostics_text, redact

PASSWORD = "s3cret-Pa55!"
SESSION = "0A1B2C3D4E5F60718293A4B5C6D7E8F9"
BASIC = "YWRtaW46czNjcmV0"  # base64 of admin:s3cret
UID = "1.2.826.0.1.3680043.8.498.12345678901234567890123456789012"

LOG = f"""\
2026-11-23 10:00:00,001 INFO MainThread xnat_uploader.app: xnat-uploader 0.1.0 started
2026-11-23 10:00:01,002 DEBUG worker xnat_uploader.core.xnat.session: login user=admin password={PASSWORD}
2026-11-23 10:00:01,003 DEBUG worker urllib3: Set-Cookie JSESSIONID={SESSION}; Path=/; HttpOnly
2026-11-23 10:00:01,004 DEBUG worker requests: headers {{'Authorization': 'Basic {BASIC}', 'Accept': '*/*'}}
2026-11-23 10:00:01,005 DEBUG worker x: session token {SESSION.lower()} reused
2026-11-23 10:00:02,006 WARNING worker xnat_uploader.core.dicom.scan: odd name DOE^JANE in {UID}
2026-11-23 10:00:02,007 WARNING worker xnat_uploader.core.plan: PatientID=P001 has two names
2026-11-23 10:00:02,008 INFO worker xnat_uploader.core.plan: PatientName=SMITH JOHN, study {UID}
2026-11-23 10:00:03,009 INFO worker xnat_uploader.commands: fetching https://admin:{PASSWORD}@xnat.example.org/data
"""
SECRETS = [PASSWORD, SESSION, SESSION.lower(), BASIC, "DOE^JANE", "DOE", "P001", "SMITH JOHN"]


@pytest.fixture
def log_file(tmp_path):
    path = tmp_path / "xnat-uploader.log"
    path.write_text(LOG, encoding="utf-8")
    return path


def test_diagnostics_remove_secrets_and_patient_data(log_file):
    text = diagnostics_text(log_file)
    for secret in SECRETS:
        assert secret not in text, secret
    assert text.count(REDACTED) >= 8
    assert UID in text  # UIDs stay: they identify studies without identifying patients
    assert "xnat-uploader 0.1.0 started" in text  # ordinary lines are kept
    assert "https://admin:[redacted]@xnat.example.org/data" in text


def test_diagnostics_give_versions(log_file):
    text = diagnostics_text(log_file, extra={"Qt": "6.9.9"})
    assert f"xnat-uploader: {__version__}" in text
    for name in ("Platform:", "Python:", "pydicom:", "pynetdicom:", "requests:", "Keyring backend:", "Qt: 6.9.9"):
        assert name in text
    assert "MemoryKeyring" in text  # the test keyring from conftest


def test_only_the_last_lines(log_file):
    text = diagnostics_text(log_file, lines=2)
    assert "PatientName=[redacted]" in text
    assert "fetching" in text
    assert "started" not in text


def test_missing_log_file(tmp_path):
    text = diagnostics_text(tmp_path / "none.log")
    assert "(no log lines)" in text


@pytest.mark.parametrize(
    ("line", "gone"),
    [
        ('{"password": "hunter2"}', "hunter2"),
        ("Authorization: Bearer abc.def.ghi", "abc.def.ghi"),
        ("Cookie: JSESSIONID=abc123; other=1", "abc123"),
        ("patient_id: 12345, series 3", "12345"),
        ("(0010, 0010) Patient's Name PN: 'ROE^RICHARD'", "ROE"),
    ],
)
def test_redact_forms(line, gone):
    assert gone not in redact(line)


def test_current_log_path_follows_the_file_handler(tmp_path):
    assert diagnostics.current_log_path().name == diagnostics.LOG_FILE_NAME
    handler = logging.handlers.RotatingFileHandler(tmp_path / "other.log", delay=True)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        assert diagnostics.current_log_path() == tmp_path / "other.log"
    finally:
        root.removeHandler(handler)
        handler.close()
