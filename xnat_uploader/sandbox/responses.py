"""The sandbox's answers: the :class:`Response` object, and error bodies that look like XNAT's.

Error pages are the Restlet 1.1 status page for REST resources and the Tomcat page for the security layer
(xnat-api.md section 1.4). :class:`HttpError` is how a handler (or the HTTP layer) answers with one.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path


class HttpError(Exception):
    """An error answer. ``page`` picks the body style: ``restlet`` (default), ``tomcat`` or ``text``."""

    def __init__(self, status: int, message: str = "", page: str = "restlet", headers: dict[str, str] | None = None):
        super().__init__(message or str(status))
        self.status = status
        self.message = message
        self.page = page
        self.headers = headers or {}


class DropConnection(Exception):
    """Raised by a fault to close the socket without any answer."""


REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    301: "Moved Permanently",
    302: "Found",
    303: "See Other",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    409: "Conflict",
    413: "Request Entity Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
}


def restlet_page(status: int, message: str) -> bytes:
    """Restlet 1.1's default status page, the body of most XNAT REST errors (pyxnat parses the ``<h3>``)."""
    section = f"sec10.4.{status - 399}" if status < 500 else f"sec10.5.{status - 499}"
    text = html.escape(message or REASONS.get(status, "Error"), quote=False)
    return (
        "<html>\n<head>\n   <title>Status page</title>\n</head>\n<body>\n"
        f"<h3>{text}</h3><p>You can get technical details "
        f'<a href="http://www.w3.org/Protocols/rfc2616/rfc2616-{section}">here</a>.<br>\n'
        'Please continue your visit at our <a href="/">home page</a>.\n</p>\n</body>\n</html>\n'
    ).encode()


def tomcat_page(status: int, message: str) -> bytes:
    """Tomcat 9's error report, the body of errors raised in XNAT's Spring security layer."""
    reason = REASONS.get(status, "Error")
    text = html.escape(message or reason, quote=False)
    return (
        '<!doctype html><html lang="en"><head><title>HTTP Status '
        f'{status} – {reason}</title><style type="text/css">body {{font-family:Tahoma,Arial,sans-serif;}}'
        "</style></head><body>"
        f'<h1>HTTP Status {status} – {reason}</h1><hr class="line" /><p><b>Type</b> Status Report</p>'
        f"<p><b>Message</b> {text}</p><p><b>Description</b> The request has not been applied to the target "
        "resource because it lacks valid authentication credentials for that resource.</p>"
        '<hr class="line" /><h3>Apache Tomcat/9.0.82</h3></body></html>'
    ).encode()


@dataclass
class Response:
    """An answer. ``body`` is bytes, or ``file`` names a file streamed from disk."""

    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain"
    headers: list[tuple[str, str]] = field(default_factory=list)
    file: Path | None = None
    temporary: bool = False  # delete ``file`` once sent (generated zips)

    @classmethod
    def text(cls, text: str, status: int = 200, content_type: str = "text/plain") -> Response:
        return cls(status, text.encode(), f"{content_type};charset=UTF-8")

    @classmethod
    def error(cls, err: HttpError) -> Response:
        if err.page == "tomcat":
            resp = cls(err.status, tomcat_page(err.status, err.message), "text/html;charset=utf-8")
        elif err.page == "text":
            resp = cls.text(err.message, err.status)
        else:
            resp = cls(err.status, restlet_page(err.status, err.message), "text/html;charset=UTF-8")
        resp.headers.extend(err.headers.items())
        return resp
