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
from datetime import timedelta
from typing import NamedTuple

import msgspec

from processors.attribution import find_anchor, ms, path_to
from processors.codec import decoder, dumps
from processors.config import ProcessingConfig
from processors.dedup import conversion_key
from processors.experiments import SEP, pair, seen_by, split_key
from processors.messages import (
    Attributed,
    ClickInfo,
    ClickLookup,
    ClickReg,
    ConvEvent,
    FpLookup,
    FpReg,
    Method,
    Resolution,
    Resolved,
    Touch,
)
from processors.outcome import Drop, DropReason
from processors.sessions import Span, add_activity, find, prune, session_id
from processors.stage import StageOutput, load_with, save_with
from processors.store import KeyValueStore
from schemas.events import Event, EventType, ExperimentVariation

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
_TOUCH_TYPES = frozenset({EventType.CLICK, EventType.PUSH_OPEN})  # the types _touch makes a touch of
_TYPE_VALUE = {t: t.value for t in EventType}  # (Enum.value is a Python-level property)
_POSTBACK = EventType.POSTBACK.value
_replace = msgspec.structs.replace


class SourceEvent(NamedTuple):
    """An event read from the events topic, with where it came from (for exactly-once state)."""

    event: Event
    topic: str | None = None
    offset: int | None = None


class Held(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, gc=False):
    conv: ConvEvent
    res: Resolution


class VisitorProject(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, gc=False):
    """Mutated in place; read and written as msgspec Structs (processors.codec). ``gc=False``: nothing
    in a visitor state refers back to it, so it is never part of a reference cycle."""

    account_id: str = ""
    spans: list[Span] = []
    touches: list[Touch] = []
    exposures: dict[str, int] = {}
    convs: dict[str, Held] = {}
    sent: dict[str, str] = {}  # event id -> digest of the Attributed last emitted
    version: int = 0  # grows with every change: versions session rows and attribution paths
    last_ms: int = 0


class VisitorState(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, gc=False):
    projects: dict[str, VisitorProject] = {}
    wm: dict[str, int] = {}  # input topic -> highest offset applied


_STATE = decoder(VisitorState)


def decode_state(raw: bytes) -> VisitorState:
    return _STATE.decode(raw)


def encode_state(state: VisitorState) -> bytes:
    return dumps(state)


def _resolution(method: Method, visitor: str, link: str = "") -> Resolution:
    return Resolution(method=method, visitor_id=visitor, anchor_id="", link_id=link, rank=1)


def campaign_of(event: Event) -> str:
    return event.segment.campaign or event.attributes.get("utm_campaign", "") or ""


def _unique(ids: tuple[str, ...]) -> tuple[str, ...]:
    """``ids`` without repeats, in order (the same tuple when it has none to drop)."""
    if type(ids) is tuple and len(ids) < 2:
        return ids
    return tuple(dict.fromkeys(ids))


def _pairs(experiments: Sequence[ExperimentVariation]) -> tuple[tuple[str, str], ...]:
    return tuple(pair(f"{x.experiment_id}{SEP}{x.variation_id}") for x in experiments)


def conv_event(event: Event, key: str) -> ConvEvent:
    return ConvEvent(
        event_id=event.event_id,
        type=_TYPE_VALUE[event.type],
        key=key,
        project_id=event.project_id,
        account_id=event.account_id,
        visitor_id=event.visitor_id,
        occurred_at=event.occurred_at,
        received_at=event.received_at,
        goal_ids=_unique(event.goal_ids),
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
        experiments=_pairs(event.experiments) if event.experiments else (),
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
        external_click_id=event.external_click_id or "",
    )


class VisitorStage:
    name = "visitor"

    def __init__(self, config: ProcessingConfig):
        self.config = config
        self.now_ms = 0  # stream time used for expiry: advanced between batches (advance())
        self.seen_ms = 0  # newest received_at seen
        self._gap_ms = int(config.session_gap.total_seconds() * 1000)
        self._keep_ms = int((config.max_window + config.lateness).total_seconds() * 1000)
        self._retention_ms = int(config.retention.total_seconds() * 1000)
        self._lateness_ms = int(config.lateness.total_seconds() * 1000)

    # -- batch ---------------------------------------------------------------------------------

    def advance(self) -> None:
        """End of a batch: expiry may now use the newest time seen (never mid-batch, so one batch
        spanning a long time, e.g. a backfill, does not expire state its own later messages need)."""
        self.now_ms = max(self.now_ms, self.seen_ms)

    def process(
        self, store: KeyValueStore, sources: Sequence[SourceEvent], resolved: Sequence[Resolved]
    ) -> StageOutput:
        out = StageOutput()
        seen = self.seen_ms
        by_visitor: dict[str, tuple[list[SourceEvent], list[Resolved]]] = {}
        for s in sources:
            e = s.event
            t = ms(e.received_at)
            if t > seen:
                seen = t
            group = by_visitor.get(e.visitor_id)
            if group is None:
                group = by_visitor[e.visitor_id] = ([], [])
            group[0].append(s)
        for r in resolved:
            t = ms(r.conv.received_at)
            if t > seen:
                seen = t
        self.seen_ms = seen
        for r in resolved:
            group = by_visitor.get(r.res.visitor_id)
            if group is None:
                group = by_visitor[r.res.visitor_id] = ([], [])
            group[1].append(r)
        sids: dict[str, str] = {}
        for visitor, (evs, res) in by_visitor.items():
            self._visitor(store, visitor, evs, res, out, sids)
        out.events = [s.event for s in sources]
        out.session_ids = [sids.get(e.event_id, "") for e in out.events]
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
        state = (load_with(store, visitor, decode_state) if visitor else None) or VisitorState()
        changed = False
        wm = dict(state.wm)
        # session rows: the last version of each session touched here (all the batch's rows would keep)
        rows: dict[tuple[str, str], tuple[Span, bool, int]] = {}
        for s in sources:
            fresh = s.topic is None or s.offset is None or s.offset > state.wm.get(s.topic, -1)
            if fresh and s.topic is not None and s.offset is not None:
                wm[s.topic] = max(wm.get(s.topic, -1), s.offset)
            changed |= self._event(state, visitor, s.event, fresh, out, sids, rows)
        for (project, sid), (span, deleted, version) in rows.items():
            p = state.projects[project]
            out.sessions.add(
                project,
                p.account_id,
                visitor,
                sid,
                span.start,
                span.end,
                span.n,
                deleted,
                _BASE_VERSION + version,
            )
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
            expires_ms = self._prune(state)
            if state.projects:
                save_with(store, visitor, state, encode_state, expires_ms)
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
        rows: dict[tuple[str, str], tuple[Span, bool, int]],
    ) -> bool:
        """Apply one source event (``fresh``) or only re-derive its outputs (already applied)."""
        gap = self._gap_ms
        t = ms(e.occurred_at)
        if not fresh:
            out.count(Drop(DropReason.REPLAY, "record already applied to the visitor state"))
        p = state.projects.get(e.project_id) if visitor else None
        if visitor and fresh:
            p = state.projects.get(e.project_id)
            if p is None:
                p = state.projects[e.project_id] = VisitorProject(account_id=e.account_id)
        changed = False
        # sessions
        if p is not None:
            if e.type in ACTIVITY_TYPES and fresh:
                change = add_activity(p.spans, t, gap)
                p.version += 1
                if t > p.last_ms:
                    p.last_ms = t
                sid = session_id(e.project_id, visitor, change.span.start)
                sids[e.event_id] = sid
                rows[(e.project_id, sid)] = (change.span, False, p.version)
                for gone in change.removed:
                    rows[(e.project_id, session_id(e.project_id, visitor, gone.start))] = (
                        gone,
                        True,
                        p.version,
                    )
                changed = True
            else:
                span = find(p.spans, t, gap)
                if span is not None:
                    sids[e.event_id] = session_id(e.project_id, visitor, span.start)
        if p is not None and fresh:
            # exposures (viewExp, or exps/vars carried by any event)
            exposures = p.exposures
            for x in e.experiments:
                xkey = f"{x.experiment_id}{SEP}{x.variation_id}"  # = experiments.add_exposure
                first = exposures.get(xkey)
                if first is None or t < first:
                    exposures[xkey] = t
                    p.version += 1
                    out.exposures.add(
                        e.project_id,
                        e.account_id,
                        x.experiment_id,
                        x.variation_id,
                        visitor,
                        e.occurred_at,
                        _BASE_VERSION - t,
                    )
                    changed = True
            # touches
            touch = self._touch(e) if e.type in _TOUCH_TYPES else None
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
                out.count(Drop(DropReason.NO_GOAL, "postback names no goal"))
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
                return _resolution("visitor_link", visitor, e.link_id)
            return _resolution("visitor", visitor)
        if not visitor:
            return None
        if e.push_hash:
            return _resolution("push", visitor)
        return _resolution("visitor", visitor)

    @staticmethod
    def _touch(e: Event) -> Touch | None:
        if e.type is EventType.CLICK and e.click_id:
            return Touch(
                touch_id=e.click_id,
                kind="click",
                at=e.occurred_at,
                link_id=e.link_id or "",
                campaign=campaign_of(e),
                external_click_id=e.external_click_id or "",
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
        p = state.projects.get(r.conv.project_id)
        held = p.convs.get(r.conv.event_id) if p is not None else None
        if held is not None and held.res.rank >= r.res.rank:
            out.count(Drop(DropReason.REPLAY, "resolution already known"))
            return False
        if p is None:
            p = state.projects[r.conv.project_id] = VisitorProject(account_id=r.conv.account_id)
        p.convs[r.conv.event_id] = Held(conv=r.conv, res=r.res)
        p.sent.pop(r.conv.event_id, None)  # attributed again with the better resolution, even if settled
        return True

    # -- outputs -------------------------------------------------------------------------------

    def attribute(self, project: str, visitor: str, p: VisitorProject, held: Held) -> Attributed:
        cfg = self.config
        conv = held.conv
        anchor = find_anchor(
            conv,
            held.res,
            p.touches,
            p.spans,
            visitor_ttl=cfg.visitor_ttl,
            own_event=conv.type != _POSTBACK,
        )
        path: tuple[Touch, ...] = ()
        if anchor is not None:  # (without one the path is empty whatever the window)
            window = max(
                (cfg.goal_window(project, g, conv.window_days) for g in conv.goal_ids),
                default=timedelta(0),
            )
            path = tuple(path_to(anchor, p.touches, conv.occurred_at, window))
            if len(path) > cfg.max_touches:
                path = path[-cfg.max_touches :]
        return Attributed(
            conv=conv,
            res=held.res if held.res.visitor_id == visitor else _replace(held.res, visitor_id=visitor),
            path=path,
            variations=seen_by(p.exposures, ms(conv.occurred_at), conv.experiments),
            path_version=p.version,
        )

    def _emit_attributions(self, project: str, visitor: str, p: VisitorProject, out: StageOutput) -> bool:
        """(Re)attribute the held conversions whose attribution may still change, emitting those that
        did. A conversion older than the lateness (by stream time) that was already sent is settled: no
        event that could change it is still due, and the touches it used may be expired soon (a touch
        lives max window + lateness, so it outlives the settling of every conversion it can be in);
        attributing it again would lose them. A better resolution un-sends it (``_resolved``)."""
        changed = False
        settled_before = self.now_ms - self._lateness_ms
        sent = p.sent
        for eid, held in p.convs.items():
            if eid in sent and ms(held.conv.occurred_at) < settled_before:
                continue
            msg = self.attribute(project, visitor, p, held)
            # = sha256 of msg.model_dump_json(include={"res", "path", "variations"}), written by orjson
            body = dumps({"res": msg.res, "path": msg.path, "variations": msg.variations})
            digest = hashlib.sha256(body).hexdigest()[:16]
            if p.sent.get(eid) != digest:
                p.sent[eid] = digest
                out.messages.append(msg)
                changed = True
        return changed

    def _prune(self, state: VisitorState) -> int:
        """Drop what expired; return when the state expires (unix ms)."""
        retention_ms = self._retention_ms
        horizon = self.now_ms - self._keep_ms
        settled = self.now_ms - self._lateness_ms
        newest = 0
        for project in list(state.projects):
            p = state.projects[project]
            if p.touches:
                p.touches = [x for x in p.touches if ms(x.at) >= horizon]
            conv_ms = {eid: ms(h.conv.occurred_at) for eid, h in p.convs.items()}
            for eid, t in conv_ms.items():
                # expired, or settled (sent and older than the lateness: never attributed again)
                if t < horizon or (t < settled and eid in p.sent):
                    del p.convs[eid]
                    p.sent.pop(eid, None)
            p.spans = prune(p.spans, self.now_ms - retention_ms)
            if p.last_ms + retention_ms < self.now_ms and not p.convs:
                del state.projects[project]
                continue
            newest = max(newest, p.last_ms, *(t for eid, t in conv_ms.items() if eid in p.convs))
        return newest + retention_ms


def exposure_variations(p: VisitorProject) -> list[tuple[str, str]]:
    return [split_key(k) for k in p.exposures]
