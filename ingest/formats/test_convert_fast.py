"""Parity of the ``/track`` hot path (ingest/formats/convert_fast.py): the canonical JSON it writes is byte
for byte the Event model's serialization, on the fast path, its memos and the fallback alike."""

from __future__ import annotations

from typing import Any

import pytest

from ingest.errors import Rejected
from ingest.formats import convert_fast as cf
from ingest.formats import convert_tracking as ct
from ingest.formats.context import RequestContext
from ingest.formats.test_convert_tracking import CTXS, REF, _corpus, _new, _reference


@pytest.mark.parametrize("ctx", CTXS)
def test_written_json_is_the_event_models_serialization(ctx: RequestContext):
    assert cf.LAYOUT_EXACT
    checked = 0
    for data in _corpus():
        norm = _new(data, 1000)
        if not isinstance(norm, ct._Normalized):
            continue
        ids = [f"0190d8a0-0000-7{i:03x}-8000-000000000000" for i in range(len(norm.events))]
        for fmt in ("convert_json", "convert_query"):
            models = ct._events(norm, ctx, fmt, ids)
            assert cf._blobs(norm, ctx, fmt, ids) == [e.__pydantic_serializer__.to_json(e) for e in models]
        checked += 1
    assert checked > 250


def test_public_entry_points_agree():
    ctx = CTXS[0]
    recs = cf.convert_payload_records(REF, ctx, source_format="convert_json", max_events=10)
    events = ct.parse_convert_payload(REF, ctx, source_format="convert_json", max_events=10)
    assert recs.visitor_id == REF["vid"] and len(recs.event_ids) == len(events) == 4
    assert len(set(recs.event_ids + [e.event_id for e in events])) == 8
    for blob, event_id, event in zip(recs.blobs, recs.event_ids, events, strict=True):
        again = event.model_copy(update={"event_id": event_id})
        assert blob == again.__pydantic_serializer__.to_json(again)
    with pytest.raises(Rejected) as exc:
        cf.convert_payload_records({**REF, "vid": " "}, ctx, source_format="convert_json", max_events=10)
    assert exc.value.code == "invalid_field" and exc.value.message.startswith("vid:")


@pytest.mark.parametrize("ctx", CTXS)
def test_records_of_the_edge_equal_the_models_of_the_wire_path(ctx: RequestContext):
    """``convert_payload_records`` (fast path, its memos, the fallback) against the reference: the pydantic
    wire models and Event models. Twice over the corpus, so the second pass runs on warm memos."""
    cf._event_memo.clear()
    cf._segment_memo.clear()
    fast = 0
    for _ in range(2):
        for data in _corpus():
            expected = _reference(data, 5)
            try:
                recs = cf.convert_payload_records(data, ctx, source_format="convert_json", max_events=5)
            except Rejected as exc:
                got = exc.body() if exc.code not in ("invalid_body", "payload_too_large") else None
                assert not isinstance(expected, ct._Normalized), data
                if got is not None:
                    assert got == expected
                continue
            assert isinstance(expected, ct._Normalized), data
            models = ct._events(expected, ctx, "convert_json", recs.event_ids)
            assert recs.blobs == [e.__pydantic_serializer__.to_json(e) for e in models], data
            assert recs.visitor_id == expected.visitor_id
            fast += 1
    assert fast > 500 and cf._event_memo and cf._segment_memo


def test_memos_stay_bounded():
    cf._event_memo.clear()
    cf._segment_memo.clear()
    big = "x" * 2000  # ignored fields make a wire value too large to remember
    seg: Any = REF["seg"]
    data = {**REF, "seg": {**seg, "pad": big}, "ev": [{"evt": "hitGoal", "goals": [1], "pad": big}]}
    cf.convert_payload_records(data, CTXS[0], source_format="convert_json", max_events=10)
    assert not cf._event_memo and not cf._segment_memo
    for lo in range(0, cf._EVENT_MEMO_MAX + 500, 500):
        evs = [{"evt": "hitGoal", "goals": [g]} for g in range(lo, lo + 500)]
        cf.convert_payload_records({**REF, "ev": evs}, CTXS[0], source_format="convert_json", max_events=500)
        assert 0 < len(cf._event_memo) <= cf._EVENT_MEMO_MAX


def test_requests_are_counted_by_the_path_that_served_them():
    before = dict(cf.PATHS)
    cf.convert_payload_records(REF, CTXS[0], source_format="convert_json", max_events=10)
    cf.convert_payload_records(
        {**REF, "cid": " padded "}, CTXS[0], source_format="convert_json", max_events=10
    )
    assert cf.PATHS["fast"] == before.get("fast", 0) + 1
    assert cf.PATHS["reference"] == before.get("reference", 0) + 1
