"""The public stream over HTTP (issue 14): ``GET /api/v1/stream`` as Server-Sent Events, and the JSON
Schema of the messages' ``data`` (``GET /api/v1/schemas/{name}/{version}``).

Each SSE event is one CloudEvent: ``id`` = the stream cursor, ``event`` = the CloudEvent type, ``data`` =
the CloudEvent JSON on one line. A client that reconnects with ``Last-Event-ID`` (browsers' EventSource
do it by themselves) continues right after that message: nothing skipped, nothing twice, within the
retention (an older cursor answers 410). Without it the stream starts with the next message
(``from=latest``, the default) or with the oldest retained one (``from=earliest``). ``types`` keeps only
the listed CloudEvent types. A connection is closed after ``MAX_CONNECTION_S`` (the client resumes);
a comment line keeps idle connections open.
"""

from __future__ import annotations

import re
import time

from aiohttp import web

from ingest.errors import Rejected, bad_request
from ingest.http.api import STRING, Answer, Endpoint, Param
from ingest.http.auth import require_admin
from schemas.stream.models import StreamType
from schemas.stream.schema_files import stored
from schemas.stream.source import CursorError, StreamSource, StreamUnavailable

STREAM = web.AppKey("stream", StreamSource)
CLOSING = web.AppKey("stream_closing", dict)  # {"closing": bool}: the app is shutting down

PROJECT = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
BATCH = 500
KEEPALIVE_S = 15.0
POLL_S = 1.0  # how often an idle connection looks at its client and at shutdown
MAX_CONNECTION_S = 3600.0
QUERY = {"project", "types", "from"}


def _source(request: web.Request) -> StreamSource:
    found = request.app.get(STREAM)
    if found is None:
        raise Rejected(503, "stream_unavailable", "this process does not serve the stream")
    return found


def _types(text: str | None) -> frozenset[str] | None:
    if text is None:
        return None
    wanted = frozenset(t.strip() for t in text.split(",") if t.strip())
    known = {t.value for t in StreamType}
    unknown = sorted(wanted - known)
    if unknown or not wanted:
        raise bad_request("invalid_field", f"types: unknown stream type(s) {unknown}; known: {sorted(known)}")
    return wanted


async def get_stream(request: web.Request) -> web.StreamResponse:
    require_admin(request)
    query = request.rel_url.query
    extra = sorted(set(query) - QUERY)
    if extra:
        raise bad_request("invalid_query", f"unknown query parameter(s) {extra}")
    project = query.get("project")
    if project is None or not PROJECT.match(project):
        raise bad_request("invalid_field", "project: required, 1-128 of A-Z a-z 0-9 . _ : -")
    types = _types(query.get("types"))
    start = query.get("from", "latest")
    if start not in ("latest", "earliest"):
        raise bad_request("invalid_field", "from: latest or earliest")
    source = _source(request)
    last = request.headers.get("Last-Event-ID")
    try:
        if last:
            after: str | None = last.strip()
        elif start == "latest":
            after = await source.latest(project)
        else:
            after = None
        items = await source.read(project, after, BATCH, 0.0)  # a bad cursor is refused before the stream
    except CursorError as exc:
        raise Rejected(
            410 if exc.expired else 400, "cursor_expired" if exc.expired else "invalid_cursor", str(exc)
        ) from None
    except StreamUnavailable as exc:
        raise Rejected(503, "stream_unavailable", str(exc)) from None

    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    await response.write(b"retry: 2000\n\n")
    closing = request.app.get(CLOSING, {})
    ends = time.monotonic() + MAX_CONNECTION_S
    written = time.monotonic()
    try:
        while _open(request) and not closing.get("closing") and time.monotonic() < ends:
            out = bytearray()
            for item in items:
                after = item.cursor
                if types is None or item.type in types:
                    out += b"id: %s\nevent: %s\ndata: %s\n\n" % (
                        item.cursor.encode(),
                        item.type.encode(),
                        item.body,
                    )
            if out or time.monotonic() - written >= KEEPALIVE_S:
                await response.write(bytes(out) if out else b": keepalive\n\n")
                written = time.monotonic()
            items = await source.read(project, after, BATCH, POLL_S)
    except (ConnectionResetError, StreamUnavailable):
        pass  # the client left, or the stream failed: the client resumes from its last id
    return response


def _open(request: web.Request) -> bool:
    return request.transport is not None and not request.transport.is_closing()


async def on_shutdown(app: web.Application) -> None:
    """Open streams end within ``POLL_S`` (clients resume from their last id on another edge)."""
    app.setdefault(CLOSING, {})["closing"] = True


async def get_schema(request: web.Request) -> web.Response:
    name, version = request.match_info["name"], request.match_info["version"]
    try:
        body = stored(f"{name}/{version}")
    except KeyError:
        raise Rejected(404, "not_found", f"no schema {name}/{version}") from None
    return web.Response(body=body, content_type="application/schema+json")


ENDPOINTS = (
    Endpoint(
        "GET",
        ("/api/v1/stream",),
        get_stream,
        "The public conversion stream as Server-Sent Events (CloudEvents), resumable with Last-Event-ID",
        "stream",
        Answer(200, "an endless event stream", schema=STRING, media_type="text/event-stream"),
        errors=(400, 410, 503),
        auth="admin",
        allow_head=False,
        params=(
            Param("project", "the project whose messages are streamed", required=True),
            Param("types", "comma-separated CloudEvent types to keep (default: all)"),
            Param("from", "without Last-Event-ID: latest (default, new messages only) or earliest"),
            Param("Last-Event-ID", "resume right after this message id", where="header"),
        ),
    ),
    Endpoint(
        "GET",
        ("/api/v1/schemas/{name}/{version}",),
        get_schema,
        "JSON Schema of the stream messages' data (e.g. conversion/v1)",
        "stream",
        Answer(200, "the JSON Schema", schema={"type": "object"}, media_type="application/schema+json"),
        errors=(404,),
        params=(
            Param("name", "schema name, e.g. conversion", where="path", required=True),
            Param("version", "major version, e.g. v1", where="path", required=True),
        ),
    ),
)
