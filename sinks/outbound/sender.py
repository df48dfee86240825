"""The outbound HTTP sender: one attempt of one delivery, over the network (I/O only).

The delivery engine calls :meth:`OutboundSender.attempt` once per attempt with the request it built and
signed; the sender answers with an :class:`AttemptResult` classified by :func:`schedule.classify`. Network
failures never raise: they are results (``retriable`` says whether the schedule should try again).

Per attempt:

1. the URL is checked again with :func:`ssrf.check_url` (a refusal makes no connection);
2. a host name is resolved once (the injected resolver, by default the event loop's ``getaddrinfo``) and
   every answer must pass :func:`ssrf.check_addresses`;
3. aiohttp connects to one of those checked addresses only: its resolver is :class:`_PinnedResolver`,
   which hands back the addresses checked for this attempt (a context variable) and never resolves
   anything itself; the DNS cache is off. The URL keeps the name, so ``Host``, TLS SNI and certificate
   checks use the original name. Connections are not kept alive (``force_close``), so an attempt never
   reuses a socket opened to an address checked for another attempt;
4. no redirect is followed (a 3xx is a failure; its ``Location`` is never contacted), the whole exchange
   has one total timeout, and at most ``body_keep_bytes`` of the response body are read (the rest is
   never buffered; the connection is closed).

Per destination host name, a semaphore caps attempts in flight and a token bucket caps their rate; the
waiting happens before the attempt's timeout starts and only delays attempts to that host, so one slow
or dead receiver never delays the others. No proxy from the environment, no cookies kept between
receivers.
"""

from __future__ import annotations

import asyncio
import contextvars
import email.utils
import ipaddress
import math
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from schemas.outbound import ssrf
from sinks.outbound import schedule
from sinks.outbound.pacing import TokenBucket
from sinks.outbound.schedule import Classified, FailureReason, Outcome, TransportError

DEFAULT_TIMEOUT_S = schedule.DEFAULT_TIMEOUT_S
DEFAULT_MAX_IN_FLIGHT_PER_HOST = 10
DEFAULT_RATE_PER_HOST = 50.0
DEFAULT_BODY_KEEP_BYTES = 1024
MAX_HOSTS_KEPT = 10_000  # idle per-host limiters beyond this are dropped (their buckets are full)
USER_AGENT = "trackpipe-outbound/1"

METHODS = frozenset({"GET", "POST"})

#: ``await resolver(host, port)`` -> the addresses (text) the name resolves to. Raises ``OSError``
#: (``socket.gaierror``) when it does not resolve.
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]


class SenderError(Exception):
    """A misuse of the sender (not a network failure). ``retriable`` says whether the same call can
    succeed later (a closed sender: no, a new one must be made)."""

    def __init__(self, message: str, *, retriable: bool = False):
        super().__init__(message)
        self.retriable = retriable


@dataclass(frozen=True, slots=True)
class OutboundRequest:
    """One attempt as the engine built it: the headers (signed for this attempt) and the exact body."""

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise SenderError(f"method {self.method!r} is not one of {sorted(METHODS)}")


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What one attempt gave. ``classified`` is the schedule's reading (success / failure reason /
    gone / retry-after); the rest is for the delivery log (``body`` holds at most ``body_keep_bytes``)."""

    classified: Classified
    status: int | None = None
    latency_s: float = 0.0
    body: bytes = b""
    body_truncated: bool = False
    error: str | None = None  # a short description of a transport failure or refusal
    refused: ssrf.Reason | None = None  # set when the SSRF guard refused the destination
    address: str | None = None  # the checked address connected to (None if several and unknown)
    refusal_retriable: bool = True  # for a refusal: may the same URL pass later (after resolution)?

    @property
    def outcome(self) -> Outcome:
        return self.classified.outcome

    @property
    def reason(self) -> FailureReason | None:
        return self.classified.reason

    @property
    def retry_after_s(self) -> float | None:
        return self.classified.retry_after_s

    @property
    def retriable(self) -> bool:
        """False for success, ``410 Gone`` and a URL refused for what it says (it never changes); a
        refusal of resolved addresses is retriable (the name may resolve elsewhere later)."""
        if self.refused is not None:
            return self.refusal_retriable
        return self.classified.retriable


# --- per-host limits ----------------------------------------------------------------------------------


class _HostLimit:
    def __init__(self, in_flight: int, rate: float, clock: Callable[[], float]):
        self.semaphore = asyncio.Semaphore(in_flight)
        self.bucket = TokenBucket(rate, max(1.0, rate), clock)
        self.users = 0


# --- the pinned resolver ------------------------------------------------------------------------------

#: (host, checked addresses) of the attempt running in this task.
_PINNED: contextvars.ContextVar[tuple[str, tuple[ssrf.IPAddress, ...]] | None] = contextvars.ContextVar(
    "trackpipe_outbound_pinned", default=None
)


class _PinnedResolver(AbstractResolver):
    """aiohttp's resolver: returns the addresses checked for the current attempt, for its host only.
    It never resolves: any other name is an error (no connection)."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        pinned = _PINNED.get()
        if pinned is None or pinned[0] != host.lower().rstrip("."):
            raise OSError(f"no checked address for {host!r}")
        return [
            {
                "hostname": host,
                "host": str(addr),
                "port": port,
                "family": socket.AF_INET6 if addr.version == 6 else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
            for addr in pinned[1]
        ]

    async def close(self) -> None:
        return None


async def _getaddrinfo(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def parse_retry_after(value: str | None, now: float) -> float | None:
    """``Retry-After``: delay seconds or an HTTP date (``now`` is unix time); None when absent or
    unreadable."""
    if not value:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return float(text[:9])
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


# --- the sender ---------------------------------------------------------------------------------------


class OutboundSender:
    """One per process (or per deliveries partition). ``allow`` is the SSRF allow-list."""

    def __init__(
        self,
        allow: ssrf.AllowList | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_in_flight_per_host: int = DEFAULT_MAX_IN_FLIGHT_PER_HOST,
        rate_per_host: float = DEFAULT_RATE_PER_HOST,
        body_keep_bytes: int = DEFAULT_BODY_KEEP_BYTES,
        resolver: Resolver | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ):
        if not (math.isfinite(timeout_s) and timeout_s > 0):
            raise SenderError("timeout_s is a positive number of seconds")
        if max_in_flight_per_host < 1:
            raise SenderError("max_in_flight_per_host is at least 1")
        if not (math.isfinite(rate_per_host) and rate_per_host > 0):
            raise SenderError("rate_per_host is a positive number of attempts a second")
        if body_keep_bytes < 0:
            raise SenderError("body_keep_bytes is 0 or more")
        self.allow = allow or ssrf.AllowList()
        self.timeout_s = timeout_s
        self.max_in_flight_per_host = max_in_flight_per_host
        self.rate_per_host = rate_per_host
        self.body_keep_bytes = body_keep_bytes
        self._resolve: Resolver = resolver or _getaddrinfo
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._hosts: dict[str, _HostLimit] = {}
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    # -- lifecycle

    def _get_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise SenderError("the sender is closed")
        if self._session is None:
            connector = aiohttp.TCPConnector(
                resolver=_PinnedResolver(),
                use_dns_cache=False,
                force_close=True,
                limit=0,  # the per-host limits below are the only ones: no cap shared across hosts
                limit_per_host=0,
                ssl=self._ssl,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,  # never an environment proxy
                auto_decompress=True,
                headers={"User-Agent": USER_AGENT},
                skip_auto_headers=("Accept-Encoding",),
            )
        return self._session

    async def close(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> OutboundSender:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- per-host limits

    def _limit(self, host: str) -> _HostLimit:
        limit = self._hosts.get(host)
        if limit is None:
            if len(self._hosts) >= MAX_HOSTS_KEPT:
                for name in [n for n, h in self._hosts.items() if h.users == 0 and h.bucket.full]:
                    del self._hosts[name]
            loop = asyncio.get_running_loop()
            limit = _HostLimit(self.max_in_flight_per_host, self.rate_per_host, loop.time)
            self._hosts[host] = limit
        return limit

    # -- one attempt

    async def attempt(self, request: OutboundRequest) -> AttemptResult:
        """Send ``request`` once. Never raises for a network failure or a refused destination."""
        session = self._get_session()
        target = ssrf.check_url(request.url, self.allow)
        if isinstance(target, ssrf.Refused):
            return _refused(target)
        limit = self._limit(target.host)
        limit.users += 1
        try:
            wait = limit.bucket.take()
            if wait > 0:
                await asyncio.sleep(wait)
            async with limit.semaphore:
                return await self._attempt(session, request, target)
        finally:
            limit.users -= 1

    async def _attempt(
        self, session: aiohttp.ClientSession, request: OutboundRequest, target: ssrf.Target
    ) -> AttemptResult:
        loop = asyncio.get_running_loop()
        started = loop.time()

        def failure(error: TransportError, detail: str) -> AttemptResult:
            elapsed = loop.time() - started
            classified = schedule.classify(None, elapsed, timeout_s=self.timeout_s, error=error)
            return AttemptResult(classified, latency_s=elapsed, error=detail)

        try:
            async with asyncio.timeout(self.timeout_s):
                if target.address is not None:
                    addresses: tuple[ssrf.IPAddress, ...] = (target.address,)  # checked by check_url
                else:
                    try:
                        answers = await self._resolve(target.host, target.port)
                    except (OSError, UnicodeError) as exc:
                        return failure(TransportError.DNS, f"{target.host!r} did not resolve: {exc}")
                    checked = ssrf.check_addresses(answers, self.allow)
                    if isinstance(checked, ssrf.Refused):
                        return _refused(checked, latency_s=loop.time() - started)
                    addresses = checked
                return await self._exchange(session, request, target, addresses, started)
        except TimeoutError:
            return failure(TransportError.TIMEOUT, f"no answer within {self.timeout_s:g} s")
        except aiohttp.ClientConnectorCertificateError as exc:
            return failure(TransportError.TLS, f"certificate: {exc}")
        except aiohttp.ClientSSLError as exc:
            return failure(TransportError.TLS, str(exc) or type(exc).__name__)
        except ssl.SSLError as exc:
            return failure(TransportError.TLS, str(exc) or type(exc).__name__)
        except aiohttp.ServerDisconnectedError as exc:
            return failure(TransportError.CONNECT, str(exc) or "disconnected before an answer")
        except aiohttp.ClientConnectorError as exc:
            return failure(TransportError.CONNECT, str(exc) or type(exc).__name__)
        except aiohttp.ClientOSError as exc:
            return failure(TransportError.CONNECT, str(exc) or type(exc).__name__)
        except aiohttp.ClientError as exc:
            return failure(TransportError.PROTOCOL, f"{type(exc).__name__}: {exc}")
        except OSError as exc:
            return failure(TransportError.CONNECT, str(exc) or type(exc).__name__)

    async def _exchange(
        self,
        session: aiohttp.ClientSession,
        request: OutboundRequest,
        target: ssrf.Target,
        addresses: tuple[ssrf.IPAddress, ...],
        started: float,
    ) -> AttemptResult:
        loop = asyncio.get_running_loop()
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        token = _PINNED.set((target.host, addresses))
        try:
            response = await session.request(
                request.method,
                URL(target.url, encoded=True),
                headers=headers,
                data=request.body if request.method == "POST" else None,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=None),  # the attempt's own timeout covers it all
            )
        finally:
            _PINNED.reset(token)
        try:
            latency = loop.time() - started
            address = _peer(response) or (str(addresses[0]) if len(addresses) == 1 else None)
            body, truncated = await self._read_some(response)
            retry_after = parse_retry_after(response.headers.get("Retry-After"), time.time())
            classified = schedule.classify(
                response.status, latency, timeout_s=self.timeout_s, retry_after_s=retry_after
            )
            return AttemptResult(
                classified,
                status=response.status,
                latency_s=latency,
                body=body,
                body_truncated=truncated,
                address=address,
            )
        finally:
            response.close()  # the unread rest is dropped with the connection

    async def _read_some(self, response: aiohttp.ClientResponse) -> tuple[bytes, bool]:
        keep = self.body_keep_bytes
        chunks: list[bytes] = []
        size = 0
        while size < keep:
            chunk = await response.content.read(keep - size)
            if not chunk:
                return b"".join(chunks), False
            chunks.append(chunk)
            size += len(chunk)
        more = not response.content.at_eof() and bool(await response.content.read(1))
        return b"".join(chunks), more


def _peer(response: aiohttp.ClientResponse) -> str | None:
    conn = response.connection
    transport = conn.transport if conn is not None else None
    peer: Any = transport.get_extra_info("peername") if transport is not None else None
    if isinstance(peer, tuple) and peer:
        try:
            return str(ipaddress.ip_address(peer[0]))
        except ValueError:
            return None
    return None


def _refused(refused: ssrf.Refused, *, latency_s: float = 0.0) -> AttemptResult:
    classified = schedule.classify(None, latency_s, error=TransportError.DESTINATION_REFUSED)
    return AttemptResult(
        classified,
        latency_s=latency_s,
        error=refused.detail,
        refused=refused.reason,
        refusal_retriable=refused.retriable,
    )
