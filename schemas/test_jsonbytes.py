"""Kept JSON bytes take their own size in memory, not orjson's ~4 kB output buffer."""

from __future__ import annotations

import tracemalloc

import orjson

from schemas.jsonbytes import dumps_kept, trimmed

DOC = {"d": 1, "v": 123456789012345678, "e": "conversion.created", "s": "a" * 32}


def _bytes_each(make, n: int = 500) -> float:
    tracemalloc.start()
    try:
        kept = [make() for _ in range(n)]
        size, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(kept) == n
    return size / n


def test_kept_documents_are_their_own_size() -> None:
    assert dumps_kept(DOC) == orjson.dumps(DOC)
    assert trimmed(orjson.dumps(DOC)) == orjson.dumps(DOC)
    length = len(orjson.dumps(DOC))
    assert _bytes_each(lambda: dumps_kept(DOC)) < length + 100
    assert _bytes_each(lambda: trimmed(orjson.dumps(DOC))) < length + 100


def test_options_and_default_pass_through() -> None:
    assert dumps_kept({"b": 1, "a": 2}, option=orjson.OPT_SORT_KEYS) == b'{"a":2,"b":1}'
    assert dumps_kept({1j}, default=lambda o: str(o) if isinstance(o, complex) else list(o)) == b'["1j"]'
