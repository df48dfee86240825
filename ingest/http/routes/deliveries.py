"""Admin API of outbound deliveries (issue 13): the delivery log, manual and bulk retry, the endpoint
circuit (disabled or failing endpoints, re-enable). Admin key required.

The list is read from the delivery log (ClickHouse ``delivery_attempts``, through the report source):
each delivery's latest state and its attempts. A retry acts on where deliveries live through the
wiring's :class:`schemas.outbound.deliveries.DeliveryControl` (embedded: the state database), which
brings failed and dead deliveries back to pending, due now; without one these routes answer 503.
"""

from __future__ import annotations

from typing import cast

from aiohttp import web

from ingest.errors import Rejected, bad_request
from ingest.http.api import Answer, Body, Endpoint, Handler, Param
from ingest.http.auth import require_admin
from ingest.http.common import DELIVERIES, json_response
from ingest.http.request_info import decode_json_object, read_body
from ingest.read.deliveries import (
    list_deliveries,
    list_query,
    log_source,
    one_delivery,
    retriable_ids,
    retry_filter,
)
from schemas.outbound.deliveries import (
    DeliveriesList,
    DeliveriesQuery,
    DeliveryControl,
    EndpointControl,
    EndpointEnabled,
    EndpointsList,
    RetryAnswer,
    RetryFilter,
)

MAX_ID_CHARS = 200


def control(request: web.Request) -> DeliveryControl:
    found = request.app.get(DELIVERIES)
    if found is None:
        raise Rejected(
            503, "deliveries_unavailable", "this process does not hold the outbound deliveries (no engine)"
        )
    return found


def _no_query(request: web.Request) -> None:
    if request.rel_url.query:
        raise bad_request("invalid_query", "this call takes no query parameters")


async def get_deliveries(request: web.Request) -> web.Response:
    require_admin(request)
    query = list_query(request)
    found = await list_deliveries(log_source(request), query)
    return json_response(found.model_dump(mode="json"))


async def retry_one(request: web.Request) -> web.Response:
    require_admin(request)
    _no_query(request)
    delivery_id = request.match_info["id"]
    if not delivery_id or len(delivery_id) > MAX_ID_CHARS:
        raise Rejected(404, "unknown_delivery", "no delivery with this id")
    engine = control(request)
    logged = await one_delivery(log_source(request), delivery_id)
    if logged is not None and logged.status == "delivered":
        raise Rejected(409, "delivered", f"delivery {delivery_id!r} was delivered: it is not retried")
    retried = await engine.retry([delivery_id])
    if not retried:
        if logged is None:
            raise Rejected(404, "unknown_delivery", f"no failed or dead delivery with id {delivery_id!r}")
        raise Rejected(409, "not_retriable", f"delivery {delivery_id!r} is not failed or dead now")
    return json_response(RetryAnswer(retried=retried, ids=[delivery_id]).model_dump(mode="json"))


async def retry_bulk(request: web.Request) -> web.Response:
    require_admin(request)
    _no_query(request)
    raw = await read_body(request)
    body = decode_json_object(raw, "a JSON object of filters") if raw.strip() else {}
    query = retry_filter(body)
    engine = control(request)
    ids = await retriable_ids(log_source(request), query)
    retried = await engine.retry(ids) if ids else 0
    return json_response(RetryAnswer(retried=retried, ids=ids).model_dump(mode="json"))


def endpoint_control(request: web.Request) -> EndpointControl:
    found = control(request)
    if not hasattr(found, "reenable") or not hasattr(found, "endpoints"):
        raise Rejected(501, "endpoints_unavailable", "this engine keeps no endpoint circuit")
    return cast(EndpointControl, found)


async def get_endpoints(request: web.Request) -> web.Response:
    require_admin(request)
    _no_query(request)
    found = await endpoint_control(request).endpoints()
    return json_response(found.model_dump(mode="json"))


async def enable_endpoint(request: web.Request) -> web.Response:
    require_admin(request)
    _no_query(request)
    key = request.match_info["key"]
    kind, _, rest = key.partition(":")
    if kind not in ("goal", "link") or not rest or len(key) > MAX_ID_CHARS:
        raise bad_request("invalid_key", "key: an endpoint is goal:<goal id> or link:<link id>")
    if not await endpoint_control(request).reenable(key):
        raise Rejected(404, "unknown_endpoint", f"endpoint {key!r} is neither disabled nor failing")
    return json_response(EndpointEnabled(key=key).model_dump(mode="json"))


def _admin(
    method: str,
    path: str,
    handler: Handler,
    summary: str,
    answer: Answer,
    *errors: int,
    body: Body | None = None,
    query_model: type[DeliveriesQuery] | None = None,
    params: tuple[Param, ...] = (),
) -> Endpoint:
    return Endpoint(
        method,
        (path,),
        handler,
        summary,
        "deliveries",
        answer,
        errors,
        auth="admin",
        body=body,
        query_model=query_model,
        params=params,
        allow_head=False,
    )


ENDPOINTS = (
    _admin(
        "GET",
        "/api/v1/deliveries",
        get_deliveries,
        "Outbound deliveries (goal webhooks, S2S postbacks): latest state and attempts, from the log",
        Answer(200, "deliveries, most recently attempted first", DeliveriesList),
        *(400, 501),
        query_model=DeliveriesQuery,
    ),
    _admin(
        "POST",
        "/api/v1/deliveries/{id}/retry",
        retry_one,
        "Retry a failed or dead delivery now, with a fresh retry schedule",
        Answer(200, "retried", RetryAnswer),
        *(400, 404, 409, 501, 503),
        params=(Param("id", "delivery id (the webhook-id, or pb_… of a postback)", where="path"),),
    ),
    _admin(
        "POST",
        "/api/v1/deliveries/retry",
        retry_bulk,
        "Retry every failed or dead delivery matching the filters (an empty body: all of them)",
        Answer(200, "how many were retried, and their ids", RetryAnswer),
        *(400, 408, 413, 501, 503),
        body=Body(RetryFilter, required=False),
    ),
    _admin(
        "GET",
        "/api/v1/endpoints",
        get_endpoints,
        "Delivery endpoints (goal webhook URLs, link postbacks) that are disabled or failing",
        Answer(200, "endpoints", EndpointsList),
        *(400, 501, 503),
    ),
    _admin(
        "POST",
        "/api/v1/endpoints/{key}/enable",
        enable_endpoint,
        "Re-enable an endpoint (a clean slate); its dead deliveries are then retried with a bulk retry",
        Answer(200, "enabled", EndpointEnabled),
        *(400, 404, 501, 503),
        params=(Param("key", "goal:<goal id> or link:<link id>", where="path"),),
    ),
)
