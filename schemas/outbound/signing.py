"""Standard Webhooks signing (standardwebhooks.com, spec 1.0.0, symmetric ``v1`` scheme).

A delivery carries three headers:

- ``webhook-id``: the message id, identical on every retry of one message (receivers dedupe on it);
- ``webhook-timestamp``: the attempt's time, integer unix seconds (a retry is signed anew);
- ``webhook-signature``: ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``, one entry per signing
  secret, space-separated, so old and new secrets both sign during a rotation's grace period.

A secret is ``whsec_`` + base64 of 24 to 64 random bytes; the HMAC key is the decoded bytes. Pure: the
caller passes the time and (optionally) the random source.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets as _secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

SECRET_PREFIX = "whsec_"  # noqa: S105 (the format prefix, not a secret)
SIGNATURE_VERSION = "v1"
MIN_SECRET_BYTES = 24  # the spec's minimum (192 bits)
MAX_SECRET_BYTES = 64  # the spec's maximum (512 bits)
GENERATED_SECRET_BYTES = 32
DEFAULT_TOLERANCE_S = 300  # receivers reject timestamps more than 5 minutes off
MAX_MESSAGE_ID_LENGTH = 256

HEADER_ID = "webhook-id"
HEADER_TIMESTAMP = "webhook-timestamp"
HEADER_SIGNATURE = "webhook-signature"


class SecretError(ValueError):
    """A text that is not a usable signing secret. Never retriable: the input itself is wrong."""

    retriable = False


@dataclass(frozen=True, slots=True)
class WebhookSecret:
    """A signing secret. ``repr`` never shows the key."""

    key: bytes

    def __post_init__(self) -> None:
        if not MIN_SECRET_BYTES <= len(self.key) <= MAX_SECRET_BYTES:
            raise SecretError(
                f"a signing secret has {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes, not {len(self.key)}"
            )

    @property
    def text(self) -> str:
        """The serialized form shown to the user once: ``whsec_<base64>``."""
        return SECRET_PREFIX + base64.b64encode(self.key).decode("ascii")

    def __repr__(self) -> str:
        return "WebhookSecret(<redacted>)"

    __str__ = __repr__


def parse_secret(text: str, *, require_prefix: bool = True) -> WebhookSecret:
    """Read ``whsec_<base64>``. Receivers may pass the bare base64 part (``require_prefix=False``)."""
    body = text.strip()
    if body.startswith(SECRET_PREFIX):
        body = body[len(SECRET_PREFIX) :]
    elif require_prefix:
        raise SecretError(f"a signing secret starts with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise SecretError("a signing secret is base64 after its prefix") from None
    return WebhookSecret(key)


def generate_secret(
    random_bytes: Callable[[int], bytes] = _secrets.token_bytes, size: int = GENERATED_SECRET_BYTES
) -> WebhookSecret:
    """A new secret of ``size`` random bytes (pass a fixed source in tests)."""
    return WebhookSecret(random_bytes(size))


def _check_message_id(msg_id: str) -> None:
    # The spec: the id must not contain "." (the signed content is "{id}.{timestamp}.{body}").
    if not msg_id or len(msg_id) > MAX_MESSAGE_ID_LENGTH or not msg_id.isascii():
        raise ValueError("a webhook id is 1 to 256 ASCII characters")
    if "." in msg_id or any(c.isspace() or not c.isprintable() for c in msg_id):
        raise ValueError("a webhook id has no '.', whitespace or control characters")


def _mac(key: bytes, msg_id: str, timestamp: int, body: bytes) -> bytes:
    signed = b"%s.%d." % (msg_id.encode("ascii"), timestamp) + body
    return hmac.new(key, signed, hashlib.sha256).digest()


def sign(msg_id: str, timestamp: int, body: bytes, secrets: Sequence[WebhookSecret]) -> str:
    """The ``webhook-signature`` value: one ``v1,<base64>`` per secret, in the given order."""
    _check_message_id(msg_id)
    if not secrets:
        raise ValueError("signing needs at least one secret")
    if not 0 <= timestamp < 10**12:
        raise ValueError("a webhook timestamp is unix seconds (0 to 12 digits)")
    return " ".join(
        f"{SIGNATURE_VERSION},{base64.b64encode(_mac(s.key, msg_id, timestamp, body)).decode('ascii')}"
        for s in secrets
    )


def signed_headers(
    msg_id: str, timestamp: int, body: bytes, secrets: Sequence[WebhookSecret]
) -> dict[str, str]:
    """The three Standard Webhooks headers of one attempt (``timestamp`` = the attempt's time)."""
    return {
        HEADER_ID: msg_id,
        HEADER_TIMESTAMP: str(timestamp),
        HEADER_SIGNATURE: sign(msg_id, timestamp, body, secrets),
    }


# --- rotation -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One secret of an endpoint. ``expires_at`` is set when a newer secret replaced it: it keeps
    signing until then (the grace period), so receivers can switch without a gap."""

    secret: WebhookSecret
    created_at: datetime
    expires_at: datetime | None = None

    def signs_at(self, now: datetime) -> bool:
        return self.expires_at is None or now < self.expires_at


@dataclass(frozen=True, slots=True)
class KeyRing:
    """An endpoint's secrets, newest first. The newest never expires; older ones sign until their
    ``expires_at``."""

    keys: tuple[SigningKey, ...]

    def __post_init__(self) -> None:
        if not self.keys:
            raise ValueError("a key ring holds at least one secret")
        if self.keys[0].expires_at is not None:
            raise ValueError("the newest secret of a key ring does not expire")

    @classmethod
    def new(cls, secret: WebhookSecret, now: datetime) -> KeyRing:
        return cls((SigningKey(secret, now),))

    @property
    def current(self) -> WebhookSecret:
        return self.keys[0].secret

    def rotate(self, secret: WebhookSecret, now: datetime, grace: timedelta) -> KeyRing:
        """Make ``secret`` the current one; the previous current one signs for ``grace`` more;
        secrets already expired at ``now`` are dropped. ``grace`` of zero retires it at once."""
        if grace < timedelta(0):
            raise ValueError("a rotation grace period is not negative")
        old = self.keys[0]
        retired = (replace(old, expires_at=now + grace),) if grace > timedelta(0) else ()
        kept = tuple(k for k in self.keys[1:] if k.signs_at(now))
        return KeyRing((SigningKey(secret, now), *retired, *kept))

    def signing_secrets(self, now: datetime) -> tuple[WebhookSecret, ...]:
        """The secrets that sign an attempt made at ``now`` (current first)."""
        return tuple(k.secret for k in self.keys if k.signs_at(now))


# --- verification (what a receiver does; the README's receiver shows the same steps) ------------------


class VerifyFailure(StrEnum):
    MISSING_HEADER = "missing_header"
    BAD_TIMESTAMP = "bad_timestamp"
    TIMESTAMP_TOO_OLD = "timestamp_too_old"
    TIMESTAMP_TOO_NEW = "timestamp_too_new"
    NO_MATCHING_SIGNATURE = "no_matching_signature"


class VerificationError(Exception):
    """The request is not a valid signed webhook. Never retriable on the receiver's side."""

    retriable = False

    def __init__(self, reason: VerifyFailure):
        super().__init__(reason.value)
        self.reason = reason


def verify(
    body: bytes,
    headers: Mapping[str, str],
    secrets: WebhookSecret | Iterable[WebhookSecret],
    *,
    now: int,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
) -> str:
    """Check a received webhook; return its ``webhook-id`` (the idempotency key) or raise
    :class:`VerificationError`. Header names are case-insensitive; ``body`` is the raw request body
    (never a re-serialized JSON); ``now`` is the receiver's unix time; any one matching ``v1`` entry
    signed with any of ``secrets`` is enough; comparisons are constant-time."""
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id, stamp, signature = (lower.get(h) for h in (HEADER_ID, HEADER_TIMESTAMP, HEADER_SIGNATURE))
    if not msg_id or not stamp or not signature:
        raise VerificationError(VerifyFailure.MISSING_HEADER)
    if not (stamp.isascii() and stamp.isdigit()) or len(stamp) > 12:
        raise VerificationError(VerifyFailure.BAD_TIMESTAMP)
    timestamp = int(stamp)
    if timestamp < now - tolerance_s:
        raise VerificationError(VerifyFailure.TIMESTAMP_TOO_OLD)
    if timestamp > now + tolerance_s:
        raise VerificationError(VerifyFailure.TIMESTAMP_TOO_NEW)
    if not msg_id.isascii():
        raise VerificationError(VerifyFailure.NO_MATCHING_SIGNATURE)
    keys = [secrets] if isinstance(secrets, WebhookSecret) else list(secrets)
    expected = [_mac(k.key, msg_id, timestamp, body) for k in keys]
    matched = False
    for entry in signature.split(" "):
        version, _, encoded = entry.partition(",")
        if version != SIGNATURE_VERSION:
            continue  # other schemes (v1a) or garbage: skip, another entry may match
        try:
            given = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        for mac in expected:
            matched |= hmac.compare_digest(mac, given)
    if not matched:
        raise VerificationError(VerifyFailure.NO_MATCHING_SIGNATURE)
    return msg_id
