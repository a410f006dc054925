"""``POST /data/services/import``: reading the upload and choosing the handler (xnat-api.md 3.1-3.5).

The handlers themselves live in :mod:`xnat_uploader.sandbox.handlers`. This module decides how the
file arrives (in-body or multipart, sized or chunked), what it is called (the name decides zip vs
tar for DICOM-zip) and which handler runs, with XNAT's status codes and messages.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from xnat_uploader.sandbox import multipart
from xnat_uploader.sandbox.httpd import HttpError, Request, Response, Router

if TYPE_CHECKING:
    from xnat_uploader.sandbox.app import App

# Content-Type -> extension of the derived file name "upload<ext>" (RequestUtil.deriveFileName).
_EXTENSIONS = {
    "application/zip": ".zip",
    "application/dicom": ".dcm",
    "application/x-tar": ".tar",
    "application/x-gtar": ".tar.gz",
    "application/x-gzip": ".gzip",
    "application/xar": ".xar",
    "application/pdf": ".pdf",
    "application/octet-stream": "",
    "application/*": "",
    "text/plain": ".txt",
    "text/xml": ".xml",
    "text/csv": ".csv",
    "text/html": ".html",
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/gif": ".gif",
}
_IN_BODY_PREFIXES = ("text/", "application/", "image/", "video/", "audio/")
_NOT_IN_BODY = ("application/x-www-form-urlencoded", "multipart/form-data")
IN_BODY_SIZE = (
    "In-body File posts must include the file directly as the body of the message. In this case, the request "
    "entity size is {size} but the media type is not application/zip (i.e. streaming compressed upload)."
)
GRADUAL_TYPES = ("application/dicom", "application/x-mirc", "application/x-mirc-dicom")
HANDLERS = ("SI", "gradual-DICOM", "DICOM-zip", "XAR", "inbox")
HANDLERS_WITHOUT_FILES = ("inbox",)  # @ImporterHandler(allowCallsWithoutFiles = true)


@dataclass
class Upload:
    """One received file, already on disk in the cache folder (not hashed: a stored file computes
    its SHA-256 when first asked, :meth:`StoredFile.digest`)."""

    name: str
    path: Path
    size: int


def derive_name(content_type: str) -> str:
    return "upload" + _EXTENSIONS.get(content_type, ".unsupported")


def is_in_body(request: Request) -> bool:
    """``inbody=true`` or a "supported upload type" as Content-Type (RequestUtil.isFileInBody)."""
    ctype = request.content_type
    if any(k == "inbody" and v.lower() not in ("false", "0") for k, v in request.query):
        return True
    return bool(ctype) and ctype not in _NOT_IN_BODY and ctype.startswith(_IN_BODY_PREFIXES)


def receive_uploads(app: App, request: Request, filepath: str = "") -> list[Upload]:
    """Read the request's file(s) to disk, and its form fields into the request's parameters.

    Shared with the resource file upload, which follows the same rules (SecureResource).
    """
    store = app.store
    ctype = request.content_type
    if is_in_body(request):
        if ctype == "multipart/form-data":
            raise HttpError(
                406,
                "In-body File posts must include the file directly as the body of the message "
                "(not as part of multi-part form data).",
            )
        name = filepath or derive_name(ctype)
        # SecureResource: a body of unknown (chunked) or zero size is refused unless it is application/zip.
        size_seen = -1 if request.body.chunked or request.body.length is None else request.body.length
        if size_seen < 1 and ctype != "application/zip":
            raise HttpError(400, IN_BODY_SIZE.format(size=size_seen))
        path, out = store.temp_file()
        try:
            with out:
                size = request.body.save(out)
        except BaseException:
            path.unlink(missing_ok=True)  # a connection lost mid-body leaves no partial file behind
            raise
        return [Upload(name, path, size)]
    if ctype == "multipart/form-data":
        created: list[Path] = []

        def new_file() -> BinaryIO:
            path, out = store.temp_file()
            created.append(path)
            return out

        try:
            parts = multipart.parse(request.body, request.headers.get("Content-Type", ""), new_file)
        except BaseException:
            for path in created:
                path.unlink(missing_ok=True)
            raise
        uploads = []
        for part in parts:
            if part.path is None:
                if part.name == "reference":
                    raise HttpError(400, "multi-part form posts may not be used to upload files via reference.")
                request.form.append((part.name, part.value))
                continue
            if not part.filename:
                raise HttpError(400, "multi-part form posts must contain the file name of the uploaded file.")
            uploads.append(Upload(part.filename.replace("\\", "/").rsplit("/", 1)[-1], part.path, part.size))
        return uploads
    request.load_form()
    return []


def register(router: Router, app: App) -> None:
    from xnat_uploader.sandbox import handlers

    def import_service(request: Request, remainder: str = "") -> Response:
        """The checks run in the order of XNAT's ``Importer.handlePost``."""
        from xnat_uploader.sandbox.tables import uri_list

        uploads = receive_uploads(app, request, remainder)
        try:
            name = request.param("import-handler")
            if not uploads and name is not None and name not in HANDLERS_WITHOUT_FILES:
                raise HttpError(400, "Unable to identify upload format.")
            if len(uploads) > 1:
                raise HttpError(400, "Importer is limited to one uploaded resource at a time.")
            _prearchive_code_quirk(app, request)
            if name is None:
                if request.content_type in GRADUAL_TYPES:
                    name = "gradual-DICOM"
                elif not uploads:
                    # XNAT indexes the empty file list here and fails with an internal error.
                    raise HttpError(500, "Index 0 out of bounds for length 0")
                else:
                    name = "DICOM-zip" if app.settings.default_importer == "DICOM-zip" else "SI"
            canonical = next((h for h in HANDLERS if h.lower() == name.lower()), None)
            if canonical is None:
                raise HttpError(404, f"Unknown importer implementation specified: {name}")
            uris = handlers.run(app, request, canonical, uploads[0] if uploads else None)
        except HttpError as err:
            if (request.param("format") or "").lower() != "html":
                raise
            # Importer.respondToException: with format=html the message goes into a 200 page.
            return Response(200, _html([err.message]).encode(), "text/html;charset=UTF-8")
        finally:
            for upload in uploads:
                upload.path.unlink(missing_ok=True)
        if (request.param("format") or "").lower() == "html":
            return Response(200, _html(uris).encode(), "text/html;charset=UTF-8")
        return uri_list(uris, request)

    router.add("POST", r"/(?:data|REST)/services/import(?:/(?P<remainder>.+))?", import_service)


def _prearchive_code_quirk(app: App, request: Request) -> None:
    """``prearchive_code=1`` ("archive directly"): XNAT's check rejects *every* explicit ``overwrite``
    (its condition can never be false); without one, overwrite comes from the project's code."""
    if request.param("prearchive_code") != "1":
        return
    if request.param("overwrite") is not None:
        raise HttpError(400, "Overwrite flag was not set to a valid option. ('append' or 'delete')")
    project = app.store.find_project(request.param("project"))
    request.query.append(("overwrite", "delete" if project is not None and project.prearchive_code == 5 else "append"))


def _html(lines: list[str]) -> str:
    """The legacy applet page: one line per URI (or the error message)."""
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    return f"<html><head></head><body class='yui-skin-sam'><ul>{items}</ul></body></html>"
