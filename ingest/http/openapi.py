"""``GET /openapi.json``: the edge's API described in OpenAPI 3.1, every endpoint with its parameters
and error answers. A test runs schemathesis against the running edge with this document
(tests/integration/test_inputs_openapi.py), so the description cannot drift from what the edge does.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel

from ingest.formats.admin_models import GoalCreate, GoalPatch, LinkCreate
from ingest.http.common import json_response
from schemas.reports import ConversionAnalytics, ExperimentReport, ProjectsReport, TopEventsReport

Schema = dict[str, Any]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: Schema) -> Schema:
    return {"application/json": {"schema": schema}}


def _error(description: str, headers: Schema | None = None) -> Schema:
    out: Schema = {"description": description, "content": _json(_ref("Error"))}
    if headers:
        out["headers"] = headers
    return out


_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "string"}}}
_GIF: Schema = {"image/gif": {"schema": {"type": "string", "format": "binary"}}}
_GIF_HEADERS: Schema = {
    "Cache-Control": {"description": "no-store, no-cache", "schema": {"type": "string"}},
}

E400 = _error("bad input: the body names the field and the problem")
E401 = _error("missing or wrong credentials (the answer does not say which)")
E403 = _error("the admin API is disabled (no TRACKPIPE_ADMIN_KEY configured)")
E403_READ = _error(
    "no key is configured and the client is not on the edge's host (loopback), or the key may not read "
    "this project"
)
E404 = _error("unknown resource (link, goal, token)")
E408 = _error("the body did not arrive within body_read_timeout_s; the connection is closed")
E413 = _error("body larger than max_body_bytes, or too many events / attributes in one request")
E429 = _error("rate limit of the token / application exceeded, or too many wrong keys", _RETRY_AFTER)
E501 = _error("reports are not configured on this edge")
E503 = _error("not stored (overloaded, not durable, configuration store unavailable): retry", _RETRY_AFTER)


def _responses(ok: Schema, *errors: tuple[int, Schema]) -> Schema:
    out: Schema = {**ok}
    for status, answer in errors:
        out[str(status)] = answer
    return out


def _q(name: str, description: str, schema: Schema | None = None, required: bool = False) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": schema or {"type": "string"},
    }


def _path(name: str, description: str) -> Schema:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }


_UA_REQUIRED = {
    "name": "User-Agent",
    "in": "header",
    "required": True,
    "description": "required by the Convert formats",
    "schema": {"type": "string", "minLength": 1},
}
_ADMIN: list[Schema] = [{"bearerAuth": []}]
_ADMIN_ERRORS = ((401, E401), (403, E403), (429, E429), (503, E503))
#: Reports and metrics: a bearer key, or none from the edge's own host while no key is configured.
_READ: list[Schema] = [{"bearerAuth": []}, {}]
_READ_ERRORS = ((401, E401), (403, E403_READ), (429, E429))
_TRACK_OK = {"200": {"description": "durable", "content": _json(_ref("Accepted"))}}
_CONVERSION_OK = {"200": {"description": "durable", "content": _json(_ref("ConversionAccepted"))}}


def _model_schemas(
    components: Schema,
    *models: type[BaseModel],
    mode: Literal["validation", "serialization"] = "validation",
) -> None:
    for model in models:
        schema = model.model_json_schema(
            by_alias=True,
            mode=mode,
            ref_template="#/components/schemas/{model}",
        )
        for name, sub in schema.pop("$defs", {}).items():
            components[name] = sub
        components[model.__name__] = schema


def _components() -> Schema:
    nullable_str = {"type": ["string", "null"]}
    comps: Schema = {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {
                        "code": {"type": "string"},
                        "message": {"type": "string"},
                        "details": {"type": "array", "items": {"type": "object"}},
                    },
                }
            },
        },
        "Accepted": {
            "type": "object",
            "required": ["status", "accepted", "event_ids"],
            "properties": {
                "status": {"type": "string", "enum": ["ok"]},
                "accepted": {"type": "integer"},
                "event_ids": {"type": "array", "items": {"type": "string"}},
            },
        },
        "ConversionAccepted": {
            "type": "object",
            "required": ["status", "accepted", "conversion_id", "goal_id", "event_ids"],
            "properties": {
                "status": {"type": "string", "enum": ["ok"]},
                "accepted": {"type": "integer"},
                "conversion_id": {"type": "string"},
                "goal_id": {"type": "string"},
                "event_ids": {"type": "array", "items": {"type": "string"}},
            },
        },
        "PushwooshAnswer": {
            "type": "object",
            "required": ["status_code", "status_message", "response"],
            "properties": {
                "status_code": {"type": "integer"},
                "status_message": {"type": "string"},
                "response": {"type": ["object", "null"]},
            },
        },
        "Goal": {
            "type": "object",
            "required": [
                "id",
                "project",
                "name",
                "goal_type",
                "token",
                "track_url",
                "attribution_window_days",
            ],
            "properties": {
                "id": {"type": "string"},
                "project": {"type": "string"},
                "name": {"type": "string"},
                "goal_type": {"type": "string", "enum": ["purchase", "signup", "download", "custom"]},
                "value": {"type": ["number", "null"]},
                "currency": nullable_str,
                "attribution_window_days": {"type": "integer"},
                "postback_url": nullable_str,
                "default": {"type": "boolean"},
                "token": {"type": "string", "description": "postback token of the conversion APIs"},
                "track_url": {"type": "string", "description": "POST conversions here (GET: the pixel)"},
                "created_at": {"type": "string", "format": "date-time"},
                "updated_at": {"type": "string", "format": "date-time"},
            },
        },
        "Link": {
            "type": "object",
            "required": ["id", "project", "url", "tracking_url"],
            "properties": {
                "id": {"type": "string"},
                "project": {"type": "string"},
                "url": {"type": "string"},
                "tracking_url": {"type": "string", "description": "GET /c/{id}: records a click, 302"},
                "campaign": nullable_str,
                "utm_source": nullable_str,
                "utm_medium": nullable_str,
                "utm_campaign": nullable_str,
                "utm_term": nullable_str,
                "utm_content": nullable_str,
                "goal": nullable_str,
                "created_at": {"type": "string", "format": "date-time"},
            },
        },
        "ConvertTrack": {
            "type": "object",
            "description": "Convert Experiences new tracking structure",
            "required": ["cid", "pid", "vid", "ev"],
            "properties": {
                "cid": {"type": "string"},
                "pid": {"type": "string"},
                "vid": {"type": "string"},
                "seg": {"type": "object"},
                "ev": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["evt"],
                        "properties": {
                            "evt": {"type": "string", "enum": ["viewExp", "hitGoal", "tr"]},
                            "exps": {"type": "array", "items": {"type": "string"}},
                            "vars": {"type": "array", "items": {"type": "string"}},
                            "goals": {"type": "array", "items": {"type": "integer"}},
                            "r": {"type": "number"},
                            "prc": {"type": "integer"},
                            "tid": {"type": "string"},
                        },
                    },
                },
            },
        },
        "PvtlnkConversion": {
            "type": "object",
            "properties": {
                "value": {"type": "number", "minimum": 0},
                "currency": {"type": "string", "example": "USD"},
                "order_id": {"type": "string"},
                "click_id": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
            },
        },
        "PushStat": {
            "type": "object",
            "required": ["request"],
            "properties": {
                "request": {
                    "type": "object",
                    "required": ["application", "hwid", "hash"],
                    "properties": {
                        "application": {"type": "string"},
                        "hwid": {"type": "string"},
                        "hash": {"type": "string"},
                        "userId": {"type": "string"},
                    },
                }
            },
        },
        "PostEvent": {
            "type": "object",
            "required": ["request"],
            "properties": {
                "request": {
                    "type": "object",
                    "required": ["application", "hwid", "event"],
                    "properties": {
                        "application": {"type": "string"},
                        "hwid": {"type": "string"},
                        "userId": {"type": "string"},
                        "event": {"type": "string"},
                        "attributes": {"type": "object", "description": "msgHash: the push that led here"},
                    },
                }
            },
        },
    }
    comps["PvtlnkApiConversion"] = {
        "allOf": [
            _ref("PvtlnkConversion"),
            {
                "type": "object",
                "required": ["postback_token"],
                "properties": {"postback_token": {"type": "string"}},
            },
        ]
    }
    _model_schemas(comps, GoalCreate, GoalPatch, LinkCreate)
    _model_schemas(
        comps, TopEventsReport, ProjectsReport, ConversionAnalytics, ExperimentReport, mode="serialization"
    )
    return comps


_LEGACY_PARAMS = [
    _q("c", "legacy push: account id"),
    _q("p", "legacy push: project id"),
    _q("e", "legacy push: EXPERIMENT-VARIATION[,...]"),
    _q("g", "legacy push: goal ids, comma-separated"),
    _q("ga", "legacy push: number of goals in g"),
    _q("t", "legacy push: GOAL[.GOAL]|TRANSACTION_ID|VALUE|PRODUCTS_COUNT"),
    _q("vid", "visitor id (extension)"),
]


_FORMAT = _q(
    "format", "json (default) or csv (the rows, RFC 4180)", {"type": "string", "enum": ["json", "csv"]}
)


def _report_content(model: str) -> Schema:
    return {**_json(_ref(model)), "text/csv": {"schema": {"type": "string"}}}


def _track_path() -> Schema:
    return {
        "post": {
            "summary": "Convert tracking, JSON body",
            "tags": ["convert"],
            "parameters": [_UA_REQUIRED],
            "requestBody": {"required": True, "content": _json(_ref("ConvertTrack"))},
            "responses": _responses(_TRACK_OK, (400, E400), (408, E408), (413, E413), (503, E503)),
        },
        "get": {
            "summary": "Convert tracking as PHP-style bracket query, or the legacy push (c=, p=)",
            "tags": ["convert"],
            "parameters": [_UA_REQUIRED, *_LEGACY_PARAMS],
            "responses": _responses(_TRACK_OK, (400, E400), (413, E413), (503, E503)),
        },
    }


def _goal_body() -> Schema:
    return {
        "anyOf": [
            _ref("GoalCreate"),
            {"type": "object", "required": ["goal"], "properties": {"goal": _ref("GoalCreate")}},
        ]
    }


def _paths() -> Schema:
    goal_id = _path("goal_id", "goal id")
    project_filter = _q("project", "only this project's")
    pixel_params = [
        _path("token", "the goal's postback token"),
        _q("value", "conversion value (default: the goal's)", {"type": "number", "minimum": 0}),
        _q("currency", "3-letter currency code"),
        _q("order_id", "transaction id: conversions dedup by it"),
        _q("click_id", "the click that led here"),
    ]
    gif = {"content": _GIF, "headers": _GIF_HEADERS}
    pb_params = [
        _q("hit", "click id (hit id) from the click's redirect"),
        _q("vid", "visitor id (with p: resolved to the visitor's latest click on that link)"),
        _q("p", "link (page) id"),
        _q("tx", "transaction id"),
        _q("rev", "revenue (default: the goal's value)", {"type": "number", "minimum": 0}),
        _q("status", "conversion status, carried as sent (pending, rejected, approved, ...)"),
        _q("currency", "3-letter currency code"),
        _q("disable_postbacks", "true: do not forward this conversion to the traffic source"),
        _q("goal", "goal id (default: the link's goal, then the project's default goal)"),
    ]
    pb_op = {
        "tags": ["funnelflux"],
        "parameters": pb_params,
        "responses": _responses(_TRACK_OK, (400, E400), (408, E408), (413, E413), (503, E503)),
    }
    pw_ok = {"200": {"description": "recorded", "content": _json(_ref("PushwooshAnswer"))}}
    pw_err = {
        "description": "refused; status_message names the problem",
        "content": _json(_ref("PushwooshAnswer")),
    }
    pw_errors = (
        (400, pw_err),
        (408, pw_err),
        (413, pw_err),
        (429, {**pw_err, "headers": _RETRY_AFTER}),
        (503, pw_err),
    )
    admin_body = {"required": True, "content": _json(_goal_body())}
    return {
        "/track": _track_path(),
        "/track/": _track_path(),
        "/api/v1/reports/top-events": {
            "get": {
                "summary": "Top goals of a project by conversions",
                "tags": ["reports"],
                "security": _READ,
                "parameters": [
                    _q("project", "project id", required=True),
                    _q(
                        "from",
                        "period start (ISO 8601, with zone; default: 30 days before `to`)",
                        {"type": "string", "format": "date-time"},
                    ),
                    _q(
                        "to",
                        "period end, exclusive (default: the start of tomorrow, UTC)",
                        {"type": "string", "format": "date-time"},
                    ),
                    _q("limit", "rows (default 5)", {"type": "integer", "minimum": 1, "maximum": 100}),
                    _q("campaign", "only conversions attributed to this campaign; rate base: its visitors"),
                    _q("link", "only conversions attributed to this link; rate = conversions / clicks"),
                    _q("push", "only conversions attributed to this push (msgHash); rate per push open"),
                    _q("experiment", "with variation: conversions of visitors who saw the variation"),
                    _q("variation", "with experiment; rate = converting visitors / visitors who saw it"),
                    _q("currency", "report revenue in this currency (default: the project's, else as sent)"),
                    _FORMAT,
                ],
                "responses": _responses(
                    {"200": {"description": "the report", "content": _report_content("TopEventsReport")}},
                    (400, E400),
                    *_READ_ERRORS,
                    (501, E501),
                    (503, E503),
                ),
            }
        },
        "/api/v1/analytics/conversions": {
            "get": {
                "summary": "PVTLNK conversion metrics of a link over the last days",
                "tags": ["reports"],
                "security": _READ,
                "parameters": [
                    _q("link_id", "the tracking link", required=True),
                    _q("days", "period in days up to now (default 30)", {"type": "integer", "minimum": 1}),
                    _q("project", "only this project's"),
                    _q("currency", "report revenue in this currency (default: the project's, else as sent)"),
                    _FORMAT,
                ],
                "responses": _responses(
                    {"200": {"description": "metrics", "content": _report_content("ConversionAnalytics")}},
                    (400, E400),
                    *_READ_ERRORS,
                    (501, E501),
                    (503, E503),
                ),
            }
        },
        "/api/v1/experiments/{id}/report": {
            "get": {
                "summary": "Per variation exposures, conversions, rate, revenue, difference to the baseline",
                "tags": ["reports"],
                "security": _READ,
                "parameters": [
                    _path("id", "experiment id"),
                    _q("project", "project id", required=True),
                    _q("from", "period start (ISO 8601, zone)", {"type": "string", "format": "date-time"}),
                    _q("to", "period end, exclusive", {"type": "string", "format": "date-time"}),
                    _q("goal", "converting = converted on this goal (default: any goal)"),
                    _q("baseline", "baseline variation (default: the smallest variation id)"),
                    _q("currency", "report revenue in this currency (default: the project's, else as sent)"),
                    _FORMAT,
                ],
                "responses": _responses(
                    {"200": {"description": "the report", "content": _report_content("ExperimentReport")}},
                    (400, E400),
                    *_READ_ERRORS,
                    (501, E501),
                    (503, E503),
                ),
            }
        },
        "/api/v1/projects": {
            "get": {
                "summary": "Projects with events, most recently active first",
                "tags": ["reports"],
                "security": _READ,
                "parameters": [
                    _q("limit", "rows (default 100)", {"type": "integer", "minimum": 1, "maximum": 1000}),
                    _FORMAT,
                ],
                "responses": _responses(
                    {"200": {"description": "the projects", "content": _report_content("ProjectsReport")}},
                    (400, E400),
                    *_READ_ERRORS,
                    (501, E501),
                    (503, E503),
                ),
            }
        },
        "/": {
            "get": {
                "summary": "Dashboard page",
                "tags": ["dashboard"],
                "responses": {
                    "200": {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}}
                },
            }
        },
        "/static/{name}": {
            "get": {
                "summary": "Dashboard files",
                "tags": ["dashboard"],
                "parameters": [_path("name", "file name")],
                "responses": {
                    "200": {
                        "description": "the file",
                        "content": {
                            "text/javascript": {"schema": {"type": "string"}},
                            "text/css": {"schema": {"type": "string"}},
                            "text/html": {"schema": {"type": "string"}},
                            "image/svg+xml": {"schema": {"type": "string"}},
                        },
                    },
                    "404": E404,
                },
            }
        },
        "/c/{link_id}": {
            "get": {
                "summary": "Tracking link: records a click, then 302 to the link's registered URL",
                "tags": ["clicks"],
                "parameters": [
                    _path("link_id", "link id"),
                    _q("utm_source", "passed through to the destination"),
                    _q("utm_medium", "passed through"),
                    _q("utm_campaign", "passed through"),
                ],
                "responses": _responses(
                    {
                        "302": {
                            "description": "to the destination with the click id appended",
                            "headers": {
                                "Location": {"description": "destination", "schema": {"type": "string"}},
                                "Set-Cookie": {
                                    "description": "visitor id cookie",
                                    "schema": {"type": "string"},
                                },
                            },
                        }
                    },
                    (404, E404),
                    (503, E503),
                ),
            }
        },
        "/pb": {
            "get": {**pb_op, "summary": "FunnelFlux postback"},
            "post": {**pb_op, "summary": "FunnelFlux postback"},
        },
        "/pb/": {
            "get": {**pb_op, "summary": "FunnelFlux postback"},
            "post": {**pb_op, "summary": "FunnelFlux postback"},
        },
        "/api/conversions/track/{token}": {
            "post": {
                "summary": "PVTLNK conversion for the goal of the postback token",
                "tags": ["pvtlnk"],
                "parameters": [_path("token", "the goal's postback token")],
                "requestBody": {"required": False, "content": _json(_ref("PvtlnkConversion"))},
                "responses": _responses(
                    _CONVERSION_OK,
                    (400, E400),
                    (404, E404),
                    (408, E408),
                    (413, E413),
                    (429, E429),
                    (503, E503),
                ),
            },
            "get": {
                "summary": "Conversion pixel: always a 1x1 GIF; nothing recorded on a 4xx",
                "tags": ["pvtlnk"],
                "parameters": pixel_params,
                "responses": {
                    "200": {"description": "recorded", **gif},
                    "400": {"description": "bad input, not recorded", **gif},
                    "404": {"description": "unknown token, not recorded", **gif},
                    "429": {"description": "rate limited, not recorded", **gif},
                    "503": {"description": "not stored, not recorded", **gif},
                },
            },
        },
        "/api/v1/conversions/track": {
            "post": {
                "summary": "PVTLNK server-side conversion with postback_token in the body",
                "tags": ["pvtlnk"],
                "requestBody": {"required": True, "content": _json(_ref("PvtlnkApiConversion"))},
                "responses": _responses(
                    _CONVERSION_OK,
                    (400, E400),
                    (401, E401),
                    (408, E408),
                    (413, E413),
                    (429, E429),
                    (503, E503),
                ),
            }
        },
        "/json/1.3/pushStat": {
            "post": {
                "summary": "Pushwoosh push open",
                "tags": ["pushwoosh"],
                "requestBody": {"required": True, "content": _json(_ref("PushStat"))},
                "responses": _responses(pw_ok, *pw_errors),
            }
        },
        "/json/1.3/postEvent": {
            "post": {
                "summary": "Pushwoosh in-app event (the event name is the goal)",
                "tags": ["pushwoosh"],
                "requestBody": {"required": True, "content": _json(_ref("PostEvent"))},
                "responses": _responses(pw_ok, *pw_errors),
            }
        },
        "/api/v1/conversions/goals": {
            "post": {
                "summary": 'Create a goal (body flat or {"goal": {...}})',
                "tags": ["admin"],
                "security": _ADMIN,
                "requestBody": admin_body,
                "responses": _responses(
                    {"201": {"description": "created", "content": _json(_ref("Goal"))}},
                    (400, E400),
                    (408, E408),
                    (413, E413),
                    *_ADMIN_ERRORS,
                ),
            },
            "get": {
                "summary": "List goals",
                "tags": ["admin"],
                "security": _ADMIN,
                "parameters": [project_filter],
                "responses": _responses(
                    {
                        "200": {
                            "description": "goals",
                            "content": _json(
                                {
                                    "type": "object",
                                    "required": ["goals"],
                                    "properties": {"goals": {"type": "array", "items": _ref("Goal")}},
                                }
                            ),
                        }
                    },
                    (400, E400),
                    *_ADMIN_ERRORS,
                ),
            },
        },
        "/api/v1/conversions/goals/{goal_id}": {
            "get": {
                "summary": "One goal",
                "tags": ["admin"],
                "security": _ADMIN,
                "parameters": [goal_id],
                "responses": _responses(
                    {"200": {"description": "the goal", "content": _json(_ref("Goal"))}},
                    (404, E404),
                    *_ADMIN_ERRORS,
                ),
            },
            "patch": {
                "summary": "Change a goal (project and token are fixed)",
                "tags": ["admin"],
                "security": _ADMIN,
                "parameters": [goal_id],
                "requestBody": {
                    "required": True,
                    "content": _json(
                        {
                            "anyOf": [
                                _ref("GoalPatch"),
                                {"type": "object", "properties": {"goal": _ref("GoalPatch")}},
                            ]
                        }
                    ),
                },
                "responses": _responses(
                    {"200": {"description": "the goal", "content": _json(_ref("Goal"))}},
                    (400, E400),
                    (404, E404),
                    (408, E408),
                    (413, E413),
                    *_ADMIN_ERRORS,
                ),
            },
            "delete": {
                "summary": "Delete a goal (its token stops working)",
                "tags": ["admin"],
                "security": _ADMIN,
                "parameters": [goal_id],
                "responses": _responses({"204": {"description": "deleted"}}, (404, E404), *_ADMIN_ERRORS),
            },
        },
        "/api/v1/links": {
            "post": {
                "summary": 'Create a tracking link (body flat or {"link": {...}})',
                "tags": ["admin"],
                "security": _ADMIN,
                "requestBody": {
                    "required": True,
                    "content": _json(
                        {
                            "anyOf": [
                                _ref("LinkCreate"),
                                {
                                    "type": "object",
                                    "required": ["link"],
                                    "properties": {"link": _ref("LinkCreate")},
                                },
                            ]
                        }
                    ),
                },
                "responses": _responses(
                    {"201": {"description": "created", "content": _json(_ref("Link"))}},
                    (400, E400),
                    (408, E408),
                    (413, E413),
                    *_ADMIN_ERRORS,
                ),
            },
            "get": {
                "summary": "List links",
                "tags": ["admin"],
                "security": _ADMIN,
                "parameters": [project_filter],
                "responses": _responses(
                    {
                        "200": {
                            "description": "links",
                            "content": _json(
                                {
                                    "type": "object",
                                    "required": ["links"],
                                    "properties": {"links": {"type": "array", "items": _ref("Link")}},
                                }
                            ),
                        }
                    },
                    (400, E400),
                    *_ADMIN_ERRORS,
                ),
            },
        },
        "/api/v1/links/{link_id}": {
            "get": {
                "summary": "One link",
                "tags": ["admin"],
                "security": _ADMIN,
                "parameters": [_path("link_id", "link id")],
                "responses": _responses(
                    {"200": {"description": "the link", "content": _json(_ref("Link"))}},
                    (404, E404),
                    *_ADMIN_ERRORS,
                ),
            }
        },
        "/healthz": {
            "get": {
                "summary": "Readiness",
                "tags": ["ops"],
                "responses": {
                    "200": {
                        "description": "ready",
                        "content": _json({"type": "object", "required": ["status"]}),
                    },
                    "503": {
                        "description": "starting",
                        "content": _json({"type": "object", "required": ["status"]}),
                    },
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (TRACKPIPE_METRICS_KEY or the admin key)",
                "tags": ["ops"],
                "security": _READ,
                "responses": _responses(
                    {
                        "200": {
                            "description": "metrics",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                    *_READ_ERRORS,
                ),
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "tags": ["ops"],
                "responses": {"200": {"description": "OpenAPI 3.1", "content": _json({"type": "object"})}},
            }
        },
    }


@cache
def openapi_spec() -> Schema:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "trackpipe edge",
            "version": "1",
            "description": "Tracking, clicks, postbacks and conversion APIs; every 4xx names the problem "
            'in {"error": {"code", "message"}} (the pixel answers a GIF, Pushwoosh its own shape).',
        },
        "paths": _paths(),
        "components": {
            "schemas": _components(),
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
    }


async def openapi_json(request: web.Request) -> web.Response:
    return json_response(openapi_spec())


def add_openapi_routes(app: web.Application) -> None:
    app.router.add_get("/openapi.json", openapi_json, allow_head=False)
