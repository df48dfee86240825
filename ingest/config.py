"""Edge configuration (composed into the one settings class by the wiring)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


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
    trust_forwarded_for: bool = Field(default=False, description="take the client IP from X-Forwarded-For")
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
