"""Sessions: a visitor's activity split wherever it pauses longer than the inactivity gap.

A session is a maximal run of the visitor's activity events (clicks, experiment views, goal hits,
transactions, push opens, custom events) whose consecutive occurrence times are at most ``gap`` apart
(default 30 minutes). Its id is derived from (project, visitor, start time), so the same events give
the same sessions in any arrival order: an out-of-order event that extends a session backwards or
bridges two sessions re-keys it, and the replaced ids are reported as removed.
Postbacks are not visitor activity: they get the id of the session they fall into, if any.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import lru_cache

import msgspec


class Span(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """One session (part of the visitor state: a msgspec Struct, replaced rather than changed)."""

    start: int  # unix ms
    end: int
    n: int  # activity events in the session


#: a visitor's events of one batch mostly fall in the same session; bounded small (decision 165)
@lru_cache(maxsize=1 << 12)
def session_id(project: str, visitor: str, start_ms: int) -> str:
    return hashlib.sha256(f"{project}\x1f{visitor}\x1f{start_ms}".encode()).hexdigest()[:24]


@dataclass(slots=True)
class SessionChange:
    span: Span
    removed: list[Span] = field(default_factory=list)  # sessions merged into ``span`` (ids gone)


def add_activity(spans: list[Span], t_ms: int, gap_ms: int) -> SessionChange:
    """Record one activity event at ``t_ms`` in ``spans`` (kept sorted by start); return what changed."""
    lo, hi = t_ms - gap_ms, t_ms + gap_ms
    if len(spans) == 1:  # the usual case: the visitor's one session grows, or a new one starts
        s = spans[0]
        if s.start <= hi and s.end >= lo:
            if s.start <= t_ms <= s.end:
                merged = Span(s.start, s.end, s.n + 1)
                spans[0] = merged
                return SessionChange(merged, [])
            merged = Span(t_ms if t_ms < s.start else s.start, t_ms if t_ms > s.end else s.end, s.n + 1)
            spans[0] = merged
            return SessionChange(merged, [s] if s.start != merged.start else [])
    touching = [s for s in spans if s.start <= hi and s.end >= lo]  # s.start - gap <= t <= s.end + gap
    if len(touching) == 1:  # one session grows (same list and spans as below, cheaper)
        s = touching[0]
        merged = Span(t_ms if t_ms < s.start else s.start, t_ms if t_ms > s.end else s.end, s.n + 1)
        # sessions are disjoint, and the others are more than the gap away: the order stays
        spans[next(i for i, x in enumerate(spans) if x is s)] = merged
        return SessionChange(merged, [s] if s.start != merged.start else [])
    start = end = t_ms
    n = 1
    for s in touching:
        if s.start < start:
            start = s.start
        if s.end > end:
            end = s.end
        n += s.n
    merged = Span(start, end, n)
    for s in touching:
        spans.remove(s)
    spans.append(merged)
    if len(spans) > 1:
        spans.sort(key=_start)
    return SessionChange(merged, [s for s in touching if s.start != start])


def _start(span: Span) -> int:
    return span.start


def find(spans: list[Span], t_ms: int, gap_ms: int) -> Span | None:
    """The session ``t_ms`` belongs to (within the gap of it), if any."""
    for s in spans:
        if s.start - gap_ms <= t_ms <= s.end + gap_ms:
            return s
    return None


def active_within(spans: list[Span], t_ms: int, ttl_ms: int) -> bool:
    """Whether the visitor had a session overlapping [t - ttl, t] (FunnelFlux's 4-day visitor storage)."""
    return any(s.start <= t_ms and s.end >= t_ms - ttl_ms for s in spans)


def prune(spans: list[Span], horizon_ms: int) -> list[Span]:
    """Drop sessions that ended before ``horizon_ms``."""
    return [s for s in spans if s.end >= horizon_ms]
