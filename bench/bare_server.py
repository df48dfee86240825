"""The edge's raw baseline: a bare aiohttp handler that reads the body and answers 204.

``python -m bench.bare_server --port P [--loop uvloop|asyncio]``; same aiohttp version, ``web.run_app``
and event loop as the edge, no middleware, no parsing, nothing durable.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from aiohttp import web


async def bare(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(status=204)


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.bare_server")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop", help="same as the edge's")
    args = p.parse_args(argv)
    app = web.Application(client_max_size=1_048_576)
    app.router.add_post("/track", bare)
    app.router.add_get("/healthz", healthz)
    if args.loop == "uvloop":
        import uvloop

        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    web.run_app(app, host=args.host, port=args.port, print=None, loop=loop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
