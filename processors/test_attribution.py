"""find_anchor / path_to (binary search over the sorted touches) against the plain definitions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import example, given, settings
from hypothesis import strategies as st

from processors.attribution import find_anchor, ms, path_to
from processors.messages import ConvEvent, Method, Resolution, Touch

T0 = datetime(2026, 11, 1, tzinfo=UTC)
TTL = timedelta(days=4)


def plain_anchor(conv: ConvEvent, res: Resolution, touches: list[Touch]) -> Touch | None:
    """find_anchor as the docs define it, for the methods that do not look at sessions (own events)."""
    earlier = [x for x in touches if x.at <= conv.occurred_at]
    if res.method in ("click", "fingerprint"):
        return next((x for x in touches if x.touch_id == res.anchor_id), None)
    if res.method == "visitor_link":
        on_link = [x for x in earlier if x.kind == "click" and x.link_id == res.link_id]
        return on_link[-1] if on_link else None
    if res.method == "push":
        opens = [x for x in earlier if x.kind == "push" and x.push_hash == conv.push_hash]
        if opens:
            return opens[-1]
    return earlier[-1] if earlier else None


def plain_path(anchor: Touch | None, touches: list[Touch], t: datetime, window: timedelta) -> list[Touch]:
    if anchor is None or anchor.at < t - window:
        return []
    inside = [x for x in touches if t - window <= x.at <= anchor.at and x.touch_id != anchor.touch_id]
    return [*inside, anchor]


touch_st = st.builds(
    lambda i, minutes, kind, link, push: Touch(
        touch_id=f"t{i}",
        kind=kind,
        at=T0 + timedelta(minutes=minutes),
        link_id=link if kind == "click" else "",
        push_hash=push if kind == "push" else "",
    ),
    st.integers(0, 10**6),
    st.integers(0, 600),
    st.sampled_from(["click", "push"]),
    st.sampled_from(["L1", "L2", "L3"]),
    st.sampled_from(["H1", "H2"]),
)


@settings(max_examples=400)
@given(
    st.lists(touch_st, max_size=25, unique_by=lambda x: x.touch_id),
    st.integers(0, 700),
    st.sampled_from(["visitor", "visitor_link", "push", "click"]),
    st.sampled_from(["L1", "L2", "L4"]),
    st.sampled_from(["H1", "H2", ""]),
    st.integers(0, 30),
    st.integers(10, 900),
)
def test_binary_search_finds_what_the_plain_scan_does(
    touches: list[Touch], at: int, method: Method, link: str, push: str, pick: int, window_min: int
) -> None:
    touches.sort(key=lambda x: (x.at, x.touch_id))  # as the visitor stage keeps them
    t = T0 + timedelta(minutes=at)
    conv = ConvEvent(
        event_id="e", type="hit_goal", key="k", project_id="p", account_id="a", visitor_id="v",
        occurred_at=t, received_at=t, goal_ids=("g",), push_hash=push,
    )  # fmt: skip
    anchor_id = touches[pick % len(touches)].touch_id if touches and pick % 3 else "missing"
    res = Resolution(method=method, visitor_id="v", anchor_id=anchor_id, link_id=link)
    got = find_anchor(conv, res, touches, [], visitor_ttl=TTL, own_event=True)
    want = plain_anchor(conv, res, touches)
    assert got == want
    window = timedelta(minutes=window_min)
    assert path_to(got, touches, t, window) == plain_path(want, touches, t, window)


@settings(max_examples=2000)
@given(
    st.datetimes(datetime(1971, 1, 1), datetime(2199, 12, 31)),
    st.integers(-14 * 60, 14 * 60),
)
@example(datetime(2004, 5, 31, 13, 17, 20, 909000), 0)
def test_ms_is_the_exact_integer_millisecond(d: datetime, offset_min: int) -> None:
    """ms() (session ids, spans, horizons) is exact for aware millisecond-precision instants; the float
    form int(dt.timestamp() * 1000) gave 1 ms low for ~0.6% of them (outside 2004-11..2038-01)."""
    whole_ms = (d - datetime(1970, 1, 1)) // timedelta(milliseconds=1)  # naive arithmetic: exact
    at = (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=whole_ms)).astimezone(
        timezone(timedelta(minutes=offset_min))
    )
    assert ms(at) == whole_ms
