"""A Kafka connection that fails at start-up, told in one line: where, how (protocol, mechanism, user;
never a password) and why (the reason aiokafka only logs), with a hint naming the setting to check.

aiokafka raises a bare ``KafkaConnectionError("Unable to bootstrap from [...]")`` and logs the cause
(TLS verification, SASL authentication, a closed connection) on its ``aiokafka`` logger;
:func:`explained` keeps the last such cause and raises :class:`KafkaUnavailable` with it, which the CLI
prints without a traceback.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator

from aiokafka.errors import KafkaConnectionError

from trackpipe.settings import Settings

__all__ = ["KafkaUnavailable", "exit_if_unavailable", "explained"]

_HINTS = (
    ("SaslAuthenticationFailed", "check TRACKPIPE_KAFKA_SASL_USERNAME, _PASSWORD and _MECHANISM"),
    (
        "CERTIFICATE_VERIFY_FAILED",
        "is TRACKPIPE_KAFKA_SSL_CAFILE the CA that signed the broker's certificate?",
    ),
    (
        "WRONG_VERSION_NUMBER",
        "the broker's listener does not speak TLS: check TRACKPIPE_KAFKA_SECURITY_PROTOCOL",
    ),
    ("UnsupportedSaslMechanism", "the broker does not offer TRACKPIPE_KAFKA_SASL_MECHANISM on this listener"),
)


class KafkaUnavailable(RuntimeError):
    """No connection to the Kafka cluster could be made; the message says why (no secrets)."""


class _Causes(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.last: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            message = record.getMessage()
            if message.startswith("Unable connect to"):
                self.last = message


def _hint(cause: str, settings: Settings) -> str:
    for needle, hint in _HINTS:
        if needle in cause:
            return hint
    if "closed" in cause and settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        return (
            "the broker closed the TLS connection: does it require a client certificate "
            "(TRACKPIPE_KAFKA_SSL_CERTFILE / _KEYFILE)?"
        )
    return "check TRACKPIPE_KAFKA_BOOTSTRAP and TRACKPIPE_KAFKA_SECURITY_PROTOCOL"


@contextlib.contextmanager
def explained(settings: Settings) -> Iterator[None]:
    """Raise :class:`KafkaUnavailable` instead of aiokafka's bare connection error in the block."""
    causes = _Causes()
    logger = logging.getLogger("aiokafka")
    logger.addHandler(causes)
    try:
        yield
    except KafkaConnectionError as exc:
        cause = causes.last or str(exc)
        raise KafkaUnavailable(
            f"cannot connect to Kafka at {settings.kafka_bootstrap} ({settings.kafka_security_summary()}): "
            f"{cause} ({_hint(cause, settings)})"
        ) from exc
    finally:
        logger.removeHandler(causes)


@contextlib.contextmanager
def exit_if_unavailable(settings: Settings) -> Iterator[None]:
    """For commands: print :class:`KafkaUnavailable`'s message (no traceback) and exit with status 1."""
    try:
        with explained(settings):
            yield
    except KafkaUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
