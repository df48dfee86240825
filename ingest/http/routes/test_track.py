"""The ``/track`` answer is written without orjson: byte for byte what ``orjson.dumps`` gives."""

from __future__ import annotations

import orjson
import pytest

from ingest.http.routes.track import accepted_body
from schemas.ids import new_event_ids


@pytest.mark.parametrize("count", [0, 1, 2, 50, 1000])
def test_the_accepted_answer_is_what_orjson_writes(count: int) -> None:
    ids = new_event_ids(count)
    expected = orjson.dumps({"status": "ok", "accepted": count, "event_ids": ids})
    assert accepted_body(ids) == expected
    assert orjson.loads(accepted_body(ids))["event_ids"] == ids
