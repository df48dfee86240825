from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from processors.conversions import conversions_from_event
from processors.dedup import TransactionDedup
from processors.outcome import Drop, Ok
from processors.pipeline import ConversionPipeline
from schemas.envelope import encode_envelope
from schemas.events import Event, EventType
from schemas.ids import new_event_id

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def tr(txid: str | None, goals=("1",), revenue="10.00", visitor="v", at=T0, project="p") -> Event:
    return Event(
        event_id=new_event_id(),
        type=EventType.TRANSACTION,
        received_at=at,
        occurred_at=at,
        account_id="a",
        project_id=project,
        visitor_id=visitor,
        goal_ids=goals,
        revenue=Decimal(revenue),
        transaction_id=txid,
    )


def hit(visitor: str, goals=("1",)) -> Event:
    return Event(
        event_id=new_event_id(),
        type=EventType.HIT_GOAL,
        received_at=T0,
        occurred_at=T0,
        account_id="a",
        project_id="p",
        visitor_id=visitor,
        goal_ids=goals,
    )


def test_transaction_counts_once_per_project():
    d = TransactionDedup()
    assert isinstance(d.check(tr("TX1")), Ok)
    out = d.check(tr("TX1", at=T0 + timedelta(hours=1)))
    assert isinstance(out, Drop) and "TX1" in out.reason
    assert isinstance(d.check(tr("TX1", project="other")), Ok)
    assert isinstance(d.check(tr(None)), Ok) and isinstance(d.check(tr(None)), Ok)


def test_dedup_state_is_bounded_by_window():
    d = TransactionDedup(window=timedelta(days=1))
    for i in range(100):
        d.check(tr(f"TX{i}", at=T0))
    assert len(d) == 100
    d.check(tr("late", at=T0 + timedelta(days=2)))
    assert len(d) == 1 and d.evicted == 100
    # after the window the same id is a new transaction
    assert isinstance(d.check(tr("TX1", at=T0 + timedelta(days=2))), Ok)


def test_conversions_one_per_goal_with_keys():
    rows = conversions_from_event(tr("TX9", goals=("5", "6", "5"), revenue="49.90"))
    assert [(r.goal_id, r.conversion_key, r.revenue) for r in rows] == [
        ("5", "tx:TX9", Decimal("49.90")),
        ("6", "tx:TX9", Decimal("49.90")),
    ]
    h = conversions_from_event(hit("vis"))
    assert [(r.goal_id, r.conversion_key, r.revenue) for r in h] == [("1", "visitor:vis", Decimal(0))]
    view = Event(
        event_id=new_event_id(),
        type=EventType.VIEW_EXP,
        received_at=T0,
        occurred_at=T0,
        account_id="a",
        project_id="p",
        visitor_id="v",
    )
    assert conversions_from_event(view) == []


def test_bad_record_goes_to_dead_letter_with_reason():
    res = ConversionPipeline().process_records([b"garbage", encode_envelope([hit("v")])])
    assert len(res.batch.conversions) == 1
    assert len(res.dead_letters) == 1 and res.dead_letters[0].raw == b"garbage"
    assert "not JSON" in res.dead_letters[0].reason


BASE = [
    tr("A", revenue="1.00"),
    tr("B", goals=("2",), revenue="2.50"),
    hit("x"),
    hit("y", goals=("2",)),
    tr("A", revenue="1.00", visitor="other"),
]


def final_counts(events) -> dict[tuple[str, str], Decimal]:
    """What the sink keeps: one row per (goal, conversion key)."""
    res = ConversionPipeline().process_events(events)
    kept = {}
    for c in res.batch.conversions:
        kept[(c.goal_id, c.conversion_key)] = c.revenue
    return kept


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(range(len(BASE))), min_size=len(BASE), max_size=25).filter(
        lambda xs: set(xs) == set(range(len(BASE)))
    ),
    st.randoms(),
)
def test_any_interleaving_and_duplication_gives_same_counts(order, rnd):
    expected = {
        ("1", "tx:A"): Decimal("1.00"),
        ("2", "tx:B"): Decimal("2.50"),
        ("1", "visitor:x"): Decimal(0),
        ("2", "visitor:y"): Decimal(0),
    }
    assert final_counts([BASE[i] for i in order]) == expected
