"""The fingerprint stage, keyed by (project, client IP, user agent): PVTLNK auto-attribution.

A conversion without click id or visitor is attributed to the most recent click from the same IP and
user agent at or before the conversion, inside the window of its goals. A click that arrives later and
fits better re-resolves the conversion (with a higher rank, so the newer resolution wins downstream).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import msgspec

from processors.attribution import ms
from processors.config import ProcessingConfig
from processors.messages import (
    Attributed,
    ClickInfo,
    ConvEvent,
    FpLookup,
    FpReg,
    Resolution,
    Resolved,
    fingerprint_key,
)
from processors.outcome import Drop, DropReason
from processors.stage import StageOutput, load, save
from processors.store import KeyValueStore


class FpState(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, gc=False):
    clicks: dict[str, ClickInfo] = {}
    convs: dict[str, ConvEvent] = {}
    sent: dict[str, str] = {}  # event id -> click id it was last resolved to ("" = none)
    version: int = 0  # clicks ever registered: the rank of a resolution


class FingerprintStage:
    name = "fingerprint"

    def __init__(self, config: ProcessingConfig):
        self.config = config
        self.now_ms = 0  # stream time used for expiry: advanced between batches (advance())
        self.seen_ms = 0  # newest received_at seen

    def _window(self, conv: ConvEvent) -> timedelta:
        return max(
            (self.config.goal_window(conv.project_id, g, conv.window_days) for g in conv.goal_ids),
            default=timedelta(0),
        )

    def best_click(self, state: FpState, conv: ConvEvent) -> ClickInfo | None:
        start = conv.occurred_at - self._window(conv)
        fits = [c for c in state.clicks.values() if start <= c.at <= conv.occurred_at]
        return max(fits, key=lambda c: (c.at, c.click_id), default=None)

    def advance(self) -> None:
        """End of a batch: expiry may now use the newest time seen (never mid-batch, so one batch
        spanning a long time, e.g. a backfill, does not expire state its own later messages need)."""
        self.now_ms = max(self.now_ms, self.seen_ms)

    def process(self, store: KeyValueStore, msgs: Sequence[FpReg | FpLookup]) -> StageOutput:
        out = StageOutput()
        by_key: dict[str, list[FpReg | FpLookup]] = {}
        for m in msgs:
            if isinstance(m, FpReg):
                c = m.click
                key = fingerprint_key(c.project_id, c.client_ip, c.user_agent)
                self.seen_ms = max(self.seen_ms, ms(c.received_at))
            else:
                v = m.conv
                key = fingerprint_key(v.project_id, v.client_ip, v.user_agent)
                self.seen_ms = max(self.seen_ms, ms(v.received_at))
            by_key.setdefault(key, []).append(m)
        for key, items in by_key.items():
            state = load(store, key, FpState) or FpState()
            changed = False
            replayed: set[str] = set()
            for m in items:
                if isinstance(m, FpReg):
                    if m.click.click_id in state.clicks:
                        out.count(Drop(DropReason.REPLAY, "click already registered"))
                        continue
                    state.clicks[m.click.click_id] = m.click
                    state.version += 1
                    changed = True
                elif m.conv.event_id in state.convs:
                    replayed.add(m.conv.event_id)
                    out.count(Drop(DropReason.REPLAY, "conversion already held"))
                else:
                    state.convs[m.conv.event_id] = m.conv
                    changed = True
            for eid, conv in state.convs.items():
                best = self.best_click(state, conv)
                target = best.click_id if best else ""
                if state.sent.get(eid) == target and eid not in replayed:
                    continue
                if state.sent.get(eid) != target:
                    state.sent[eid] = target
                    changed = True
                if best is None:
                    out.messages.append(Attributed(conv=conv, res=Resolution(method="none")))
                else:
                    out.messages.append(
                        Resolved(
                            conv=conv,
                            res=Resolution(
                                method="fingerprint",
                                visitor_id=best.visitor_id,
                                anchor_id=best.click_id,
                                rank=1 + state.version,
                            ),
                        )
                    )
            if changed:
                self._prune(state)
                save(store, key, state, self._expiry(state))
        return out

    def _prune(self, state: FpState) -> None:
        horizon = self.now_ms - int((self.config.max_window + self.config.lateness).total_seconds() * 1000)
        state.clicks = {k: c for k, c in state.clicks.items() if ms(c.at) >= horizon}
        for eid in [eid for eid, c in state.convs.items() if ms(c.occurred_at) < horizon]:
            del state.convs[eid]
            state.sent.pop(eid, None)

    def _expiry(self, state: FpState) -> datetime:
        keep = self.config.max_window + self.config.lateness
        times = [c.at for c in state.clicks.values()] + [c.occurred_at for c in state.convs.values()]
        return max(times) + keep if times else datetime.fromtimestamp(self.now_ms / 1000).astimezone()
