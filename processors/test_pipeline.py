"""The stages together (in-process pipeline): dedup, statuses, attribution, experiments, exactness."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from processors.config import ProcessingConfig
from processors.outcome import DropReason
from processors.pipeline import ConversionPipeline, SourceRecord
from processors.stage import load_with
from processors.store import DictStore
from processors.visitors import decode_state
from schemas.envelope import encode_envelope
from schemas.events import Event, EventType, ExperimentVariation
from schemas.rows import Conversion

T0 = datetime(2026, 1, 1, 9, tzinfo=UTC)
DAY = timedelta(days=1)
_n = 0


def ev(type_: EventType, at: datetime, visitor: str = "v1", project: str = "p", **kw) -> Event:
    global _n
    _n += 1
    eid = f"{int(at.timestamp() * 1000):012x}-0000-7000-8000-{_n:012x}"
    return Event(
        event_id=eid,
        type=type_,
        received_at=at,
        occurred_at=at,
        account_id=project,
        project_id=project,
        visitor_id=visitor,
        **kw,
    )


def click(at, visitor="v1", link="L1", cid=None, **kw) -> Event:
    return ev(
        EventType.CLICK, at, visitor, click_id=cid or f"{link}.{visitor}.{at:%j%H%M}", link_id=link, **kw
    )


def postback(at, goal="sale", **kw) -> Event:
    kw.setdefault("visitor", "")
    return ev(EventType.POSTBACK, at, goal_ids=(goal,), **kw)


def final(rows: list[Conversion]) -> dict[tuple[str, str, str], Conversion]:
    """What the sink keeps: highest version per key."""
    kept: dict[tuple[str, str, str], Conversion] = {}
    for r in rows:
        k = (r.project_id, r.goal_id, r.conversion_key)
        if k not in kept or r.version >= kept[k].version:
            kept[k] = r
    return kept


def run(events, batch: int | None = None, config: ProcessingConfig | None = None):
    p = ConversionPipeline(config)
    rows: list[Conversion] = []
    step = batch or len(events) or 1
    for i in range(0, len(events), step):
        rows.extend(p.process_events(events[i : i + step]).batch.conversions)
    return final(rows)


def summary(kept):
    """Order-free digest of the final rows: counts, revenue, attribution, credits, variations."""
    out = {}
    for k, c in kept.items():
        out[k] = (
            c.is_deleted,
            c.revenue,
            c.status_class,
            c.attributed_touch_id,
            c.attributed_external_click_id,
            c.time_to_convert_ms,
            c.variation_ids,
            tuple(sorted((x.model, x.touch_id, x.credit, x.revenue) for x in c.credits)),
            c.occurred_at,
            c.visitor_id,
        )
    return out


def test_transaction_counts_once_across_endpoints_and_status_updates():
    c = click(T0)
    events = [
        c,
        postback(
            T0 + DAY,
            click_id=c.click_id,
            link_id="L1",
            transaction_id="TX",
            revenue=Decimal(20),
            status="pending",
        ),
        postback(
            T0 + 2 * DAY,
            click_id=c.click_id,
            link_id="L1",
            transaction_id="TX",
            revenue=Decimal(25),
            status="approved",
        ),
        # the same order id through another endpoint (PVTLNK), same goal: still one conversion
        postback(T0 + 2 * DAY, transaction_id="TX", revenue=Decimal(25), client_ip="1.2.3.4", user_agent="x"),
        ev(EventType.TRANSACTION, T0 + 3 * DAY, goal_ids=("sale",), transaction_id="TX", revenue=Decimal(25)),
    ]
    kept = run(events)
    assert list(kept) == [("p", "sale", "tx:TX")]
    conv = kept[("p", "sale", "tx:TX")]
    assert (conv.revenue, conv.status_class, conv.events_merged) == (Decimal(25), "normal", 4)
    assert conv.attributed_click_id == c.click_id and conv.time_to_convert_ms == DAY.total_seconds() * 1000
    assert conv.occurred_at == T0 + DAY  # conversion time: the first event


def test_reversed_conversion_is_deleted_or_never_created():
    c = click(T0)
    pb = dict(click_id=c.click_id, link_id="L1", transaction_id="T2", revenue=Decimal(9))
    kept = run([c, postback(T0 + DAY, **pb), postback(T0 + 2 * DAY, status="rejected", **pb)])
    assert kept[("p", "sale", "tx:T2")].is_deleted
    kept = run([c, postback(T0 + DAY, status="trash", **pb)])
    assert kept[("p", "sale", "tx:T2")].is_deleted  # stored as deleted: counted nowhere


def test_attribution_window_day_5_yes_day_35_no():
    c = click(T0)
    kept = run(
        [
            c,
            postback(T0 + 4 * DAY, click_id=c.click_id, transaction_id="D5"),
            postback(T0 + 34 * DAY, click_id=c.click_id, transaction_id="D35"),
        ]
    )
    assert kept[("p", "sale", "tx:D5")].attributed_click_id == c.click_id
    d35 = kept[("p", "sale", "tx:D35")]
    assert d35.attributed_touch_id == "" and d35.attribution_method == "none" and not d35.is_deleted
    assert {(x.model, x.touch_id, x.credit) for x in d35.credits if x.model == "last_click"} == {
        ("last_click", "", Decimal(1))
    }


def test_a_returning_visitor_keeps_the_attribution_of_an_old_conversion():
    """A conversion near the end of its window keeps its click when the visitor comes back after the
    click's state expired (touches live max window + lateness): settled conversions (older than the
    lateness) are not attributed again."""
    c = click(T0)
    goal = ev(EventType.HIT_GOAL, T0 + 29 * DAY, goal_ids=("signup",))
    later = [ev(EventType.VIEW_EXP, T0 + d * DAY) for d in (33, 34, 40)]
    for batch in (None, 1):
        kept = run([c, goal, *later], batch=batch)
        signup = kept[("p", "signup", "visitor:v1")]
        assert signup.attributed_click_id == c.click_id, batch
        assert signup.time_to_convert_ms == 29 * 86_400_000


def test_the_visitor_state_holds_only_the_conversions_that_may_still_change():
    """Settled conversions leave the visitor's state (it stays small for a visitor converting every day)
    and their rows stay as they were."""
    c = click(T0)
    days = [ev(EventType.HIT_GOAL, T0 + d * DAY, goal_ids=(f"g{d}",)) for d in range(1, 11)]
    pipeline = ConversionPipeline()
    rows: list[Conversion] = []
    for e in [c, *days]:
        rows.extend(pipeline.process_events([e]).batch.conversions)
    state = load_with(pipeline.stores["visitor"], "v1", decode_state)
    assert state is not None
    held = state.projects["p"].convs
    # pruned as of the stream time before the last batch (day 9): what is not older than day 9 - 48 h
    assert sorted(h.conv.goal_ids[0] for h in held.values()) == ["g10", "g7", "g8", "g9"]
    kept = final(rows)
    assert len(kept) == 10
    assert {k.attributed_click_id for k in kept.values()} == {c.click_id}


def test_a_late_click_still_attributes_a_recent_conversion():
    """Within the lateness a conversion is attributed again when an earlier click arrives late."""
    goal = ev(EventType.HIT_GOAL, T0 + DAY, goal_ids=("signup",))
    c = click(T0)
    late = c.model_copy(update={"received_at": T0 + DAY + timedelta(hours=20)})
    kept = run([goal, ev(EventType.VIEW_EXP, T0 + DAY + timedelta(hours=10)), late], batch=1)
    assert kept[("p", "signup", "visitor:v1")].attributed_click_id == c.click_id


def test_goal_window_from_the_event_or_the_config():
    c = click(T0)
    short = postback(T0 + 8 * DAY, click_id=c.click_id, transaction_id="W7", attribution_window_days=7)
    kept = run([c, short])
    assert kept[("p", "sale", "tx:W7")].attributed_touch_id == ""
    cfg = ProcessingConfig(window=lambda p, g: timedelta(days=7))
    kept = run([c, postback(T0 + 8 * DAY, click_id=c.click_id, transaction_id="W7")], config=cfg)
    assert kept[("p", "sale", "tx:W7")].attribution_window_s == 7 * 86400
    assert kept[("p", "sale", "tx:W7")].attributed_touch_id == ""


def test_vid_and_page_resolves_to_latest_click_on_that_page_within_four_days():
    c1 = click(T0, link="L1")
    c2 = click(T0 + timedelta(hours=1), link="L2")
    c3 = click(T0 + timedelta(hours=2), link="L1")
    events = [
        c1,
        c2,
        c3,
        postback(T0 + 3 * DAY, visitor="v1", link_id="L1", transaction_id="VP"),
        postback(T0 + 6 * DAY, visitor="v1", link_id="L2", transaction_id="LATE"),  # no activity for 6 days
    ]
    kept = run(events)
    vp = kept[("p", "sale", "tx:VP")]
    assert (vp.attribution_method, vp.attributed_click_id) == ("visitor_link", c3.click_id)
    # backward attribution: every earlier touch of the path is credited with the whole conversion
    assert {x.touch_id for x in vp.credits if x.model == "backward"} == {
        c1.click_id,
        c2.click_id,
        c3.click_id,
    }
    linear = {x.touch_id: x.credit for x in vp.credits if x.model == "linear"}
    assert sum(linear.values()) == 1 and len(linear) == 3
    assert kept[("p", "sale", "tx:LATE")].attributed_touch_id == ""


def test_auto_attribution_by_ip_and_user_agent():
    a = click(T0, visitor="va", client_ip="9.9.9.9", user_agent="UA")
    b = click(T0 + DAY, visitor="vb", client_ip="9.9.9.9", user_agent="UA")
    other = click(T0 + DAY, visitor="vc", client_ip="9.9.9.9", user_agent="other")
    conv = postback(T0 + 2 * DAY, revenue=Decimal(5), client_ip="9.9.9.9", user_agent="UA")
    for order in ([a, b, other, conv], [conv, other, a, b]):  # a click arriving late re-resolves it
        kept = run(order, batch=1)
        (row,) = kept.values()
        assert (row.attribution_method, row.attributed_click_id, row.visitor_id) == (
            "fingerprint",
            b.click_id,
            "vb",
        )


def test_postback_before_its_click_counts_then_gets_attributed():
    c = click(T0)
    pb = postback(T0 + timedelta(hours=1), click_id=c.click_id, transaction_id="EARLY")
    kept = run([pb, c], batch=1)
    assert kept[("p", "sale", "tx:EARLY")].attributed_click_id == c.click_id


def test_experiments_and_sessions():
    view = ev(EventType.VIEW_EXP, T0, experiments=(ExperimentVariation(experiment_id="E", variation_id="B"),))
    hit = ev(EventType.HIT_GOAL, T0 + timedelta(minutes=5), goal_ids=("signup",))
    later = ev(EventType.HIT_GOAL, T0 + 2 * DAY, visitor="v2", goal_ids=("signup",))
    p = ConversionPipeline()
    res = p.process_events([view, hit, later])
    rows = final(list(res.batch.conversions))
    assert rows[("p", "signup", "visitor:v1")].variation_ids == ("B",)
    assert rows[("p", "signup", "visitor:v2")].variation_ids == ()
    assert [(x.experiment_id, x.variation_id, x.visitor_id) for x in res.batch.exposures] == [
        ("E", "B", "v1")
    ]
    assert len({s for s in res.batch.session_ids}) == 2
    assert {s.visitor_id: s.events for s in res.batch.sessions} == {"v1": 2, "v2": 1}


def test_models_selectable_per_project():
    cfg = ProcessingConfig(model=lambda p: "linear" if p == "q" else "last_click")
    kept = run([ev(EventType.HIT_GOAL, T0, project="q", goal_ids=("g",))], config=cfg)
    assert next(iter(kept.values())).attribution_model == "linear"


def test_replayed_records_change_nothing_and_bad_records_go_to_dead_letter():
    c = click(T0)
    records = [
        SourceRecord("events", 0, 0, encode_envelope([c])),
        SourceRecord("events", 0, 1, encode_envelope([postback(T0 + DAY, visitor="v1", link_id="L1")])),
    ]
    p = ConversionPipeline()
    first = p.process_records([*records, b"garbage"])
    p.commit()
    again = p.process_records(records)  # a redelivery after a crash
    p.commit()
    assert len(first.batch.conversions) == 1 and again.batch.conversions == ()
    assert again.dropped[DropReason.REPLAY] >= 2 and len(again.batch.events) == 2
    assert len(first.dead_letters) == 1 and first.dead_letters[0].raw == b"garbage"


# -- exactness under any interleaving, duplication and batching ------------------------------------

C1 = click(T0, visitor="v1", link="L1", client_ip="1.1.1.1", user_agent="UA", external_click_id="X-C1")
C2 = click(T0 + timedelta(hours=3), visitor="v1", link="L2")
C3 = click(T0 + DAY, visitor="v2", link="L1", client_ip="2.2.2.2", user_agent="UB")
BASE = [
    C1,
    C2,
    C3,
    ev(
        EventType.VIEW_EXP,
        T0,
        visitor="v1",
        experiments=(ExperimentVariation(experiment_id="E", variation_id="A"),),
    ),
    ev(
        EventType.VIEW_EXP,
        T0,
        visitor="v2",
        experiments=(ExperimentVariation(experiment_id="E", variation_id="B"),),
    ),
    postback(
        T0 + 2 * DAY,
        click_id=C1.click_id,
        link_id="L1",
        transaction_id="T1",
        revenue=Decimal(10),
        status="pending",
    ),
    postback(
        T0 + 3 * DAY,
        click_id=C1.click_id,
        link_id="L1",
        transaction_id="T1",
        revenue=Decimal(12),
        status="approved",
    ),
    postback(T0 + 2 * DAY, visitor="v2", link_id="L1", goal="lead", transaction_id="T2", revenue=Decimal(3)),
    postback(T0 + 4 * DAY, visitor="v2", link_id="L1", goal="lead", transaction_id="T2", status="cancelled"),
    postback(T0 + 2 * DAY, goal="install", revenue=Decimal(1), client_ip="2.2.2.2", user_agent="UB"),
    ev(EventType.HIT_GOAL, T0 + timedelta(hours=5), visitor="v1", goal_ids=("signup",)),
    ev(EventType.HIT_GOAL, T0 + timedelta(hours=6), visitor="v1", goal_ids=("signup",)),
    ev(
        EventType.TRANSACTION,
        T0 + 40 * DAY - timedelta(days=6),
        visitor="v2",
        goal_ids=("sale",),
        transaction_id="T3",
        revenue=Decimal(7),
    ),
]


# Any arrival order is exact as long as events are at most ``lateness`` late (state is kept that long):
# the events below span 34 days, so the property tests allow 60 days of lateness.
LATE = ProcessingConfig(lateness=timedelta(days=60))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sampled_from(range(len(BASE))), min_size=0, max_size=12),
    st.randoms(use_true_random=False),
    st.integers(min_value=1, max_value=6),
)
def test_any_interleaving_duplication_and_batching_gives_the_same_result(extra, rnd, batch):
    expected = summary(run(BASE, config=LATE))
    events = BASE + [BASE[i] for i in extra]
    rnd.shuffle(events)
    assert summary(run(events, batch=batch, config=LATE)) == expected


@settings(max_examples=25, deadline=None)
@given(st.randoms(use_true_random=False), st.integers(min_value=1, max_value=13))
def test_crash_and_replay_gives_the_same_result(rnd, crash_at):
    """State committed after some batches, a crash loses the uncommitted ones, the log is replayed."""
    expected = summary(run(BASE, config=LATE))
    records = [SourceRecord("events", 0, i, encode_envelope([e])) for i, e in enumerate(BASE)]
    backing = {s: DictStore() for s in ("visitor", "click", "fingerprint", "conversion")}

    class Memory:
        def __init__(self):
            self.committed: int | None = None

        def store(self, stage):
            return backing[stage]

        def offset(self):
            return self.committed

        def commit(self, offset):
            self.committed = offset

        def rollback(self):
            pass  # DictStore writes are applied only by commit

    mem = Memory()
    rows: list[Conversion] = []
    p = ConversionPipeline(LATE, state=mem)
    pos = 0
    while pos < crash_at:
        n = rnd.randint(1, 3)
        res = p.process_records(records[pos : pos + n])
        rows.extend(res.batch.conversions)  # written to the sink...
        if rnd.random() < 0.5:
            pos = min(pos + n, len(records))
            p.commit(pos)
        else:
            break  # ...but the worker died before committing: state and offset stay behind
    p = ConversionPipeline(LATE, state=mem)  # restart
    pos = mem.offset() or 0
    res = p.process_records(records[pos:])
    rows.extend(res.batch.conversions)
    p.commit(len(records))
    assert summary(final(rows)) == expected
    random.seed(0)


def test_pushwoosh_event_is_attributed_to_the_opened_push():
    opened = ev(EventType.PUSH_OPEN, T0, visitor="hw1", push_hash="H1")
    other = ev(EventType.PUSH_OPEN, T0 + timedelta(minutes=5), visitor="hw1", push_hash="H2")
    event = ev(
        EventType.CUSTOM_EVENT,
        T0 + timedelta(minutes=10),
        visitor="hw1",
        goal_ids=("purchase",),
        event_name="purchase",
        push_hash="H1",
    )
    (row,) = run([opened, other, event]).values()
    assert (row.attribution_method, row.attributed_push_hash, row.time_to_convert_ms) == (
        "push",
        "H1",
        600_000,
    )
    assert row.conversion_key == f"ev:{event.event_id}"  # every postEvent call counts


# -- the traffic source's click id (issue 13): from the click to the conversions attributed to it ------


def test_the_external_click_id_reaches_every_conversion_attributed_to_its_click():
    c = click(T0, client_ip="7.7.7.7", user_agent="UA", external_click_id="TS-1")
    plain = click(T0, visitor="v2", link="L2")
    events = [
        c,
        plain,
        ev(EventType.HIT_GOAL, T0 + timedelta(hours=1), goal_ids=("signup",)),  # the visitor's own
        postback(T0 + DAY, click_id=c.click_id, transaction_id="HIT"),  # names the click (hit)
        postback(T0 + DAY, visitor="v1", link_id="L1", transaction_id="VP"),  # vid + p
        postback(T0 + DAY, transaction_id="FP", client_ip="7.7.7.7", user_agent="UA"),  # fingerprint
        postback(T0 + DAY, click_id=plain.click_id, transaction_id="PLAIN"),  # a click without one
        ev(EventType.HIT_GOAL, T0 + timedelta(hours=1), visitor="v2", goal_ids=("signup",)),
        postback(T0 + DAY, click_id="unknown", transaction_id="NONE"),  # unattributed
    ]
    for batch in (None, 1):
        kept = run(events, batch=batch)
        got = {
            k: (r.attribution_method, r.attributed_click_id, r.attributed_external_click_id)
            for k, r in kept.items()
        }
        assert got == {
            ("p", "signup", "visitor:v1"): ("visitor", c.click_id, "TS-1"),
            ("p", "sale", "tx:HIT"): ("click", c.click_id, "TS-1"),
            ("p", "sale", "tx:VP"): ("visitor_link", c.click_id, "TS-1"),
            ("p", "sale", "tx:FP"): ("fingerprint", c.click_id, "TS-1"),
            ("p", "sale", "tx:PLAIN"): ("click", plain.click_id, ""),
            ("p", "signup", "visitor:v2"): ("visitor", plain.click_id, ""),
            ("p", "sale", "tx:NONE"): ("none", "", ""),
        }, batch


def test_a_push_touch_carries_no_external_click_id():
    c = click(T0, visitor="hw1", external_click_id="TS-1")
    opened = ev(EventType.PUSH_OPEN, T0 + timedelta(minutes=5), visitor="hw1", push_hash="H1")
    hit = ev(EventType.HIT_GOAL, T0 + timedelta(minutes=10), visitor="hw1", goal_ids=("g",))
    (row,) = run([c, opened, hit]).values()
    assert (row.attributed_touch_id, row.attributed_click_id, row.attributed_external_click_id) == (
        f"push:{opened.event_id}",
        "",
        "",
    )


def test_conversions_attributed_again_by_a_late_click_get_its_external_click_id():
    c = click(T0, external_click_id="TS-LATE")
    late = c.model_copy(update={"received_at": T0 + DAY + timedelta(hours=20)})
    goal = ev(EventType.HIT_GOAL, T0 + DAY, goal_ids=("signup",))
    waiting = postback(T0 + timedelta(hours=1), click_id=c.click_id, transaction_id="EARLY")
    p = ConversionPipeline()
    first = final(list(p.process_events([goal, waiting]).batch.conversions))
    assert {r.attributed_external_click_id for r in first.values()} == {""}  # counted, unattributed
    rows = list(p.process_events([late]).batch.conversions)
    kept = final([*first.values(), *rows])
    assert {k: r.attributed_external_click_id for k, r in kept.items()} == {
        ("p", "signup", "visitor:v1"): "TS-LATE",
        ("p", "sale", "tx:EARLY"): "TS-LATE",  # was waiting at the click stage
    }
    assert all(kept[k].version > first[k].version for k in kept)


def test_replaying_a_click_with_its_external_click_id_changes_nothing():
    c = click(T0, external_click_id="TS-R")
    records = [
        SourceRecord("events", 0, 0, encode_envelope([c])),
        SourceRecord("events", 0, 1, encode_envelope([postback(T0 + DAY, click_id=c.click_id)])),
    ]
    p = ConversionPipeline()
    first = p.process_records(records)
    p.commit()
    again = p.process_records(records)
    p.commit()
    (row,) = first.batch.conversions
    assert row.attributed_external_click_id == "TS-R" and again.batch.conversions == ()


def _strip_external_click_ids(stores: dict) -> dict[str, int]:
    """Rewrite every committed state as the previous release wrote it (no ``external_click_id``);
    how many values of each stage changed."""
    stripped = {}
    for stage, store in stores.items():
        assert not store.objects and not store.staged  # committed: reads go to the backing store
        stripped[stage] = 0
        for key, value in store.backing.items():
            old = value.replace(b',"external_click_id":""', b"")
            stripped[stage] += old != value
            store.backing.put(key, old)
    return stripped


def test_state_written_without_the_field_reads_with_empty_external_click_ids():
    """State of the previous release (in SQLite or a changelog) has no ``external_click_id``: it reads
    back with "" and processing goes on exactly as with state written by this release."""
    c = click(T0, client_ip="7.7.7.7", user_agent="UA")
    before = [
        c,
        postback(T0 + timedelta(hours=1), click_id="later-click", transaction_id="WAIT"),  # click stage
        postback(T0 + timedelta(hours=2), transaction_id="FP", client_ip="7.7.7.7", user_agent="UA"),
        ev(EventType.HIT_GOAL, T0 + timedelta(hours=3), goal_ids=("signup",)),
    ]
    after = [
        click(T0 + timedelta(minutes=30), visitor="v3", cid="later-click", external_click_id="TS-NEW"),
        postback(T0 + DAY, click_id=c.click_id, transaction_id="HIT"),
        ev(EventType.HIT_GOAL, T0 + DAY, goal_ids=("lead",)),
    ]
    results = []
    for strip in (False, True):
        p = ConversionPipeline()
        rows = list(p.process_events(before).batch.conversions)
        p.commit()
        if strip:
            stripped = _strip_external_click_ids(p.stores)
            assert all(stripped.values()), stripped  # visitor touches, clicks, fingerprints, ledgers
            state = load_with(p.stores["visitor"], "v1", decode_state)
            assert state is not None and state.projects["p"].touches[0].external_click_id == ""
        rows.extend(p.process_events(after).batch.conversions)
        p.commit()
        results.append(final(rows))
    assert results[0] == results[1]
    got = {k: r.attributed_external_click_id for k, r in results[1].items()}
    assert got[("p", "sale", "tx:WAIT")] == "TS-NEW"  # the waiting postback met its (new) click
    assert {v for k, v in got.items() if k != ("p", "sale", "tx:WAIT")} == {""}
