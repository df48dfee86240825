"""What the report queries share: the fixed SQL fragments (period, conversions read with FINAL and
``is_deleted = 0``, the experiment's exposed conversions, revenue in two steps) and the helpers around them
(timestamps as parameters, rates, the filter parameters, revenue converted per group). Used by the Top-5
(:mod:`sinks.reports`), the link and experiment analytics (:mod:`sinks.report_analytics`) and the
dashboard's further reports (:mod:`sinks.report_views`). Parameters are bound server-side; no value is
ever formatted into SQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from schemas.reports import RateBase
from sinks.backend import ClickHouseBackend
from sinks.fx import Money, load_book

PERIOD = "occurred_at >= {start:DateTime64(3, 'UTC')} AND occurred_at < {end:DateTime64(3, 'UTC')}"
SEEN_IN_PERIOD = (
    "first_seen_at >= {start:DateTime64(3, 'UTC')} AND first_seen_at < {end:DateTime64(3, 'UTC')}"
)

#: Conversions filter per rate base (the attributed touch under the project's reporting model).
CONVERSION_FILTERS: dict[RateBase, str] = {
    "visitors": "",
    "campaign_visitors": "AND attributed_campaign = {campaign:String}",
    "clicks": "AND attributed_link_id = {link:String}",
    "push_opens": "AND attributed_push_hash = {push:String}",
}

#: Revenue, two steps (sinks/fx.py converts): the report's query gives each group's sum of the amounts as
#: sent and the currencies with an amount; a group in one currency that needs no rate (``''``, the target,
#: or no target) is done. Otherwise a second query gives that report's conversions with an amount per
#: (group, currency, day), converted with the rate of the day. Single-currency projects never pay for it.
MONEY = "toString(sum(revenue) AS revenue_total) AS revenue_text, groupUniqArrayIf(currency, revenue != 0)"
PARTS = """
SELECT __GROUP__, currency, toDate(occurred_at) AS day, toString(sum(revenue)), count()
FROM __SOURCE__ AND revenue != 0 AND has({groups:Array(String)}, __GROUP__)
GROUP BY __GROUP__, currency, day
"""


def parts_sql(group: str, source: str) -> str:
    return PARTS.replace("__GROUP__", group).replace("__SOURCE__", source)


CONVERSIONS_SOURCE = (
    "conversions FINAL WHERE project_id = {project:String} AND " + PERIOD + " AND is_deleted = 0 "
)

#: Experiment variation: conversions of the visitors who saw it (in the period), made after they saw it.
EXPOSED = f"""
SELECT visitor_id, min(first_seen_at) AS seen_at
FROM variation_exposures FINAL
WHERE project_id = {{project:String}} AND experiment_id = {{experiment:String}}
  AND variation_id = {{variation:String}} AND {SEEN_IN_PERIOD}
GROUP BY visitor_id
"""
EXPERIMENT_SOURCE = f"""(
    SELECT c.goal_id AS goal_id, c.visitor_id AS visitor_id, c.visitor_hash AS visitor_hash,
           c.revenue AS revenue, c.currency AS currency, c.occurred_at AS occurred_at
    FROM (
        SELECT goal_id, visitor_id, visitor_hash, revenue, currency, occurred_at
        FROM {CONVERSIONS_SOURCE}
    ) AS c
    INNER JOIN ({EXPOSED}) AS x ON c.visitor_id = x.visitor_id
    WHERE c.occurred_at >= x.seen_at
) WHERE 1 """


def ts(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%d %H:%M:%S.") + f"{dt.microsecond // 1000:03d}"


def rate(numerator: int, denominator: int) -> float:
    return round(numerator / denominator, 6) if denominator else 0.0


def report_filters(query: object) -> dict[str, str]:
    """The Top-5's filters a query sets (campaign, link, push, experiment, variation), as query parameters;
    shared by every report that takes them (the Top-5, the series)."""
    return {
        name: value
        for name in ("campaign", "link", "push", "experiment", "variation")
        if (value := getattr(query, name, None)) is not None
    }


def group_money(
    backend: ClickHouseBackend,
    target: str | None,
    found: Sequence[tuple[str, object, Sequence[str]]],
    parts_sql: str,
    params: dict[str, Any],
) -> dict[str, Money]:
    """Each group's revenue from ``found`` = (group, sum of the amounts as sent, currencies with an
    amount), asking ``parts_sql`` for (group, currency, day) sums only when a group needs a rate or mixes
    currencies."""
    money = {group: Money(target) for group, _, _ in found}
    simple = all(
        len(currencies) <= 1 and (target is None or not currencies or currencies[0] in ("", target))
        for _, _, currencies in found
    )
    if simple:
        for group, revenue, currencies in found:
            if currencies:  # one currency, no rate needed: the day does not matter
                money[group].add(None, str(currencies[0]), date.min, Decimal(str(revenue)), 0)
        return money
    parts = backend.query(parts_sql, {**params, "groups": list(money)})
    book = None
    if target is not None:
        last = max((as_day(p[2]) for p in parts), default=date.min)
        book = load_book(backend, target, {str(p[1]) for p in parts}, last)
    for group, currency, day, amount, counted in parts:
        money[str(group)].add(book, str(currency), as_day(day), Decimal(str(amount)), int(counted))
    return money


def as_day(value: object) -> date:
    return value.date() if isinstance(value, datetime) else value  # type: ignore[return-value]


def money_fields(money: Money) -> dict[str, Any]:
    return {
        "currency": money.target,
        "revenue_raw": money.raw_values(),
        "unconverted_conversions": money.unconverted,
    }
