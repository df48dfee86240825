"""Stage envelope records: size-bounded encoding (a large batch must not make records Kafka refuses)."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from processors import pipeline as pipeline_module
from processors.codec import dumps
from processors.messages import (
    Attributed,
    ConvEvent,
    Message,
    Resolution,
    decode_messages,
    encode_message_records,
    encode_messages,
    envelope_chunks,
)
from processors.pipeline import ConversionPipeline
from schemas.envelope import EnvelopeError

T = datetime(2026, 1, 5, 12, tzinfo=UTC)


def attributed(i: int) -> Attributed:
    conv = ConvEvent(
        event_id=f"e{i}",
        type="hit_goal",
        key=f"visitor:v{i}",
        project_id="p",
        account_id="a",
        visitor_id=f"v{i}",
        occurred_at=T,
        received_at=T,
        goal_ids=("g",),
    )
    return Attributed(conv=conv, res=Resolution(method="visitor", visitor_id=f"v{i}", rank=1))


def test_records_stay_within_the_limit_and_keep_every_message_in_order():
    msgs = [attributed(i) for i in range(500)]
    one = encode_messages(msgs)
    records = encode_message_records(msgs, max_bytes=len(one) // 7)
    assert len(records) >= 7
    assert all(len(r) <= len(one) // 7 for r in records)
    assert [m for r in records for m in decode_messages(r)] == msgs
    assert encode_message_records(msgs) == [one]  # under the default limit: the same single record
    assert encode_message_records([]) == []


@given(
    st.lists(st.binary(min_size=1, max_size=40).map(lambda b: b'"' + b.hex().encode() + b'"')),
    st.integers(20, 200),
)
def test_chunks_are_bounded_unless_one_item_is_larger(items, limit):
    head = b'{"items":['
    records = envelope_chunks(head, items, limit)
    joined = [x for r in records for x in (r[len(head) : -2].split(b",") if r[len(head) : -2] else [])]
    assert joined == items
    for r in records:
        assert r.startswith(head) and r.endswith(b"]}")
        assert len(r) <= limit or r.count(b",") == 0  # over the limit only as a record of one item


def _routed_messages() -> list[Message]:
    """Every stage message the pipeline routes for ``processors.test_codec._events()``."""
    from processors.test_codec import _events

    messages: list[Message] = []
    group = pipeline_module.group_by_stage

    def recording(msgs):
        msgs = list(msgs)
        messages.extend(msgs)
        return group(msgs)

    pipeline_module.group_by_stage = recording
    try:
        ConversionPipeline().process_events(_events())
    finally:
        pipeline_module.group_by_stage = group
    return messages


def test_stage_records_are_the_previous_json():
    """Messages are written byte for byte as the previous release's pydantic models wrote them (and read
    back)."""
    from processors.test_state_compat import OLD_MESSAGES

    messages = _routed_messages()
    assert {m.t for m in messages} >= {"click_reg", "fp_reg", "click_lookup", "fp_lookup", "attributed"}
    old = OLD_MESSAGES.validate_json(b"[" + b",".join(dumps(m) for m in messages) + b"]")
    assert (
        encode_messages(messages)
        == b'{"envelope":1,"kind":"stage","schema":1,"items":' + OLD_MESSAGES.dump_json(old) + b"}"
    )
    assert list(decode_messages(encode_messages(messages))) == messages


def test_stage_records_of_the_previous_release_read_with_empty_external_click_ids():
    """Records written before clicks carried ``external_click_id`` (in a stage topic during an upgrade,
    or replayed) read as the same messages with ""."""
    messages = _routed_messages()
    record = encode_messages(messages)
    old = record.replace(b',"external_click_id":""', b"")
    assert old.count(b"click_id") < record.count(b"click_id")  # ClickReg, FpReg, touches of paths
    assert list(decode_messages(old)) == messages


def test_bad_stage_records_are_refused_with_the_reason():
    cases = {
        b"nope": "record is not JSON",
        b'{"envelope":2,"kind":"stage","schema":1,"items":[]}': "not a stage envelope",
        b'{"envelope":1,"kind":"events","schema":1,"items":[]}': "not a stage envelope",
        b'{"envelope":1,"kind":"stage","schema":2,"items":[]}': "unsupported stage schema 2",
        b'{"envelope":1,"kind":"stage","schema":1,"items":[{"t":"x"}]}': "stage items do not match",
    }
    for raw, reason in cases.items():
        try:
            decode_messages(raw)
        except EnvelopeError as exc:
            assert str(exc).startswith(reason), (raw, exc)
        else:
            raise AssertionError(f"{raw!r} accepted")
    assert list(decode_messages(b'{"envelope":1,"kind":"stage","schema":1,"items":[],"x":1}')) == []
