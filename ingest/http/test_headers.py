"""Header bytes that are not UTF-8 (issue 11, defect 4): aiohttp hands them over as lone surrogates; what
the edge keeps has them replaced, what it builds on is refused."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from multidict import CIMultiDict

from ingest.errors import Rejected
from ingest.formats.context import RequestContext
from ingest.formats.convert_fast import convert_payload_records
from ingest.formats.convert_legacy import parse_legacy_query
from ingest.http.headers import clean_text, header_text, required_header_text

RAW_UA = b"Mozilla/5.0 (Linux; Android 11; Gal\xe1xy \xff) \x80end"
AS_AIOHTTP = RAW_UA.decode("utf-8", "surrogateescape")  # what request.headers holds


def request(**headers: str) -> Any:
    """What header_text reads of a request (aiohttp's test request cannot carry surrogates)."""
    return SimpleNamespace(headers=CIMultiDict(headers))


def test_undecodable_bytes_and_controls_become_replacement_characters():
    assert clean_text(AS_AIOHTTP) == "Mozilla/5.0 (Linux; Android 11; Gal\ufffdxy \ufffd) \ufffdend"
    assert clean_text("a\tb\x00c\u202ed") == "a\ufffdb\ufffdc\ufffdd"
    assert clean_text("caf\u00e9 \U0001f600") == "caf\u00e9 \U0001f600"


def test_header_text_is_stripped_cut_and_clean():
    req = request(**{"User-Agent": "  " + AS_AIOHTTP + "  ", "Referer": "x" * 600})
    assert header_text(req, "User-Agent") == clean_text(AS_AIOHTTP)
    assert header_text(req, "Referer", max_len=500) == "x" * 500
    assert header_text(req, "X-Absent") == ""
    orjson.dumps(header_text(req, "User-Agent"))  # serializable, unlike the raw value
    with pytest.raises(TypeError):
        orjson.dumps(AS_AIOHTTP)


def test_events_with_the_cleaned_user_agent_serialize():
    ctx = RequestContext(
        datetime(2026, 1, 1, tzinfo=UTC),
        "1.2.3.4",
        header_text(request(**{"User-Agent": AS_AIOHTTP}), "User-Agent"),
    )
    recs = convert_payload_records(
        {"cid": 1, "pid": 2, "vid": "v", "ev": [{"evt": "hitGoal", "goals": [1]}]},
        ctx,
        source_format="convert_json",
        max_events=10,
    )
    assert orjson.loads(recs.blobs[0])["user_agent"] == clean_text(AS_AIOHTTP)
    (event,) = parse_legacy_query({"c": "1", "p": "2", "g": "1", "ga": "1"}, ctx)
    assert event.visitor_id.startswith("anon-") and event.model_dump_json()


@pytest.mark.parametrize("host", ["\udcffexample.com", "a\x01b"])
def test_a_host_we_build_urls_on_is_refused(host: str):
    with pytest.raises(Rejected) as exc:
        required_header_text(host, "Host")
    assert exc.value.status == 400 and exc.value.code == "invalid_header"
    assert exc.value.message.startswith("Host: ")


def test_a_clean_host_is_kept():
    assert required_header_text("b\u00fccher.example:8080", "Host") == "b\u00fccher.example:8080"
