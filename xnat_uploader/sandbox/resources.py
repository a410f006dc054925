"""Resources and files on projects, subjects, sessions and scans (xnat-api.md section 6).

Create a resource (``PUT``/``POST .../resources/NAME``, 409 when it exists), upload files
(``PUT``/``POST .../resources/NAME/files/PATH``: in-body or multipart, ``overwrite``, ``extract``;
an existing file without ``overwrite=true`` is left alone and reported as ``{"duplicates":[...]}``),
list, download and delete. A scan's DICOM files appear as its ``DICOM`` resource.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from xnat_uploader.sandbox import xmldoc
from xnat_uploader.sandbox.handlers import archive_kind, iter_entries
from xnat_uploader.sandbox.httpd import HttpError, Request, Response, Router
from xnat_uploader.sandbox.listings import ROOT, experiment_for, project_for, subject_for
from xnat_uploader.sandbox.store import Resource, StoredFile, dirname
from xnat_uploader.sandbox.tables import table

if TYPE_CHECKING:
    from xnat_uploader.sandbox.app import App

RESOURCE_COLUMNS = [
    "xnat_abstractresource_id",
    "label",
    "element_name",
    "category",
    "cat_id",
    "cat_desc",
    "format",
    "content",
    "tags",
    "file_count",
    "file_size",
]
FILE_COLUMNS = ["Name", "Size", "URI", "collection", "file_tags", "file_format", "file_content", "cat_ID", "digest"]
NO_PERMISSION = "User account doesn't have permission to modify this session."


@dataclass
class Parent:
    """Where resources hang: its resource map, folder on disk, project (for permissions) and URI."""

    resources: dict[str, Resource]
    folder: Path
    project: str
    uri: str
    category: str
    zip_prefix: str  # folder of this object in XNAT's download zips
    dicom: Resource | None = None  # a scan's DICOM files, shown as a read-only resource


def register(router: Router, app: App) -> None:
    store = app.store

    def parent_of(request: Request, g: dict[str, str]) -> Parent:
        if "exp" in g:
            proj = project_for(app, request, g["project"]) if g.get("project") else None
            exp = experiment_for(app, request, g["exp"], proj)
            if "scan" in g:
                scan = exp.content.scans.get(g["scan"])
                if scan is None:
                    raise HttpError(404, f"Unable to find scan {g['scan']}")
                dicom = scan.dicom_resource()
                return Parent(
                    scan.resources,
                    exp.content.dir / "SCANS" / scan.id,
                    exp.project,
                    f"/data/experiments/{exp.id}/scans/{scan.id}",
                    "scans",
                    f"{exp.label}/scans/{scan.id}-{scan.series_description or 'scan'}",
                    dicom,
                )
            return Parent(
                exp.content.resources,
                exp.content.dir / "RESOURCES",
                exp.project,
                f"/data/experiments/{exp.id}",
                "resources",
                exp.label,
            )
        proj = project_for(app, request, g["project"])
        if "subject" in g:
            subj = subject_for(app, request, proj, g["subject"])
            return Parent(
                subj.resources,
                store.data_dir / "archive" / proj.id / "subjects" / dirname(subj.label) / "resources",
                proj.id,
                f"/data/subjects/{subj.id}",
                "resources",
                subj.label,
            )
        return Parent(
            proj.resources,
            store.data_dir / "archive" / proj.id / "resources",
            proj.id,
            f"/data/projects/{proj.id}",
            "resources",
            proj.id,
        )

    def find(parent: Parent, ref: str) -> Resource | None:
        if parent.dicom is not None and ref in ("DICOM", str(parent.dicom.id)):
            return parent.dicom
        for res in parent.resources.values():
            if res.label == ref or str(res.id) == ref:
                return res
        return None

    def writable(request: Request, parent: Parent) -> None:
        if not request.user.can_edit(parent.project):
            raise HttpError(403, NO_PERMISSION)

    def res_row(parent: Parent, res: Resource) -> dict[str, object]:
        return {
            "xnat_abstractresource_id": res.id,
            "label": res.label,
            "element_name": "xnat:resourceCatalog",
            "category": parent.category,
            "cat_id": "",
            "cat_desc": res.description,
            "format": res.format,
            "content": res.content,
            "tags": res.tags,
            "file_count": len(res.files),
            "file_size": sum(f.size for f in res.files.values()),
        }

    def resources(request: Request, **g: str) -> Response:
        parent = parent_of(request, g)
        items = ([parent.dicom] if parent.dicom else []) + list(parent.resources.values())
        return table(request, [res_row(parent, r) for r in items], RESOURCE_COLUMNS, total=True)

    def resource(request: Request, name: str, **g: str) -> Response:
        parent = parent_of(request, g)
        res = find(parent, name)
        if request.method == "GET":
            if res is None:
                raise HttpError(404, f"Unable to find resource {name}")
            return xmldoc.object_response(request, xmldoc.resource_doc(res))
        writable(request, parent)
        if request.method == "DELETE":
            if res is None or res is parent.dicom:
                raise HttpError(404, f"Unable to find resource {name}")
            parent.resources.pop(res.label, None)
            shutil.rmtree(parent.folder / res.label, ignore_errors=True)
            return Response(200, b"", "text/plain")
        if res is not None:
            raise HttpError(409, "Specified resource already exists.")
        request.load_form()
        create(parent, name, request)
        return Response(200, b"", "text/plain")

    def create(parent: Parent, name: str, request: Request) -> Resource:
        if dirname(name) != name:
            raise HttpError(400, f"Invalid resource label: {name}")
        res = Resource(
            name,
            store.next_id("resource"),
            request.param("format") or "",
            request.param("content") or "",
            request.param("description") or "",
            request.param("tags") or "",
        )
        parent.resources[name] = res
        (parent.folder / name).mkdir(parents=True, exist_ok=True)
        return res

    def file_rows(parent: Parent, res: Resource) -> list[dict[str, object]]:
        with store.lock:  # a digest may be computed now: not while an archive moves the files
            return [
                {
                    "Name": f.name.rsplit("/", 1)[-1],
                    "Size": f.size,
                    "URI": f"{parent.uri}/resources/{res.label}/files/{f.name}",
                    "collection": res.label,
                    "file_tags": "",
                    "file_format": res.format,
                    "file_content": res.content,
                    "cat_ID": res.id,
                    "digest": f.digest(),
                }
                for f in res.files.values()
            ]

    def files(request: Request, name: str, **g: str) -> Response:
        if request.method != "GET":
            return file(request, name, "", **g)  # multipart: the parts' file names are used
        parent = parent_of(request, g)
        res = find(parent, name)
        if res is None:
            raise HttpError(404, f"Unable to find resource {name}")
        if (request.param("format") or "").lower() == "zip":
            return zip_of(parent, [res])
        return table(request, file_rows(parent, res), FILE_COLUMNS, total=True)

    def all_files(request: Request, **g: str) -> Response:
        """``.../files``: the files of every resource of the object (xnatpy's ``scan.files``)."""
        parent = parent_of(request, g)
        items = ([parent.dicom] if parent.dicom else []) + list(parent.resources.values())
        if (request.param("format") or "").lower() == "zip":
            return zip_of(parent, items)
        rows = [row for res in items for row in file_rows(parent, res)]
        return table(request, rows, FILE_COLUMNS, total=True)

    def file(request: Request, name: str, path: str, **g: str) -> Response:
        parent = parent_of(request, g)
        res = find(parent, name)
        if request.method == "GET":
            stored = res.files.get(path) if res else None
            if stored is None:
                raise HttpError(404, f"Unable to find file {path}")
            return Response(200, b"", "application/octet-stream", file=stored.path)
        writable(request, parent)
        if request.method == "DELETE":
            if res is None or res is parent.dicom or path not in res.files:
                raise HttpError(404, f"Unable to find file {path}")
            res.files.pop(path).path.unlink(missing_ok=True)
            return Response(200, b"", "text/plain")
        if res is parent.dicom and res is not None:
            raise HttpError(403, "The DICOM resource of a scan is managed by the importer.")
        return upload(request, parent, res, name, path)

    def upload(request: Request, parent: Parent, res: Resource | None, name: str, path: str) -> Response:
        from xnat_uploader.sandbox.importer import receive_uploads

        uploads = receive_uploads(app, request, path)
        if not uploads:
            raise HttpError(
                400,
                "You tried to PUT to this service, but didn't provide any data (found 0 files). "
                "Please try again, using inbody=true or use multipart/form-data encoding.",
            )
        res = res or create(parent, name, request)
        overwrite = request.flag("overwrite")
        duplicates: list[str] = []
        folder = parent.folder / res.label
        try:
            for up in uploads:
                rel = path if (path and len(uploads) == 1) else up.name
                kind = archive_kind(rel.lower())
                if request.flag("extract") and kind:
                    base = rel.rsplit("/", 1)[0] + "/" if "/" in rel else ""
                    for entry, temp, size in iter_entries(store, up.path, kind):
                        _put(res, folder, base + entry, temp, size, overwrite, duplicates)
                else:
                    _put(res, folder, rel, up.path, up.size, overwrite, duplicates)
        finally:
            for up in uploads:
                up.path.unlink(missing_ok=True)
        if duplicates:
            return Response(
                200, json.dumps({"duplicates": duplicates}, separators=(",", ":")).encode(), "text/html;charset=UTF-8"
            )
        return Response(200, b"", "text/plain")

    def zip_of(parent: Parent, items: list[Resource]) -> Response:
        """``format=zip``: the files as XNAT lays them out in downloads, from a temp file."""
        path = store.temp_path(".zip")
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
            for res in items:
                for name, stored in res.files.items():
                    zf.write(stored.path, f"{parent.zip_prefix}/resources/{res.label}/files/{name}")
        return Response(200, b"", "application/zip", file=path, temporary=True)

    bases = {
        "project": ROOT + r"/projects/(?P<project>[^/]+)",
        "subject": ROOT + r"/projects/(?P<project>[^/]+)/subjects/(?P<subject>[^/]+)",
        "exp_p": ROOT + r"/projects/(?P<project>[^/]+)(?:/subjects/(?P<subject>[^/]+))?/experiments/(?P<exp>[^/]+)",
        "exp": ROOT + r"/experiments/(?P<exp>[^/]+)",
    }
    for key in ("exp_p", "exp"):
        bases[key + "_scan"] = bases[key] + r"/scans/(?P<scan>[^/]+)"
    for base in bases.values():
        router.add("GET", base + r"/resources", resources)
        router.add("GET", base + r"/files", all_files)
        router.add("GET PUT POST DELETE", base + r"/resources/(?P<name>[^/]+)", resource)
        router.add("GET PUT POST", base + r"/resources/(?P<name>[^/]+)/files", files)
        router.add("GET PUT POST DELETE", base + r"/resources/(?P<name>[^/]+)/files/(?P<path>.+)", file)
        router.add("PUT POST", base + r"/resources/(?P<name>[^/]+)/(?P<junk>(?!files(?:/|$)).+)", _path_after_name)


def _path_after_name(request: Request, **_: str) -> Response:
    raise HttpError(400, "Invalid resource path: to upload files, append '/files' after the resource ID.")


def _put(
    res: Resource, folder: Path, rel: str, source: Path, size: int, overwrite: bool, duplicates: list[str]
) -> None:
    rel = "/".join(p for p in rel.replace("\\", "/").split("/") if p not in ("", ".", ".."))
    if rel in res.files and not overwrite:
        duplicates.append(rel)
        source.unlink(missing_ok=True)
        return
    dest = folder / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(source), str(dest))
    res.files[rel] = StoredFile(rel, dest, size)
