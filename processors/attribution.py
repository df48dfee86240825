"""Attribution of one conversion event: which touch it belongs to, and the visitor's path up to it.

Resolution (how the converting visitor and touch are found):

- ``click``: the postback names a click (FunnelFlux hit id, PVTLNK click_id) -> that click;
- ``visitor_link``: FunnelFlux ``vid`` + ``p`` -> the visitor's most recent click on that link, if the
  visitor was active in the 4 days before (visitor storage lives 4 days, extended by activity);
- ``visitor``: the visitor's own events, or a ``vid`` postback without page -> the most recent touch;
- ``push``: an event naming a push message -> the visitor's latest open of that push (else as visitor);
- ``fingerprint``: no ids -> the most recent click from the same client IP + user agent (PVTLNK).

The goal's window applies: the anchor touch must be at most ``window`` older than the conversion
(click day 1 -> conversion day 5 attributed, day 35 not). The path is every touch of the visitor inside
the window up to the anchor, oldest first; the models split the conversion over it.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from processors.messages import Attributed, ConvEvent, Resolution, Touch
from processors.sessions import Span, active_within
from schemas.instants import epoch_ms

ms = epoch_ms  # unix ms of an instant, exact (decision 166)


def _at(x: Touch) -> datetime:
    return x.at


def _last(touches: Sequence[Touch], end: int, match: Callable[[Touch], bool]) -> Touch | None:
    """The last of ``touches[:end]`` that ``match`` accepts."""
    for i in range(end - 1, -1, -1):
        if match(touches[i]):
            return touches[i]
    return None


def find_anchor(
    conv: ConvEvent,
    res: Resolution,
    touches: Sequence[Touch],
    spans: Sequence[Span],
    *,
    visitor_ttl: timedelta,
    own_event: bool,
) -> Touch | None:
    """The touch ``conv`` converts, among the visitor's ``touches`` (sorted oldest first)."""
    t = conv.occurred_at
    if res.method in ("click", "fingerprint"):
        return next((x for x in touches if x.touch_id == res.anchor_id), None)
    if res.method in ("visitor_link", "visitor") and not own_event:
        if not active_within(list(spans), ms(t), int(visitor_ttl.total_seconds() * 1000)):
            return None
    earlier = bisect_right(touches, t, key=_at)  # touches[:earlier] are those at or before t
    if res.method == "visitor_link":
        link = res.link_id
        return _last(touches, earlier, lambda x: x.kind == "click" and x.link_id == link)
    if res.method == "push":
        push = conv.push_hash
        opened = _last(touches, earlier, lambda x: x.kind == "push" and x.push_hash == push)
        if opened is not None:
            return opened
    if res.method in ("visitor", "push"):
        return touches[earlier - 1] if earlier else None
    return None


def path_to(anchor: Touch | None, touches: Sequence[Touch], t: datetime, window: timedelta) -> list[Touch]:
    """Touches inside ``window`` before ``t`` up to and including ``anchor`` (empty without anchor)."""
    if anchor is None or anchor.at < t - window:
        return []
    lo = bisect_left(touches, t - window, key=_at)
    hi = bisect_right(touches, anchor.at, key=_at)
    before = [x for x in touches[lo:hi] if x.touch_id != anchor.touch_id]
    return [*before, anchor]


@dataclass(frozen=True)
class GoalAttribution:
    anchor: Touch | None
    path: tuple[Touch, ...]
    time_to_convert_ms: int | None


_UNATTRIBUTED = GoalAttribution(None, (), None)


def for_goal(msg: Attributed, window: timedelta) -> GoalAttribution:
    """Narrow an event's attribution (computed for its longest goal window) to one goal's window."""
    if not msg.path:
        return _UNATTRIBUTED
    t = msg.conv.occurred_at
    anchor = msg.path[-1]
    if anchor.at < t - window:
        return _UNATTRIBUTED
    path = tuple(x for x in msg.path if x.at >= t - window)
    return GoalAttribution(anchor, path, max(0, ms(t) - ms(anchor.at)))
