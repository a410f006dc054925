"""Site-level endpoints: login/logout (``/data/JSESSION``), ``/data/auth``, build info, users, DICOM SCP list.

xnat-api.md sections 2 and 7. ``/data/version`` is deliberately absent (404), as on XNAT 1.7+.
"""

from __future__ import annotations

import json
import socket
import time
from typing import TYPE_CHECKING

from xnat_uploader.sandbox import schema
from xnat_uploader.sandbox.dicom_scp import receivers
from xnat_uploader.sandbox.httpd import HttpError, Request, Response, Router

if TYPE_CHECKING:
    from xnat_uploader.sandbox.app import App


def register(router: Router, app: App) -> None:
    def root(request: Request) -> Response:
        # XNAT's root is its (HTML) start page; clients such as xnatpy only look for redirects.
        page = "<!DOCTYPE html><html><head><title>XNAT sandbox</title></head><body>XNAT sandbox</body></html>"
        return Response.text(page, content_type="text/html")

    def login_page(request: Request) -> Response:
        page = '<!DOCTYPE html><html><body><form name="form1" method="post" action="/xnat/login"></form></body></html>'
        return Response.text(page, content_type="text/html")

    def change_password_page(request: Request) -> Response:
        page = '<!DOCTYPE html><html><body><h2>Your password has expired</h2><form name="form1"></form></body></html>'
        return Response.text(page, content_type="text/html")

    def jsession(request: Request) -> Response:
        if request.method == "DELETE":
            app.auth.invalidate(request.session_id)
            request.new_cookie = None
            return Response(200, b"", "text/plain")
        if request.new_cookie is None and request.session_id and request.cookie("JSESSIONID") != request.session_id:
            request.new_cookie = request.session_id
        body = request.session_id or ""
        if request.flag("CSRF"):
            session = app.auth.lookup(request.session_id)
            body = f"{body}; XNAT_CSRF={session.csrf if session else ''}"
        return Response(200, body.encode(), "text/plain;charset=UTF-8")

    def services_auth(request: Request) -> Response:
        """``PUT /data/services/auth`` with form ``username``/``password``: a new session id (xnatpy logs in so)."""
        request.load_form()
        user = app.auth.check_password(request.param("username") or "", request.param("password") or "")
        if user is None:
            raise HttpError(401, "Login attempt failed. Please try again.")
        session = app.auth.new_session(user)
        request.new_cookie = session.id
        request.user = user
        return Response(200, session.id.encode(), "text/plain;charset=UTF-8")

    def whoami(request: Request) -> Response:
        return Response.text(f"User '{request.user.login}' is logged in")

    def build_info(request: Request, key: str | None = None) -> Response:
        info = {
            "version": app.settings.version,
            "buildNumber": "sandbox",
            "buildDate": time.strftime("%a %b %d %H:%M:%S UTC %Y", time.gmtime(app.started)),
            "sha": "0000000",
            "shaFull": "0" * 40,
            "branch": "sandbox",
            "commit": "sandbox",
            "tag": app.settings.version,
            "isDirty": "false",
            "timestamp": str(int(app.started * 1000)),
            "hostName": socket.gethostname(),
            "displayHostName": "xnat-sandbox",
            "nodeId": "",
        }
        if key is not None:
            if key not in info:
                raise HttpError(404, f"No build property named {key}")
            return Response.text(info[key])
        return _json(info)

    def uptime(request: Request) -> Response:
        seconds = int(time.time() - app.started)
        return _json(
            {
                "days": seconds // 86400,
                "hours": seconds // 3600 % 24,
                "minutes": seconds // 60 % 60,
                "seconds": seconds % 60,
            }
        )

    def signed_in_only(request: Request) -> None:
        """XAPI calls at the Authenticated or User level turn the guest away with 401 even on an open site
        (AbstractXapiAuthorization.check, XapiRequestMappingAspect)."""
        if request.user.guest:
            raise HttpError(401, "", page="text", headers={"WWW-Authenticate": 'Basic realm="XNAT"'})

    def users_me(request: Request, login: str | None = None) -> Response:
        signed_in_only(request)
        login = login or request.user.login
        user = app.auth.users.get(login)
        if user is None:
            raise HttpError(404, f"User {login} not found")
        if not request.user.admin and login != request.user.login:
            raise HttpError(403, "Forbidden")
        return _json(
            {
                "username": user.login,
                "enabled": True,
                "verified": True,
                "admin": user.admin,
                "firstName": user.first_name,
                "lastName": user.last_name,
                "email": user.email,
            }
        )

    def username(request: Request) -> Response:
        signed_in_only(request)
        return Response.text(request.user.login)

    def dicomscp(request: Request) -> Response:
        # XNAT lists its receivers here; a sandbox started without a DICOM port answers as a site
        # without receivers: an empty list.
        return _json([receiver.describe() for receiver in receivers(app)])

    def schemas(request: Request, name: str | None = None) -> Response:
        if name is None:
            return _json(list(schema.SCHEMAS))
        if name.removesuffix(".xsd") not in schema.SCHEMAS:
            raise HttpError(404, f"No schema named {name}")
        return Response(200, schema.xnat_xsd().encode(), "application/xml;charset=UTF-8")

    def search_elements(request: Request, element: str | None = None) -> Response:
        """Searchable data types and their display fields (xnatpy reads these at connect time)."""
        from xnat_uploader.sandbox.tables import table

        if element is None:
            with app.store.lock:
                counts = {"xnat:projectData": len(app.store.projects), "xnat:subjectData": len(app.store.subjects)}
                for exp in app.store.experiments.values():
                    counts[exp.xsi_type] = counts.get(exp.xsi_type, 0) + 1
            rows = [
                {
                    "ELEMENT_NAME": name,
                    "PLURAL": plural,
                    "SINGULAR": singular,
                    "CATEGORY": "",
                    "SECURED": "true",
                    "BROWSEABLE": "true",
                    "COUNT": counts.get(name, 0),
                }
                for name, singular, plural in _ELEMENTS
            ]
            return table(
                request, rows, ["ELEMENT_NAME", "PLURAL", "SINGULAR", "CATEGORY", "SECURED", "BROWSEABLE", "COUNT"]
            )
        if element not in {e[0] for e in _ELEMENTS}:
            raise HttpError(404, f"Unknown element {element}")
        fields = ["ID", "LABEL", "PROJECT"] if element != "xnat:projectData" else ["ID", "NAME", "DESCRIPTION"]
        if element not in ("xnat:projectData", "xnat:subjectData"):
            fields += ["DATE", "SUBJECT_ID", "INSERT_DATE"]
        rows = [
            {
                "FIELD_ID": f,
                "HEADER": f.title(),
                "SUMMARY": f.title(),
                "TYPE": "string",
                "REQUIRES_VALUE": "false",
                "DESC": "",
                "ELEMENT_NAME": element,
                "SRC": "0",
            }
            for f in fields
        ]
        return table(
            request, rows, ["FIELD_ID", "HEADER", "SUMMARY", "TYPE", "REQUIRES_VALUE", "DESC", "ELEMENT_NAME", "SRC"]
        )

    router.add("GET", r"/(?:data|REST)/search/elements(?:/(?P<element>[^/]+))?", search_elements)
    router.add("GET", r"/xapi/schemas(?:/(?P<name>[^/]+))?", schemas)
    router.add("GET", r"/", root)
    router.add("GET POST", r"/app/template/Login\.vm", login_page)
    router.add("GET", r"/app/template/XDATScreen_UpdateUser\.vm", change_password_page)
    router.add("GET POST DELETE", r"/(?:data|REST)/JSESSION", jsession)
    router.add("PUT POST", r"/data/services/auth", services_auth)
    router.add("GET", r"/(?:data|REST)/auth", whoami)
    router.add("GET", r"/xapi/siteConfig/buildInfo(?:/(?P<key>[^/]+))?", build_info)
    router.add("GET", r"/xapi/siteConfig/uptime", uptime)
    router.add("GET", r"/xapi/users/username", username)
    router.add("GET", r"/xapi/users/profile", users_me)
    router.add("GET", r"/xapi/users/(?P<login>[^/]+)", users_me)
    router.add("GET", r"/xapi/dicomscp", dicomscp)


_ELEMENTS = [
    ("xnat:projectData", "Project", "Projects"),
    ("xnat:subjectData", "Subject", "Subjects"),
    ("xnat:mrSessionData", "MR Session", "MR Sessions"),
    ("xnat:ctSessionData", "CT Session", "CT Sessions"),
    ("xnat:petSessionData", "PET Session", "PET Sessions"),
    ("xnat:otherDicomSessionData", "Other DICOM Session", "Other DICOM Sessions"),
]


def _json(obj: object, status: int = 200) -> Response:
    return Response(status, json.dumps(obj).encode(), "application/json;charset=UTF-8")
