"""Every failure becomes a JSON answer with a status and a message; nothing escapes as a bare 500."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from ingest.errors import Rejected
from ingest.http_common import CONFIG, METRICS, error_response, json_response
from ingest.publisher import PublishError

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    metrics = request.app[METRICS]
    try:
        return await handler(request)
    except Rejected as exc:
        metrics.rejected.labels(exc.code).inc()
        headers = dict(exc.headers)
        if exc.retriable:
            headers.setdefault("Retry-After", "1")
        return json_response(exc.body(), status=exc.status, headers=headers or None)
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
