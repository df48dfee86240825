"""The counting step's state entries (processors/counting.py): the days of a visitor and of a converter
(:class:`Member`, :class:`Visitor`), what a counted conversion row added (:class:`Counted`), their JSON
encoding, and reading and writing them through the batch's store (live objects when it is staged).
Days are UTC days as days since 1970-01-01."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import msgspec

from processors.store import KeyValueStore, StagedStore, pack, unpack

DAY_MS = 86_400_000
NO = 0  # processors.counters.NO_DAY (1970-01-01) as an epoch day: the previous day of a first day
NEVER_MS = 1 << 62  # expiry of state that must live as long as the rows it mirrors
_EPOCH = date(1970, 1, 1).toordinal()
S = "\x1f"


def epoch_day(t: datetime) -> int:
    """The UTC day of ``t`` as days since 1970-01-01 (a naive time is taken as UTC)."""
    tz = t.tzinfo
    if tz is not None and tz is not UTC and t.utcoffset():
        t = t.astimezone(UTC)
    return t.toordinal() - _EPOCH


def as_date(day: int) -> date:
    return date.fromordinal(_EPOCH + day)


class Member(msgspec.Struct, array_like=True, gc=False):
    """A member's distinct days (sorted) from ``floor`` on; converters also count their live conversions
    per day (``weights``, parallel to ``days``)."""

    floor: int = 0
    days: list[int] = []
    weights: list[int] = []


class Visitor(msgspec.Struct, array_like=True, gc=False):
    """A visitor's state: its days as a visitor (``own``), and per goal its days as a converter."""

    own: Member
    goals: dict[str, Member] = {}


class Counted(msgspec.Struct, array_like=True, gc=False):
    """What one conversion row (one goal of one conversion key) added: its version and contribution."""

    version: int
    day: int
    currency: str
    revenue: str
    visitor: str
    live: bool


VISITOR = msgspec.json.Decoder(Visitor)
COUNTED = msgspec.json.Decoder(dict[str, Counted])
VALUE = msgspec.json.Decoder(list[int | str])
encode = msgspec.json.encode


def same_contribution(a: Counted, b: Counted) -> bool:
    """The same contribution (a new version of the row that changes nothing counted)."""
    return (
        a.day == b.day
        and a.live == b.live
        and a.visitor == b.visitor
        and a.currency == b.currency
        and (a.revenue == b.revenue)
    )


def load_entry(store: KeyValueStore, key: str, decoder: msgspec.json.Decoder[Any]) -> Any | None:
    """The state of ``key``: the object staged in this batch (live), else decoded from its bytes."""
    if isinstance(store, StagedStore):
        held = store.get_object(key)
        if held is not None:
            return held
    raw = store.get(key)
    return None if raw is None else decoder.decode(unpack(raw)[1])


def save_entry(store: KeyValueStore, key: str, state: Any, expires_ms: int) -> None:
    if isinstance(store, StagedStore):
        store.put_object(key, state, encode, expires_ms)
    else:
        store.put(key, pack(expires_ms, encode(state)))
