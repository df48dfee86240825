from processors.sessions import Span, active_within, add_activity, find, session_id

MIN = 60_000
GAP = 30 * MIN


def test_gap_splits_and_ids_follow_the_start():
    spans: list[Span] = []
    add_activity(spans, 0, GAP)
    add_activity(spans, 20 * MIN, GAP)
    change = add_activity(spans, 100 * MIN, GAP)  # 80 minutes later: new session
    assert [(s.start, s.end, s.n) for s in spans] == [(0, 20 * MIN, 2), (100 * MIN, 100 * MIN, 1)]
    assert not change.removed
    assert session_id("p", "v", 0) != session_id("p", "v", 100 * MIN)
    assert find(spans, 45 * MIN, GAP) is spans[0] and find(spans, 60 * MIN, GAP) is None


def test_late_event_bridges_two_sessions():
    spans: list[Span] = []
    for t in (0, 20 * MIN, 70 * MIN):
        add_activity(spans, t, GAP)
    assert len(spans) == 2
    change = add_activity(spans, 45 * MIN, GAP)
    assert [(s.start, s.end, s.n) for s in spans] == [(0, 70 * MIN, 4)]
    assert [s.start for s in change.removed] == [70 * MIN]


def test_order_does_not_matter():
    times = [0, 5 * MIN, 50 * MIN, 200 * MIN, 220 * MIN, 26 * MIN]
    a: list[Span] = []
    b: list[Span] = []
    for t in times:
        add_activity(a, t, GAP)
    for t in reversed(times):
        add_activity(b, t, GAP)
    assert a == b


def test_visitor_storage_lives_four_days_after_activity():
    day = 86_400_000
    spans = [Span(start=0, end=day, n=5)]
    assert active_within(spans, 4 * day, 4 * day)
    assert not active_within(spans, 5 * day + 1, 4 * day)
