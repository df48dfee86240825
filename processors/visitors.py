"""The visitor stage: everything keyed by visitor id — sessions, touches, exposures, attribution paths.

Input: the visitor's own events (from the events topic, which the edge partitions by visitor id) and
``Resolved`` conversions (a postback resolved to this visitor by the click or fingerprint stage).
Output: each event with its session id, session and exposure rows, routing messages (clicks to the
click and fingerprint stages, postbacks that need a lookup) and one ``Attributed`` message per
conversion event whenever its attribution changes (e.g. a click that arrives late).

Exactly-once state: each visitor's state remembers the highest record offset it applied per input topic,
so a record delivered again after a crash changes nothing; ``Resolved`` messages merge by rank.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, ConfigDict

from processors.attribution import find_anchor, ms, path_to
from processors.config import ProcessingConfig
from processors.dedup import conversion_key
from processors.experiments import add_exposure, seen_by, split_key
from processors.messages import (
    Attributed,
    ClickInfo,
    ClickLookup,
    ClickReg,
    ConvEvent,
    FpLookup,
    FpReg,
    Resolution,
    Resolved,
    Touch,
)
from processors.outcome import Drop
from processors.sessions import Span, add_activity, find, prune, session_id
from processors.stage import StageOutput, load, save
from processors.store import KeyValueStore
from schemas.events import Event, EventType
from schemas.rows import ExposureRow, SessionRow

ACTIVITY_TYPES = frozenset(
    {
        EventType.CLICK,
        EventType.VIEW_EXP,
        EventType.HIT_GOAL,
        EventType.TRANSACTION,
        EventType.PUSH_OPEN,
        EventType.CUSTOM_EVENT,
    }
)
_BASE_VERSION = 1 << 62


@dataclass(frozen=True)
class SourceEvent:
    """An event read from the events topic, with where it came from (for exactly-once state)."""

    event: Event
    topic: str | None = None
    offset: int | None = None


class Held(BaseModel):
    model_config = ConfigDict(extra="forbid")

    conv: ConvEvent
    res: Resolution


class VisitorProject(BaseModel):
    model_config = ConfigDict(extra="forbid")

    account_id: str = ""
    spans: list[Span] = []
    touches: list[Touch] = []
    exposures: dict[str, int] = {}
    convs: dict[str, Held] = {}
    sent: dict[str, str] = {}  # event id -> digest of the Attributed last emitted
    version: int = 0  # grows with every change: versions session rows and attribution paths
    last_ms: int = 0


class VisitorState(BaseModel):
    model_config = ConfigDict(extra="forbid")

    projects: dict[str, VisitorProject] = {}
    wm: dict[str, int] = {}  # input topic -> highest offset applied


def _dt(t_ms: int) -> datetime:
    return datetime.fromtimestamp(t_ms / 1000, tz=UTC)


def campaign_of(event: Event) -> str:
    return event.segment.campaign or event.attributes.get("utm_campaign", "") or ""


def conv_event(event: Event, key: str) -> ConvEvent:
    return ConvEvent(
        event_id=event.event_id,
        type=event.type.value,
        key=key,
        project_id=event.project_id,
        account_id=event.account_id,
        visitor_id=event.visitor_id,
        occurred_at=event.occurred_at,
        received_at=event.received_at,
        goal_ids=tuple(dict.fromkeys(event.goal_ids)),
        revenue=event.revenue,
        currency=event.currency or "",
        products_count=event.products_count or 0,
        transaction_id=event.transaction_id or "",
        status=event.status or "",
        disable_postbacks=event.disable_postbacks,
        click_id=event.click_id or "",
        link_id=event.link_id or "",
        push_hash=event.push_hash or "",
        client_ip=event.client_ip or "",
        user_agent=event.user_agent or "",
        experiments=tuple((x.experiment_id, x.variation_id) for x in event.experiments),
        campaign=campaign_of(event),
        window_days=event.attribution_window_days,
    )


def click_info(event: Event) -> ClickInfo:
    assert event.click_id
    return ClickInfo(
        click_id=event.click_id,
        project_id=event.project_id,
        visitor_id=event.visitor_id,
        link_id=event.link_id or "",
        campaign=campaign_of(event),
        at=event.occurred_at,
        received_at=event.received_at,
        client_ip=event.client_ip or "",
        user_agent=event.user_agent or "",
    )


class VisitorStage:
    name = "visitor"

    def __init__(self, config: ProcessingConfig):
        self.config = config
        self.now_ms = 0  # stream time used for expiry: advanced between batches (advance())
        self.seen_ms = 0  # newest received_at seen

    # -- batch ---------------------------------------------------------------------------------

    def advance(self) -> None:
        """End of a batch: expiry may now use the newest time seen (never mid-batch, so one batch
        spanning a long time, e.g. a backfill, does not expire state its own later messages need)."""
        self.now_ms = max(self.now_ms, self.seen_ms)

    def process(
        self, store: KeyValueStore, sources: Sequence[SourceEvent], resolved: Sequence[Resolved]
    ) -> StageOutput:
        out = StageOutput()
        for s in sources:
            self.seen_ms = max(self.seen_ms, ms(s.event.received_at))
        for r in resolved:
            self.seen_ms = max(self.seen_ms, ms(r.conv.received_at))
        by_visitor: dict[str, tuple[list[SourceEvent], list[Resolved]]] = {}
        for s in sources:
            by_visitor.setdefault(s.event.visitor_id, ([], []))[0].append(s)
        for r in resolved:
            by_visitor.setdefault(r.res.visitor_id, ([], []))[1].append(r)
        sids: dict[str, str] = {}
        for visitor, (evs, res) in by_visitor.items():
            self._visitor(store, visitor, evs, res, out, sids)
        for s in sources:
            out.events.append(s.event)
            out.session_ids.append(sids.get(s.event.event_id, ""))
        return out

    def _visitor(
        self,
        store: KeyValueStore,
        visitor: str,
        sources: list[SourceEvent],
        resolved: list[Resolved],
        out: StageOutput,
        sids: dict[str, str],
    ) -> None:
        state = (load(store, visitor, VisitorState) if visitor else None) or VisitorState()
        changed = False
        wm = dict(state.wm)
        for s in sources:
            fresh = s.topic is None or s.offset is None or s.offset > state.wm.get(s.topic, -1)
            if fresh and s.topic is not None and s.offset is not None:
                wm[s.topic] = max(wm.get(s.topic, -1), s.offset)
            changed |= self._event(state, visitor, s.event, fresh, out, sids)
        for r in resolved:
            changed |= self._resolved(state, r, out)
        if not visitor:
            return
        if wm != state.wm:
            state.wm = wm
            changed = True
        for project, p in state.projects.items():
            changed |= self._emit_attributions(project, visitor, p, out)
        if changed:
            expires = self._prune(state)
            if state.projects:
                save(store, visitor, state, expires)
            else:
                store.delete(visitor)

    # -- one event -----------------------------------------------------------------------------

    def _event(
        self,
        state: VisitorState,
        visitor: str,
        e: Event,
        fresh: bool,
        out: StageOutput,
        sids: dict[str, str],
    ) -> bool:
        """Apply one source event (``fresh``) or only re-derive its outputs (already applied)."""
        cfg = self.config
        gap = int(cfg.session_gap.total_seconds() * 1000)
        t = ms(e.occurred_at)
        if not fresh:
            out.count(Drop("replay: record already applied to the visitor state"))
        p = state.projects.get(e.project_id) if visitor else None
        if visitor and fresh:
            p = state.projects.setdefault(e.project_id, VisitorProject(account_id=e.account_id))
        changed = False
        # sessions
        if p is not None:
            if e.type in ACTIVITY_TYPES and fresh:
                change = add_activity(p.spans, t, gap)
                p.version += 1
                p.last_ms = max(p.last_ms, t)
                sids[e.event_id] = session_id(e.project_id, visitor, change.span.start)
                out.sessions.append(self._session_row(e.project_id, p, visitor, change.span, False))
                for gone in change.removed:
                    out.sessions.append(self._session_row(e.project_id, p, visitor, gone, True))
                changed = True
            else:
                span = find(p.spans, t, gap)
                if span is not None:
                    sids[e.event_id] = session_id(e.project_id, visitor, span.start)
        if p is not None and fresh:
            # exposures (viewExp, or exps/vars carried by any event)
            for x in e.experiments:
                if add_exposure(p.exposures, x.experiment_id, x.variation_id, t):
                    p.version += 1
                    out.exposures.append(
                        ExposureRow(
                            project_id=e.project_id,
                            account_id=e.account_id,
                            experiment_id=x.experiment_id,
                            variation_id=x.variation_id,
                            visitor_id=visitor,
                            first_seen_at=e.occurred_at,
                            version=_BASE_VERSION - t,
                        )
                    )
                    changed = True
            # touches
            touch = self._touch(e)
            if touch is not None and all(x.touch_id != touch.touch_id for x in p.touches):
                p.touches.append(touch)
                p.touches.sort(key=lambda x: (x.at, x.touch_id))
                p.version += 1
                changed = True
        # routing (idempotent downstream, so sent again on replay)
        if e.type is EventType.CLICK and e.click_id and fresh:
            info = click_info(e)
            out.messages.append(ClickReg(click=info))
            if info.client_ip and info.user_agent:
                out.messages.append(FpReg(click=info))
        key = conversion_key(e)
        if key is None:
            if e.type is EventType.POSTBACK:
                out.count(Drop("no_goal: postback names no goal"))
            return changed
        if not fresh:
            return changed
        conv = conv_event(e, key)
        res = self._initial_resolution(e, visitor)
        if res is None:
            if e.click_id and e.type is EventType.POSTBACK:
                out.messages.append(ClickLookup(conv=conv))
            elif conv.client_ip and conv.user_agent:
                out.messages.append(FpLookup(conv=conv))
            else:
                out.messages.append(Attributed(conv=conv, res=Resolution(method="none", visitor_id="")))
            return changed
        assert p is not None
        if conv.event_id not in p.convs:
            p.convs[conv.event_id] = Held(conv=conv, res=res)
            changed = True
        return changed

    @staticmethod
    def _initial_resolution(e: Event, visitor: str) -> Resolution | None:
        """How the visitor stage resolves a conversion event itself; None = another stage must."""
        if e.type is EventType.POSTBACK:
            if e.click_id or not visitor:
                return None
            if e.link_id:
                return Resolution(method="visitor_link", visitor_id=visitor, link_id=e.link_id, rank=1)
            return Resolution(method="visitor", visitor_id=visitor, rank=1)
        if not visitor:
            return None
        if e.push_hash:
            return Resolution(method="push", visitor_id=visitor, rank=1)
        return Resolution(method="visitor", visitor_id=visitor, rank=1)

    @staticmethod
    def _touch(e: Event) -> Touch | None:
        if e.type is EventType.CLICK and e.click_id:
            return Touch(
                touch_id=e.click_id,
                kind="click",
                at=e.occurred_at,
                link_id=e.link_id or "",
                campaign=campaign_of(e),
            )
        if e.type is EventType.PUSH_OPEN:
            return Touch(
                touch_id=f"push:{e.event_id}",
                kind="push",
                at=e.occurred_at,
                campaign=campaign_of(e),
                push_hash=e.push_hash or "",
            )
        return None

    def _resolved(self, state: VisitorState, r: Resolved, out: StageOutput) -> bool:
        p = state.projects.setdefault(r.conv.project_id, VisitorProject(account_id=r.conv.account_id))
        held = p.convs.get(r.conv.event_id)
        if held is not None and held.res.rank >= r.res.rank:
            out.count(Drop("replay: resolution already known"))
            return False
        p.convs[r.conv.event_id] = Held(conv=r.conv, res=r.res)
        return True

    # -- outputs -------------------------------------------------------------------------------

    def _session_row(
        self, project: str, p: VisitorProject, visitor: str, span: Span, deleted: bool
    ) -> SessionRow:
        return SessionRow(
            project_id=project,
            account_id=p.account_id,
            visitor_id=visitor,
            session_id=session_id(project, visitor, span.start),
            started_at=_dt(span.start),
            ended_at=_dt(span.end),
            events=span.n,
            is_deleted=deleted,
            version=_BASE_VERSION + p.version,
        )

    def attribute(self, project: str, visitor: str, p: VisitorProject, held: Held) -> Attributed:
        cfg = self.config
        conv = held.conv
        anchor = find_anchor(
            conv,
            held.res,
            p.touches,
            p.spans,
            visitor_ttl=cfg.visitor_ttl,
            own_event=conv.type != EventType.POSTBACK.value,
        )
        window = max(
            (cfg.goal_window(project, g, conv.window_days) for g in conv.goal_ids), default=timedelta(0)
        )
        path = path_to(anchor, p.touches, conv.occurred_at, window)
        if len(path) > cfg.max_touches:
            path = path[-cfg.max_touches :]
        return Attributed(
            conv=conv,
            res=held.res.model_copy(update={"visitor_id": visitor}),
            path=tuple(path),
            variations=seen_by(p.exposures, ms(conv.occurred_at), conv.experiments),
            path_version=p.version,
        )

    def _emit_attributions(self, project: str, visitor: str, p: VisitorProject, out: StageOutput) -> bool:
        changed = False
        for eid, held in p.convs.items():
            msg = self.attribute(project, visitor, p, held)
            digest = hashlib.sha256(
                msg.model_dump_json(include={"res", "path", "variations"}).encode()
            ).hexdigest()[:16]
            if p.sent.get(eid) != digest:
                p.sent[eid] = digest
                out.messages.append(msg)
                changed = True
        return changed

    def _prune(self, state: VisitorState) -> datetime:
        cfg = self.config
        keep_ms = int((cfg.max_window + cfg.lateness).total_seconds() * 1000)
        retention_ms = int(cfg.retention.total_seconds() * 1000)
        horizon = self.now_ms - keep_ms
        newest = 0
        for project in list(state.projects):
            p = state.projects[project]
            p.touches = [x for x in p.touches if ms(x.at) >= horizon]
            for eid in [eid for eid, h in p.convs.items() if ms(h.conv.occurred_at) < horizon]:
                del p.convs[eid]
                p.sent.pop(eid, None)
            p.spans = prune(p.spans, self.now_ms - retention_ms)
            if p.last_ms + retention_ms < self.now_ms and not p.convs:
                del state.projects[project]
                continue
            newest = max(newest, p.last_ms, *(ms(h.conv.occurred_at) for h in p.convs.values()))
        return _dt(newest + retention_ms)


def exposure_variations(p: VisitorProject) -> list[tuple[str, str]]:
    return [split_key(k) for k in p.exposures]
