"""What outbound planning reads of a conversion row (decision 161).

The goal webhooks, the traffic-source postbacks and the public stream (``sinks.outbound``,
``sinks.stream``) read 15 of the fields of :class:`schemas.rows.Conversion`: never its attribution credits
or experiments, which are most of a row's JSON. :class:`ConversionFacts` names those fields; the row
model has them, and so has :class:`ConversionFactsRecord`, which the worker's planner decodes from the
conversion rows on Kafka with msgspec (~2 µs a row, against ~45 µs for validating the whole row with
pydantic), skipping the other fields unread.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Protocol

import msgspec


class ConversionFacts(Protocol):
    """The fields of a conversion row that outbound planning reads (read-only)."""

    @property
    def project_id(self) -> str: ...
    @property
    def goal_id(self) -> str: ...
    @property
    def conversion_key(self) -> str: ...
    @property
    def occurred_at(self) -> datetime: ...
    @property
    def revenue(self) -> Decimal: ...
    @property
    def currency(self) -> str: ...
    @property
    def transaction_id(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def status(self) -> str: ...
    @property
    def status_class(self) -> str: ...
    @property
    def is_deleted(self) -> bool: ...
    @property
    def disable_postbacks(self) -> bool: ...
    @property
    def attributed_click_id(self) -> str: ...
    @property
    def attributed_external_click_id(self) -> str: ...
    @property
    def attributed_link_id(self) -> str: ...


class ConversionFactsRecord(msgspec.Struct, kw_only=True, frozen=True, gc=False):
    """:class:`ConversionFacts` read from a conversion row's JSON (the other fields are skipped). Types
    and defaults are the row model's; only scalar fields, so instances stay out of the collector."""

    project_id: str
    goal_id: str
    conversion_key: str
    occurred_at: datetime
    revenue: Decimal
    currency: str
    transaction_id: str
    version: int
    status: str = ""
    status_class: str = "normal"
    is_deleted: bool = False
    disable_postbacks: bool = False
    attributed_click_id: str = ""
    attributed_external_click_id: str = ""
    attributed_link_id: str = ""
