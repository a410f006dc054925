"""Mapping XNAT's error answers (xnat-api.md 1.4, 3.5-3.9, 4.4-4.5) to typed errors."""

from __future__ import annotations

import pytest

from xnat_uploader.core.errors import UserError
from xnat_uploader.core.xnat import errors as E

# The Restlet 1.1 status page as quoted in xnat-api.md 1.4.
RESTLET = (
    "<html>\n<head>\n   <title>Status page</title>\n</head>\n<body>\n<h3>{msg}</h3><p>You can get technical details "
    '<a href="http://www.w3.org/Protocols/rfc2616/rfc2616-sec10.html#sec10.4.1">here</a>.<br>\n'
    'Please continue your visit at our <a href="/">home page</a>.\n</p>\n</body>\n</html>\n'
)
TOMCAT_401 = (
    '<!doctype html><html lang="en"><head><title>HTTP Status 401 – Unauthorized</title></head><body>'
    '<h1>HTTP Status 401 – Unauthorized</h1><hr class="line" /><p><b>Type</b> Status Report</p>'
    "<p><b>Message</b> Bad credentials</p><p><b>Description</b> The request has not been applied.</p></body></html>"
)


def restlet(msg: str) -> str:
    return RESTLET.format(msg=msg)


def test_message_from_restlet_status_page():
    assert E.extract_message(restlet("Unknown importer implementation specified: FOO")) == (
        "Unknown importer implementation specified: FOO"
    )


def test_message_from_tomcat_page_and_plain_text():
    assert E.extract_message(TOMCAT_401) == "Bad credentials"
    assert E.extract_message("  FAILED: Session already exists\n") == "FAILED: Session already exists"
    assert E.extract_message("") == ""


def test_html_entities_are_unescaped():
    assert E.extract_message(restlet("a &lt;b&gt; &amp; c")) == "a <b> & c"


@pytest.mark.parametrize(
    ("status", "message", "kind", "transient"),
    [
        (401, "", E.AuthenticationError, False),
        (400, "unable to read DICOM object README.txt", E.NonDicomFileError, False),
        (400, "object x.dcm contains no SOP Class UID", E.NonDicomFileError, False),
        (400, "Upload did not include parsable files for session generation.", E.NoDicomError, False),
        (400, "Upload included files for multiple imaging sessions.", E.MultipleSessionsError, False),
        (400, "XAR can only include data for one imaging session.", E.MultipleSessionsError, False),
        (400, "Unsupported format UNKNOWN", E.UnsupportedFormatError, False),
        (409, "Session already exists, retry with overwrite enabled", E.SessionExistsError, False),
        (400, "Session already contains a scan (4) with the same UID and number.", E.SessionExistsError, False),
        (500, "FAILED: Session already exists, retry with overwrite enabled", E.SessionExistsError, False),
        (500, "FAILED: Session already exists with matching files.", E.SessionExistsError, False),
        (500, "FAILED: Session already exists with the same resources.", E.SessionExistsError, False),
        (500, "FAILED: something broke in the archiver", E.ArchiveFailedError, False),
        (400, "unable to archive for the Prearchive session", E.ArchiveFailedError, False),
        (409, "session document locked", E.SessionLockedError, True),
        (403, "Operation already in progress on this prearchive entry.", E.SessionLockedError, True),
        (400, "Concurrent file sends of the same data is not supported.", E.ConcurrentSendError, True),
        (404, "Unable to identify project NOPE", E.ProjectAccessError, False),
        (500, "No project named NOPE", E.ProjectAccessError, False),
        (403, "Unable to modify session data for destination project.", E.ProjectAccessError, False),
        (403, "The current user does not have access to the requested project: P", E.ProjectAccessError, False),
        (403, "", E.PermissionDeniedError, False),
        (404, "", E.NotFoundError, False),
        (400, "Cannot archive sessions from the Unassigned folder.", E.BadRequestError, False),
        (400, "Parameter dest format error", E.BadRequestError, False),
        (500, "", E.ServerError, True),
        (502, "Bad Gateway", E.ServerError, True),
        (503, "", E.ServerError, True),
        (302, "", E.UnexpectedResponseError, False),
    ],
)
def test_error_mapping(status, message, kind, transient):
    err = E.error_for_status(status, restlet(message) if message else "")
    assert type(err) is kind
    assert err.transient is transient
    assert err.status == status
    assert isinstance(err, UserError)
    assert err.message
    assert err.hint


@pytest.mark.parametrize("words", ["Session already exists with matching files.",
                                   "Session already exists with the same resources."])  # fmt: skip
def test_xnats_refusal_of_images_it_holds_says_what_happened_and_what_to_do(words):
    """XNAT's two refusals of a merge holding images the archived session has (MergeSessionsA.checkForConflict)."""
    err = E.error_for_status(500, restlet(f"FAILED: {words}"))
    assert err.message == E.ALREADY_HELD
    assert "already holds some of these images" in err.message
    assert '"Replace what is already there"' in err.hint
    assert "leave out the series already archived" in err.hint
    assert err.detail == f"FAILED: {words}"


def test_404_about_a_project_names_the_project():
    err = E.error_for_status(404, restlet("Unable to identify project X"), project="X")
    assert isinstance(err, E.ProjectAccessError)
    assert "'X'" in err.message
    err = E.error_for_status(404, "", project="GONE")
    assert isinstance(err, E.ProjectAccessError)
    assert "GONE" in str(err)


def test_non_dicom_message_names_the_file_and_mentions_ignore_unparsable():
    err = E.error_for_status(400, restlet("unable to read DICOM object notes/README.txt"))
    assert "notes/README.txt" in err.message
    assert "1.8.3" in err.hint
    assert err.detail == "unable to read DICOM object notes/README.txt"


def test_generic_400_carries_the_server_reason():
    err = E.error_for_status(400, restlet("Parameter dest format error"), action="uploading")
    assert "Parameter dest format error" in err.message
    assert "while uploading" in err.message


def test_server_too_old():
    err = E.server_too_old("Direct archiving", "1.8.3", "1.8.2")
    assert isinstance(err, E.ServerTooOldError)
    assert not err.transient
    assert "1.8.3" in err.message
    assert "1.8.2" in err.message
    assert "does not report" in E.server_too_old("X", "1.8.3", None).message


def test_repr_is_short_and_typed():
    err = E.error_for_status(500, "")
    assert repr(err).startswith("ServerError(status=500")


def test_retry_after():
    assert E.parse_retry_after("30") == 30.0
    assert E.parse_retry_after(None) is None
    assert E.parse_retry_after("soon") is None
    assert E.parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past: retry now
    err = E.error_for_status(429, "")
    assert isinstance(err, E.ServerError)
    assert err.transient
    assert err.retry_after is None


def test_unable_to_read_a_valid_dicom_file_is_a_server_fault_worth_retrying():
    """XNAT's gradual importer says "unable to read DICOM object" for any failure on the server: for a file
    the scan read as DICOM it becomes a transient refusal that keeps XNAT's words; other 400s stay as they are."""
    err = E.error_for_status(400, restlet("unable to read DICOM object 1.2.3.dcm"))
    refused = E.refused_valid_file(err, "IM_0001")
    assert isinstance(refused, E.FileRefusedError)
    assert refused.transient
    assert refused.detail == "unable to read DICOM object 1.2.3.dcm"
    assert "IM_0001" in refused.message
    assert "unable to read DICOM object 1.2.3.dcm" in refused.message
    assert E.refused_valid_file(E.error_for_status(400, restlet("object x.dcm contains no SOP Class UID")), "x") is None
    assert E.refused_valid_file(E.error_for_status(500, ""), "x") is None


def test_a_gradual_file_is_named_by_its_uid_only_when_that_is_a_safe_path_segment():
    from xnat_uploader.core.xnat.importer import stored_name

    assert stored_name("1.2.840.113619.2.55.3") == "1.2.840.113619.2.55.3.dcm"
    for unsafe in ("", "1.2/../3", "1.2.3?x=1", "1.2.3 ", "1..2", ".1.2", "1.2.", "1.2.3%2F", "9" * 65):
        assert stored_name(unsafe) is None, unsafe
