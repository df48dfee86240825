"""The filters of the deliveries admin API: what is accepted from a query string or a JSON body."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from schemas.outbound.deliveries import MAX_BULK, MAX_LIMIT, DeliveriesQuery, RetryFilter


def test_query_strings_parse_into_typed_filters() -> None:
    q = DeliveriesQuery.model_validate({"status": "dead", "since": "2026-01-01T00:00:00Z", "limit": "7"})
    assert q.status == "dead" and q.limit == 7 and q.since == datetime(2026, 1, 1, tzinfo=UTC)
    assert DeliveriesQuery().limit == 100


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "lost"}, "status"),
        ({"limit": "0"}, "limit"),
        ({"limit": str(MAX_LIMIT + 1)}, "limit"),
        ({"since": "2026-01-01T00:00:00"}, "since"),  # no zone
        ({"since": "soon"}, "since"),
        ({"project": ""}, "project"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_filters_name_their_field(params: dict[str, str], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        DeliveriesQuery.model_validate(params)
    assert err.value.errors()[0]["loc"][0] == field


@pytest.mark.parametrize(
    ("body", "field"),
    [({"status": "delivered"}, "status"), ({"limit": MAX_BULK + 1}, "limit"), ({"ids": ["a"]}, "ids")],
)
def test_a_bulk_retry_retries_only_failed_or_dead(body: dict[str, object], field: str) -> None:
    assert RetryFilter.model_validate({"status": "failed"}).status == "failed"
    with pytest.raises(ValidationError) as err:
        RetryFilter.model_validate(body)
    assert err.value.errors()[0]["loc"][0] == field


def test_since_is_within_what_clickhouse_holds() -> None:
    for value in ("0269-02-12T00:55:37Z", "2300-01-01T00:00:00Z"):
        with pytest.raises(ValidationError, match="years"):
            DeliveriesQuery.model_validate({"since": value})
        with pytest.raises(ValidationError, match="years"):
            RetryFilter.model_validate({"since": value})
