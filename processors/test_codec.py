"""The fast paths of the hot loop give exactly what the validated models give.

Rows the stages build with :func:`processors.codec.construct` (no validation) must equal the model
validated from the same fields, field by field and in declaration order; messages (msgspec Structs, built
without validation too) must hold values of their fields' types (they read back equal from their JSON).
Byte compatibility of states and messages with the previous release: processors/test_state_compat.py."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import msgspec
from pydantic import BaseModel

from processors import pipeline as pipeline_module
from processors.codec import decoder, dumps
from processors.dedup import decode_ledger
from processors.pipeline import ConversionPipeline
from processors.test_pipeline import DAY, T0, click, ev, postback
from processors.test_state_compat import OLD, OldAttributed
from processors.visitors import decode_state
from schemas.events import EventType, ExperimentVariation


def _events() -> list[Any]:
    c = click(T0, client_ip="1.2.3.4", user_agent="UA", segment={"campaign": "spring"})
    c2 = click(T0 + timedelta(hours=2), link="L2")
    exp = (ExperimentVariation(experiment_id="E1", variation_id="A"),)
    return [
        ev(EventType.VIEW_EXP, T0 - timedelta(minutes=5), experiments=exp),
        c,
        c2,
        ev(EventType.PUSH_OPEN, T0 + timedelta(hours=3), push_hash="H1"),
        ev(EventType.HIT_GOAL, T0 + timedelta(hours=4), goal_ids=("signup",), push_hash="H1"),
        ev(
            EventType.TRANSACTION, T0 + DAY, goal_ids=("sale",), transaction_id="T1", revenue=Decimal("19.90")
        ),
        postback(
            T0 + DAY, click_id=c.click_id, transaction_id="T1", revenue=Decimal("25.5"), status="pending"
        ),
        postback(T0 + 2 * DAY, click_id=c.click_id, transaction_id="T1", status="approved"),
        postback(T0 + 2 * DAY, visitor="v1", link_id="L2", transaction_id="T2", attribution_window_days=3),
        postback(T0 + 3 * DAY, revenue=Decimal(7), client_ip="1.2.3.4", user_agent="UA"),
        postback(T0 + 3 * DAY, click_id="unknown-click", transaction_id="T3"),
        ev(EventType.CUSTOM_EVENT, T0 + 4 * DAY, goal_ids=("custom",), event_name="x"),
    ]


def _check(obj: Any, seen: set[int]) -> None:
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, BaseModel):
        assert list(obj.__dict__) == list(type(obj).model_fields), type(obj).__name__
        assert type(obj).model_validate(obj.__dict__) == obj
        for value in obj.__dict__.values():
            _check(value, seen)
    elif isinstance(obj, msgspec.Struct):
        assert decoder(type(obj)).decode(dumps(obj)) == obj, type(obj).__name__
    elif isinstance(obj, tuple | list):
        for value in obj:
            _check(value, seen)


def test_built_rows_and_messages_equal_the_validated_models(monkeypatch):
    messages: list[Any] = []
    group = pipeline_module.group_by_stage

    def recording(msgs):
        msgs = list(msgs)
        messages.extend(msgs)
        return group(msgs)

    monkeypatch.setattr(pipeline_module, "group_by_stage", recording)
    p = ConversionPipeline()
    seen: set[int] = set()
    events = _events()
    for batch in (events[:3], events[3:7], events[7:]):
        out = p.process_events(batch).batch
        for rows in (out.conversions, out.sessions, out.exposures):
            _check(rows, seen)
    assert {type(m).__name__ for m in messages} >= {
        "ClickReg",
        "FpReg",
        "ClickLookup",
        "FpLookup",
        "Attributed",
    }
    _check(messages, seen)


def test_states_are_written_as_the_previous_release_wrote_them_and_read_back():
    p = ConversionPipeline()
    p.process_events(_events())
    checked = 0
    for _key, value in p.stores["visitor"].backing.items():
        state = decode_state(value[8:])
        assert dumps(state) == OLD["visitor"].dump_json(OLD["visitor"].validate_json(value[8:])) == value[8:]
        checked += 1
    for _key, value in p.stores["conversion"].backing.items():
        ledger = decode_ledger(value[8:])
        old = OLD["conversion"]
        assert dumps(ledger) == old.dump_json(old.validate_json(value[8:])) == value[8:]
        checked += 1
    assert checked > 5


def test_attribution_digest_input_is_the_previous_json(monkeypatch):
    """The visitor stage hashes the JSON of (res, path, variations): the digests stored in states
    before (pydantic's JSON of the previous release's models) stay valid."""
    messages: list[Any] = []
    group = pipeline_module.group_by_stage

    def recording(msgs):
        msgs = list(msgs)
        messages.extend(msgs)
        return group(msgs)

    monkeypatch.setattr(pipeline_module, "group_by_stage", recording)
    ConversionPipeline().process_events(_events())
    attributed = [m for m in messages if m.t == "attributed"]
    assert any(m.path for m in attributed)
    for m in attributed:
        ours = dumps({"res": m.res, "path": m.path, "variations": m.variations})
        old = OldAttributed.model_validate_json(dumps(m))
        assert ours == old.model_dump_json(include={"res", "path", "variations"}).encode()
