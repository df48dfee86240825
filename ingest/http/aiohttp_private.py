"""The one use of aiohttp's private members, in one place. Checked against **aiohttp 3.14.5** (pinned);
``test_aiohttp_private.py`` fails when the installed version differs.

* ``aiohttp.web_urldispatcher._default_expect_handler``: the ``Expect`` handler of every route registered
  without one, and of the 404/405 answers (a route made per request: no public hook reaches it). It runs
  before any middleware and builds its 417 text from the raw header; aiohttp decodes header bytes that
  are not UTF-8 with ``surrogateescape`` (aio-libs/aiohttp#3279, "wontfix"), so that text cannot be
  encoded and the client gets a 500 (the same family as aio-libs/aiohttp#7715). Replaced, for every
  route made after :func:`install_expect_handler`, by :func:`ingest.http.middleware.expect_handler` in edge
  apps (100 Continue, 413 over the body limit before the body is sent, 417 naming the header safely),
  and by the same rules without the edge's limit and metrics in any other aiohttp app of the process.
"""

from __future__ import annotations

from aiohttp import web, web_urldispatcher

CHECKED_AIOHTTP_VERSION = "3.14.5"


async def _expect(request: web.Request) -> web.StreamResponse | None:
    from ingest.http.common import CONFIG
    from ingest.http.middleware import expect_handler

    if CONFIG in request.app:
        return await expect_handler(request)
    expect = request.headers.get("Expect", "")
    if expect.strip().lower() != "100-continue":
        raise web.HTTPExpectationFailed(text=f"unsupported Expect: {expect[:80]!r}")
    if request.version >= (1, 1):
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0
    return None


def install_expect_handler() -> None:
    """Make :func:`_expect` aiohttp's default ``Expect`` handler (idempotent)."""
    web_urldispatcher._default_expect_handler = _expect  # type: ignore[assignment]  # may answer
