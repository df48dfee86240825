"""What the edge knows about a request besides its payload."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class RequestContext:
    received_at: datetime
    client_ip: str | None
    user_agent: str
