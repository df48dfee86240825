"""The fast path of the Convert parser gives exactly what the pydantic wire models give; what no client means
is refused on both. (The JSON the hot path writes: test_convert_fast.py.)"""

from __future__ import annotations

import copy
import functools
import random
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from ingest.errors import Rejected
from ingest.formats import convert_fast as cf
from ingest.formats import convert_tracking as ct
from ingest.formats.context import RequestContext

REF = {
    "cid": "12345",
    "pid": 12345,
    "seg": {
        "browser": "CH",
        "devices": ["DESK"],
        "source": "direct",
        "campaign": "",
        "new": 1,
        "ctry": "ro",
        "cust": ["123", 456],
    },
    "vid": "1588166554499-0.2020703998482254",
    "ev": [
        {"evt": "viewExp", "vars": ["12345", 6789], "exps": ["ABCD", "DEF"]},
        {"evt": "hitGoal", "goals": [12345], "vars": ["12345", "6789"], "exps": ["ABCD", "DEF"]},
        {"evt": "tr", "goals": [1, "g"], "exps": [], "vars": [], "r": 123.23, "prc": 2, "tid": "T-1"},
        {"evt": "tr", "goals": [7], "r": 100},
    ],
}

ODD_VALUES: list[Any] = [
    None, True, False, -1, 0, 1, 2, 7, 1.0, 1.5, 1e13, 123.23, 12.34567, 1_000_001, 2**70,
    "", " ", " a", "a ", "a", "x" * 16, "x" * 17, "x" * 64, "x" * 65, "x" * 201, "RO", "ro", "R0", "ROU",
    "\u2028", "\x1c", "a\x1c", "\u00a0b", "caf\u00e9", 'q"uote\\', "</script>\n\t\x00", "12.5", "-3", "lots",
    "viewExp", "hitGoal", "tr", "buy", [], [1], ["a"], [" a"], [-1], [True], [1.0], ["x" * 17],
    ["DESK"] * 17, list(range(101)), {}, {"evt": "viewExp"},
]  # fmt: skip


def _mutations(rng: random.Random, base: dict[str, Any]) -> dict[str, Any]:
    data = copy.deepcopy(base)
    for _ in range(rng.randrange(1, 4)):
        target = rng.choice(["top", "seg", "ev"])
        value = copy.deepcopy(rng.choice(ODD_VALUES))
        if target == "top":
            key = rng.choice(["cid", "pid", "vid", "seg", "ev", "extra"])
            if rng.random() < 0.15:
                data.pop(key, None)
            else:
                data[key] = value
        elif target == "seg" and isinstance(data.get("seg"), dict):
            key = rng.choice(["browser", "devices", "source", "campaign", "new", "ctry", "cust", "other"])
            data["seg"][key] = value
        elif isinstance(data.get("ev"), list) and data["ev"] and isinstance(data["ev"][0], dict):
            ev = rng.choice(data["ev"])
            if isinstance(ev, dict):
                key = rng.choice(["evt", "exps", "vars", "goals", "r", "prc", "tid", "other"])
                if rng.random() < 0.15:
                    ev.pop(key, None)
                else:
                    ev[key] = value
    return data


def _reference(data: Any, max_events: int) -> Any:
    """What the edge did before the fast path: isinstance check, size check, pydantic."""
    if not isinstance(data, dict):
        return ("invalid_body",)
    ev = data.get("ev")
    if isinstance(ev, list) and len(ev) > max_events:
        return ("too_large", len(ev))
    try:
        return ct._wire_normalize(ct.WireTrack.model_validate(data))
    except ValidationError as exc:
        return ct._validation_rejection(exc).body()


def _new(data: Any, max_events: int) -> Any:
    try:
        return ct._normalize(data, max_events)
    except Rejected as exc:
        if exc.code == "invalid_body":
            return ("invalid_body",)
        if exc.code == "payload_too_large":
            return ("too_large", len(data["ev"]))
        return exc.body()


@functools.cache
def _corpus() -> list[Any]:
    rng = random.Random(7)
    ev0: Any = REF["ev"][0]  # type: ignore[index]
    out: list[Any] = [REF, [1], "x", {**REF, "ev": [ev0] * 6}]
    out += [_mutations(rng, REF) for _ in range(3000)]
    return out


def test_fast_path_agrees_with_the_wire_models_on_every_input():
    fast_taken = 0
    for data in _corpus():
        expected = _reference(data, 5)
        assert _new(data, 5) == expected, data
        if isinstance(data, dict) and isinstance(expected, ct._Normalized):
            try:
                ct._fast_normalize(data)
                fast_taken += 1
            except ct._Slow:
                pass
    assert fast_taken > 250  # the corpus exercises the fast path, not only the fallback


def test_the_fast_path_is_taken_for_plain_payloads():
    assert ct._fast_normalize(orjson.loads(orjson.dumps(REF))) == ct._wire_normalize(
        ct.WireTrack.model_validate(REF)
    )


CTXS = [
    RequestContext(datetime(2026, 1, 2, 3, 4, 5, 6789, tzinfo=UTC), client_ip="10.0.0.1", user_agent="ua"),
    RequestContext(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), client_ip=None, user_agent='caf\u00e9 "x"\n'),
]


# --- issue 11: what no client means is refused, on the fast path and the wire models alike ---------------

_TR = {"evt": "tr", "goals": [1], "r": "10"}


def _as_query_values(data: Any) -> Any:
    """The payload as a bracket query gives it: every value a string."""
    if isinstance(data, dict):
        return {k: _as_query_values(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_as_query_values(v) for v in data]
    return str(data)


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"cid": "a\x00"}, "cid"),
        ({"pid": "p\r\nq"}, "pid"),
        ({"vid": "v\u202e"}, "vid"),
        ({"vid": "v\x85"}, "vid"),
        ({"ev": [{**_TR, "tid": "T\u2066"}]}, "ev.0.tid"),
        ({"ev": [{**_TR, "goals": ["g\x00"]}]}, "ev.0.goals.0"),
        ({"ev": [{"evt": "viewExp", "exps": ["e\n"], "vars": ["v"]}]}, "ev.0.exps.0"),
        ({"ev": [{"evt": "viewExp", "exps": ["e"], "vars": ["\u200fv"]}]}, "ev.0.vars.0"),
        ({"seg": {"cust": ["c\x1b"]}}, "seg.cust.0"),
        ({"seg": {"campaign": "spring\u202e"}}, "seg.campaign"),
        ({"seg": {"source": "s\x00"}}, "seg.source"),
        ({"seg": {"browser": "\x7f"}}, "seg.browser"),
        ({"seg": {"devices": ["DESK\r"]}}, "seg.devices.0"),
    ],
)
@pytest.mark.parametrize("as_query", [False, True])
def test_control_characters_are_refused_naming_the_field(patch: dict[str, Any], field: str, as_query: bool):
    data: Any = {**REF, "ev": [_TR], **patch}
    if as_query:
        data = _as_query_values(data)
    with pytest.raises(Rejected) as exc:
        cf.convert_payload_records(data, CTXS[0], source_format="convert_json", max_events=10)
    assert exc.value.status == 400 and exc.value.code == "invalid_field"
    assert exc.value.message.startswith(f"{field}: ") and "control character" in exc.value.message


@pytest.mark.parametrize(
    "r",
    ["1_000", "\u0661\u0662\u0663", "\uff11\uff12\uff13", "\u0967\u0968\u0969", "nan", "inf", "1e3", "+5"],
)
def test_amount_as_text_must_be_a_plain_ascii_decimal(r: str):
    with pytest.raises(Rejected) as exc:
        cf.convert_payload_records(
            {**REF, "ev": [{**_TR, "r": r}]}, CTXS[0], source_format="convert_query", max_events=10
        )
    assert exc.value.code == "invalid_field" and exc.value.message.startswith("ev.0.r: ")


@pytest.mark.parametrize("prc", ["1_0", "\u0661", "\uff11", "+1"])
def test_products_count_as_text_must_be_ascii_digits(prc: str):
    with pytest.raises(Rejected) as exc:
        cf.convert_payload_records(
            {**REF, "ev": [{**_TR, "prc": prc}]}, CTXS[0], source_format="convert_query", max_events=10
        )
    assert exc.value.code == "invalid_field" and exc.value.message.startswith("ev.0.prc: ")


def test_plain_amounts_as_text_and_as_json_numbers():
    for r, expected in (("12.5", "12.5"), (12.5, "12.5"), (7, "7"), ("0.0001", "0.0001")):
        recs = cf.convert_payload_records(
            {**REF, "ev": [{**_TR, "r": r, "prc": "2"}]},
            CTXS[0],
            source_format="convert_query",
            max_events=10,
        )
        ev = orjson.loads(recs.blobs[0])
        assert float(ev["revenue"]) == float(expected) and ev["products_count"] == 2
