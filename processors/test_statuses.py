from datetime import UTC, datetime, timedelta
from decimal import Decimal

from processors.messages import ConvEvent
from processors.statuses import StatusClass, classify, resolve

T0 = datetime(2026, 5, 1, tzinfo=UTC)


def pb(eid: str, minutes: int, status: str = "", revenue: str | None = None, **kw) -> ConvEvent:
    return ConvEvent(
        event_id=eid,
        type="postback",
        key="tx:1",
        project_id="p",
        account_id="p",
        visitor_id="",
        occurred_at=T0 + timedelta(minutes=minutes),
        received_at=T0 + timedelta(minutes=minutes),
        goal_ids=("g",),
        revenue=None if revenue is None else Decimal(revenue),
        status=status,
        **kw,
    )


def test_classify_reference_statuses():
    for s in ("pending", "hold", "preapproved", " PENDING "):
        assert classify(s) is StatusClass.PROVISIONAL
    for s in ("rejected", "reject", "trash", "cancelled", "Trash"):
        assert classify(s) is StatusClass.REVERSED
    for other in (None, "", "approved", "sale", "canceled"):
        assert classify(other) is StatusClass.NORMAL


def test_pending_is_provisional_then_real_revenue():
    out = resolve([pb("a", 0, "pending", "50")])
    assert (out.status_class, out.revenue, out.is_deleted) == (
        StatusClass.PROVISIONAL,
        Decimal("0.01"),
        False,
    )
    out = resolve([pb("a", 0, "pending", "50"), pb("b", 5, "approved", "55")])
    assert (out.status_class, out.revenue) == (StatusClass.NORMAL, Decimal("55"))
    # approved without rev keeps the amount sent with pending
    assert resolve([pb("a", 0, "pending", "50"), pb("b", 5, "approved")]).revenue == Decimal("50")


def test_reject_deletes_and_latest_by_occurrence_wins_in_any_order():
    events = [pb("a", 0, "pending", "50"), pb("b", 5, "approved", "55"), pb("c", 9, "trash")]
    assert resolve(events).is_deleted
    assert resolve(reversed(events)).is_deleted
    # a reject that occurred before the approval (arriving late) does not delete it
    late = [pb("b", 5, "approved", "55"), pb("c", 1, "rejected")]
    out = resolve(late)
    assert not out.is_deleted and out.revenue == Decimal("55")


def test_disable_postbacks_comes_from_the_deciding_event():
    assert resolve([pb("a", 0, "", "1", disable_postbacks=True)]).disable_postbacks
    assert not resolve([pb("a", 0, "", "1", disable_postbacks=True), pb("b", 1, "", "2")]).disable_postbacks
