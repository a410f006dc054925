"""A compact ``xnat`` XML schema for the sandbox's ``/xapi/schemas`` endpoints.

Clients such as xnatpy build their object model from the server's XSDs (``GET /xapi/schemas`` lists
them, ``GET /xapi/schemas/<name>`` returns one). XNAT's own ``xnat.xsd`` is large and not ours to
copy, so this is a small schema written for the sandbox: the same type names and the fields the
sandbox actually fills (projects, subjects, image sessions, scans, resources), nothing more.
It is kept as a string so the package needs no data files.
"""

from __future__ import annotations

SCHEMAS = ("xnat",)


def _ext(name: str, base: str, body: str = "", abstract: bool = False, ident: str = "") -> str:
    flags = (' abstract="true"' if abstract else "") + (f' displayIdentifiers="{ident}"' if ident else "")
    annotation = f"<xs:annotation><xs:appinfo><xdat:element{flags}/></xs:appinfo></xs:annotation>" if flags else ""
    return (
        f'<xs:complexType name="{name}">{annotation}<xs:complexContent><xs:extension base="{base}">'
        f"{body}</xs:extension></xs:complexContent></xs:complexType>\n"
    )


def _attrs(*names: str) -> str:
    return "".join(f'<xs:attribute name="{n}" type="xs:string"/>' for n in names)


def _elems(*names: str) -> str:
    return "".join(f'<xs:element name="{n}" type="xs:string" minOccurs="0"/>' for n in names)


def _list(container: str, item: str, type_: str) -> str:
    return (
        f'<xs:element name="{container}" minOccurs="0"><xs:complexType><xs:sequence>'
        f'<xs:element name="{item}" type="{type_}" minOccurs="0" maxOccurs="unbounded"/>'
        "</xs:sequence></xs:complexType></xs:element>"
    )


_SESSIONS = {
    "mrSessionData": "MRSession",
    "ctSessionData": "CTSession",
    "petSessionData": "PETSession",
    "otherDicomSessionData": "OtherDicomSession",
}
_SCANS = {
    "mrScanData": "MRScan",
    "ctScanData": "CTScan",
    "petScanData": "PETScan",
    "otherDicomScanData": "OtherDicomScan",
}


def xnat_xsd() -> str:
    """The ``xnat`` namespace schema text."""
    top = "".join(
        f'<xs:element name="{el}" type="xnat:{t}"/>'
        for t, el in {"projectData": "Project", "subjectData": "Subject", **_SESSIONS, **_SCANS}.items()
    )
    types = [
        '<xs:complexType name="abstractResource"><xs:annotation><xs:appinfo><xdat:element abstract="true"/>'
        "</xs:appinfo></xs:annotation><xs:sequence>"
        + _elems("note")
        + "</xs:sequence>"
        + _attrs("label", "file_count", "file_size")
        + "</xs:complexType>\n",
        _ext("resource", "xnat:abstractResource", _attrs("URI", "format", "description", "content")),
        _ext("resourceCatalog", "xnat:resource"),
        '<xs:complexType name="projectData"><xs:sequence>'
        + _elems("name", "description", "keywords")
        + _list("resources", "resource", "xnat:abstractResource")
        + "</xs:sequence>"
        + _attrs("ID", "secondary_ID", "active")
        + "</xs:complexType>\n",
        '<xs:complexType name="subjectData"><xs:annotation><xs:appinfo><xdat:element displayIdentifiers="label"/>'
        "</xs:appinfo></xs:annotation><xs:sequence>"
        + _elems("group", "src")
        + _list("resources", "resource", "xnat:abstractResource")
        + _list("experiments", "experiment", "xnat:subjectAssessorData")
        + "</xs:sequence>"
        + _attrs("ID", "project", "label")
        + "</xs:complexType>\n",
        '<xs:complexType name="experimentData"><xs:annotation><xs:appinfo>'
        '<xdat:element abstract="true" displayIdentifiers="label"/></xs:appinfo></xs:annotation><xs:sequence>'
        + _elems("date", "time", "note", "visit_id", "visit")
        + _list("resources", "resource", "xnat:abstractResource")
        + "</xs:sequence>"
        + _attrs("ID", "project", "label", "version")
        + "</xs:complexType>\n",
        _ext(
            "subjectAssessorData",
            "xnat:experimentData",
            "<xs:sequence>" + _elems("subject_ID") + "</xs:sequence>",
            abstract=True,
        ),
        _ext(
            "imageSessionData",
            "xnat:subjectAssessorData",
            "<xs:sequence>"
            + _elems("scanner", "operator", "prearchivePath", "UID", "modality")
            + _list("scans", "scan", "xnat:imageScanData")
            + "</xs:sequence>",
            abstract=True,
        ),
        '<xs:complexType name="imageScanData"><xs:annotation><xs:appinfo><xdat:element abstract="true"/>'
        "</xs:appinfo></xs:annotation><xs:sequence>"
        + _elems(
            "image_session_ID", "note", "quality", "condition", "series_description", "scanner", "modality", "frames"
        )
        + '<xs:element name="file" type="xnat:abstractResource" minOccurs="0" maxOccurs="unbounded"/>'
        + "</xs:sequence>"
        + _attrs("ID", "type", "UID", "project")
        + "</xs:complexType>\n",
    ]
    types += [_ext(name, "xnat:imageSessionData") for name in _SESSIONS]
    types += [_ext(name, "xnat:imageScanData") for name in _SCANS]
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<xs:schema targetNamespace="http://nrg.wustl.edu/xnat" xmlns:xnat="http://nrg.wustl.edu/xnat" '
        'xmlns:xdat="http://nrg.wustl.edu/xdat" xmlns:xs="http://www.w3.org/2001/XMLSchema" '
        'elementFormDefault="qualified" attributeFormDefault="unqualified">\n'
        + top
        + "\n"
        + "".join(types)
        + "</xs:schema>\n"
    )
