"""Outbound delivery settings (``TRACKPIPE_OUTBOUND__*``), composed into the one settings class by the
wiring. The edge uses the allow-list and the secret grace period when goals and links are saved; the
delivery engine will read the same object."""

from __future__ import annotations

from datetime import timedelta
from functools import cached_property

from pydantic import BaseModel, ConfigDict, Field, field_validator

from schemas.outbound.ssrf import AllowList, parse_allow_networks


class OutboundConfig(BaseModel):
    model_config = ConfigDict(frozen=True, ignored_types=(cached_property,))

    allow_networks: str = Field(
        default="",
        description="comma-separated CIDRs outbound requests may reach although private or loopback "
        "(on-premise receivers, tests); empty: public addresses only",
    )
    secret_grace_s: int = Field(
        default=86_400,
        ge=0,
        le=90 * 86_400,
        description="after a goal's signing secret is rotated, the old one keeps signing this long",
    )

    retry_schedule_s: str = Field(
        default="",
        description="comma-separated delays in seconds before each delivery attempt (the first counted "
        "from the conversion being recorded); empty: 0,5,300,1800,7200,18000,36000,36000",
    )
    timeout_s: float = Field(
        default=10.0, gt=0, le=300, description="an attempt succeeds on a 2xx answer within this time"
    )

    max_in_flight_per_host: int = Field(
        default=10, ge=1, le=1000, description="concurrent attempts to one destination host at most"
    )
    rate_per_host: float = Field(
        default=50.0, gt=0, le=100_000, description="attempts a second to one destination host at most"
    )
    keep_finished_s: int = Field(
        default=7 * 86_400,
        ge=60,
        description="delivered and dead deliveries are kept this long after their last attempt in the "
        "worker's deliveries topic (their history stays in the delivery log)",
    )

    @field_validator("allow_networks")
    @classmethod
    def _networks(cls, value: str) -> str:
        parse_allow_networks(value)  # AllowListError (a ValueError) names the bad entry
        return value

    @cached_property
    def allow_list(self) -> AllowList:
        return parse_allow_networks(self.allow_networks)

    @property
    def secret_grace(self) -> timedelta:
        return timedelta(seconds=self.secret_grace_s)
