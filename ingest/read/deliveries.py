"""The delivery log's read side (issue 13): the filters of ``GET /api/v1/deliveries`` and of a bulk retry,
checked here, and the log asked through the report source (which implements
:class:`schemas.outbound.deliveries.DeliveryLogSource` over ClickHouse)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from aiohttp import web
from pydantic import ValidationError

from ingest.errors import Rejected, bad_request
from ingest.http.api import query_names
from ingest.http.common import REPORTS
from ingest.read.reports import first_problem
from schemas.outbound.deliveries import (
    DeliveriesList,
    DeliveriesQuery,
    DeliveryEntry,
    DeliveryLogSource,
    RetryFilter,
)


def log_source(request: web.Request) -> DeliveryLogSource:
    source = request.app.get(REPORTS)
    if source is None or not hasattr(source, "deliveries"):
        raise Rejected(501, "reports_disabled", "this edge has no ClickHouse configured for the delivery log")
    return cast(DeliveryLogSource, source)


def list_query(request: web.Request) -> DeliveriesQuery:
    """The query string as :class:`DeliveriesQuery`; an unknown or bad parameter is a 400 naming it."""
    params = dict(request.rel_url.query)
    unknown = set(params) - query_names(DeliveriesQuery)
    if unknown:
        raise bad_request("invalid_query", f"unknown parameter(s): {', '.join(sorted(unknown))}")
    try:
        return DeliveriesQuery.model_validate(params)
    except ValidationError as exc:
        raise bad_request("invalid_query", first_problem(exc)) from None


def retry_filter(body: dict[str, object]) -> RetryFilter:
    try:
        return RetryFilter.model_validate(body)
    except ValidationError as exc:
        raise bad_request("invalid_field", first_problem(exc)) from None


async def list_deliveries(
    source: DeliveryLogSource, query: DeliveriesQuery, ids: Sequence[str] = ()
) -> DeliveriesList:
    return await source.deliveries(query, ids)


async def one_delivery(source: DeliveryLogSource, delivery_id: str) -> DeliveryEntry | None:
    found = await source.deliveries(DeliveriesQuery(limit=1), [delivery_id])
    return found.deliveries[0] if found.deliveries else None


async def retriable_ids(source: DeliveryLogSource, query: RetryFilter) -> list[str]:
    return await source.retriable(query)
