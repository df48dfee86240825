"""The dashboard: ``GET /`` and its files under ``ingest/read/static/`` (package data), served by the edge
itself.

Plain HTML + vanilla JS (one small file per view, sharing ``window.TP``) + inline SVG, no build step and
nothing from other hosts. The page reads the report API like any other client: the Top-5 with its filters
and time series, the pickers' lists, a link's analytics, an experiment's report (ingest/read/reports.py,
ingest/read/report_views.py); with the admin key also the goals and links (created and edited there), the
delivery health (``/api/v1/endpoints``, dead ``/api/v1/deliveries``) and the alert rules with their state
and last transitions (``/api/v1/alerts``). The files are read once when the routes are
added and served from memory: only the names found there exist, so no path from a request ever reaches
the file system.
"""

from __future__ import annotations

from importlib import resources
from pathlib import PurePosixPath

from aiohttp import web

from ingest.http.api import Answer, Endpoint, Param, register

_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
}

#: Everything comes from this origin; no inline script or style, so data can never become code.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def load_static() -> dict[str, tuple[bytes, str]]:
    """The dashboard files by name: (content, content type)."""
    folder = resources.files("ingest.read") / "static"
    files = {}
    for entry in folder.iterdir():
        ctype = _TYPES.get(PurePosixPath(entry.name).suffix)
        if ctype and entry.is_file():
            files[entry.name] = (entry.read_bytes(), ctype)
    if "index.html" not in files:
        raise RuntimeError("ingest/read/static/index.html is missing: is the package data installed?")
    return files


STATIC = web.AppKey("dashboard_files", dict[str, tuple[bytes, str]])


def _respond(request: web.Request, name: str) -> web.Response:
    body, ctype = request.app[STATIC][name]
    return web.Response(body=body, content_type=ctype, charset="utf-8", headers=SECURITY_HEADERS)


async def index(request: web.Request) -> web.Response:
    return _respond(request, "index.html")


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in request.app[STATIC]:
        raise web.HTTPNotFound()
    return _respond(request, name)


ENDPOINTS = (
    Endpoint(
        "GET", ("/",), index, "Dashboard page", "dashboard", Answer(200, "HTML", media_type="text/html")
    ),
    Endpoint(
        "GET",
        ("/static/{name}",),
        static,
        "Dashboard files",
        "dashboard",
        Answer(
            200, "the file", media_type="text/javascript", also=("text/css", "text/html", "image/svg+xml")
        ),
        (404,),
        params=(Param("name", "file name", where="path"),),
    ),
)


def add_dashboard_routes(app: web.Application) -> None:
    """The routes, with the files read now (served from memory)."""
    app[STATIC] = load_static()
    register(app, ENDPOINTS)
