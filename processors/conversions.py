"""The conversion stage, keyed by (project, conversion key): one conversion row per goal, exact.

Every ``Attributed`` event of a key is merged into its :class:`~processors.dedup.Ledger` (idempotent,
order-free). The row of each goal the events name is a pure function of the ledger:

- conversion time, event id, transaction id: the earliest event (by occurred_at, then event id);
- status, revenue, currency, disable_postbacks: the latest event decides (processors.statuses);
- attribution: the earliest event whose anchor touch lies inside the goal's window; the models split
  the conversion and its revenue over that event's path (processors.attribution_models);
- variations: every variation any of its events was credited to (processors.experiments).

``version`` grows with every merge that changed the ledger, so the sink keeps the newest row.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from processors.attribution import GoalAttribution, for_goal
from processors.attribution_models import BACKWARD, MODELS, REVENUE_QUANTUM, credits, split, weights
from processors.codec import construct
from processors.config import ProcessingConfig
from processors.dedup import Ledger, decode_ledger, encode_ledger
from processors.messages import Attributed, Touch, conversion_route_key
from processors.stage import StageOutput, load_with, save_with
from processors.statuses import resolve
from processors.store import KeyValueStore
from schemas.instants import epoch_ms
from schemas.rows import Conversion, Credit

_ONE = Decimal(1)
_UNATTRIBUTED: dict[str, tuple[Credit, ...]] = {}  # revenue (exact text) -> its credit rows (immutable)


def _unattributed(revenue: Decimal) -> tuple[Credit, ...]:
    """The credit rows of an unattributed conversion: one per model, the whole credit to "" (direct)."""
    key = str(revenue)
    rows = _UNATTRIBUTED.get(key)
    if rows is None:
        if len(_UNATTRIBUTED) >= 4096:
            _UNATTRIBUTED.clear()
        rows = _UNATTRIBUTED[key] = tuple(_credit(m, None, _ONE, revenue) for m in (*MODELS, BACKWARD))
    return rows


def _credit_rows(
    ga: GoalAttribution | None, t: datetime, revenue: Decimal, half_life_s: float
) -> Sequence[Credit]:
    if ga is None or ga.anchor is None:
        return _unattributed(revenue)
    path = ga.path
    ages = [(t - x.at).total_seconds() for x in path]
    rows: list[Credit] = []
    for model in MODELS:
        shares = credits(model, ages, half_life_s)
        revs = split(revenue, weights(model, ages, half_life_s), REVENUE_QUANTUM)
        for x, share, rev in zip(path, shares, revs, strict=True):
            rows.append(_credit(model, x, share, rev))
    for x in path:
        rows.append(_credit(BACKWARD, x, _ONE, revenue))
    return rows


def _credit(model: str, x: Touch | None, share: Decimal, revenue: Decimal) -> Credit:
    """Credit(...) of touch ``x`` ("" everywhere for None: unattributed), built without validation."""
    if x is None:
        touch = {"touch_id": "", "kind": "", "link_id": "", "campaign": "", "push_hash": ""}
    else:
        touch = {
            "touch_id": x.touch_id,
            "kind": x.kind,
            "link_id": x.link_id,
            "campaign": x.campaign,
            "push_hash": x.push_hash,
        }
    return construct(Credit, {"model": model, **touch, "credit": share, "revenue": revenue})


def conversion_rows(ledger: Ledger, config: ProcessingConfig) -> list[Conversion]:
    return _rows(ledger, ledger.version, config)


def _rows(ledger: Ledger, version: int, config: ProcessingConfig) -> list[Conversion]:
    if not ledger.events:
        return []
    msgs_all = sorted(ledger.events.values(), key=lambda m: (m.conv.occurred_at, m.conv.event_id))
    project = msgs_all[0].conv.project_id
    goals = sorted({g for m in msgs_all for g in m.conv.goal_ids})
    rows = []
    for goal in goals:
        msgs = [m for m in msgs_all if goal in m.conv.goal_ids]
        rows.append(_goal_row(project, goal, msgs, version, config))
    return rows


def _goal_row(
    project: str, goal: str, msgs: Sequence[Attributed], version: int, config: ProcessingConfig
) -> Conversion:
    first = msgs[0]
    st = resolve([m.conv for m in msgs])
    if len(msgs) == 1:
        deciding = first
    else:
        deciding = next(m for m in msgs if m.conv.event_id == st.deciding_event_id)
    window = config.goal_window(project, goal, deciding.conv.window_days)
    attributing: Attributed | None = None
    ga: GoalAttribution | None = None
    for m in msgs:
        if not m.path:
            continue  # for_goal: unattributed
        cand = for_goal(m, window)
        if cand.anchor is not None:
            attributing, ga = m, cand
            break
    visitor = attributing.res.visitor_id if attributing else ""
    if not visitor:
        for m in msgs:
            if m.res.visitor_id or m.conv.visitor_id:
                visitor = m.res.visitor_id or m.conv.visitor_id
                break
    if len(msgs) == 1:
        variations = sorted(set(first.variations))
    else:
        variations = sorted({v for m in msgs for v in m.variations})
    anchor = ga.anchor if ga else None
    push_hash = anchor.push_hash if anchor and anchor.kind == "push" else ""
    if not push_hash:
        for m in msgs:
            if m.conv.push_hash:
                push_hash = m.conv.push_hash
                break
    t_attr = attributing.conv.occurred_at if attributing else first.conv.occurred_at
    return construct(
        Conversion,
        dict(
            project_id=project,
            goal_id=goal,
            conversion_key=first.conv.key,
            account_id=first.conv.account_id,
            visitor_id=visitor,
            event_id=first.conv.event_id,
            event_type=first.conv.type,
            occurred_at=first.conv.occurred_at,
            received_at=first.conv.received_at,
            revenue=st.revenue,
            currency=st.currency,
            products_count=deciding.conv.products_count,
            transaction_id=first.conv.transaction_id,
            experiment_ids=tuple(e for e, _ in variations),
            variation_ids=tuple(v for _, v in variations),
            version=version,
            status=st.status,
            status_class=st.status_class.value,
            is_deleted=st.is_deleted,
            disable_postbacks=st.disable_postbacks,
            events_merged=len(msgs),
            attribution_method=attributing.res.method if attributing else "none",
            attribution_model=config.model_for(project),
            attributed_touch_id=anchor.touch_id if anchor else "",
            attributed_click_id=anchor.touch_id if anchor and anchor.kind == "click" else "",
            attributed_external_click_id=anchor.external_click_id
            if anchor and anchor.kind == "click"
            else "",
            attributed_link_id=anchor.link_id if anchor else "",
            attributed_campaign=(anchor.campaign if anchor else "") or first.conv.campaign,
            attributed_push_hash=push_hash,
            attributed_at=anchor.at if anchor else None,
            time_to_convert_ms=ga.time_to_convert_ms if ga else None,
            attribution_window_s=int(window.total_seconds()),
            credits=tuple(_credit_rows(ga, t_attr, st.revenue, config.half_life.total_seconds())),
        ),
    )


class ConversionStage:
    name = "conversion"

    def __init__(self, config: ProcessingConfig):
        self.config = config

    def process(self, store: KeyValueStore, msgs: Sequence[Attributed]) -> StageOutput:
        out = StageOutput()
        by_key: dict[str, list[Attributed]] = {}
        for m in msgs:
            by_key.setdefault(conversion_route_key(m.conv.project_id, m.conv.key), []).append(m)
        for key, items in by_key.items():
            ledger = load_with(store, key, decode_ledger) or Ledger()
            before = ledger.version
            for m in items:
                out.count(ledger.merge(m))
            version = ledger.version
            if version == before:
                continue
            out.conversions.extend(_rows(ledger, version, self.config))
            expires = ledger.expires_at(self.config.dedup_window + self.config.lateness)
            assert expires is not None
            save_with(store, key, ledger, encode_ledger, epoch_ms(expires))
        return out
