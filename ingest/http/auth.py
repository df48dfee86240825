"""Who may call what: ``Authorization: Bearer <key>`` checked against the configured keys
(ingest/http/keys.py).

- Admin API: the admin key. Without one configured the admin API is disabled (403, saying how to enable it).
- Reports and the projects list: the admin key (every project) or a read key (its projects). With neither
  configured, reports are served to loopback clients only (``make run`` on 127.0.0.1); others get 403
  naming the settings.
- ``/metrics``: the metrics key or the admin key; with neither, loopback clients only.

A missing, malformed or wrong header gets the same 401 and the same message: the answer does not tell which
part was wrong. Wrong keys are counted per client IP (after trusted-proxy resolution); past
``auth_failures_per_minute`` the address gets 429 + Retry-After without its key even being looked at.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from ingest.errors import Rejected
from ingest.http.common import ACCESS, AUTH_FAILURES, LIMITER
from ingest.http.forwarding import client_ip, is_local
from ingest.http.keys import LOCAL_GRANT, NOTHING, Grant
from ingest.http.ratelimit import RateLimiter, enforce

_UNAUTHORIZED = "a valid admin key is required: Authorization: Bearer <TRACKPIPE_ADMIN_KEY>"
_READ_UNAUTHORIZED = (
    "a valid key is required: Authorization: Bearer <TRACKPIPE_ADMIN_KEY or a key of TRACKPIPE_READ_KEYS>"
)
_METRICS_UNAUTHORIZED = (
    "a valid key is required: Authorization: Bearer <TRACKPIPE_METRICS_KEY or TRACKPIPE_ADMIN_KEY>"
)
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="trackpipe"'}


def bearer_credential(header: str | None) -> bytes | None:
    """The credential of ``Bearer <credential>``; None without a header; ``b""`` (matches no key) when the
    header is not a bearer credential or holds anything but ASCII (aiohttp hands undecodable bytes over as
    surrogate escapes, and no key has them)."""
    if header is None:
        return None
    scheme, _, given = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return b""
    try:
        return given.strip().encode("ascii")
    except UnicodeEncodeError:
        return b""


def _client(request: web.Request) -> str:
    return client_ip(request) or "unknown"


def _authenticate(request: web.Request, allowed: Callable[[Grant], bool], message: str) -> Grant:
    failures: RateLimiter = request.app[AUTH_FAILURES]
    client = _client(request)
    wait = failures.waiting(client)
    if wait is not None:
        raise Rejected(
            429,
            "too_many_failures",
            "too many wrong keys from this address; retry later",
            headers={"Retry-After": RateLimiter.retry_after_header(wait)},
        )
    presented = bearer_credential(request.headers.get("Authorization"))
    grant = request.app[ACCESS].grant(presented) if presented is not None else NOTHING
    if not allowed(grant):
        if presented is not None:  # a key was tried: count it against this address
            failures.check(client)
        raise Rejected(401, "unauthorized", message, headers=_CHALLENGE)
    return grant


def require_admin(request: web.Request) -> None:
    if not request.app[ACCESS].has_admin:
        raise Rejected(
            403, "admin_disabled", "the admin API is disabled: set TRACKPIPE_ADMIN_KEY to enable it"
        )
    _authenticate(request, lambda g: g.admin, _UNAUTHORIZED)
    enforce(request.app[LIMITER], "admin", "admin key")


def require_read(request: web.Request) -> Grant:
    """Who is reading reports: every project (admin key, or a loopback client while no key is configured)
    or the projects of a read key. Check each project asked for with :func:`require_project`."""
    if not request.app[ACCESS].reads_need_key:
        if is_local(request):
            return LOCAL_GRANT
        raise Rejected(
            403,
            "reads_need_key",
            "reports are served to this host's own (loopback) clients only until a key is configured: "
            "set TRACKPIPE_ADMIN_KEY or TRACKPIPE_READ_KEYS and send Authorization: Bearer <key>",
        )
    return _authenticate(request, lambda g: g.reads_anything, _READ_UNAUTHORIZED)


def require_project(grant: Grant, project: str) -> None:
    if not grant.reads(project):
        raise Rejected(403, "forbidden", f"this key may not read project {project[:80]!r}")


def require_metrics(request: web.Request) -> None:
    if not request.app[ACCESS].metrics_need_key:
        if is_local(request):
            return
        raise Rejected(
            403,
            "metrics_need_key",
            "/metrics is served to this host's own (loopback) clients only until a key is configured: "
            "set TRACKPIPE_METRICS_KEY (or TRACKPIPE_ADMIN_KEY) and send Authorization: Bearer <key>",
        )
    _authenticate(request, lambda g: g.metrics, _METRICS_UNAUTHORIZED)
