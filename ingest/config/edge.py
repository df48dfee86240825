"""Edge configuration (composed into the one settings class by the wiring)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import NoDecode

from ingest.http.forwarding import Network, parse_trusted_proxies


class EdgeConfig(BaseModel):
    model_config = ConfigDict(frozen=True)

    max_body_bytes: int = Field(
        default=1_048_576, ge=1024, description="largest request body accepted (413 above)"
    )
    max_events_per_request: int = Field(default=1000, ge=1, description="events in one request (413 above)")
    linger_ms: float = Field(
        default=5.0, ge=0, le=1000, description="how long the edge groups events per record"
    )
    max_events_per_record: int = Field(default=500, ge=1, description="events carried by one Kafka record")
    max_record_bytes: int = Field(default=900_000, ge=10_000, description="bytes of one envelope record")
    max_buffered_events: int = Field(default=200_000, ge=1000, description="events waiting before 503")
    delivery_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=600,
        description="longest wait for a request's events to become durable; then 503 not_durable (retry)",
    )
    trusted_proxies: Annotated[tuple[Network, ...], NoDecode] = Field(
        default=(),
        description="reverse proxies (comma-separated addresses / CIDRs) whose X-Forwarded-For and "
        "X-Forwarded-Proto are believed; the client IP is the rightmost address that is not one of them",
    )
    trust_forwarded_for: bool = Field(
        default=False, description="replaced by trusted_proxies: only false is accepted (true is an error)"
    )
    body_read_timeout_s: float = Field(
        default=15.0, gt=0, le=600, description="longest time to receive a request body (408 and close)"
    )
    auth_failures_per_minute: int = Field(
        default=20, ge=1, description="wrong keys per minute per client IP before 429 (a bucket this deep)"
    )
    event_loop: Literal["uvloop", "asyncio"] = Field(
        default="uvloop",
        description="the HTTP process's event loop: uvloop (libuv, faster per request) or asyncio's own",
    )
    access_log: bool = Field(
        default=False, description="log every request at INFO (aiohttp.access); off: a line less per request"
    )
    # Clicks, postbacks and conversion APIs (issue 3):
    rate_limit_per_minute: int = Field(
        default=1000, ge=0, description="requests per minute per token / app code, per edge (0 = off)"
    )
    visitor_cookie: str = Field(
        default="tp_vid", pattern=r"^[A-Za-z0-9_-]{1,64}$", description="visitor id cookie name"
    )
    click_id_param: str = Field(
        default="click_id",
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="query parameter carrying the click id on the redirect",
    )
    public_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
        description="base URL of tracking links (default: scheme and host of the request)",
    )

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxies(cls, value: object) -> tuple[Network, ...]:
        if isinstance(value, str | list | tuple):
            return parse_trusted_proxies(value)
        raise ValueError("a comma-separated list of addresses / CIDR networks is expected")

    @field_validator("trust_forwarded_for")
    @classmethod
    def _no_leftmost_forwarded_for(cls, value: bool) -> bool:
        if value:
            raise ValueError(
                "TRACKPIPE_EDGE__TRUST_FORWARDED_FOR is replaced by TRACKPIPE_EDGE__TRUSTED_PROXIES: list "
                "your proxies' addresses or CIDRs (the old flag believed the client-written leftmost address)"
            )
        return value
