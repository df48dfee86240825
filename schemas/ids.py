"""Time-ordered identifiers (UUIDv7 layout, RFC 9562) assigned at the edge."""

from __future__ import annotations

import os
import threading
import time

_lock = threading.Lock()
_last_ms = 0
_seq = 0
_RAND_MASK = (1 << 62) - 1
_VARIANT = 0b10 << 62


def new_event_id() -> str:
    """Return a UUIDv7 string: 48-bit unix-ms timestamp, then a 12-bit per-ms counter and random bits.

    IDs produced by one process are strictly increasing, so sorting by id sorts by arrival.
    """
    global _last_ms, _seq
    with _lock:
        now = time.time_ns() // 1_000_000
        if now <= _last_ms:
            _seq += 1
            if _seq > 0xFFF:  # counter exhausted inside one millisecond: borrow the next one
                _last_ms += 1
                _seq = 0
            now = _last_ms
        else:
            _last_ms = now
            _seq = 0
        seq = _seq
    tail = _VARIANT | (int.from_bytes(os.urandom(8)) & _RAND_MASK)
    h = f"{now & 0xFFFFFFFFFFFF:012x}7{seq:03x}{tail:016x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def event_id_millis(event_id: str) -> int:
    """The unix-ms timestamp embedded in an id from :func:`new_event_id`."""
    return int(event_id[:8] + event_id[9:13], 16)
