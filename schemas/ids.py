"""Time-ordered identifiers (UUIDv7 layout, RFC 9562) assigned at the edge."""

from __future__ import annotations

import os
import threading
import time

_lock = threading.Lock()
_last_ms = 0
_seq = 0
# The 64 bits after the counter: variant ``10`` then 62 random bits. Its first hex digit is the top
# random nibble with the two variant bits forced: 8, 9, a or b.
_VARIANT_DIGIT = {f"{n:x}": "89ab"[n & 3] for n in range(16)}
_COUNTER_HEX = [f"{n:03x}-" for n in range(0x1000)]


# Random hex digits are drawn from a pool refilled by one os.urandom call per 4 KiB (a syscall per id
# cost more than formatting it); single ids take their random part (``Vrrr-rrrrrrrrrrrr``, the variant
# digit V set) from a pool of ready tails made 256 at a time. A forked child starts with empty pools so it
# never repeats its parent's.
_POOL_BYTES = 4096
_pool = ""
_pool_pos = 0
_TAILS_PER_DRAW = 256
_tails: list[str] = []
_tail_pos = 0


def _reset_pool() -> None:
    global _pool, _pool_pos, _tails, _tail_pos
    _pool, _pool_pos = "", 0
    _tails, _tail_pos = [], 0


os.register_at_fork(after_in_child=_reset_pool)


def _random_hex(digits: int) -> str:
    """``digits`` random hex digits (a multiple of 16). Call with ``_lock`` held."""
    global _pool, _pool_pos
    if _pool_pos + digits > len(_pool):
        _pool, _pool_pos = os.urandom(max(_POOL_BYTES, digits // 2)).hex(), 0
    out = _pool[_pool_pos : _pool_pos + digits]
    _pool_pos += digits
    return out


def _refill_tails() -> None:
    """A new pool of random tails for single ids. Call with ``_lock`` held."""
    global _tails, _tail_pos
    h = os.urandom(8 * _TAILS_PER_DRAW).hex()
    v = _VARIANT_DIGIT
    _tails = [f"{v[h[j]]}{h[j + 1 : j + 4]}-{h[j + 4 : j + 16]}" for j in range(0, len(h), 16)]
    _tail_pos = 0


def _reserve(count: int) -> tuple[int, int, str]:
    """Reserve ``count`` consecutive (ms, counter) slots; returns the first as (ms, seq), and 16 random hex
    digits per slot.

    Slot ``seq + i`` stands for millisecond ``ms + (seq + i) // 4096`` with counter ``(seq + i) % 4096``:
    a counter exhausted inside one millisecond borrows the next one.
    """
    with _lock:
        ms, seq = _claim(count)
        rand = _random_hex(16 * count)
    return ms, seq, rand


def _claim(count: int) -> tuple[int, int]:
    """The clock and counter step of :func:`_reserve` (call with ``_lock`` held): the first of ``count``
    slots, as (ms, seq) with ``seq`` possibly past 4095 (the next millisecond's counters)."""
    global _last_ms, _seq
    now = time.time_ns() // 1_000_000
    if now <= _last_ms:
        ms, seq = _last_ms, _seq + 1
    else:
        ms, seq = now, 0
    end = seq + count - 1
    _last_ms = ms + (end >> 12)
    _seq = end & 0xFFF
    return ms, seq


_last_prefix: tuple[int, str] = (-1, "")


def _ms_prefix(ms: int) -> str:
    """``tttttttt-tttt-7``: the id's first 15 characters for unix-ms ``ms`` (the last one remembered)."""
    global _last_prefix
    last_ms, prefix = _last_prefix
    if ms != last_ms:
        h = f"{ms & 0xFFFFFFFFFFFF:012x}"
        prefix = f"{h[:8]}-{h[8:]}-7"
        _last_prefix = (ms, prefix)
    return prefix


def new_event_id() -> str:
    """Return a UUIDv7 string: 48-bit unix-ms timestamp, then a 12-bit per-ms counter and random bits.

    IDs produced by one process are strictly increasing, so sorting by id sorts by arrival.
    """
    global _tail_pos
    with _lock:  # one id per request is the edge's common case: a ready tail instead of _random_hex
        ms, seq = _claim(1)
        ms, seq = ms + (seq >> 12), seq & 0xFFF
        if _tail_pos >= len(_tails):
            _refill_tails()
        tail = _tails[_tail_pos]
        _tail_pos += 1
    return f"{_ms_prefix(ms)}{_COUNTER_HEX[seq]}{tail}"


def new_event_ids(count: int) -> list[str]:
    """``count`` ids, exactly as ``count`` calls of :func:`new_event_id` in a row would return them, with
    one clock read, one lock and one ``os.urandom`` call for all of them."""
    if count <= 0:
        return []
    if count == 1:
        return [new_event_id()]
    ms, seq, rand = _reserve(count)
    variant = _VARIANT_DIGIT
    if seq + count <= 0x1000:  # the common case: all in one millisecond
        prefix, counters = _ms_prefix(ms), _COUNTER_HEX
        return [
            f"{prefix}{counters[s]}{variant[rand[j]]}{rand[j + 1 : j + 4]}-{rand[j + 4 : j + 16]}"
            for s, j in zip(range(seq, seq + count), range(0, 16 * count, 16), strict=True)
        ]
    out: list[str] = []
    cur_ms, prefix = -1, ""
    for i in range(count):
        s = seq + i
        m = ms + (s >> 12)
        if m != cur_ms:
            cur_ms, prefix = m, _ms_prefix(m)
        j = 16 * i
        out.append(f"{prefix}{s & 0xFFF:03x}-{variant[rand[j]]}{rand[j + 1 : j + 4]}-{rand[j + 4 : j + 16]}")
    return out


def event_id_millis(event_id: str) -> int:
    """The unix-ms timestamp embedded in an id from :func:`new_event_id`."""
    return int(event_id[:8] + event_id[9:13], 16)
