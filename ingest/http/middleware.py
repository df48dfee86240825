"""Every failure becomes a JSON answer with a status and a message; nothing escapes as a bare 500.

Also the limits on how a request arrives: its body must arrive within ``body_read_timeout_s`` (else 408
and the connection is closed), an ``Expect: 100-continue`` request declaring a body over
``max_body_bytes`` is refused with 413 before the client sends it (:func:`expect_handler`, on every route
that takes a body), a malformed body is a 400 and a client gone mid-request is counted, not logged as an
error.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.streams import StreamReader

from ingest.errors import Rejected
from ingest.http.common import CONFIG, METRICS, error_response, json_response
from ingest.produce.publisher import PublishError

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BodyTimeout(Rejected, TimeoutError):
    """The request body did not arrive in time. Raised by whatever reads the body (the handler answers it
    like any rejection, Pushwoosh in its own shape). A ``TimeoutError`` too: aiohttp then stops waiting
    for the rest of the body after the answer and closes the connection at once."""

    def __init__(self, seconds: float):
        super().__init__(
            408,
            "body_timeout",
            f"the request body did not arrive within {seconds:g} s",
            headers={"Connection": "close"},
        )


class _Unread(TimeoutError):
    """Set on a request body nothing more will be read from: after the answer aiohttp then closes the
    connection instead of waiting to read (and choke on) the rest of it."""


def _expire_body(payload: StreamReader, seconds: float) -> None:
    if not payload.is_eof():
        payload.set_exception(BodyTimeout(seconds))


def _first_line(exc: BaseException) -> str:
    """The problem an aiohttp parser error names (they read ``400, message:``, then the problem and the
    offending bytes on lines of their own)."""
    text = re.sub(r"^\d{3}, message:\s*", "", str(exc).strip())
    return (text.splitlines() or [type(exc).__name__])[0].strip()


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    metrics = request.app[METRICS]
    timer = None
    if request.body_exists and not request.content.is_eof():  # a body still on its way
        seconds = request.app[CONFIG].body_read_timeout_s
        timer = asyncio.get_running_loop().call_later(seconds, _expire_body, request.content, seconds)
    try:
        return await handler(request)
    except Rejected as exc:
        metrics.rejected.labels(exc.code).inc()
        headers = dict(exc.headers)
        if exc.retriable:
            headers.setdefault("Retry-After", "1")
        resp = json_response(exc.body(), status=exc.status, headers=headers or None)
        if headers.get("Connection") == "close":
            resp.force_close()
        return resp
    except web.RequestPayloadError as exc:
        # A body that cannot be read as declared (bad chunking, bad Content-Encoding, cut short): the
        # client's fault, like any bad input.
        problem = _first_line(exc)
        log.info("malformed request body on %s %s: %s", request.method, request.path, problem)
        metrics.rejected.labels("malformed_body").inc()
        request.content.set_exception(_Unread())
        return error_response(400, "malformed_body", f"the request body could not be read: {problem}")
    except PublishError as exc:
        metrics.rejected.labels("not_durable").inc()
        return error_response(503, "not_durable", f"events not stored, retry: {exc}", {"Retry-After": "1"})
    except web.HTTPRequestEntityTooLarge:
        metrics.rejected.labels("payload_too_large").inc()
        limit = request.app[CONFIG].max_body_bytes
        return error_response(413, "payload_too_large", f"body larger than {limit} bytes")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status, "http_error")
        metrics.rejected.labels(code).inc()
        return error_response(exc.status, code, f"{exc.reason}: {request.method} {request.path}")
    except Exception as exc:
        if isinstance(exc, ConnectionError) and _client_gone(request):
            # The client's own connection (not a dependency's): nothing to answer, nothing wrong here.
            log.info("client went away during %s %s: %s", request.method, request.path, exc)
            metrics.rejected.labels("client_disconnected").inc()
            return error_response(400, "client_disconnected", "the client closed the connection")
        if getattr(exc, "retriable", False) is True:
            # A dependency (ClickHouse, Kafka) is unavailable: the client should retry, not give up.
            log.warning("dependency unavailable on %s %s: %s", request.method, request.path, exc)
            metrics.rejected.labels("unavailable").inc()
            return error_response(
                503, "unavailable", f"a backing service is unavailable, retry: {exc}", {"Retry-After": "5"}
            )
        log.exception("unhandled error on %s %s", request.method, request.path)
        metrics.rejected.labels("internal").inc()
        return error_response(500, "internal", "internal error; nothing was accepted from this request")
    finally:
        if timer is not None:
            timer.cancel()


async def expect_handler(request: web.Request) -> web.StreamResponse | None:
    """``Expect: 100-continue``: a declared body over ``max_body_bytes`` is refused with 413 at once (the
    client never sends it); otherwise the client is told to go on. Any other expectation: 417."""
    metrics = request.app[METRICS]
    expect = request.headers.get("Expect", "")
    if expect.strip().lower() != "100-continue":
        metrics.rejected.labels("expectation_failed").inc()
        return error_response(417, "expectation_failed", f"unsupported Expect: {expect[:80]!r}")
    limit = request.app[CONFIG].max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        metrics.rejected.labels("payload_too_large").inc()
        resp = error_response(413, "payload_too_large", f"body larger than {limit} bytes")
        resp.force_close()
        return resp
    if request.version >= (1, 1):
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the answer's own size is counted from here
    return None


class _ClientErrorsAtInfo(logging.Filter):
    """aiohttp answers requests it cannot parse (bad request line, headers, chunk framing) with a 400 of
    its own before any handler runs, and logs each as an ERROR with a traceback. Bad input is not a fault
    of ours: those records become one INFO line."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError) and 400 <= exc.code < 500:
            record.msg, record.args = "%s: %s", (record.getMessage(), _first_line(exc))
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.exc_info, record.exc_text = None, None
        return True


_CLIENT_ERRORS_FILTER = _ClientErrorsAtInfo()


def log_client_errors_at_info() -> None:
    """Install :class:`_ClientErrorsAtInfo` on aiohttp's server logger (once)."""
    server_log = logging.getLogger("aiohttp.server")
    if _CLIENT_ERRORS_FILTER not in server_log.filters:
        server_log.addFilter(_CLIENT_ERRORS_FILTER)
