"""The public stream's messages: CloudEvents 1.0 structured JSON (https://cloudevents.io), one per change.

Compatibility: within a major version (``STREAM_MAJOR``, also in each ``type``'s schema URL) changes are
additive only — new optional fields in ``data``, new event types. Consumers ignore fields and types they
do not know. Removing or retyping a field is a new major version, published beside the old one.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

STREAM_MAJOR = 1
SPEC_VERSION = "1.0"
SOURCE_PREFIX = "/trackpipe/projects/"


class StreamType(StrEnum):
    CONVERSION_CREATED = "com.trackpipe.conversion.created"
    CONVERSION_UPDATED = "com.trackpipe.conversion.updated"
    CONVERSION_REVERSED = "com.trackpipe.conversion.reversed"
    ALERT_FIRING = "com.trackpipe.alert.firing"
    ALERT_RESOLVED = "com.trackpipe.alert.resolved"


class ConversionData(BaseModel):
    """``data`` of ``com.trackpipe.conversion.*``: the conversion as it stands after the change."""

    model_config = ConfigDict(extra="allow", title="trackpipe conversion v1")

    conversion_id: str = Field(description="opaque, stable id of the conversion (the webhook's too)")
    project: str
    goal_id: str
    link_id: str | None = Field(description="the link the conversion is attributed to")
    click_id: str | None = Field(description="the attributed click")
    order_id: str | None = Field(description="order / transaction id")
    value: float = Field(description="revenue in ``currency`` (exact decimal in the JSON text)")
    currency: str | None
    status: str | None = Field(description="the status as sent (e.g. pending, approved, rejected)")
    status_class: Literal["normal", "provisional", "reversed"]
    disable_postbacks: bool
    timestamp: str = Field(description="conversion time, RFC 3339 UTC")
    version: int = Field(ge=1, description="increases with every change of the conversion")


CONVERSION_DATA_SCHEMA_PATH = "conversion/v1"


class CloudEvent(BaseModel):
    """The envelope (structured content mode). ``data`` is a :class:`ConversionData` for conversion
    types (an alert transition for alert types)."""

    model_config = ConfigDict(extra="allow")

    specversion: Literal["1.0"]
    id: str = Field(description="unique per change; the same change always has the same id")
    source: str = Field(description="/trackpipe/projects/<project>")
    type: StreamType
    time: str = Field(description="when the change was recorded, RFC 3339 UTC")
    subject: str = Field(description="the conversion id (or the alert rule id)")
    datacontenttype: Literal["application/json"]
    dataschema: str
    data: dict[str, object]
