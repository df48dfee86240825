"""Which goal webhook a conversion row calls for, and the exact bytes it sends.

The processors emit the latest row of a conversion (per project, goal, conversion key) whenever it
changes; rows may repeat, and after a crash older versions may arrive again. :func:`decide` compares a
row with the conversion's :class:`Digest` (what was last announced, and the highest version seen):

- first row that counts (not reversed)           -> ``conversion.tracked``
- newer row, announced fields changed            -> ``conversion.updated`` (status, value, currency,
  attribution, order id, conversion time or ``disable_postbacks``; also a reversed conversion coming back)
- newer row, reversed (``is_deleted`` or status class ``reversed``) after an announcement
                                                 -> ``conversion.reversed``
- otherwise nothing, with a reason: same version again (duplicate), older version (replay), nothing
  announced changed, reversed before it was ever announced, already reversed.

The body is built from the row alone (no clock): JSON, fixed key order, so a replay after a crash gives
the same bytes. The ``webhook-id`` is a hash of (conversion identity, event, version, announced state):
one id never names two different bodies, and a retry re-sends the stored bytes under the same id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

import orjson

from schemas.conversion_facts import ConversionFacts
from schemas.jsonbytes import dumps_kept

REVERSED_CLASS = "reversed"  # processors.statuses.StatusClass.REVERSED (sinks do not import processors)
DIGEST_VERSION = 1


class WebhookEvent(StrEnum):
    TRACKED = "conversion.tracked"
    UPDATED = "conversion.updated"
    REVERSED = "conversion.reversed"


class SkipReason(StrEnum):
    DUPLICATE = "duplicate"  # the same version again
    STALE = "stale"  # an older version (a replay)
    UNCHANGED = "unchanged"  # a newer version, but nothing the receiver sees changed
    NEVER_ANNOUNCED = "never_announced"  # reversed before any announcement: nothing to take back
    ALREADY_REVERSED = "already_reversed"


Key = tuple[str, str, str]  # (project, goal, conversion key)


def conversion_key(row: ConversionFacts) -> Key:
    return (row.project_id, row.goal_id, row.conversion_key)


def conversion_id(row: ConversionFacts) -> str:
    """The id receivers see: opaque (the internal key can hold visitor ids), stable, unique across
    projects and goals."""
    digest = hashlib.sha256("\x1f".join(conversion_key(row)).encode()).hexdigest()
    return f"cv_{digest[:24]}"


def is_reversed(row: ConversionFacts) -> bool:
    return row.is_deleted or row.status_class == REVERSED_CLASS


def money_text(value: Decimal) -> str:
    """A plain decimal (no exponent, no trailing zeros): ``Decimal("99.9900")`` -> ``"99.99"``."""
    if not value.is_finite():
        raise ValueError(f"revenue {value} is not finite")
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "0") else text


def iso_utc(at: datetime) -> str:
    """``2026-01-21T12:00:00Z`` (milliseconds when there are any); a naive time is taken as UTC."""
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    spec = "milliseconds" if at.microsecond else "seconds"
    return at.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def announced(row: ConversionFacts) -> dict[str, Any]:
    """What the receiver is told about the conversion (everything in the body but event and version),
    in body order."""
    return {
        "conversion_id": conversion_id(row),
        "project": row.project_id,
        "goal_id": row.goal_id,
        "link_id": row.attributed_link_id or None,
        "click_id": row.attributed_click_id or None,
        "order_id": row.transaction_id or None,
        "value": orjson.Fragment(money_text(row.revenue).encode()),  # a JSON number, exact
        "currency": row.currency or None,
        "status": row.status or None,
        "status_class": row.status_class,
        "disable_postbacks": row.disable_postbacks,
        "timestamp": iso_utc(row.occurred_at),
    }


def state_digest(row: ConversionFacts) -> str:
    """A short hash of the announced fields: equal digests = nothing the receiver sees changed."""
    return _digest(announced(row))


def webhook_body(row: ConversionFacts, event: WebhookEvent) -> bytes:
    """The body, built once per delivery and stored with it: every retry sends these bytes."""
    return _body(announced(row), event, row.version)


def _digest(fields: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(fields)).hexdigest()[:32]


def _body(fields: dict[str, Any], event: WebhookEvent, version: int) -> bytes:
    return dumps_kept({"event": event.value, **fields, "version": version})  # queued, kept


def webhook_id(row: ConversionFacts, event: WebhookEvent, state: str) -> str:
    """Deterministic from (conversion identity, event, version, announced state); no '.' in it."""
    material = "\x1f".join((*conversion_key(row), event.value, str(row.version), state))
    return "msg_" + hashlib.sha256(material.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Digest:
    """Per conversion: the highest version decided on, the last event sent (None = never announced)
    and the state it announced. Small and JSON-serializable, for the processors' state or a table."""

    version: int
    event: WebhookEvent | None = None
    state: str = ""

    def to_json(self) -> bytes:
        return dumps_kept(  # kept in the planner's state, one per conversion
            {
                "d": DIGEST_VERSION,
                "v": self.version,
                "e": self.event.value if self.event else None,
                "s": self.state,
            }
        )

    @classmethod
    def from_json(cls, data: bytes) -> Digest:
        obj = orjson.loads(data)
        if not isinstance(obj, dict) or obj.get("d") != DIGEST_VERSION:
            raise ValueError("not a webhook digest of a known version")
        version, event, state = obj.get("v"), obj.get("e"), obj.get("s")
        if not isinstance(version, int) or not isinstance(state, str):
            raise ValueError("a webhook digest has an int version and a str state")
        return cls(version, WebhookEvent(event) if event is not None else None, state)


@dataclass(frozen=True, slots=True)
class WebhookMessage:
    webhook_id: str
    event: WebhookEvent
    body: bytes


@dataclass(frozen=True, slots=True)
class Send:
    message: WebhookMessage
    digest: Digest  # to store with the delivery, atomically


@dataclass(frozen=True, slots=True)
class Skip:
    reason: SkipReason
    digest: Digest | None  # None: nothing to store (nothing was known and nothing changed)


def decide(row: ConversionFacts, previous: Digest | None) -> Send | Skip:
    """What ``row`` calls for, given what was announced for its conversion before."""
    if previous is not None and row.version <= previous.version:
        return Skip(SkipReason.DUPLICATE if row.version == previous.version else SkipReason.STALE, previous)
    announced_before = previous is not None and previous.event is not None
    fields = announced(row)  # once for the state and the body
    state = _digest(fields)
    if is_reversed(row):
        if not announced_before:
            return Skip(SkipReason.NEVER_ANNOUNCED, Digest(row.version))
        assert previous is not None
        if previous.event is WebhookEvent.REVERSED:
            return Skip(SkipReason.ALREADY_REVERSED, Digest(row.version, previous.event, previous.state))
        event = WebhookEvent.REVERSED
    elif not announced_before:
        event = WebhookEvent.TRACKED
    else:
        assert previous is not None
        if previous.state == state:
            return Skip(SkipReason.UNCHANGED, Digest(row.version, previous.event, previous.state))
        event = WebhookEvent.UPDATED
    message = WebhookMessage(webhook_id(row, event, state), event, _body(fields, event, row.version))
    return Send(message, Digest(row.version, event, state))


@dataclass(frozen=True, slots=True)
class Decided:
    row: ConversionFacts
    outcome: Send | Skip


def decide_rows(
    rows: Iterable[ConversionFacts], digests: Mapping[Key, Digest]
) -> tuple[list[Decided], dict[Key, Digest]]:
    """A batch of rows in arrival order (several rows of one conversion may be in it): the decision for
    each and the digests that changed, to store with the deliveries in one transaction."""
    changed: dict[Key, Digest] = {}
    out: list[Decided] = []
    for row in rows:
        key = conversion_key(row)
        outcome = decide(row, changed.get(key, digests.get(key)))
        new = outcome.digest
        if new is not None and new != changed.get(key, digests.get(key)):
            changed[key] = new
        out.append(Decided(row, outcome))
    return out, changed
