"""How each attribution model splits one conversion over the touches of its path.

A path is the visitor's touches (clicks, push opens) inside the goal's window, oldest first, ending with
the anchor touch (the one the conversion names, or the most recent). Shares are exact decimals: the
credit of a conversion is split in units of 10^-9 and its revenue in units of 10^-4 by largest
remainder, so per-model sums equal the conversion count and the revenue exactly.

- ``last_click``: everything to the anchor (default). ``first_click``: everything to the oldest touch.
- ``linear``: equal shares. ``time_decay``: weight 2^(-age / half-life), age = conversion time - touch
  time. ``position_based``: 40% first, 40% last, 20% shared by the middle (one touch: 100%; two: 50/50).
- ``backward`` (FunnelFlux): not a split; every touch of the path is credited with the whole
  conversion, so a node sees each conversion its visitors went on to make.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_FLOOR, Decimal, localcontext
from typing import Literal

Model = Literal["last_click", "first_click", "linear", "time_decay", "position_based"]
MODELS: tuple[Model, ...] = ("last_click", "first_click", "linear", "time_decay", "position_based")
BACKWARD = "backward"

CREDIT_QUANTUM = Decimal("0.000000001")
REVENUE_QUANTUM = Decimal("0.0001")


def weights(model: Model, ages_s: Sequence[float], half_life_s: float) -> list[Decimal]:
    """Unnormalised weight of each touch (oldest first) under ``model``."""
    n = len(ages_s)
    if n == 0:
        return []
    if model == "last_click":
        return [Decimal(0)] * (n - 1) + [Decimal(1)]
    if model == "first_click":
        return [Decimal(1)] + [Decimal(0)] * (n - 1)
    if model == "linear":
        return [Decimal(1)] * n
    if model == "time_decay":
        with localcontext() as ctx:
            ctx.prec = 28
            half = Decimal(repr(half_life_s))
            return [Decimal(2) ** (-(Decimal(repr(max(a, 0.0))) / half)) for a in ages_s]
    if model == "position_based":
        if n == 1:
            return [Decimal(1)]
        if n == 2:
            return [Decimal(1), Decimal(1)]
        middle = Decimal("0.2") / (n - 2)
        return [Decimal("0.4")] + [middle] * (n - 2) + [Decimal("0.4")]
    raise ValueError(f"unknown attribution model {model!r}")


def split(total: Decimal, ws: Sequence[Decimal], quantum: Decimal) -> list[Decimal]:
    """Split ``total`` in proportion to ``ws`` in multiples of ``quantum``; the parts sum to ``total``.

    Largest remainder; ties go to the later touch (closer to the conversion)."""
    if not ws:
        return []
    with localcontext() as ctx:
        ctx.prec = 60
        units = int((total / quantum).to_integral_value(rounding=ROUND_FLOOR))
        wsum = sum(ws, Decimal(0))
        if wsum <= 0:
            ws = [Decimal(1)] * len(ws)
            wsum = Decimal(len(ws))
        raw = [Decimal(units) * w / wsum for w in ws]
        floors = [int(r.to_integral_value(rounding=ROUND_FLOOR)) for r in raw]
        left = units - sum(floors)
        order = sorted(range(len(ws)), key=lambda i: (raw[i] - floors[i], i), reverse=True)
        for i in order[:left]:
            floors[i] += 1
        return [(Decimal(f) * quantum).quantize(quantum) for f in floors]


def credits(model: Model, ages_s: Sequence[float], half_life_s: float) -> list[Decimal]:
    """Share of one conversion per touch (sums to exactly 1)."""
    return split(Decimal(1), weights(model, ages_s, half_life_s), CREDIT_QUANTUM)
