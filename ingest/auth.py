"""Admin API authentication: ``Authorization: Bearer <TRACKPIPE_ADMIN_KEY>``, compared in constant time.

Without a configured key the admin API is disabled (403, saying how to enable it). A missing, malformed
or wrong header gets the same 401 and the same message: the answer does not tell which part was wrong.
"""

from __future__ import annotations

import hmac

from aiohttp import web

from ingest.errors import Rejected
from ingest.http_common import ADMIN_KEY, LIMITER
from ingest.ratelimit import enforce

_UNAUTHORIZED = "a valid admin key is required: Authorization: Bearer <TRACKPIPE_ADMIN_KEY>"


def check_bearer(header: str | None, key: str) -> bool:
    scheme, _, given = (header or "").partition(" ")
    # Always compare (even on a wrong scheme) so the time taken does not depend on what was wrong.
    same = hmac.compare_digest(given.strip().encode(), key.encode())
    return same and scheme.lower() == "bearer"


def require_admin(request: web.Request) -> None:
    key = request.app.get(ADMIN_KEY)
    if not key:
        raise Rejected(
            403, "admin_disabled", "the admin API is disabled: set TRACKPIPE_ADMIN_KEY to enable it"
        )
    if not check_bearer(request.headers.get("Authorization"), key):
        raise Rejected(
            401, "unauthorized", _UNAUTHORIZED, headers={"WWW-Authenticate": 'Bearer realm="trackpipe"'}
        )
    enforce(request.app[LIMITER], "admin", "admin key")
