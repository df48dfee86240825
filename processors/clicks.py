"""The click stage, keyed by (project, click id): resolves postbacks that name a click (hit id / click_id).

A click registers here (from the visitor stage). A postback naming a known click is resolved to the
click's visitor and sent to the visitor stage for its path. A postback whose click is not known (yet)
still counts at once, unattributed, and waits: when the click arrives it is resolved and re-attributed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import msgspec

from processors.attribution import ms
from processors.config import ProcessingConfig
from processors.messages import (
    Attributed,
    ClickInfo,
    ClickLookup,
    ClickReg,
    ConvEvent,
    Resolution,
    Resolved,
    route,
)
from processors.outcome import Drop, DropReason
from processors.stage import StageOutput, load, save
from processors.store import KeyValueStore


class ClickState(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, gc=False):
    click: ClickInfo | None = None
    pending: dict[str, ConvEvent] = {}


def resolved_by_click(conv: ConvEvent, click: ClickInfo) -> Resolved:
    return Resolved(
        conv=conv,
        res=Resolution(method="click", visitor_id=click.visitor_id, anchor_id=click.click_id, rank=1),
    )


class ClickStage:
    name = "click"

    def __init__(self, config: ProcessingConfig):
        self.config = config
        self.now_ms = 0  # stream time used for expiry: advanced between batches (advance())
        self.seen_ms = 0  # newest received_at seen

    def advance(self) -> None:
        """End of a batch: expiry may now use the newest time seen (never mid-batch, so one batch
        spanning a long time, e.g. a backfill, does not expire state its own later messages need)."""
        self.now_ms = max(self.now_ms, self.seen_ms)

    def process(self, store: KeyValueStore, msgs: Sequence[ClickReg | ClickLookup]) -> StageOutput:
        out = StageOutput()
        by_key: dict[str, list[ClickReg | ClickLookup]] = {}
        for m in msgs:
            key = route(m)[1]
            self.seen_ms = max(
                self.seen_ms, ms(m.click.received_at if isinstance(m, ClickReg) else m.conv.received_at)
            )
            by_key.setdefault(key, []).append(m)
        for key, items in by_key.items():
            state = load(store, key, ClickState) or ClickState()
            changed = False
            for m in items:
                changed |= self._one(state, m, out)
            if changed:
                save(store, key, state, self._expiry(state))
        return out

    def _one(self, state: ClickState, m: ClickReg | ClickLookup, out: StageOutput) -> bool:
        if isinstance(m, ClickReg):
            if state.click is not None:
                out.count(Drop(DropReason.REPLAY, "click already registered"))
                return False
            state.click = m.click
            for conv in state.pending.values():
                out.messages.append(resolved_by_click(conv, m.click))
            state.pending.clear()
            return True
        if state.click is not None:
            out.messages.append(resolved_by_click(m.conv, state.click))
            return False
        # unknown click: count now (unattributed), resolve when the click arrives
        out.messages.append(Attributed(conv=m.conv, res=Resolution(method="none")))
        if m.conv.event_id in state.pending:
            out.count(Drop(DropReason.REPLAY, "postback already waiting for its click"))
            return False
        state.pending[m.conv.event_id] = m.conv
        return True

    def _expiry(self, state: ClickState) -> datetime:
        keep = self.config.max_window + self.config.lateness
        times = [c.received_at for c in state.pending.values()]
        if state.click is not None:
            times.append(state.click.at)
        return max(times) + keep
