"""Convert Experiences "new tracking structure": POST JSON body and the same data as bracket query params.

Wire shape (reference 003): ``{cid, pid, seg{browser, devices, source, campaign, new, ctry, cust}, vid,
ev: [{evt: viewExp|hitGoal|tr, exps, vars, goals, r, prc}]}``. ``tid`` on a ``tr`` event (transaction id)
is our documented extension so transactions can be deduplicated; the reference sends none.

Two ways in, one result (docs/performance.md, "Edge after the hot-path fixes"):

* the fast path checks a decoded payload of plain JSON types (str, int, list, dict) field by field in
  Python, with checks at least as strict as the pydantic wire models below; anything it is unsure of
  (a coercion, a bad value, an unusual type) goes to
* the reference path, :class:`WireTrack` (pydantic), which gives every 4xx its message.

Both produce the same normalized request, from which :func:`parse_convert_payload` builds the ``Event``
models and :mod:`ingest.formats.convert_fast` (the ``/track`` hot path) writes each event's canonical
JSON without building them.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from ingest.errors import Rejected, bad_request, too_large
from ingest.formats import fields
from ingest.formats.context import RequestContext
from schemas.events import Event, EventType, ExperimentVariation, Segment
from schemas.ids import new_event_ids

# Text of every field is checked for control characters before anything else (fields.control_free);
# amounts and counts sent as text must be plain ASCII numbers (fields.plain_decimal, fields.ascii_digits).
_NoControl = BeforeValidator(fields.no_control_chars)
Id = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64), _NoControl]
IdLike = Annotated[int, Field(ge=0)] | Id
Revenue = Annotated[
    Decimal,
    Field(ge=0, le=Decimal("1e12"), decimal_places=4, allow_inf_nan=False),
    BeforeValidator(fields.plain_decimal),
]
Count = Annotated[int, Field(ge=0, le=1_000_000), BeforeValidator(fields.ascii_digits)]
Flag = Annotated[int, Field(ge=0, le=1), BeforeValidator(fields.ascii_digits)]
Text16 = Annotated[str, StringConstraints(max_length=16), _NoControl]
Text64 = Annotated[str, StringConstraints(max_length=64), _NoControl]
Text200 = Annotated[str, StringConstraints(max_length=200), _NoControl]


_EVT_TYPES = {"viewExp": EventType.VIEW_EXP, "hitGoal": EventType.HIT_GOAL, "tr": EventType.TRANSACTION}


class WireSegment(BaseModel):
    model_config = ConfigDict(extra="ignore")

    browser: Text16 | None = None
    devices: list[Text16] = Field(default_factory=list, max_length=16)
    source: Text64 | None = None
    campaign: Text200 | None = None
    new: Flag | None = None
    ctry: Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{2}$")] | None = None
    cust: list[IdLike] = Field(default_factory=list, max_length=100)


class WireEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")

    evt: Literal["viewExp", "hitGoal", "tr"]
    exps: list[IdLike] = Field(default_factory=list, max_length=100)
    vars: list[IdLike] = Field(default_factory=list, max_length=100)
    goals: list[IdLike] = Field(default_factory=list, max_length=100)
    r: Revenue | None = None
    prc: Count | None = None
    tid: Id | None = None

    @model_validator(mode="after")
    def _check(self) -> WireEvent:
        if len(self.exps) != len(self.vars):
            raise ValueError(f"exps has {len(self.exps)} items but vars has {len(self.vars)}; they pair up")
        if self.evt == "viewExp" and not self.exps:
            raise ValueError("viewExp needs at least one experiment in exps/vars")
        if self.evt in ("hitGoal", "tr") and not self.goals:
            raise ValueError(f"{self.evt} needs at least one goal in goals")
        if self.evt == "tr" and self.r is None:
            raise ValueError("tr needs the transaction amount r")
        return self


class WireTrack(BaseModel):
    model_config = ConfigDict(extra="ignore")

    cid: IdLike
    pid: IdLike
    vid: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), _NoControl]
    seg: WireSegment | None = None
    ev: list[WireEvent] = Field(min_length=1)


def _str(v: int | str) -> str:
    return str(v)


# Canonical models are built by calling their validators on a dict: the same validation ``Model(**fields)``
# runs (pydantic's __init__ calls this validator), without its slower self-instance path.
_new_event = Event.__pydantic_validator__.validate_python
_new_segment = Segment.__pydantic_validator__.validate_python
_new_exp_var = ExperimentVariation.__pydantic_validator__.validate_python
_revenue = TypeAdapter(Revenue).validator.validate_python  # the very type of WireEvent.r


# --- the normalized request ---------------------------------------------------------------------------

# One event: (wire evt, experiment ids, variation ids, goal ids, revenue, products count, transaction id)
NormEvent = tuple[
    str, tuple[str, ...], tuple[str, ...], tuple[str, ...], Decimal | None, int | None, str | None
]
SegKey = tuple[str | None, tuple[str, ...], str | None, str | None, bool | None, str | None, tuple[str, ...]]


@dataclass(slots=True)
class _Normalized:
    account_id: str
    project_id: str
    visitor_id: str
    segment: SegKey  # the canonical Segment's fields, in order
    events: list[NormEvent]


@dataclass(slots=True)
class ConvertRecords:
    """One request's events as the accumulator takes them: all of one visitor, canonical JSON each."""

    visitor_id: str
    event_ids: list[str]
    blobs: list[bytes]


class _Slow(Exception):
    """The fast path is unsure: the pydantic models decide."""


_SLOW = _Slow()


def _fast_id(x: object) -> str:
    """IdLike for the plain cases: a non-negative int, or a str of 1-64 characters with no surrounding
    whitespace (nothing for ``strip_whitespace`` to do)."""
    t = type(x)
    if t is int:
        if x >= 0:  # type: ignore[operator]
            return str(x)
    elif (
        t is str
        and 0 < len(x) <= 64  # type: ignore[arg-type]
        and not x[0].isspace()  # type: ignore[index]
        and not x[-1].isspace()  # type: ignore[index]
        and x.isprintable()  # type: ignore[attr-defined]
    ):
        return x  # type: ignore[return-value]
    raise _SLOW


def _fast_ids(v: object) -> tuple[str, ...]:
    if type(v) is not list or len(v) > 100:
        raise _SLOW
    return tuple([_fast_id(x) for x in v])


def _opt_str(v: object, max_len: int) -> str | None:
    if v is None:
        return None
    if type(v) is str and len(v) <= max_len and v.isprintable():
        return v
    raise _SLOW


_NO_IDS: tuple[str, ...] = ()
_DEFAULT_SEG: SegKey = (None, (), None, None, None, None, ())


def _fast_segment(seg: object) -> SegKey:
    if seg is None:
        return _DEFAULT_SEG
    if type(seg) is not dict:
        raise _SLOW
    get = seg.get
    devices = get("devices", _NO_IDS)
    if devices is not _NO_IDS:
        if type(devices) is not list or len(devices) > 16:
            raise _SLOW
        for d in devices:
            if type(d) is not str or len(d) > 16 or not d.isprintable():
                raise _SLOW
        devices = tuple(devices)
    cust = get("cust", _NO_IDS)
    if cust is not _NO_IDS:
        cust = _fast_ids(cust)
    new = get("new")
    if new is not None and (type(new) is not int or not 0 <= new <= 1):
        raise _SLOW
    ctry = get("ctry")
    if ctry is not None and (
        type(ctry) is not str or len(ctry) != 2 or not (ctry.isascii() and ctry.isalpha())
    ):
        raise _SLOW
    return (
        _opt_str(get("browser"), 16),
        devices,
        _opt_str(get("source"), 64),
        _opt_str(get("campaign"), 200) or None,
        None if new is None else bool(new),
        ctry.upper() if ctry else None,
        cust,
    )


def _fast_event(w: object) -> NormEvent:
    if type(w) is not dict:
        raise _SLOW
    get = w.get
    evt = get("evt")
    if type(evt) is not str or evt not in _EVT_TYPES:
        raise _SLOW
    exps = get("exps", _NO_IDS)
    if exps is not _NO_IDS:
        exps = _fast_ids(exps)
    vars_ = get("vars", _NO_IDS)
    if vars_ is not _NO_IDS:
        vars_ = _fast_ids(vars_)
    goals = get("goals", _NO_IDS)
    if goals is not _NO_IDS:
        goals = _fast_ids(goals)
    r = get("r")
    if r is not None:
        try:
            r = _revenue(r)
        except ValidationError:
            raise _SLOW from None
    prc = get("prc")
    if prc is not None and (type(prc) is not int or not 0 <= prc <= 1_000_000):
        raise _SLOW
    tid = get("tid")
    if tid is not None and (type(tid) is not str or _fast_id(tid) is not tid):  # Id: str only, no int
        raise _SLOW
    # WireEvent._check, same order
    if len(exps) != len(vars_):
        raise _SLOW
    if evt == "viewExp":
        if not exps:
            raise _SLOW
    elif not goals or (evt == "tr" and r is None):
        raise _SLOW
    return (evt, exps, vars_, goals, r, prc, tid)


def _fast_visitor_events(data: dict[str, Any]) -> tuple[str, list[Any]]:
    """The visitor id and event list of a plain payload; raises ``_Slow`` for anything unusual."""
    vid = data.get("vid")
    if (
        type(vid) is not str
        or not 0 < len(vid) <= 200
        or vid[0].isspace()
        or vid[-1].isspace()
        or not vid.isprintable()
    ):
        raise _SLOW
    ev = data.get("ev")
    if type(ev) is not list or not ev:
        raise _SLOW
    return vid, ev


def _fast_normalize(data: dict[str, Any]) -> _Normalized:
    get = data.get
    vid, ev = _fast_visitor_events(data)
    return _Normalized(
        _fast_id(get("cid")),
        _fast_id(get("pid")),
        vid,
        _fast_segment(get("seg")),
        [_fast_event(w) for w in ev],
    )


def _wire_normalize(wire: WireTrack) -> _Normalized:
    seg = wire.seg or WireSegment()
    segment: SegKey = (
        seg.browser,
        tuple(seg.devices),
        seg.source,
        seg.campaign or None,
        None if seg.new is None else bool(seg.new),
        seg.ctry.upper() if seg.ctry else None,
        tuple(_str(c) for c in seg.cust),
    )
    events: list[NormEvent] = [
        (
            w.evt,
            tuple(_str(e) for e in w.exps),
            tuple(_str(v) for v in w.vars),
            tuple(_str(g) for g in w.goals),
            w.r,
            w.prc,
            w.tid,
        )
        for w in wire.ev
    ]
    return _Normalized(_str(wire.cid), _str(wire.pid), wire.vid, segment, events)


def _normalize(data: Any, max_events: int) -> _Normalized:
    if type(data) is dict:
        ev = data.get("ev")
        if type(ev) is list and len(ev) > max_events:
            raise too_large(f"request carries {len(ev)} events; at most {max_events} per request")
        try:
            return _fast_normalize(data)
        except _Slow:
            pass
    # The reference path: every rejection and every coercion exactly as the pydantic models have them.
    if not isinstance(data, dict):
        raise bad_request("invalid_body", f"body must be a JSON object, got {type(data).__name__}")
    ev = data.get("ev")
    if isinstance(ev, list) and len(ev) > max_events:
        raise too_large(f"request carries {len(ev)} events; at most {max_events} per request")
    try:
        wire = WireTrack.model_validate(data)
    except ValidationError as exc:
        raise _validation_rejection(exc) from None
    return _wire_normalize(wire)


# --- canonical Event models -----------------------------------------------------------------------------

_SEGMENT_FIELDS = ("browser", "devices", "source", "campaign", "returning", "country", "custom")


def parse_convert_payload(
    data: Any, ctx: RequestContext, *, source_format: str, max_events: int
) -> list[Event]:
    """Validate a decoded JSON/bracket payload and turn it into canonical events."""
    norm = _normalize(data, max_events)
    return _events(norm, ctx, source_format, new_event_ids(len(norm.events)))


def _events(norm: _Normalized, ctx: RequestContext, source_format: str, ids: list[str]) -> list[Event]:
    segment = _new_segment(dict(zip(_SEGMENT_FIELDS, norm.segment, strict=True)))
    pairs: dict[tuple[str, str], ExperimentVariation] = {}  # events of one request share experiments

    def exp_var(e: str, v: str) -> ExperimentVariation:
        found = pairs.get((e, v))
        if found is None:
            found = pairs[(e, v)] = _new_exp_var({"experiment_id": e, "variation_id": v})
        return found

    return [
        _new_event(
            {
                "event_id": event_id,
                "type": _EVT_TYPES[evt],
                "received_at": ctx.received_at,
                "occurred_at": ctx.received_at,
                "account_id": norm.account_id,
                "project_id": norm.project_id,
                "visitor_id": norm.visitor_id,
                "experiments": tuple(exp_var(e, v) for e, v in zip(exps, vars_, strict=True)),
                "goal_ids": goals,
                "revenue": r,
                "products_count": prc,
                "transaction_id": tid,
                "segment": segment,
                "client_ip": ctx.client_ip,
                "user_agent": ctx.user_agent,
                "source_format": source_format,
            }
        )
        for event_id, (evt, exps, vars_, goals, r, prc, tid) in zip(ids, norm.events, strict=True)
    ]


# Location parts pydantic adds for the branches of a union (IdLike) and for validator functions.
_BRANCH_TAGS = ("function-", "constrained-")


def _validation_rejection(exc: ValidationError) -> Rejected:
    details = []
    shadowed = []  # text that failed the int branch of an IdLike: the str branch's problem says more
    for err in exc.errors(include_url=False, include_context=False, include_input=False):
        loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith(_BRANCH_TAGS))
        details.append({"field": loc, "problem": err["msg"]})
        shadowed.append(err["type"] == "int_parsing")
    fields_seen = [d["field"] for d in details]
    first = next(
        (d for d, sh in zip(details, shadowed, strict=True) if not sh or fields_seen.count(d["field"]) == 1),
        details[0],
    )
    where = f"{first['field']}: " if first["field"] else ""
    unknown_evt = any(
        e["type"] == "literal_error" and e["loc"][-1] == "evt" for e in exc.errors(include_url=False)
    )
    code = "unknown_event_type" if unknown_evt else "invalid_field"
    return bad_request(code, f"{where}{first['problem']}", details)
