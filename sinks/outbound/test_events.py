from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.rows import Conversion
from sinks.outbound.events import (
    Decided,
    Digest,
    Send,
    Skip,
    SkipReason,
    WebhookEvent,
    conversion_id,
    decide,
    decide_rows,
    iso_utc,
    money_text,
    webhook_body,
)

T0 = datetime(2026, 1, 21, 12, 0, tzinfo=UTC)


def conv(version: int = 1, **changes: Any) -> Conversion:
    fields: dict[str, Any] = {
        "project_id": "p1",
        "goal_id": "g1",
        "conversion_key": "tx:ORDER-12345",
        "account_id": "acc",
        "visitor_id": "v1",
        "event_id": "e1",
        "event_type": "postback",
        "occurred_at": T0,
        "received_at": T0,
        "revenue": Decimal("99.9900"),
        "currency": "USD",
        "products_count": 0,
        "transaction_id": "ORDER-12345",
        "experiment_ids": (),
        "variation_ids": (),
        "version": version,
        "attributed_click_id": "789",
        "attributed_link_id": "456",
    }
    fields.update(changes)
    return Conversion(**fields)


def sent(outcome: Send | Skip) -> Send:
    assert isinstance(outcome, Send), outcome
    return outcome


def skipped(outcome: Send | Skip) -> SkipReason:
    assert isinstance(outcome, Skip), outcome
    return outcome.reason


def test_first_row_is_tracked_with_the_reference_fields_in_a_stable_order() -> None:
    s = sent(decide(conv(), None))
    assert s.message.event is WebhookEvent.TRACKED
    body = orjson.loads(s.message.body)
    assert list(body) == [
        "event",
        "conversion_id",
        "project",
        "goal_id",
        "link_id",
        "click_id",
        "order_id",
        "value",
        "currency",
        "status",
        "status_class",
        "disable_postbacks",
        "timestamp",
        "version",
    ]
    assert body == {
        "event": "conversion.tracked",
        "conversion_id": conversion_id(conv()),
        "project": "p1",
        "goal_id": "g1",
        "link_id": "456",
        "click_id": "789",
        "order_id": "ORDER-12345",
        "value": 99.99,
        "currency": "USD",
        "status": None,
        "status_class": "normal",
        "disable_postbacks": False,
        "timestamp": "2026-01-21T12:00:00Z",
        "version": 1,
    }
    assert b'"value":99.99,' in s.message.body  # an exact JSON number, not a string or a float artefact
    assert s.message.webhook_id.startswith("msg_") and "." not in s.message.webhook_id
    assert s.digest == Digest(1, WebhookEvent.TRACKED, s.digest.state)


def test_same_row_gives_same_id_and_bytes_and_a_replay_after_a_crash_too() -> None:
    a, b = sent(decide(conv(), None)), sent(decide(conv(), None))
    assert a.message == b.message
    # the digest was lost in the crash: deciding again from the older digest gives the same message
    first = sent(decide(conv(1), None))
    upd = sent(decide(conv(2, status="approved", revenue=Decimal(120)), first.digest))
    again = sent(decide(conv(2, status="approved", revenue=Decimal(120)), first.digest))
    assert upd.message == again.message


def test_duplicates_and_replays_of_older_versions_send_nothing() -> None:
    d = sent(decide(conv(3), None)).digest
    assert skipped(decide(conv(3), d)) is SkipReason.DUPLICATE
    assert skipped(decide(conv(2, status="pending"), d)) is SkipReason.STALE
    # a newer version that changes nothing the receiver sees (e.g. another event merged in)
    out = decide(conv(4, events_merged=2, visitor_id="v2"), d)
    assert skipped(out) is SkipReason.UNCHANGED
    assert isinstance(out, Skip) and out.digest == Digest(4, WebhookEvent.TRACKED, d.state)


def test_pending_then_approved_with_the_real_revenue_is_an_update() -> None:
    pending = sent(
        decide(conv(1, status="pending", status_class="provisional", revenue=Decimal("0.01")), None)
    )
    assert orjson.loads(pending.message.body)["status"] == "pending"
    approved = sent(decide(conv(2, status="approved", revenue=Decimal("49.5")), pending.digest))
    body = orjson.loads(approved.message.body)
    assert approved.message.event is WebhookEvent.UPDATED
    assert (body["status"], body["value"], body["version"]) == ("approved", 49.5, 2)
    assert approved.message.webhook_id != pending.message.webhook_id


@pytest.mark.parametrize(
    "change",
    [
        {"revenue": Decimal("1.5")},
        {"currency": "EUR"},
        {"status": "sale"},
        {"attributed_click_id": "790"},
        {"attributed_link_id": ""},
        {"transaction_id": "ORDER-9"},
        {"disable_postbacks": True},
        {"occurred_at": datetime(2026, 1, 20, tzinfo=UTC)},
    ],
)
def test_any_announced_change_is_an_update(change: dict[str, Any]) -> None:
    d = sent(decide(conv(1), None)).digest
    assert sent(decide(conv(2, **change), d)).message.event is WebhookEvent.UPDATED


def test_approved_then_rejected_is_reversed_once() -> None:
    d = sent(decide(conv(1, status="approved"), None)).digest
    rev = sent(
        decide(conv(2, status="rejected", status_class="reversed", is_deleted=True, revenue=Decimal(0)), d)
    )
    assert rev.message.event is WebhookEvent.REVERSED
    assert orjson.loads(rev.message.body)["value"] == 0
    again = decide(
        conv(3, status="trash", status_class="reversed", is_deleted=True, revenue=Decimal(0)), rev.digest
    )
    assert skipped(again) is SkipReason.ALREADY_REVERSED
    # reinstated later: the receiver hears about it as an update
    assert isinstance(again, Skip) and again.digest is not None
    back = sent(decide(conv(4, status="approved"), again.digest))
    assert back.message.event is WebhookEvent.UPDATED


def test_is_deleted_alone_counts_as_reversed() -> None:
    d = sent(decide(conv(1), None)).digest
    assert sent(decide(conv(2, is_deleted=True), d)).message.event is WebhookEvent.REVERSED


def test_reversed_before_it_was_ever_announced_sends_nothing_but_blocks_older_replays() -> None:
    out = decide(conv(2, status="rejected", status_class="reversed", is_deleted=True), None)
    assert skipped(out) is SkipReason.NEVER_ANNOUNCED
    assert isinstance(out, Skip) and out.digest == Digest(2)
    assert skipped(decide(conv(1), out.digest)) is SkipReason.STALE  # the older normal row is a replay
    assert sent(decide(conv(3, status="approved"), out.digest)).message.event is WebhookEvent.TRACKED


def test_disable_postbacks_does_not_silence_the_goal_webhook() -> None:
    body = orjson.loads(sent(decide(conv(disable_postbacks=True), None)).message.body)
    assert body["disable_postbacks"] is True


def test_conversion_ids_are_opaque_and_distinct_per_goal_and_project() -> None:
    a = conversion_id(conv())
    assert "ORDER" not in a and a.startswith("cv_")
    assert len({a, conversion_id(conv(goal_id="g2")), conversion_id(conv(project_id="p2"))}) == 3


def test_unattributed_conversion_sends_nulls() -> None:
    body = orjson.loads(
        webhook_body(
            conv(attributed_click_id="", attributed_link_id="", transaction_id=""), WebhookEvent.TRACKED
        )
    )
    assert (body["link_id"], body["click_id"], body["order_id"]) == (None, None, None)


def test_money_and_time_formats() -> None:
    assert money_text(Decimal("99.9900")) == "99.99"
    assert money_text(Decimal("100")) == "100"
    assert money_text(Decimal("1E+3")) == "1000"
    assert money_text(Decimal("-0.0")) == "0"
    assert money_text(Decimal("123456789012.3456")) == "123456789012.3456"
    with pytest.raises(ValueError):
        money_text(Decimal("NaN"))
    assert iso_utc(datetime(2026, 1, 1, 1, 2, 3, 456789, tzinfo=UTC)) == "2026-01-01T01:02:03.456Z"
    assert iso_utc(datetime(2026, 1, 1)) == "2026-01-01T00:00:00Z"


def test_digest_round_trips_through_json() -> None:
    for d in (Digest(5), Digest(7, WebhookEvent.REVERSED, "ab" * 16)):
        assert Digest.from_json(d.to_json()) == d
    assert len(Digest(7, WebhookEvent.UPDATED, "ab" * 16).to_json()) < 100
    for bad in (b"[]", b'{"d":2,"v":1,"e":null,"s":""}', b'{"d":1,"v":"1","e":null,"s":""}'):
        with pytest.raises(ValueError):
            Digest.from_json(bad)


def test_a_batch_with_several_rows_of_one_conversion_is_decided_in_order() -> None:
    rows = [
        conv(1, status="pending", status_class="provisional", revenue=Decimal("0.01")),
        conv(1, status="pending", status_class="provisional", revenue=Decimal("0.01")),
        conv(2, status="approved"),
        conv(1, status="pending", status_class="provisional", revenue=Decimal("0.01")),
        conv(1, goal_id="g2"),
    ]
    decided, changed = decide_rows(rows, {})
    kinds = [d.outcome.message.event if isinstance(d.outcome, Send) else d.outcome.reason for d in decided]
    assert kinds == [
        WebhookEvent.TRACKED,
        SkipReason.DUPLICATE,
        WebhookEvent.UPDATED,
        SkipReason.STALE,
        WebhookEvent.TRACKED,
    ]
    assert set(changed) == {("p1", "g1", "tx:ORDER-12345"), ("p1", "g2", "tx:ORDER-12345")}
    assert changed[("p1", "g1", "tx:ORDER-12345")].version == 2
    # the same batch again, with the stored digests: nothing
    again, changed_again = decide_rows(rows, changed)
    assert all(isinstance(d.outcome, Skip) for d in again) and changed_again == {}
    assert isinstance(decided[0], Decided)


ROW_STATES = st.sampled_from(
    [
        {"status": ""},
        {"status": "pending", "status_class": "provisional", "revenue": Decimal("0.01")},
        {"status": "approved", "revenue": Decimal("10")},
        {"status": "approved", "revenue": Decimal("12.5")},
        {"status": "rejected", "status_class": "reversed", "is_deleted": True, "revenue": Decimal(0)},
    ]
)


@given(st.lists(st.tuples(st.integers(1, 6), ROW_STATES), max_size=25))
def test_any_arrival_order_never_reuses_an_id_for_another_body_and_replays_add_nothing(
    arrivals: list[tuple[int, dict[str, Any]]],
) -> None:
    # rows as emitted: one state per version (a version names one row)
    by_version: dict[int, dict[str, Any]] = {}
    rows = []
    for version, state in arrivals:
        state = by_version.setdefault(version, state)
        rows.append(conv(version, **state))
    decided, digests = decide_rows(rows, {})
    bodies: dict[str, bytes] = {}
    last_event: WebhookEvent | None = None
    for d in decided:
        if isinstance(d.outcome, Send):
            msg = d.outcome.message
            assert bodies.setdefault(msg.webhook_id, msg.body) == msg.body
            assert last_event is not None or msg.event is WebhookEvent.TRACKED
            last_event = msg.event
    # a replay of everything (after a crash that kept the digests) sends nothing more
    again, _ = decide_rows(rows, digests)
    assert not any(isinstance(d.outcome, Send) for d in again)
