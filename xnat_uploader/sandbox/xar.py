"""The XAR import handler: a zip/tar holding one session XML document plus its files (xnat-api.md 3.9).

Simplification: XNAT places files where the XML's catalogs say; the sandbox files DICOM objects into
scans by their headers and keeps every other file (except the XML) in a session resource ``XAR``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING
from xml.etree import ElementTree

from xnat_uploader.sandbox.dicomio import NotDicom, read_header
from xnat_uploader.sandbox.httpd import HttpError, Request
from xnat_uploader.sandbox.store import Resource, StoredFile, session_xsi

if TYPE_CHECKING:
    from xnat_uploader.sandbox.app import App
    from xnat_uploader.sandbox.importer import Upload

XNAT_NS = "{http://nrg.wustl.edu/xnat}"


def xar_import(app: App, request: Request, upload: Upload) -> list[str]:
    from xnat_uploader.sandbox.handlers import archive_kind, iter_entries

    store = app.store
    kind = archive_kind(upload.name) or "zip"
    entries = list(iter_entries(store, upload.path, kind))
    try:
        if not entries:
            raise HttpError(400, "Archive file contains no files.")
        documents = []
        for entry in entries:
            if entry[0].lower().endswith(".xml"):
                try:
                    root = ElementTree.parse(entry[1]).getroot()
                except ElementTree.ParseError:
                    continue
                if root.tag.startswith(XNAT_NS) and root.tag.endswith("Session"):
                    documents.append((entry, root))
        if not documents:
            raise HttpError(400, "Unable to locate XNAT xml document.")
        if len(documents) > 1:
            raise HttpError(400, "XAR can only include data for one imaging session.")
        (xml_entry, root) = documents[0]
        project = store.find_project(root.get("project"))
        if project is None or not request.user.can_edit(project.id):
            raise HttpError(400, "Unable to import XAR: Invalid project tag.")
        subject_ref = (root.findtext(f"{XNAT_NS}subject_ID") or "").strip()
        if not subject_ref:
            raise HttpError(400, "Unable to import XAR: Invalid subject.")
        label = root.get("label") or root.get("ID") or f"xar_{int(time.time())}"
        with store.lock:
            if store.find_experiment(project.id, label) is not None:
                raise HttpError(409, "Session already exists, retry with overwrite enabled")
            subject, _ = store.get_or_create_subject(project.id, subject_ref, request.user.login)
            modality = root.tag[len(XNAT_NS) :].replace("Session", "").upper()
            exp = store.new_experiment(project.id, subject, label, session_xsi(modality), request.user.login)
            for name, temp, size in entries:
                if (name, temp) == xml_entry[:2]:
                    continue
                try:
                    info = read_header(temp, name)
                except NotDicom:
                    res = exp.content.resources.setdefault("XAR", Resource("XAR", store.next_id("resource")))
                    rel = name.replace("\\", "/").lstrip("/")
                    dest = exp.content.dir / "RESOURCES" / "XAR" / rel
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    temp.replace(dest)
                    res.files[rel] = StoredFile(rel, dest, size)
                    continue
                store.add_dicom(exp.content, info, temp, name.rsplit("/", 1)[-1], size)
        return [f"/data/archive/experiments/{exp.id}"]
    finally:
        for _, temp, _ in entries:
            temp.unlink(missing_ok=True)
