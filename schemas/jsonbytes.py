"""JSON bytes that are kept: orjson's output copied to its own size.

orjson (3.13.0 here, pinned) writes a document into a buffer of at least ~4 kB and returns that buffer as
the ``bytes`` object without shrinking it: ``len`` and ``sys.getsizeof`` report the document, the
allocation stays ~4 kB (tracemalloc: 4,098 B per 94-byte document; ijl/orjson#483). Harmless for a
response that is written and dropped; a value that is *kept* holds ~40 times its size. In the worker the
outbound planner's digests (one per conversion, ~90 B each) held 307 MB after 200k events, 4.2 kB of RSS
per digest.

:func:`dumps_kept` copies the document into an exact-size ``bytes`` (~0.2 µs). Use it for anything that
outlives the request or the batch: stored digests and states, queued bodies, memo keys.
:func:`trimmed` does the same to bytes already made by ``orjson.dumps``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson


def trimmed(data: bytes) -> bytes:
    """``data`` as an exact-size ``bytes`` object (a copy; the over-allocated one can then be freed)."""
    return bytes(memoryview(data))


def dumps_kept(obj: Any, default: Callable[[Any], Any] | None = None, option: int | None = None) -> bytes:
    """``orjson.dumps(obj, default, option)``, right-sized for keeping."""
    return bytes(memoryview(orjson.dumps(obj, default=default, option=option)))
