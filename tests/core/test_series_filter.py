"""The series import filter's rules, checked against the cases of XNAT's own tests.

The filters and header values below are those of ``libs/dicomtools``' ``SeriesImportFilterTests`` and
``filter-definitions.properties`` (NrgXnat/xnat 1.8.11), so the prediction follows XNAT, not our reading of it.
"""

from __future__ import annotations

import json

import pytest

from xnat_uploader.core.dicom.records import InstanceRecord
from xnat_uploader.core.xnat.series_filter import (
    SITE,
    SeriesFilters,
    describe,
    field_keyword,
    parse_filter,
    predict,
)

WHITELIST = json.dumps({"mode": "whitelist", "list": "T1 Spin Echo\n^.*LOCALIZER.*$"})
WHITELIST_TAGS = json.dumps({"mode": "whitelist", "list": "[BurnedInAnnotation]\n!EXISTS"})
BLACKLIST = json.dumps({"mode": "blacklist", "list": "PET Data\nThis is PHI as all get out"})
BLACKLIST_TAGS = json.dumps(
    {"mode": "blacklist", "list": "[BurnedInAnnotation]\nEXISTS\n[0008,0008]\n^.*Patient Data.*$"}
)
MODALITY_MAP = json.dumps({"mode": "modalityMap", "exclude": "/^yes$/i.test('#BurnedInAnnotation#')"})

ALL_FIELDS = ("SeriesDescription", "BurnedInAnnotation", "ImageType", "Modality")


def headers(**values: str) -> dict[str, str | None]:
    """XNAT's test objects: fields not given are absent."""
    return {name: values.get(name) for name in ALL_FIELDS}


T1 = headers(SeriesDescription="T1 Spin Echo")
LOCALIZER1 = headers(SeriesDescription="LOCALIZER")
LOCALIZER2 = headers(SeriesDescription="SAG LOCALIZER And Then Some")
PET_DATA = headers(SeriesDescription="PET Data")
PHI = headers(SeriesDescription="This is PHI as all get out")
BURNED_IN = headers(SeriesDescription="T1 Spin Echo", Modality="MR", BurnedInAnnotation="YES")
MR = headers(SeriesDescription="T1 Spin Echo", Modality="MR")
MR_PATIENT_DATA = headers(SeriesDescription="T1 Spin Echo", Modality="MR", ImageType="Captured Patient Data")
MR_DERIVED = headers(SeriesDescription="T1 Spin Echo", Modality="MR", ImageType="DERIVED")


@pytest.mark.parametrize(
    ("contents", "values", "kept"),
    [
        (WHITELIST, T1, True),
        (WHITELIST, LOCALIZER1, True),
        (WHITELIST, LOCALIZER2, True),
        (WHITELIST, PET_DATA, False),
        (WHITELIST, PHI, False),
        (WHITELIST_TAGS, MR, True),
        (WHITELIST_TAGS, BURNED_IN, False),
        (BLACKLIST, T1, True),
        (BLACKLIST, LOCALIZER1, True),
        (BLACKLIST, PET_DATA, False),
        (BLACKLIST, PHI, False),
        (BLACKLIST_TAGS, MR, True),
        (BLACKLIST_TAGS, MR_DERIVED, True),
        (BLACKLIST_TAGS, MR_PATIENT_DATA, False),
        (BLACKLIST_TAGS, BURNED_IN, False),
    ],
)
def test_the_cases_of_xnats_own_filter_tests(contents, values, kept):
    assert parse_filter(contents).keeps(values) is kept


def test_patterns_are_found_anywhere_ignoring_case_not_matched_whole():
    f = parse_filter(json.dumps({"mode": "blacklist", "list": "localizer"}))
    assert f.keeps({"SeriesDescription": "3-plane LOCALIZER sag"}) is False
    assert f.keeps({"SeriesDescription": "T1"}) is True
    anchored = parse_filter(json.dumps({"mode": "blacklist", "list": "^loc$"}))
    assert anchored.keeps({"SeriesDescription": "Localizer"}) is True


def test_lines_comments_and_the_escaped_newline_form():
    f = parse_filter(json.dumps({"mode": "blacklist", "list": "  # a comment\\n\\n  scout  \\nlocalizer"}))
    assert f.rules == (("SeriesDescription", ("scout", "localizer")),)
    assert f.keeps({"SeriesDescription": "SCOUT"}) is False


def test_an_empty_whitelist_keeps_nothing_and_an_empty_blacklist_everything():
    assert parse_filter(json.dumps({"mode": "whitelist", "list": ""})).keeps({}) is False
    present_but_empty = parse_filter(json.dumps({"mode": "blacklist", "list": "[ImageType]\nEXISTS"}))
    assert present_but_empty.keeps({"ImageType": ""}) is False
    assert present_but_empty.keeps({"ImageType": None}) is True
    assert parse_filter(json.dumps({"mode": "blacklist", "list": ""})).keeps({}) is True
    assert parse_filter("").keeps({}) is True  # no contents: XNAT's default, an empty blacklist


def test_what_cannot_be_predicted_says_so():
    assert parse_filter(MODALITY_MAP).keeps(MR) is None
    assert "only XNAT can evaluate" in parse_filter(MODALITY_MAP).problem
    bad = parse_filter(json.dumps({"mode": "blacklist", "list": "(unclosed"}))
    assert bad.keeps(T1) is None
    assert "(unclosed" in bad.problem
    # A field the scan did not read: not known, so not claimed.
    other = parse_filter(json.dumps({"mode": "blacklist", "list": "[ProtocolName]\nscout"}))
    assert other.keeps({"SeriesDescription": "x"}) is None
    assert parse_filter("{not json").problem


def test_fields_by_keyword_or_by_tag():
    assert field_keyword("(0008,103E)") == "SeriesDescription"
    assert field_keyword("0008,0008") == "ImageType"
    assert field_keyword("BurnedInAnnotation") == "BurnedInAnnotation"
    with pytest.raises(ValueError, match="NoSuchField"):
        field_keyword("NoSuchField")


def test_nested_contents_as_some_servers_store_them():
    inner = json.dumps({"mode": "blacklist", "list": "scout"})
    assert parse_filter(json.dumps({"contents": inner})).keeps({"SeriesDescription": "Scout"}) is False


def _rec(series: str, number: int, description: str, sop: str) -> InstanceRecord:
    return InstanceRecord(
        path="f", size=10, patient_id="P", patient_name="N", study_uid="1.2", study_date="", study_time="",
        study_description="", accession_number="", series_uid=series, series_number=number,
        series_description=description, modality="MR", sop_class_uid="1.2.3", sop_instance_uid=sop,
        instance_number=1, transfer_syntax="1.2.840.10008.1.2",
    )  # fmt: skip


def test_predict_names_each_dropped_series_with_counts():
    filters = SeriesFilters("P", (parse_filter(json.dumps({"mode": "blacklist", "list": "localizer"}), "P"),))
    records = [_rec("1.1", 1, "Localizer", f"1.1.{i}") for i in range(3)] + [_rec("1.2", 2, "T1", "1.2.1")]
    [dropped] = predict(filters, records)
    assert (dropped.series_uid, dropped.files, dropped.total) == ("1.1", 3, 3)
    assert dropped.reason == "the project's series import filter"
    text = describe([dropped])
    assert text.startswith("XNAT will not keep 1 series (3 files) of this upload: the project's series import")
    assert 'drops series 1 "Localizer".' in text
    site = SeriesFilters("P", (parse_filter(json.dumps({"mode": "whitelist", "list": "T1"}), SITE),))
    assert [d.series_uid for d in predict(site, records)] == ["1.1"]
    assert predict(SeriesFilters("P"), records) == []
    unread = parse_filter(json.dumps({"mode": "blacklist", "list": "[ProtocolName]\nloc"}), "P")
    assert predict(SeriesFilters("P", (unread,)), records) == []  # a field the scan did not read: not claimed
