"""Configuration the edge needs to accept clicks and conversions: goals (with postback tokens) and links;
and the alert rules (issue 14).

Stored as keyed records, the same on every store: key ``goal/<id>``, ``link/<id>`` or ``alert/<id>``,
value the model as orjson JSON inside ``{"kind", "v", "data"}``, or ``None`` (a tombstone) when deleted.
The latest record of a key wins, so a compacted Kafka topic and an append-only local file hold the
configuration alike. :class:`ConfigState` is the pure read model both stores build by applying records in
order. A record of a kind this version does not know (written by a newer one) is skipped and counted
(:class:`UnknownKind`), never applied, so adding a kind does not stop older readers from here on.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import NamedTuple, Protocol

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas.alerts import AlertRule
from schemas.outbound.postbacks import Method
from schemas.outbound.signing import KeyRing, SigningKey, parse_secret

log = logging.getLogger(__name__)

RECORD_VERSION = 1
KINDS = ("goal", "link", "alert")
_KIND_SHAPE = re.compile(r"[a-z][a-z0-9_]{0,31}")  # what a kind written by a later version looks like


class GoalType(StrEnum):
    PURCHASE = "purchase"
    SIGNUP = "signup"
    DOWNLOAD = "download"
    CUSTOM = "custom"


class SigningKeyRecord(BaseModel):
    """One webhook signing secret of a goal, as stored (``schemas.outbound.signing.SigningKey``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    secret: str = Field(repr=False)  # whsec_<base64>; shown to the admin once, never in an answer
    created_at: datetime
    expires_at: datetime | None = None  # set when rotated out: signs until then (grace period)


class GoalFields(BaseModel):
    """A conversion goal (PVTLNK reference) as the admin API shows it. ``token`` authenticates
    conversions sent for it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    project: str
    name: str
    goal_type: GoalType = GoalType.CUSTOM
    value: Decimal | None = None  # default conversion value when a conversion carries none
    currency: str | None = None
    attribution_window_days: int = Field(default=30, ge=1, le=3650)
    postback_url: str | None = None  # where conversions of this goal are announced (outgoing stage)
    default: bool = False  # the project's default goal (postbacks that name no goal and no link goal)
    token: str
    created_at: datetime
    updated_at: datetime


class Goal(GoalFields):
    """A stored goal: its fields and its webhook signing key ring (newest first; never in an answer)."""

    signing_keys: tuple[SigningKeyRecord, ...] = Field(default=(), repr=False)

    def key_ring(self) -> KeyRing | None:
        """The signing key ring (None for a goal stored before secrets existed, until rotated)."""
        return _key_ring(self.signing_keys)


def _key_ring(keys: tuple[SigningKeyRecord, ...]) -> KeyRing | None:
    if not keys:
        return None
    return KeyRing(tuple(SigningKey(parse_secret(k.secret), k.created_at, k.expires_at) for k in keys))


class StoredAlertRule(AlertRule):
    """A stored alert rule (issue 14): its fields (:class:`schemas.alerts.AlertRule`, what the admin API
    shows) and the signing key ring of its webhook channel (newest first; never in an answer)."""

    signing_keys: tuple[SigningKeyRecord, ...] = Field(default=(), repr=False)

    def key_ring(self) -> KeyRing | None:
        return _key_ring(self.signing_keys)

    def rule(self) -> AlertRule:
        """The rule without its secrets (what the admin API answers, what ``apply_patch`` takes)."""
        return AlertRule.model_validate(self.model_dump(exclude={"signing_keys"}))


def signing_key_records(ring: KeyRing) -> tuple[SigningKeyRecord, ...]:
    return tuple(
        SigningKeyRecord(secret=k.secret.text, created_at=k.created_at, expires_at=k.expires_at)
        for k in ring.keys
    )


class Link(BaseModel):
    """A tracking link: ``GET /c/<id>`` records a click and redirects to ``url`` (and only there)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    project: str
    url: str
    campaign: str | None = None
    utm_source: str | None = None
    utm_medium: str | None = None
    utm_campaign: str | None = None
    utm_term: str | None = None
    utm_content: str | None = None
    goal: str | None = None  # the goal conversions of this link's clicks count for
    created_at: datetime
    # Traffic-source S2S postback (issue 13; checked when saved with schemas.outbound.postbacks):
    external_click_param: str | None = None  # query parameter carrying the source's click id on clicks
    postback_template: str | None = None  # URL with {macros}
    postback_method: Method = Method.GET
    postback_statuses: str | None = None  # which statuses fire it (blank: normal conversions only)
    postback_status_map: str | None = None  # Keitaro-style renames: "lead=install sale=bill"
    postback_updates: bool = False  # fire again when the rendered request changes
    updated_at: datetime | None = None

    def utm(self) -> dict[str, str]:
        pairs = {
            "utm_source": self.utm_source,
            "utm_medium": self.utm_medium,
            "utm_campaign": self.utm_campaign,
            "utm_term": self.utm_term,
            "utm_content": self.utm_content,
        }
        return {k: v for k, v in pairs.items() if v}


class ConfigRecord(NamedTuple):
    key: str
    value: bytes | None  # None = tombstone (deleted)


def goal_key(goal_id: str) -> str:
    return f"goal/{goal_id}"


def link_key(link_id: str) -> str:
    return f"link/{link_id}"


def alert_key(alert_id: str) -> str:
    return f"alert/{alert_id}"


def goal_record(goal: Goal) -> ConfigRecord:
    return ConfigRecord(goal_key(goal.id), _encode("goal", goal))


def link_record(link: Link) -> ConfigRecord:
    return ConfigRecord(link_key(link.id), _encode("link", link))


def alert_record(rule: StoredAlertRule) -> ConfigRecord:
    return ConfigRecord(alert_key(rule.id), _encode("alert", rule))


def _encode(kind: str, model: BaseModel) -> bytes:
    return orjson.dumps({"kind": kind, "v": RECORD_VERSION, "data": model.model_dump(mode="json")})


def _token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class ConfigRecordError(ValueError):
    """A record that is not a readable configuration record."""


class UnknownKind(ConfigRecordError):
    """A well-formed key of a kind this version does not know (written by a newer version): readers keep
    the record (a compaction must not drop it) and skip it; writers refuse it (:func:`check_readable`)."""


def _kind_of(key: str) -> tuple[str, str]:
    kind, _, ident = key.partition("/")
    if kind in KINDS and ident:
        return kind, ident
    if ident and _KIND_SHAPE.fullmatch(kind):
        raise UnknownKind(f"configuration key {key!r} is of a kind this version does not know")
    raise ConfigRecordError(f"unknown configuration key {key!r}")


class ConfigStoreError(Exception):
    """The store could not make a write durable (or could not start). Retriable unless stated."""

    def __init__(self, message: str, *, retriable: bool = True):
        super().__init__(message)
        self.retriable = retriable


class ConfigState:
    """Goals, links and alert rules by id, built by applying records in order. Pure: no I/O, no clock."""

    def __init__(self) -> None:
        self._goals: dict[str, Goal] = {}
        self._links: dict[str, Link] = {}
        self._alerts: dict[str, StoredAlertRule] = {}
        self._by_token: dict[bytes, str] = {}
        self.records_applied = 0
        self.bad_records = 0
        self.unknown_records = 0  # of a kind a later version wrote (skipped)

    def apply(self, key: str, value: bytes | None) -> None:
        """Apply one record. A record that cannot be read raises ConfigRecordError (state unchanged);
        :class:`UnknownKind` for a record of a later version's kind (the caller skips it)."""
        kind, ident = _kind_of(key)
        if value is None:
            if kind == "goal":
                old = self._goals.pop(ident, None)
                if old is not None:
                    self._by_token.pop(_token_digest(old.token), None)
            elif kind == "alert":
                self._alerts.pop(ident, None)
            else:
                self._links.pop(ident, None)
            self.records_applied += 1
            return
        try:
            obj = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise ConfigRecordError(f"record {key!r} is not JSON: {exc}") from None
        if not isinstance(obj, dict) or obj.get("kind") != kind or obj.get("v") != RECORD_VERSION:
            raise ConfigRecordError(f"record {key!r} has an unknown kind or version")
        try:
            if kind == "goal":
                goal = Goal.model_validate(obj.get("data"))
                if goal.id != ident:
                    raise ConfigRecordError(f"record {key!r} carries goal {goal.id!r}")
                old = self._goals.get(ident)
                if old is not None:
                    self._by_token.pop(_token_digest(old.token), None)
                self._goals[ident] = goal
                self._by_token[_token_digest(goal.token)] = ident
            elif kind == "alert":
                rule = StoredAlertRule.model_validate(obj.get("data"))
                if rule.id != ident:
                    raise ConfigRecordError(f"record {key!r} carries alert rule {rule.id!r}")
                self._alerts[ident] = rule
            else:
                link = Link.model_validate(obj.get("data"))
                if link.id != ident:
                    raise ConfigRecordError(f"record {key!r} carries link {link.id!r}")
                self._links[ident] = link
        except ValidationError as exc:
            raise ConfigRecordError(f"record {key!r} does not match its model: {exc}") from None
        self.records_applied += 1

    def apply_logged(self, key: str, value: bytes | None, where: str) -> None:
        """Apply, logging and counting (never hiding) a record that cannot be read; used by readers
        that must go on past a bad record written by someone else."""
        try:
            self.apply(key, value)
        except UnknownKind as exc:
            self.unknown_records += 1
            log.warning("configuration record at %s skipped: %s", where, exc)
        except ConfigRecordError as exc:
            self.bad_records += 1
            log.error("configuration record at %s skipped: %s", where, exc)

    def goal(self, goal_id: str) -> Goal | None:
        return self._goals.get(goal_id)

    def link(self, link_id: str) -> Link | None:
        return self._links.get(link_id)

    def goal_by_token(self, token: str) -> Goal | None:
        """The goal whose token is ``token``. The lookup is by a digest of the token and the final
        comparison is constant-time, so response timing tells nothing about how close a guess was."""
        goal_id = self._by_token.get(_token_digest(token))
        goal = self._goals.get(goal_id) if goal_id is not None else None
        if goal is None or not hmac.compare_digest(goal.token.encode(), token.encode()):
            return None
        return goal

    def goals(self, project: str | None = None) -> list[Goal]:
        found = [g for g in self._goals.values() if project is None or g.project == project]
        return sorted(found, key=lambda g: (g.project, g.created_at, g.id))

    def links(self, project: str | None = None) -> list[Link]:
        found = [ln for ln in self._links.values() if project is None or ln.project == project]
        return sorted(found, key=lambda ln: (ln.project, ln.created_at, ln.id))

    def alert(self, alert_id: str) -> StoredAlertRule | None:
        return self._alerts.get(alert_id)

    def alerts(self, project: str | None = None) -> list[StoredAlertRule]:
        found = [r for r in self._alerts.values() if project is None or r.project == project]
        return sorted(found, key=lambda r: (r.project, r.created_at, r.id))

    def default_goal(self, project: str) -> Goal | None:
        """The project's default goal; if several are flagged (concurrent edits), the latest updated."""
        flagged = [g for g in self._goals.values() if g.project == project and g.default]
        return max(flagged, key=lambda g: (g.updated_at, g.id), default=None)

    def __len__(self) -> int:
        return len(self._goals) + len(self._links) + len(self._alerts)


class ConfigStore(Protocol):
    """Where goals, links and alert rules live. Reads are served from :attr:`state` (in memory); :meth:`write`
    returns once the records are durable AND applied to this instance's state, so a read after a write
    sees it. Every edge instance sharing the store converges on the same state."""

    @property
    def state(self) -> ConfigState: ...

    async def start(self) -> None: ...

    async def write(self, records: Sequence[ConfigRecord]) -> None:
        """Make records durable and apply them; raises ConfigStoreError when it cannot."""

    async def stop(self) -> None: ...


def check_readable(records: Sequence[ConfigRecord]) -> None:
    """Apply records to a scratch state: a record we could not read back is never written."""
    scratch = ConfigState()
    for rec in records:
        try:
            scratch.apply(rec.key, rec.value)
        except ConfigRecordError as exc:
            raise ConfigStoreError(
                f"refusing to store an unreadable record: {exc}", retriable=False
            ) from None
