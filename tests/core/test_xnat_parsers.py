"""Parsers of XNAT's bodies, from the examples quoted in xnat-api.md, and request building."""

from __future__ import annotations

import json

import pytest

from xnat_uploader.core.redact import redact_path
from xnat_uploader.core.xnat import errors as E
from xnat_uploader.core.xnat.body import StreamBody
from xnat_uploader.core.xnat.importer import ArchiveFormat, ImportHandler, ImportOptions, ImportResult, Overwrite
from xnat_uploader.core.xnat.models import (
    ArchiveRef,
    PrearchiveRef,
    PrearchiveSession,
    Project,
    ResourceInfo,
    parse_result_set,
    parse_uri_list,
    project_of_uri,
    total_records,
)
from xnat_uploader.core.xnat.resources import parse_duplicates
from xnat_uploader.core.xnat.server_info import parse_build_info, parse_version
from xnat_uploader.core.xnat.transport import normalize_url

# xnat-api.md 4.3, example row.
PREARC_ROW = (
    '{"project":"P1","timestamp":"20240501_101112345","lastmod":"2024-05-01 10:16:40.12",'
    '"uploaded":"2024-05-01 10:11:12.345","scan_date":"2009-12-14 10:12:01.0","scan_time":"",'
    '"subject":"SUBJ01","folderName":"SESS01","name":"SESS01","tag":"1.2.840.1","status":"READY",'
    '"url":"/prearchive/projects/P1/20240501_101112345/SESS01","autoarchive":"Manual",'
    '"prevent_anon":"false","prevent_auto_commit":"true","SOURCE":"uploader","VISIT":"","PROTOCOL":"","TIMEZONE":""}'
)


def test_prearchive_listing_row():
    rows = parse_result_set('{"ResultSet":{"Result":[' + PREARC_ROW + "]}}")
    s = PrearchiveSession.from_row(rows[0])
    assert (s.project, s.timestamp, s.folder, s.name, s.subject) == (
        "P1", "20240501_101112345", "SESS01", "SESS01", "SUBJ01",
    )  # fmt: skip
    assert s.study_uid == "1.2.840.1"
    assert s.status == "READY"
    assert not s.locked
    assert s.prevent_auto_commit is True
    assert s.prevent_anon is False
    assert s.source == "uploader"
    assert s.uri == "/data/prearchive/projects/P1/20240501_101112345/SESS01"
    assert s.ref == PrearchiveRef.parse(s.url)
    assert json.loads(json.dumps(s.as_dict()))["uri"] == s.uri


def test_locked_status():
    row = json.loads(PREARC_ROW) | {"status": "_ARCHIVING"}
    assert PrearchiveSession.from_row(parse_result_set({"ResultSet": {"Result": [row]}})[0]).locked


def test_table_with_total_records_and_non_string_cells():
    body = (
        '{"ResultSet":{"Result":[{"ID":"P1","secondary_ID":"p","name":"One","n":3,"x":null,"b":true}],'
        ' "totalRecords": "1"}}'
    )
    data = json.loads(body)
    rows = parse_result_set(data)
    assert rows == [{"ID": "P1", "secondary_ID": "p", "name": "One", "n": "3", "x": "", "b": "true"}]
    assert total_records(data) == 1
    assert total_records({"ResultSet": {"Result": []}}) is None


def test_permission_listing_has_lower_case_keys():
    rows = parse_result_set('{"ResultSet":{"Result":[{"id":"DEMO","secondary_id":"Demo","name":"Demo project"}]}}')
    assert Project.from_row(rows[0]) == Project("DEMO", "Demo", "Demo project", "")


@pytest.mark.parametrize("body", ["<html><body>login</body></html>", '{"items":[]}', "[1,2]"])
def test_non_table_bodies_raise(body):
    with pytest.raises(E.UnexpectedResponseError):
        parse_result_set(body)


def test_resource_rows():
    row = {"label": "DICOM", "file_count": "12", "file_size": "34567", "xnat_abstractresource_id": "7", "format": ""}
    assert ResourceInfo.from_row(row) == ResourceInfo("DICOM", 12, 34567, "", "7")
    assert ResourceInfo.from_row({"label": "X", "file_count": ""}).file_count is None


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "/data/prearchive/projects/P/20240501_101112345/LABEL\r\n",
            ["/data/prearchive/projects/P/20240501_101112345/LABEL"],
        ),
        ("/data/prearchive/projects/P/T/L", ["/data/prearchive/projects/P/T/L"]),  # format=txt, no terminator
        ("/a\r\n/b\r\n/a\r\n", ["/a", "/b"]),
        ("", []),
        ("\r\n", []),
        (
            b"/data/archive/projects/P/subjects/S/experiments/E\r\n",
            ["/data/archive/projects/P/subjects/S/experiments/E"],
        ),
        ("# comment\r\n/x\n", ["/x"]),
    ],
)
def test_uri_list(body, expected):
    assert parse_uri_list(body) == expected


def test_refs_round_trip_and_context_path():
    ref = PrearchiveRef("P 1", "20240501_101112345", "S/1")
    assert ref.uri == "/data/prearchive/projects/P%201/20240501_101112345/S%2F1"
    assert PrearchiveRef.parse(ref.uri) == ref
    assert PrearchiveRef.parse("https://h/xnat/data/prearchive/projects/P/T/F") == PrearchiveRef("P", "T", "F")
    assert PrearchiveRef.parse("/prearchive/projects/P/T/F") == PrearchiveRef("P", "T", "F")
    with pytest.raises(ValueError, match="prearchive"):
        PrearchiveRef.parse("/data/archive/projects/P/subjects/S/experiments/E")
    a = ArchiveRef.parse("http://h/data/archive/projects/P/subjects/S/experiments/E")
    assert a == ArchiveRef("P", "S", "E")
    assert ArchiveRef.parse(a.uri) == a
    assert project_of_uri("/xapi/direct-archive/P2/1.2.3/L") == "P2"
    assert project_of_uri("/data/prearchive/projects/Unassigned/T/F") == "Unassigned"


def test_import_result_sorts_uris():
    r = ImportResult(("/data/prearchive/projects/P/T/F", "/data/archive/projects/P/subjects/S/experiments/E"))
    assert r.uri == "/data/prearchive/projects/P/T/F"
    assert r.prearchive == [PrearchiveRef("P", "T", "F")]
    assert r.archive == [ArchiveRef("P", "S", "E")]
    assert ImportResult(()).uri is None


@pytest.mark.parametrize(
    ("text", "version"),
    [("1.8.10", (1, 8, 10)), ("1.9.0-SNAPSHOT", (1, 9, 0)), ("1.8", (1, 8, 0)), ("1.8.10.1", (1, 8, 10, 1)),
     ("Unknown", None), ("", None), (None, None)],
)  # fmt: skip
def test_parse_version(text, version):
    assert parse_version(text) == version


def test_build_info():
    info = parse_build_info(
        '{"version":"1.8.10","buildNumber":"12","buildDate":"2024","sha":"abc","isDirty":"false","timestamp":"1"}'
    )
    assert info.version == (1, 8, 10)
    assert info.build_number == "12"
    assert info.supports_direct_archive
    assert info.supports_ignore_unparsable
    old = parse_build_info({"version": "1.8.2"})
    assert not old.supports_direct_archive
    with pytest.raises(E.ServerTooOldError, match="1.8.3"):
        old.require((1, 8, 3), "Direct archiving")
    assert parse_build_info({"version": "Unknown"}).version is None


def test_import_params_use_names_every_handler_reads():
    opts = ImportOptions.for_uploader(ImportHandler.GRADUAL_DICOM, "P", "S", "E", overwrite=Overwrite.APPEND)
    params = opts.params()
    assert params[0] == ("import-handler", "gradual-DICOM")
    d = dict(params)
    assert d["PROJECT_ID"] == "P"
    assert d["SUBJECT_ID"] == "S"
    assert d["EXPT_LABEL"] == "E"
    assert d["prevent_auto_commit"] == "true"
    assert d["SOURCE"] == "uploader"
    assert d["overwrite"] == "append"
    assert "project" not in d
    assert "format" not in d


def test_import_params_every_option():
    opts = ImportOptions(
        handler=ImportHandler.DICOM_ZIP, project="P", dest="/prearchive/projects/P", prearc_timestamp="T",
        prearc_session_folder="F", visit="V", subtype="ST", overwrite=Overwrite.DELETE, overwrite_files=True,
        commit=True, auto_archive=False, ignore_unparsable=True, direct_archive=True, rename=True, prevent_anon=True,
        timezone="UTC", trigger_pipelines=False, quarantine=True, http_session_listener="abc",
        transfer_syntax_uid="1.2.840.10008.1.2", sender_id="AE@host", sender_ae_title="AE", extra=(("k", "v"),),
    )  # fmt: skip
    d = dict(opts.params())
    assert d == {
        "import-handler": "DICOM-zip", "PROJECT_ID": "P", "dest": "/prearchive/projects/P", "PREARC_TIMESTAMP": "T",
        "PREARC_SESSION_FOLDER": "F", "VISIT": "V", "SUBTYPE": "ST", "overwrite": "delete", "overwrite_files": "true",
        "action": "commit", "AA": "false", "Ignore-Unparsable": "true", "Direct-Archive": "true", "rename": "true",
        "prevent_anon": "true", "TIMEZONE": "UTC", "triggerPipelines": "false", "quarantine": "true",
        "http-session-listener": "abc", "Transfer-Syntax-UID": "1.2.840.10008.1.2", "Sender-ID": "AE@host",
        "Sender-AE-Title": "AE", "k": "v",
    }  # fmt: skip
    inbox = ImportOptions(handler=ImportHandler.INBOX, project="P", inbox_path="/inbox/P/x", cleanup_after_import=False)
    assert dict(inbox.params())["path"] == "/inbox/P/x"
    assert dict(inbox.params())["cleanupAfterImport"] == "false"
    assert dict(ImportOptions(prearchive_code=True).params())["prearchive_code"] == "1"


def test_import_validation():
    with pytest.raises(ValueError, match="inbox"):
        ImportOptions(handler=ImportHandler.INBOX).validate(has_body=False)
    with pytest.raises(ValueError, match="no upload body"):
        ImportOptions(handler=ImportHandler.INBOX, project="P", inbox_path="/x").validate(has_body=True)
    with pytest.raises(ValueError, match="needs a body"):
        ImportOptions().validate(has_body=False)
    with pytest.raises(ValueError, match="prearchive_code"):
        ImportOptions(prearchive_code=True, overwrite=Overwrite.APPEND).validate()
    with pytest.raises(ValueError, match="Direct-Archive"):
        ImportOptions(handler=ImportHandler.SI, direct_archive=True).validate()
    with pytest.raises(ValueError, match="Ignore-Unparsable"):
        ImportOptions(handler=ImportHandler.GRADUAL_DICOM, ignore_unparsable=True).validate()
    with pytest.raises(E.ServerTooOldError):
        ImportOptions(direct_archive=True).validate(parse_build_info({"version": "1.8.2"}))
    ImportOptions(direct_archive=True).validate(parse_build_info({"version": "1.8.3"}))


def test_content_types():
    assert ImportOptions(handler=ImportHandler.GRADUAL_DICOM).content_type(b"x") == "application/dicom"
    assert ImportOptions().content_type("a/b.zip") == "application/zip"
    assert ImportOptions().content_type("a/b.TAR.GZ") == "application/x-gtar"
    assert ImportOptions(handler=ImportHandler.SI).content_type("a.tgz") == "application/x-gtar"
    assert ImportOptions().content_type("a.tar") == "application/x-tar"
    assert ImportOptions(archive_format=ArchiveFormat.TAR).content_type(b"x") == "application/x-tar"
    assert ImportOptions().content_type(StreamBody([b"x"], 1)) == "application/zip"
    assert ImportOptions(handler=ImportHandler.INBOX).content_type(None) is None


def test_duplicates_body():
    assert parse_duplicates('{"duplicates":["a.txt","b/c.txt"]}') == ("a.txt", "b/c.txt")
    assert parse_duplicates("") == ()
    assert parse_duplicates("<html>") == ()


def test_stream_body_length_and_replay():
    once = StreamBody(iter([b"ab", b"", b"c"]), 3)
    assert len(once) == 3
    assert once.replayable
    assert b"".join(once) == b"abc"
    assert not once.replayable
    with pytest.raises(RuntimeError):
        list(once)
    again = StreamBody(lambda: [b"a", b"bc"], 3)
    assert b"".join(again) == b"".join(again) == b"abc"
    assert again.replayable
    with pytest.raises(ValueError, match="declared 5"):
        list(StreamBody([b"abc"], 5))


def test_normalize_url_and_redaction():
    assert normalize_url(" HTTPS://Xnat.Example.org/XNAT/ ") == "https://xnat.example.org/XNAT"
    assert normalize_url("http://h:8080?x=1") == "http://h:8080"
    for bad in ("xnat.example.org", "ftp://h", "https://user@h"):
        with pytest.raises(ValueError, match="URL"):
            normalize_url(bad)
    assert redact_path("/data/projects/P/subjects/DOE_JOHN/experiments/E1?x=1") == (
        "/data/projects/*/subjects/*/experiments/*"
    )


class _FakeResponse:
    def __init__(self, text: str) -> None:
        self.text = text

    def json(self):
        return json.loads(self.text)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


class _OldServer:
    """Stands in for ``XnatSession.request`` of a pre-1.7 XNAT: no buildInfo, a plain /data/version."""

    def __init__(self, version_text: str | None) -> None:
        self.version_text = version_text
        self.paths: list[str] = []

    def request(self, method, path, **kw):
        self.paths.append(path)
        if path == "/data/version" and self.version_text is not None:
            return _FakeResponse(self.version_text)
        raise E.NotFoundError("not found", "", status=404)


def test_server_info_falls_back_to_data_version():
    from xnat_uploader.core.xnat.server_info import get_server_info

    old = _OldServer("1.6.5\n")
    info = get_server_info(old)  # type: ignore[arg-type]
    assert old.paths == ["/xapi/siteConfig/buildInfo", "/data/version"]
    assert info.version == (1, 6, 5)
    assert not info.supports_direct_archive
    assert get_server_info(_OldServer(None)).version is None  # type: ignore[arg-type]
    assert get_server_info(_OldServer("<html>login</html>")).version is None  # type: ignore[arg-type]


def test_stream_body_is_sent_with_a_content_length_never_chunked():
    import requests

    def generated():
        yield b"abc"
        yield b"de"

    prepared = requests.Request("POST", "http://127.0.0.1/", data=StreamBody(generated(), 5)).prepare()
    assert prepared.headers["Content-Length"] == "5"
    assert "Transfer-Encoding" not in prepared.headers
