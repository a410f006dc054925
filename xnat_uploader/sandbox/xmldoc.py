"""Single-object documents (project, subject, experiment, scan) as XNAT's XML or ``format=json`` items.

A document is built once as a small tree (:class:`Doc`) and rendered either as XNAT XML
(``<xnat:MRSession ... xmlns:xnat=...>``) or as the ``{"items":[{"data_fields":..,"meta":..,
"children":[..]}]}`` JSON that XNAT's ``format=json`` returns (and xnatpy and NRG's desktop client read).
Only the fields the sandbox knows are filled; XNAT has many more.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

from xnat_uploader.sandbox.httpd import Request, Response
from xnat_uploader.sandbox.store import Experiment, Project, Resource, Scan, Subject

XNAT_NS = "http://nrg.wustl.edu/xnat"
_ELEMENT = {  # xsi:type -> XML element name
    "xnat:projectData": "Project",
    "xnat:subjectData": "Subject",
    "xnat:mrSessionData": "MRSession",
    "xnat:ctSessionData": "CTSession",
    "xnat:petSessionData": "PETSession",
    "xnat:otherDicomSessionData": "OtherDicomSession",
    "xnat:mrScanData": "MRScan",
    "xnat:ctScanData": "CTScan",
    "xnat:petScanData": "PETScan",
    "xnat:otherDicomScanData": "OtherDicomScan",
}


@dataclass
class Doc:
    """``fields`` become attributes/data_fields; ``children`` maps a field path to child documents."""

    xsi_type: str
    fields: dict[str, str]
    children: dict[str, list[Doc]] = field(default_factory=dict)
    attrs: tuple[str, ...] = ("ID", "project", "label")

    def to_json_item(self) -> dict:
        return {
            "meta": {"xsi:type": self.xsi_type, "isHistory": False, "start_date": ""},
            "data_fields": {k: v for k, v in self.fields.items() if v != ""},
            "children": [
                {"field": name, "items": [c.to_json_item() for c in docs]} for name, docs in self.children.items()
            ],
        }

    def to_xml(self, root: bool = True) -> str:
        element = "xnat:" + _ELEMENT.get(self.xsi_type, self.xsi_type.split(":")[-1])
        attrs = "".join(f" {k}={quoteattr(v)}" for k, v in self.fields.items() if k in self.attrs and v)
        if root:
            attrs += f' xmlns:xnat="{XNAT_NS}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
        inner = "".join(
            f"<xnat:{k}>{escape(v)}</xnat:{k}>" for k, v in self.fields.items() if k not in self.attrs and v
        )
        for name, docs in self.children.items():
            tag = name.split("/")[0]
            items = "".join(_child_xml(name, c) for c in docs)
            inner += f"<xnat:{tag}>{items}</xnat:{tag}>"
        return f"<{element}{attrs}>{inner}</{element}>"


def _child_xml(name: str, doc: Doc) -> str:
    """A child element named after its field (e.g. ``<xnat:scan xsi:type="xnat:mrScanData" ID="1">``)."""
    tag = "xnat:" + name.split("/")[-1]
    attrs = "".join(f" {k}={quoteattr(v)}" for k, v in doc.fields.items() if k in doc.attrs and v)
    inner = "".join(f"<xnat:{k}>{escape(v)}</xnat:{k}>" for k, v in doc.fields.items() if k not in doc.attrs and v)
    return f'<{tag} xsi:type="{doc.xsi_type}"{attrs}>{inner}</{tag}>'


def object_response(request: Request, doc: Doc) -> Response:
    """``format=json`` -> items JSON; ``xml`` or nothing -> XML (XNAT's first variant is HTML, XML is close)."""
    fmt = (request.param("format") or "xml").lower()
    if fmt == "json":
        body = json.dumps({"items": [doc.to_json_item()]})
        return Response(200, body.encode(), "application/json;charset=UTF-8")
    xml = '<?xml version="1.0" encoding="UTF-8"?>\n' + doc.to_xml()
    return Response(200, xml.encode(), "text/xml;charset=UTF-8")


def project_doc(project: Project) -> Doc:
    return Doc(
        "xnat:projectData",
        {
            "ID": project.id,
            "secondary_ID": project.secondary_id or project.id,
            "name": project.name,
            "description": project.description,
        },
        attrs=("ID", "secondary_ID"),
    )


def subject_doc(subject: Subject, experiments: list[Experiment]) -> Doc:
    exps = [Doc(e.xsi_type, {"ID": e.id, "project": e.project, "label": e.label}) for e in experiments]
    return Doc(
        "xnat:subjectData",
        {
            "ID": subject.id,
            "project": subject.project,
            "label": subject.label,
            "insert_date": subject.insert_date,
        },
        {"experiments/experiment": exps} if exps else {},
    )


def resource_doc(resource: Resource) -> Doc:
    return Doc(
        "xnat:resourceCatalog",
        {
            "xnat_abstractresource_id": str(resource.id),
            "label": resource.label,
            "format": resource.format,
            "content": resource.content,
            "file_count": str(len(resource.files)),
            "file_size": str(sum(f.size for f in resource.files.values())),
        },
        attrs=("label", "format", "content"),
    )


def scan_doc(exp: Experiment, scan: Scan) -> Doc:
    dicom = scan.dicom_resource()
    files = [resource_doc(dicom)] if dicom is not None else []
    files += [resource_doc(r) for r in scan.resources.values()]
    return Doc(
        scan.xsi_type,
        {
            "ID": scan.id,
            "image_session_ID": exp.id,
            "type": scan.series_description,
            "UID": scan.series_uid,
            "series_description": scan.series_description,
            "modality": scan.modality,
            "quality": "usable",
            "frames": str(len(scan.files)),
        },
        {"file": files} if files else {},
        attrs=("ID", "type", "UID"),
    )


def experiment_doc(exp: Experiment, subject: Subject | None) -> Doc:
    """The session document; ``subject`` is accepted for symmetry with XNAT's subject_ID lookup."""
    children: dict[str, list[Doc]] = {}
    if exp.content.scans:
        children["scans/scan"] = [scan_doc(exp, s) for s in exp.content.scans.values()]
    if exp.content.resources:
        children["resources/resource"] = [resource_doc(r) for r in exp.content.resources.values()]
    return Doc(
        exp.xsi_type,
        {
            "ID": exp.id,
            "project": exp.project,
            "label": exp.label,
            "subject_ID": exp.subject_id,
            "date": exp.date,
            "UID": exp.content.study_uid,
            "modality": exp.content.modality,
            "insert_date": exp.insert_date,
        },
        children,
    )
