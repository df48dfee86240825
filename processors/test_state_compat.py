"""State and stage records stay readable across the move to msgspec Structs (decision 110).

``Old*`` below are the pydantic models (and pydantic-read dataclasses) the previous release stored and
sent, copied as they were. Every state the pipeline stores and every message it routes must be written
byte for byte as those models write them, and bytes those models wrote must read as the same values:
stored state (SQLite, Faust changelogs / RocksDB) and records in stage topics are read across an upgrade
in either direction."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from processors import pipeline as pipeline_module
from processors.clicks import ClickState
from processors.codec import decoder, dumps
from processors.dedup import decode_ledger
from processors.fingerprints import FpState
from processors.messages import ConvEvent, Message, decode_messages, encode_messages
from processors.pipeline import ConversionPipeline
from processors.visitors import decode_state

# -- the previous release's models ------------------------------------------------------------------


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class OldTouch(_Frozen):
    touch_id: str
    kind: Literal["click", "push"]
    at: datetime
    link_id: str = ""
    campaign: str = ""
    push_hash: str = ""
    external_click_id: str = ""


class OldClickInfo(_Frozen):
    click_id: str
    project_id: str
    visitor_id: str
    link_id: str = ""
    campaign: str = ""
    at: datetime
    received_at: datetime
    client_ip: str = ""
    user_agent: str = ""
    external_click_id: str = ""


class OldConvEvent(_Frozen):
    event_id: str
    type: str
    key: str
    project_id: str
    account_id: str
    visitor_id: str
    occurred_at: datetime
    received_at: datetime
    goal_ids: tuple[str, ...]
    revenue: Decimal | None = None
    currency: str = ""
    products_count: int = 0
    transaction_id: str = ""
    status: str = ""
    disable_postbacks: bool = False
    click_id: str = ""
    link_id: str = ""
    push_hash: str = ""
    client_ip: str = ""
    user_agent: str = ""
    experiments: tuple[tuple[str, str], ...] = ()
    campaign: str = ""
    window_days: int | None = None


class OldResolution(_Frozen):
    method: Literal["click", "visitor_link", "visitor", "push", "fingerprint", "none"]
    visitor_id: str = ""
    anchor_id: str = ""
    link_id: str = ""
    rank: int = 0


class OldClickReg(_Frozen):
    t: Literal["click_reg"] = "click_reg"
    click: OldClickInfo


class OldClickLookup(_Frozen):
    t: Literal["click_lookup"] = "click_lookup"
    conv: OldConvEvent


class OldFpReg(_Frozen):
    t: Literal["fp_reg"] = "fp_reg"
    click: OldClickInfo


class OldFpLookup(_Frozen):
    t: Literal["fp_lookup"] = "fp_lookup"
    conv: OldConvEvent


class OldResolved(_Frozen):
    t: Literal["resolved"] = "resolved"
    conv: OldConvEvent
    res: OldResolution


class OldAttributed(_Frozen):
    t: Literal["attributed"] = "attributed"
    conv: OldConvEvent
    res: OldResolution
    path: tuple[OldTouch, ...] = ()
    variations: tuple[tuple[str, str], ...] = ()
    path_version: int = 0


OldMessage = Annotated[
    OldClickReg | OldClickLookup | OldFpReg | OldFpLookup | OldResolved | OldAttributed,
    Field(discriminator="t"),
]


@dataclass(slots=True)
class OldSpan:
    __pydantic_config__ = ConfigDict(extra="forbid")
    start: int
    end: int
    n: int


@dataclass(slots=True)
class OldHeld:
    __pydantic_config__ = ConfigDict(extra="forbid")
    conv: OldConvEvent
    res: OldResolution


@dataclass(slots=True)
class OldVisitorProject:
    __pydantic_config__ = ConfigDict(extra="forbid")
    account_id: str = ""
    spans: list[OldSpan] = field(default_factory=list)
    touches: list[OldTouch] = field(default_factory=list)
    exposures: dict[str, int] = field(default_factory=dict)
    convs: dict[str, OldHeld] = field(default_factory=dict)
    sent: dict[str, str] = field(default_factory=dict)
    version: int = 0
    last_ms: int = 0


@dataclass(slots=True)
class OldVisitorState:
    __pydantic_config__ = ConfigDict(extra="forbid")
    projects: dict[str, OldVisitorProject] = field(default_factory=dict)
    wm: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class OldLedger:
    __pydantic_config__ = ConfigDict(extra="forbid")
    events: dict[str, OldAttributed] = field(default_factory=dict)


class OldClickState(BaseModel):
    model_config = ConfigDict(extra="forbid")
    click: OldClickInfo | None = None
    pending: dict[str, OldConvEvent] = {}


class OldFpState(BaseModel):
    model_config = ConfigDict(extra="forbid")
    clicks: dict[str, OldClickInfo] = {}
    convs: dict[str, OldConvEvent] = {}
    sent: dict[str, str] = {}
    version: int = 0


OLD: dict[str, TypeAdapter[Any]] = {
    "visitor": TypeAdapter(OldVisitorState),
    "click": TypeAdapter(OldClickState),
    "fingerprint": TypeAdapter(OldFpState),
    "conversion": TypeAdapter(OldLedger),
}
NEW: dict[str, Any] = {
    "visitor": decode_state,
    "click": decoder(ClickState).decode,
    "fingerprint": decoder(FpState).decode,
    "conversion": decode_ledger,
}
OLD_MESSAGES: TypeAdapter[list[Any]] = TypeAdapter(list[OldMessage])


def _old_json(adapter: TypeAdapter[Any], raw: bytes) -> bytes:
    """What the previous release writes for the value it reads from ``raw``."""
    return adapter.dump_json(adapter.validate_json(raw))


# -- the checks --------------------------------------------------------------------------------------


def _run_recording(monkeypatch: Any) -> tuple[ConversionPipeline, list[Message]]:
    from processors.test_codec import _events

    messages: list[Message] = []
    group = pipeline_module.group_by_stage

    def recording(msgs: Any) -> Any:
        msgs = list(msgs)
        messages.extend(msgs)
        return group(msgs)

    monkeypatch.setattr(pipeline_module, "group_by_stage", recording)
    p = ConversionPipeline()
    events = _events()
    for batch in (events[:3], events[3:7], events[7:]):
        p.process_events(batch)
    return p, messages


def test_every_stored_state_is_written_as_before_and_old_bytes_read_the_same(monkeypatch):
    p, _ = _run_recording(monkeypatch)
    checked: dict[str, int] = {}
    for stage, store in p.stores.items():
        for _key, value in store.backing.items():
            raw = value[8:]
            assert _old_json(OLD[stage], raw) == raw, stage  # the old release reads and rewrites it as is
            state = NEW[stage](raw)
            assert dumps(state) == raw
            # old bytes (here: the old models' own writing of the same value) read as the same state
            assert NEW[stage](OLD[stage].dump_json(OLD[stage].validate_json(raw))) == state
            checked[stage] = checked.get(stage, 0) + 1
    assert set(checked) == {"visitor", "click", "fingerprint", "conversion"}, checked


def test_every_stage_message_is_written_as_before_and_old_records_read_the_same(monkeypatch):
    _, messages = _run_recording(monkeypatch)
    assert {m.t for m in messages} >= {"click_reg", "fp_reg", "click_lookup", "fp_lookup", "attributed"}
    record = encode_messages(messages)
    items = record[record.index(b"[") : -1]
    old = OLD_MESSAGES.validate_json(items)
    assert OLD_MESSAGES.dump_json(old) == items
    old_record = b'{"envelope":1,"kind":"stage","schema":1,"items":' + OLD_MESSAGES.dump_json(old) + b"}"
    assert list(decode_messages(old_record)) == messages


_text = st.text(max_size=8)
_times = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))
_old_conv = st.builds(
    OldConvEvent,
    event_id=_text,
    type=st.sampled_from(["hit_goal", "transaction", "postback", "custom_event"]),
    key=_text,
    project_id=_text,
    account_id=_text,
    visitor_id=_text,
    occurred_at=_times,
    received_at=_times,
    goal_ids=st.lists(_text, max_size=3).map(tuple),
    revenue=st.none() | st.decimals(allow_nan=False, allow_infinity=False, places=4),
    currency=_text,
    products_count=st.integers(0, 1000),
    transaction_id=_text,
    status=_text,
    disable_postbacks=st.booleans(),
    click_id=_text,
    experiments=st.lists(st.tuples(_text, _text), max_size=2).map(tuple),
    window_days=st.none() | st.integers(0, 90),
)
_old_touch = st.builds(
    OldTouch,
    touch_id=_text,
    kind=st.sampled_from(["click", "push"]),
    at=_times,
    link_id=_text,
    campaign=_text,
    push_hash=_text,
    external_click_id=_text,
)
_old_res = st.builds(
    OldResolution,
    method=st.sampled_from(["click", "visitor_link", "visitor", "push", "fingerprint", "none"]),
    visitor_id=_text,
    anchor_id=_text,
    rank=st.integers(0, 1 << 40),
)


@settings(max_examples=150, deadline=None)
@given(
    conv=_old_conv,
    res=_old_res,
    path=st.lists(_old_touch, max_size=3).map(tuple),
    spans=st.lists(st.builds(OldSpan, st.integers(0, 1 << 45), st.integers(0, 1 << 45), st.integers(1, 99))),
)
def test_old_values_of_any_shape_round_trip_byte_for_byte(conv, res, path, spans):
    att = OldAttributed(conv=conv, res=res, path=path, variations=(("E", "A"),), path_version=3)
    ledger = OldLedger(events={conv.event_id: att})
    raw = OLD["conversion"].dump_json(ledger)
    assert dumps(decode_ledger(raw)) == raw
    project = OldVisitorProject(
        account_id="a", spans=spans, touches=list(path), convs={"e": OldHeld(conv, res)}, sent={"e": "d"}
    )
    raw = OLD["visitor"].dump_json(OldVisitorState(projects={"p": project}, wm={"t": 5}))
    assert dumps(decode_state(raw)) == raw
    new_conv = decoder(ConvEvent).decode(conv.model_dump_json().encode())
    assert dumps(new_conv) == conv.model_dump_json().encode()
    assert new_conv.occurred_at == conv.occurred_at and new_conv.revenue == conv.revenue


def test_a_state_written_by_the_previous_release_reads():
    """A visitor state as the previous release stored it (literal bytes, not re-encoded here)."""
    raw = (
        b'{"projects":{"p":{"account_id":"a","spans":[{"start":1000,"end":61000,"n":2}],"touches":[{"touch_id"'
        b':"c1","kind":"click","at":"2026-01-05T12:00:00Z","link_id":"L","campaign":"","push_hash":"",'
        b'"external_click_id":""}],"exposures":{"E\\u001fA":1000},"convs":{"e1":{"conv":{"event_id":"e1",'
        b'"type":"transaction","key":"tx:T","project_id":"p","account_id":"a","visitor_id":"v",'
        b'"occurred_at":"2026-01-05T12:00:01.500000Z","received_at":"2026-01-05T12:00:02Z","goal_ids":["g"]'
        b',"revenue":"19.90","currency":"EUR","products_count":0,"transaction_id":"T","status":"",'
        b'"disable_postbacks":false,"click_id":"","link_id":"","push_hash":"","client_ip":"","user_agent":'
        b'"","experiments":[["E","A"]],"campaign":"","window_days":null},"res":{"method":"visitor",'
        b'"visitor_id":"v","anchor_id":"","link_id":"","rank":1}}},"sent":{"e1":"0123456789abcdef"},'
        b'"version":4,"last_ms":61000}},"wm":{"events":17}}'
    )
    state = decode_state(raw)
    p = state.projects["p"]
    held = p.convs["e1"]
    t = datetime(2026, 1, 5, 12, tzinfo=UTC)
    assert held.conv.occurred_at == t + timedelta(seconds=1.5)
    assert held.conv.revenue == Decimal("19.90") and held.conv.experiments == (("E", "A"),)
    assert p.touches[0].at == t and p.spans[0].end == 61000 and state.wm == {"events": 17}
    assert dumps(state) == raw
    assert _old_json(OLD["visitor"], raw) == raw
