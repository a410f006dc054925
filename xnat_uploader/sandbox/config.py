"""The config service's two tools an uploader reads: anonymization scripts (xnat-api.md section 8,
also their XAPI views) and series import filters (``seriesImportFilter/config``, xnat-api.md 14).

Tests set them with :meth:`SandboxServer.set_anon_script` and :meth:`SandboxServer.set_series_filter`;
a missing one is XNAT's 404 (or 204 with ``accept-not-found=true``), a disabled one is returned with
``status: disabled``. The sandbox stores anonymization scripts without applying them; series import
filters act on received files (:mod:`xnat_uploader.sandbox.filters`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from xnat_uploader.sandbox.httpd import HttpError, Request, Response, Router
from xnat_uploader.sandbox.listings import project_for
from xnat_uploader.sandbox.store import now_sql
from xnat_uploader.sandbox.tables import table

if TYPE_CHECKING:
    from xnat_uploader.sandbox.app import App


@dataclass
class AnonScript:
    contents: str
    enabled: bool = True
    version: int = 1
    created: str = ""


def register(router: Router, app: App) -> None:
    scripts: dict[str | None, AnonScript] = app.anon_scripts  # None = site-wide
    filters: dict[str | None, AnonScript] = app.series_filters  # type: ignore[assignment]

    def answer(
        request: Request, key: str | None, path: str, tool: str = "anon", configs: dict | None = None
    ) -> Response:
        configs = scripts if configs is None else configs
        script = configs.get(key)
        if script is None:
            if request.flag("accept-not-found"):
                return Response(204, b"", "text/plain")
            raise HttpError(404, f"Couldn't find config for user {request.user.login} on tool [{tool}] path [{path}]")
        if request.flag("contents"):
            if not script.enabled:
                raise HttpError(404, f"The config for tool [{tool}] path [{path}] is disabled")
            return Response.text(script.contents)
        row = {
            "tool": tool,
            "path": path,
            "project": key or "",
            "user": "admin",
            "create_date": script.created,
            "reason": "",
            "contents": script.contents,
            "unversioned": "false",
            "version": script.version,
            "status": "enabled" if script.enabled else "disabled",
        }
        return table(request, [row])

    def site_config(request: Request) -> Response:
        return answer(request, None, "script")

    def project_config(request: Request, project: str, other: str) -> Response:
        proj = project_for(app, request, project)
        return answer(request, proj.id, f"/projects/{other}")

    def xapi_site(request: Request, enabled: str | None = None) -> Response:
        script = scripts.get(None)
        if enabled:
            return Response(200, json.dumps(bool(script and script.enabled)).encode(), "application/json")
        return Response.text(script.contents if script else "")

    def xapi_project(request: Request, project: str, enabled: str | None = None) -> Response:
        proj = project_for(app, request, project)
        script = scripts.get(proj.id)
        if enabled:
            return Response(200, json.dumps(bool(script and script.enabled)).encode(), "application/json")
        if script is None:
            return Response(204, b"", "text/plain")
        return Response.text(script.contents)

    def filter_site(request: Request) -> Response:
        return answer(request, None, "config", "seriesImportFilter", filters)

    def filter_project(request: Request, project: str) -> Response:
        return answer(request, project_for(app, request, project).id, "config", "seriesImportFilter", filters)

    router.add("GET", r"/(?:data|REST)/config/seriesImportFilter/config", filter_site)
    router.add("GET", r"/(?:data|REST)/projects/(?P<project>[^/]+)/config/seriesImportFilter/config", filter_project)
    router.add("GET", r"/(?:data|REST)/config/anon/script", site_config)
    router.add(
        "GET", r"/(?:data|REST)/projects/(?P<project>[^/]+)/config/anon/projects/(?P<other>[^/]+)", project_config
    )
    router.add("GET", r"/xapi/anonymize/site(?:/(?P<enabled>enabled))?", xapi_site)
    router.add("GET", r"/xapi/anonymize/projects/(?P<project>[^/]+)(?:/(?P<enabled>enabled))?", xapi_project)


def make_script(contents: str, enabled: bool, previous: AnonScript | None) -> AnonScript:
    return AnonScript(contents, enabled, (previous.version + 1) if previous else 1, now_sql())
