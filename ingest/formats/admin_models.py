"""Wire models of the admin API (goals and links) and their answers. Pure: no I/O.

Goals are created as in the PVTLNK reference, ``{"goal": {...}}`` or the same fields flat; links as
``{"link": {...}}`` or flat. Unknown fields are refused (a typo in an admin call should not pass
silently). ``project`` may be omitted: it is then ``default`` (single-project installs).
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)
from yarl import URL

from ingest.errors import Rejected, bad_request
from ingest.formats import fields
from schemas.config import ConfigState, Goal, GoalType, Link, signing_key_records
from schemas.outbound.postbacks import (
    Method,
    TemplateError,
    parse_status_filter,
    parse_status_map,
    parse_template,
)
from schemas.outbound.signing import KeyRing, WebhookSecret, generate_secret
from schemas.outbound.ssrf import AllowList, Refused, check_url

DEFAULT_PROJECT = "default"
ProjectId = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
# The same rules as the events' fields (ingest.formats.fields): no control characters in names, an ISO 4217
# currency, a plain decimal amount.
_NoControl = BeforeValidator(fields.no_control_chars)
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), _NoControl]
Currency = Annotated[str, BeforeValidator(fields.iso_currency)]
Amount = Annotated[
    Decimal,
    Field(ge=0, le=Decimal("1e12"), decimal_places=4, allow_inf_nan=False),
    BeforeValidator(fields.plain_decimal),
]
Window = Annotated[int, Field(ge=1, le=3650)]
MAX_URL = 2048


def checked_url(value: str, field: str) -> str:
    """An absolute http(s) URL with a host and without credentials (no user@host tricks)."""
    value = value.strip()
    if not value or len(value) > MAX_URL or any(c.isspace() or ord(c) < 32 for c in value):
        raise ValueError(f"{field} must be an http(s) URL of at most {MAX_URL} characters without spaces")
    try:
        url = URL(value)
    except ValueError as exc:
        raise ValueError(f"{field} is not a URL: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"{field} must be an absolute http:// or https:// URL")
    if url.user or url.password:
        raise ValueError(f"{field} must not carry a user name or password")
    return value


class GoalCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    project: ProjectId = DEFAULT_PROJECT
    name: Name
    goal_type: GoalType = GoalType.CUSTOM
    value: Amount | None = None
    currency: Currency | None = None
    attribution_window_days: Window = 30
    postback_url: str | None = None
    default: bool = False

    @field_validator("postback_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        return None if v is None else checked_url(v, "postback_url")


class GoalPatch(BaseModel):
    """Fields a PATCH may change; ``project`` and ``token`` are fixed for the goal's life."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    goal_type: GoalType | None = None
    value: Amount | None = None
    currency: Currency | None = None
    attribution_window_days: Window | None = None
    postback_url: str | None = None
    default: bool | None = None

    @field_validator("postback_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        return None if v is None else checked_url(v, "postback_url")


Utm = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), _NoControl]


ParamName = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
Rule = Annotated[str, StringConstraints(strip_whitespace=True, max_length=1000), _NoControl]
GoalRef = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64), _NoControl]


def _status_filter(v: str | None) -> str | None:
    if v is not None:
        try:
            parse_status_filter(v)
        except TemplateError as exc:
            raise ValueError(str(exc)) from None
    return v


def _status_map(v: str | None) -> str | None:
    if v is not None:
        try:
            parse_status_map(v)
        except TemplateError as exc:
            raise ValueError(str(exc)) from None
    return v


class LinkCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    project: ProjectId = DEFAULT_PROJECT
    url: str
    campaign: Utm | None = None
    utm_source: Utm | None = None
    utm_medium: Utm | None = None
    utm_campaign: Utm | None = None
    utm_term: Utm | None = None
    utm_content: Utm | None = None
    goal: GoalRef | None = None
    external_click_param: ParamName | None = None
    postback_template: Rule | None = None
    postback_method: Method = Method.GET
    postback_statuses: Rule | None = None
    postback_status_map: Rule | None = None
    postback_updates: bool = False

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return checked_url(v, "url")

    _statuses = field_validator("postback_statuses")(_status_filter)
    _map = field_validator("postback_status_map")(_status_map)


class LinkPatch(BaseModel):
    """Fields a PATCH may change (null clears an optional one); ``project`` is fixed."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = None
    campaign: Utm | None = None
    utm_source: Utm | None = None
    utm_medium: Utm | None = None
    utm_campaign: Utm | None = None
    utm_term: Utm | None = None
    utm_content: Utm | None = None
    goal: GoalRef | None = None
    external_click_param: ParamName | None = None
    postback_template: Rule | None = None
    postback_method: Method | None = None
    postback_statuses: Rule | None = None
    postback_status_map: Rule | None = None
    postback_updates: bool | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        return None if v is None else checked_url(v, "url")

    _statuses = field_validator("postback_statuses")(_status_filter)
    _map = field_validator("postback_status_map")(_status_map)


def unwrap(data: dict[str, Any], wrapper: str) -> dict[str, Any]:
    """``{"goal": {...}}`` -> ``{...}``; a flat body is returned as is."""
    if set(data) == {wrapper}:
        inner = data[wrapper]
        if not isinstance(inner, dict):
            raise bad_request("invalid_body", f"{wrapper} must be a JSON object")
        return inner
    return data


def validation_rejection(exc: ValidationError) -> Rejected:
    details = []
    for err in exc.errors(include_url=False, include_context=False, include_input=False):
        loc = ".".join(str(p) for p in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        details.append({"field": loc, "problem": msg})
    first = details[0]
    code = "missing_field" if exc.errors()[0]["type"] == "missing" else "invalid_field"
    where = f"{first['field']}: " if first["field"] else ""
    return bad_request(code, f"{where}{first['problem']}", details)


def new_id() -> str:
    """A short URL-safe random id (72 bits) for goals and links."""
    return secrets.token_urlsafe(9)


def new_token() -> str:
    return secrets.token_urlsafe(24)


def new_goal(
    spec: GoalCreate, now: datetime, goal_id: str, token: str, secret: WebhookSecret | None = None
) -> Goal:
    """A new goal with its first webhook signing secret (returned once, in the creation's answer)."""
    secret = secret or new_signing_secret()
    return Goal(
        id=goal_id,
        token=token,
        created_at=now,
        updated_at=now,
        signing_keys=signing_key_records(KeyRing.new(secret, now)),
        **spec.model_dump(),
    )


def new_signing_secret() -> WebhookSecret:
    return generate_secret()


def rotated_goal(goal: Goal, secret: WebhookSecret, now: datetime, grace: timedelta) -> Goal:
    """``secret`` becomes the goal's signing secret; the previous one signs for ``grace`` more."""
    ring = goal.key_ring()
    ring = KeyRing.new(secret, now) if ring is None else ring.rotate(secret, now, grace)
    return goal.model_copy(update={"signing_keys": signing_key_records(ring), "updated_at": now})


def refused_destination(field: str, url: str, allow: AllowList) -> Rejected | None:
    """The SSRF guard at save time: a 400 ``invalid_field`` naming ``field`` and the reason, or None."""
    checked = check_url(url, allow)
    if not isinstance(checked, Refused):
        return None
    problem = f"refused as a destination ({checked.reason.value}): {checked.detail}"
    return bad_request("invalid_field", f"{field}: {problem}", [{"field": field, "problem": problem}])


def refused_postback(link: Link, allow: AllowList) -> Rejected | None:
    """A link's postback template checked as the delivery engine will read it (unknown macros named,
    macros kept out of scheme and host, fixed parts through the SSRF guard), or None when fine."""
    if link.postback_template is None:
        return None
    try:
        parse_template(link.postback_template, link.postback_method, allow=allow)
    except TemplateError as exc:
        return bad_request(
            "invalid_field",
            f"postback_template: {exc}",
            [{"field": "postback_template", "problem": str(exc), "reason": exc.problem.value}],
        )
    return None


def patched_goal(goal: Goal, patch: GoalPatch, now: datetime) -> Goal:
    changes = {name: getattr(patch, name) for name in patch.model_fields_set}
    for name in ("name", "goal_type", "attribution_window_days", "default"):
        if name in changes and changes[name] is None:
            raise bad_request("invalid_field", f"{name}: cannot be null")
    return goal.model_copy(update={**changes, "updated_at": now})


def others_losing_default(state: ConfigState, goal: Goal, now: datetime) -> list[Goal]:
    """When ``goal`` becomes its project's default, the other flagged goals of the project lose it."""
    if not goal.default:
        return []
    return [
        g.model_copy(update={"default": False, "updated_at": now})
        for g in state.goals(goal.project)
        if g.default and g.id != goal.id
    ]


def new_link(spec: LinkCreate, now: datetime, link_id: str) -> Link:
    return Link(id=link_id, created_at=now, **spec.model_dump())


def patched_link(link: Link, patch: LinkPatch, now: datetime) -> Link:
    changes = {name: getattr(patch, name) for name in patch.model_fields_set}
    for name in ("url", "postback_method", "postback_updates"):
        if name in changes and changes[name] is None:
            raise bad_request("invalid_field", f"{name}: cannot be null")
    return link.model_copy(update={**changes, "updated_at": now})


def goal_answer(goal: Goal, base: str) -> dict[str, Any]:
    out = goal.model_dump(mode="json", exclude={"signing_keys"})  # secrets are never shown again
    out["value"] = float(goal.value) if goal.value is not None else None
    out["track_url"] = f"{base}/api/conversions/track/{goal.token}"
    return out


def link_answer(link: Link, base: str) -> dict[str, Any]:
    out = link.model_dump(mode="json")
    out["tracking_url"] = f"{base}/c/{link.id}"
    return out
