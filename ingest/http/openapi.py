"""``GET /openapi.json``: the edge's API in OpenAPI 3.1, generated from the route table
(:mod:`ingest.http.api`) the routes were registered from. Bodies and model-parsed query strings are
described by the pydantic models that parse them (their own JSON Schema), hand-read parameters by the
endpoint entries. A test runs schemathesis against the running edge with this document
(tests/integration/test_inputs_openapi.py); tests/integration/test_api_documented.py checks that every
field and parameter a handler reads is in it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import orjson
from aiohttp import web
from pydantic import BaseModel

from ingest.http.answers import Error, PushwooshAnswer
from ingest.http.api import ROUTES, Answer, Body, Endpoint, Param, Schema

REF = "#/components/schemas/{model}"

#: What each error status means, one text per status (the endpoint entries list which they answer).
ERRORS = {
    400: "bad input: the answer names the field and the problem",
    401: "missing or wrong credentials (the answer does not say which)",
    403: "not allowed: the admin API is disabled (no admin key), a read without a key from another host, "
    "or a key that may not read this project",
    404: "unknown resource (link, goal, token, file)",
    408: "the body did not arrive within body_read_timeout_s; the connection is closed",
    409: "the resource's state does not allow it (a delivered delivery is not retried)",
    410: "gone: a stream cursor older than the retained messages",
    413: "body larger than max_body_bytes, or too many events / attributes in one request",
    429: "rate limit of the token / application / admin key exceeded, or too many wrong keys",
    501: "reports (and the delivery log) are not configured on this edge",
    503: "not stored or not available (overloaded, not durable, configuration store unavailable): retry",
}
_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "string"}}}
_AUTH_ERRORS = {
    "none": (),
    "admin": (401, 403, 429, 503),
    "read": (401, 403, 429),
    "metrics": (401, 403, 429),
}
_SECURITY: dict[str, list[Schema]] = {
    "admin": [{"bearerAuth": []}],
    "read": [{"bearerAuth": []}, {}],
    "metrics": [{"bearerAuth": []}, {}],
}
_GIF_HEADERS = (("Cache-Control", "no-store, no-cache"),)


class _Components:
    """Collects the models' JSON Schemas under ``#/components/schemas``."""

    def __init__(self) -> None:
        self.schemas: Schema = {}

    def ref(self, model: type[BaseModel], mode: Literal["validation", "serialization"]) -> Schema:
        schema = model.model_json_schema(by_alias=True, mode=mode, ref_template=REF)
        self.schemas.update(schema.pop("$defs", {}))
        name = model.__name__
        if self.schemas.setdefault(name, schema) != schema:
            raise ValueError(f"two models or modes named {name} in the API description")
        return {"$ref": REF.format(model=name)}


def _param(p: Param) -> Schema:
    out: Schema = {"name": p.name, "in": p.where, "required": p.required or p.where == "path"}
    out.update(description=p.description, schema=p.schema)
    if p.style is not None:
        out.update(style=p.style, explode=True)
    return out


def _model_params(model: type[BaseModel], comps: _Components, from_path: tuple[str, ...]) -> list[Schema]:
    """One query parameter per field of the model parsing the query, with the field's own schema."""
    schema = model.model_json_schema(by_alias=True, ref_template=REF)
    comps.schemas.update(schema.pop("$defs", {}))
    required = set(schema.get("required", ()))
    return [
        {
            "name": name,
            "in": "query",
            "required": name in required,
            "description": sub.get("description", sub.get("title", name)),
            "schema": sub,
        }
        for name, sub in schema["properties"].items()
        if name not in from_path
    ]


def _content(answer: Answer, comps: _Components) -> Schema:
    if answer.media_type is None:
        return {}
    if answer.model is not None:
        schema = comps.ref(answer.model, "serialization")
    else:
        schema = answer.schema or {"type": "string"}
    content = {answer.media_type: {"schema": schema}}
    content.update({media: {"schema": {"type": "string"}} for media in answer.also})
    return {"content": content}


def _response(answer: Answer, comps: _Components) -> Schema:
    out: Schema = {"description": answer.description, **_content(answer, comps)}
    if answer.headers:
        out["headers"] = {
            name: {"description": d, "schema": {"type": "string"}} for name, d in answer.headers
        }
    return out


def _error(ep: Endpoint, status: int, comps: _Components) -> Schema:
    if ep.error_shape == "gif":
        gif = {"type": "string", "format": "binary"}
        description = f"not recorded: {ERRORS[status]}"
        answer = Answer(status, description, schema=gif, media_type="image/gif", headers=_GIF_HEADERS)
    else:
        model = PushwooshAnswer if ep.error_shape == "pushwoosh" else Error
        answer = Answer(status, ERRORS[status], model=model)
    out = _response(answer, comps)
    if status in (429, 503):
        out.setdefault("headers", {}).update(_RETRY_AFTER)
    return out


def _body(body: Body, comps: _Components) -> Schema:
    schema = comps.ref(body.model, "validation")
    if body.wrapper is not None:
        wrapped = {"type": "object", "required": [body.wrapper], "properties": {body.wrapper: schema}}
        schema = wrapped if body.wrapped == "required" else {"anyOf": [schema, wrapped]}
    out: Schema = {"required": body.required, "content": {"application/json": {"schema": schema}}}
    if body.description:
        out["description"] = body.description
    return out


def operation(ep: Endpoint, comps: _Components) -> Schema:
    op: Schema = {"summary": ep.summary, "tags": [ep.tag]}
    if ep.handler.__doc__:
        op["description"] = " ".join(ep.handler.__doc__.split())
    if ep.auth in _SECURITY:
        op["security"] = _SECURITY[ep.auth]
    params = [_param(p) for p in ep.params]
    if ep.query_model is not None:
        params += _model_params(ep.query_model, comps, ep.from_path)
    if params:
        op["parameters"] = params
    if ep.body is not None:
        op["requestBody"] = _body(ep.body, comps)
    responses = {str(ep.answer.status): _response(ep.answer, comps)}
    for answer in ep.other:
        responses[str(answer.status)] = _response(answer, comps)
    for status in sorted({*ep.errors, *_AUTH_ERRORS[ep.auth]}):
        responses.setdefault(str(status), _error(ep, status, comps))
    op["responses"] = responses
    return op


def openapi_spec(endpoints: Iterable[Endpoint]) -> Schema:
    comps = _Components()
    comps.ref(Error, "serialization")
    paths: Schema = {}
    for ep in endpoints:
        for path in ep.paths:
            paths.setdefault(path, {})[ep.method.lower()] = operation(ep, comps)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "trackpipe edge",
            "version": "1",
            "description": "Tracking, clicks, postbacks and conversion APIs; every 4xx names the problem "
            'in {"error": {"code", "message"}} (the pixel answers a GIF, Pushwoosh its own shape).',
        },
        "paths": paths,
        "components": {
            "schemas": dict(sorted(comps.schemas.items())),
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
    }


def app_spec(app: web.Application) -> Schema:
    """The document of this app: of the endpoints its routes were registered from."""
    return openapi_spec(app[ROUTES].endpoints)


async def openapi_json(request: web.Request) -> web.Response:
    """This document. Built from the app's route table on the first request, then served as built."""
    table = request.app[ROUTES]
    if table.document is None:
        table.document = orjson.dumps(openapi_spec(table.endpoints))
    return web.Response(body=table.document, content_type="application/json")


ENDPOINTS = (
    Endpoint(
        "GET",
        ("/openapi.json",),
        openapi_json,
        "This document (OpenAPI 3.1)",
        "ops",
        Answer(200, "OpenAPI 3.1", schema={"type": "object"}),
        allow_head=False,
    ),
)
