"""The route table: every endpoint of the edge declared once, with what it reads and what it answers.

Route modules list their ``Endpoint`` s; :func:`register` adds them to the app's router and keeps the
table on the app, and :mod:`ingest.http.openapi` builds ``/openapi.json`` from that same table, so a
route cannot exist undocumented (:func:`check_documented`) and a field of a parsing model is
documented by existing. Where a handler parses the query string by hand, its parameters are the
``Param`` s of its entry; a test records what the handlers read and checks it against them
(tests/integration/test_api_documented.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel

Schema = dict[str, Any]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: Who may call: anyone, the admin key, a read key (or loopback without keys), the metrics key (idem).
Auth = Literal["none", "admin", "read", "metrics"]
#: The shape of the error answers: ``{"error": {...}}``, Pushwoosh's own, or the pixel GIF.
ErrorShape = Literal["json", "pushwoosh", "gif"]

STRING: Schema = {"type": "string"}


@dataclass(frozen=True)
class Param:
    """A parameter a handler reads by hand. ``style="deepObject"``: PHP bracket notation under this root
    name (``seg[devices][]=DESK``); ``style="form"`` with an object schema: every property (or
    ``patternProperties`` name) is a parameter of its own."""

    name: str
    description: str
    schema: Schema = field(default_factory=lambda: dict(STRING))
    required: bool = False
    where: Literal["query", "path", "header"] = "query"
    style: Literal["form", "deepObject"] | None = None


@dataclass(frozen=True)
class Body:
    """The JSON body, described by the pydantic model that parses it. ``wrapper``: the model may also
    come as ``{wrapper: {...}}`` (``wrapped="required"``: only so)."""

    model: type[BaseModel]
    required: bool = True
    wrapper: str | None = None
    wrapped: Literal["optional", "required"] = "optional"
    description: str = ""


@dataclass(frozen=True)
class Answer:
    """The success answer: a pydantic model (JSON), a raw JSON schema, or a media type only."""

    status: int
    description: str
    model: type[BaseModel] | None = None
    schema: Schema | None = None
    media_type: str | None = "application/json"
    also: tuple[str, ...] = ()  # further media types of the same answer (e.g. text/csv of a report)
    headers: tuple[tuple[str, str], ...] = ()  # (name, description)


@dataclass(frozen=True)
class Endpoint:
    method: str
    paths: tuple[str, ...]
    handler: Handler
    summary: str
    tag: str
    answer: Answer
    errors: tuple[int, ...] = ()  # error statuses it may answer (the auth's are added: 401, 403, ...)
    other: tuple[Answer, ...] = ()  # further answers in their own shape (e.g. /healthz's 503)
    auth: Auth = "none"
    body: Body | None = None
    query_model: type[BaseModel] | None = None  # a handler that parses the query with a model
    from_path: tuple[str, ...] = ()  # fields of query_model the handler fills from the path
    params: tuple[Param, ...] = ()  # path parameters and hand-read query parameters
    error_shape: ErrorShape = "json"
    allow_head: bool = True  # GET only: aiohttp's HEAD twin

    def param_names(self) -> set[str]:
        names = {p.name for p in self.params if p.where == "query"}
        if self.query_model is not None:
            names |= query_names(self.query_model) - set(self.from_path)
        return names


def query_names(model: type[BaseModel]) -> set[str]:
    """The parameter names of a model parsing a query string (its fields' aliases)."""
    return {f.alias or n for n, f in model.model_fields.items()}


@dataclass
class RouteTable:
    """The endpoints :func:`register` added to one app, and their document once built."""

    endpoints: list[Endpoint] = field(default_factory=list)
    document: bytes | None = None


ROUTES = web.AppKey("routes", RouteTable)


def register(app: web.Application, endpoints: Iterable[Endpoint]) -> None:
    table = app.setdefault(ROUTES, RouteTable())
    for ep in endpoints:
        table.endpoints.append(ep)
        for path in ep.paths:
            if ep.method == "GET":
                app.router.add_get(path, ep.handler, allow_head=ep.allow_head)
            else:
                app.router.add_route(ep.method, path, ep.handler)


def undocumented_routes(app: web.Application) -> set[tuple[str, str]]:
    """(method, path) of routes on the router that no registered endpoint declares."""
    table = app.get(ROUTES, RouteTable())
    declared = {(ep.method, path) for ep in table.endpoints for path in ep.paths}
    routes = {
        (r.method, r.resource.canonical)
        for r in app.router.routes()
        if r.resource is not None and r.method not in ("HEAD", "OPTIONS")
    }
    return routes - declared


def check_documented(app: web.Application) -> None:
    """Refuse an app with a route added past the table (it would be missing from ``/openapi.json``)."""
    missing = undocumented_routes(app)
    if missing:
        raise RuntimeError(f"routes not declared in the route table (ingest/http/api.py): {sorted(missing)}")
