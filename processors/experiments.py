"""Experiment exposures: which variations a visitor saw, and since when.

A visitor is exposed to a variation by a ``viewExp`` event or by any event carrying it in
``exps``/``vars``. A conversion is credited to every variation the visitor had seen at or before the
conversion time, plus the ones the converting event carries itself. Exposure counts per variation are
distinct visitors; the first exposure time is the earliest one, whatever the arrival order.
"""

from __future__ import annotations

from collections.abc import Iterable

SEP = "\x1f"


def exposure_key(experiment: str, variation: str) -> str:
    return f"{experiment}{SEP}{variation}"


def split_key(key: str) -> tuple[str, str]:
    exp, _, var = key.partition(SEP)
    return exp, var


def add_exposure(exposures: dict[str, int], experiment: str, variation: str, t_ms: int) -> bool:
    """Record an exposure; True if it is new or earlier than the one known (the row must change)."""
    key = exposure_key(experiment, variation)
    first = exposures.get(key)
    if first is None or t_ms < first:
        exposures[key] = t_ms
        return True
    return False


_PAIRS: dict[str, tuple[str, str]] = {}  # exposure key -> (experiment, variation), one shared tuple


def pair(key: str) -> tuple[str, str]:
    """``split_key(key)``, the same tuple object for the same key (a conversion's variations are built
    per attribution: shared pairs are fewer objects to allocate and for the collector to look at)."""
    got = _PAIRS.get(key)
    if got is None:
        if len(_PAIRS) >= 1 << 16:
            _PAIRS.clear()
        got = _PAIRS[key] = split_key(key)
    return got


def seen_by(
    exposures: dict[str, int], t_ms: int, own: Iterable[tuple[str, str]] = ()
) -> tuple[tuple[str, str], ...]:
    """Variations credited for a conversion at ``t_ms``: seen at or before it, plus the event's own."""
    seen = set(own)
    for k, first in exposures.items():
        if first <= t_ms:
            seen.add(pair(k))
    if len(seen) < 2:
        return tuple(seen)
    return tuple(sorted(seen))
