"""The outbound sender against real receivers started here on 127.0.0.1 (issue 13, item 4).

Nothing is timed: slow and never-answering receivers are held on events, a timeout is read from the
result, and isolation is shown by ordering (the fast host's attempts all finish while the slow host's
are still held). Every connection the test's event loop opens is checked to go to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from schemas.outbound import signing, ssrf
from sinks.outbound.schedule import FailureReason, Outcome
from sinks.outbound.sender import (
    OutboundRequest,
    OutboundSender,
    SenderError,
    TokenBucket,
    parse_retry_after,
)

pytestmark = pytest.mark.integration

LOOPBACK = ssrf.parse_allow_networks("127.0.0.0/8")
NOTHING = ssrf.AllowList()


# --- receivers ----------------------------------------------------------------------------------------


@dataclass
class Received:
    method: str
    path_qs: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """An aiohttp app: ``/ok`` (5 kB), ``/status/{n}`` (with ``?location=`` / ``?retry_after=``),
    ``/hold`` (answers once ``release`` is set)."""

    port: int = 0
    requests: list[Received] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    held: int = 0
    max_held: int = 0
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    def base(self, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(
            Received(
                request.method, request.path_qs, {k.lower(): v for k, v in request.headers.items()}, body
            )
        )
        if request.path == "/ok":
            return web.Response(status=200, body=b"a" * 5000)
        if request.path.startswith("/status/"):
            headers = {}
            if "location" in request.query:
                headers["Location"] = request.query["location"]
            if "retry_after" in request.query:
                headers["Retry-After"] = request.query["retry_after"]
            return web.Response(status=int(request.path.rsplit("/", 1)[1]), headers=headers, body=b"no")
        if request.path == "/hold":
            async with self.changed:
                self.held += 1
                self.max_held = max(self.max_held, self.held)
                self.changed.notify_all()
            try:
                await self.release.wait()
            finally:
                async with self.changed:
                    self.held -= 1
                    self.changed.notify_all()
            return web.Response(status=204)
        return web.Response(status=404)

    async def wait_held(self, n: int) -> None:
        async with self.changed:
            await self.changed.wait_for(lambda: self.held >= n)


@asynccontextmanager
async def receiver(tls: ssl.SSLContext | None = None) -> AsyncIterator[Receiver]:
    r = Receiver()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", r.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
    await site.start()
    r.port = runner.addresses[0][1]
    try:
        yield r
    finally:
        r.release.set()
        await runner.cleanup()


@asynccontextmanager
async def listener() -> AsyncIterator[tuple[int, list[object]]]:
    """A bare TCP listener counting the connections it accepts (for "no connection was made")."""
    accepted: list[object] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer.get_extra_info("peername"))
        writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], accepted
    finally:
        server.close()
        await server.wait_closed()


def resolver(
    names: Mapping[str, Sequence[str]], asked: list[str] | None = None
) -> Callable[[str, int], Awaitable[Sequence[str]]]:
    async def resolve(host: str, port: int) -> Sequence[str]:
        if asked is not None:
            asked.append(host)
        if host not in names:
            raise socket.gaierror(socket.EAI_NONAME, f"{host} is unknown")
        return names[host]

    return resolve


@pytest.fixture(autouse=True)
async def only_loopback(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every socket connect made on the test's loop goes to 127.0.0.1 (nothing leaves the machine)."""
    loop = asyncio.get_running_loop()
    connects: list[Any] = []
    original = loop.sock_connect

    async def sock_connect(sock: socket.socket, address: Any) -> None:
        connects.append(address)
        assert address[0] == "127.0.0.1", f"a connection to {address!r}"
        await original(sock, address)

    monkeypatch.setattr(loop, "sock_connect", sock_connect)
    return connects


def post(url: str, body: bytes = b'{"event":"conversion.tracked"}', **headers: str) -> OutboundRequest:
    return OutboundRequest("POST", url, {"content-type": "application/json", **headers}, body)


# --- answers ------------------------------------------------------------------------------------------


async def test_2xx_is_success_with_latency_and_a_truncated_body(only_loopback: list[Any]) -> None:
    async with receiver() as r, OutboundSender(LOOPBACK) as sender:
        result = await sender.attempt(post(f"{r.base()}/ok"))
    assert result.outcome is Outcome.SUCCESS and result.reason is None and not result.retriable
    assert result.status == 200 and result.latency_s > 0
    assert result.body == b"a" * 1024 and result.body_truncated
    assert result.address == "127.0.0.1"
    assert len(r.requests) == 1 and only_loopback


async def test_a_short_body_is_kept_whole() -> None:
    async with receiver() as r, OutboundSender(LOOPBACK) as sender:
        result = await sender.attempt(OutboundRequest("GET", f"{r.base()}/status/202?x=1"))
    assert result.outcome is Outcome.SUCCESS and result.body == b"no" and not result.body_truncated
    assert r.requests[0].method == "GET" and r.requests[0].path_qs == "/status/202?x=1"


async def test_500_is_a_retriable_failure_with_retry_after() -> None:
    async with receiver() as r, OutboundSender(LOOPBACK) as sender:
        plain = await sender.attempt(post(f"{r.base()}/status/500"))
        throttled = await sender.attempt(post(f"{r.base()}/status/503?retry_after=7"))
    assert plain.outcome is Outcome.FAILURE and plain.reason is FailureReason.SERVER_ERROR
    assert plain.retriable and plain.status == 500 and plain.retry_after_s is None
    assert throttled.reason is FailureReason.SERVER_ERROR and throttled.retry_after_s == 7


@pytest.mark.parametrize("status", [301, 302, 307])
async def test_a_redirect_is_a_failure_and_never_followed(status: int) -> None:
    async with receiver() as r, receiver() as elsewhere, OutboundSender(LOOPBACK) as sender:
        location = f"{elsewhere.base()}/ok"
        result = await sender.attempt(post(f"{r.base()}/status/{status}?location={location}"))
    assert result.outcome is Outcome.FAILURE and result.reason is FailureReason.REDIRECT
    assert result.status == status
    assert len(r.requests) == 1 and elsewhere.requests == []


@pytest.mark.parametrize(
    "location", ["http://10.0.0.1/", "http://169.254.169.254/latest", "http://internal/"]
)
async def test_a_redirect_to_a_private_address_is_not_followed(
    location: str, only_loopback: list[Any]
) -> None:
    asked: list[str] = []
    names = {"hooks.example": ["127.0.0.1"]}
    async with receiver() as r, OutboundSender(LOOPBACK, resolver=resolver(names, asked)) as sender:
        result = await sender.attempt(post(f"{r.base('hooks.example')}/status/302?location={location}"))
    assert result.reason is FailureReason.REDIRECT
    assert asked == ["hooks.example"]
    assert [a[0] for a in only_loopback] == ["127.0.0.1"]


async def test_410_is_gone() -> None:
    async with receiver() as r, OutboundSender(LOOPBACK) as sender:
        result = await sender.attempt(post(f"{r.base()}/status/410"))
    assert result.outcome is Outcome.GONE and result.reason is FailureReason.GONE and not result.retriable


async def test_a_receiver_that_never_answers_times_out() -> None:
    async with receiver() as r, OutboundSender(LOOPBACK, timeout_s=0.5) as sender:
        result = await sender.attempt(post(f"{r.base()}/hold"))
        assert r.held == 1  # the request arrived; the answer never came
    assert result.outcome is Outcome.FAILURE and result.reason is FailureReason.TIMEOUT
    assert result.retriable and result.status is None and result.error


async def test_a_closed_port_is_a_connect_failure() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with OutboundSender(LOOPBACK) as sender:
        result = await sender.attempt(post(f"http://127.0.0.1:{port}/"))
    assert result.reason is FailureReason.CONNECT and result.retriable


async def test_a_name_that_does_not_resolve_is_a_dns_failure(only_loopback: list[Any]) -> None:
    async with OutboundSender(LOOPBACK, resolver=resolver({})) as sender:
        result = await sender.attempt(post("http://nowhere.example/"))
    assert result.reason is FailureReason.DNS and result.retriable and only_loopback == []


# --- SSRF at delivery time ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("http://127.0.0.1:{port}/", ssrf.Reason.LOOPBACK),
        ("http://localhost:{port}/", ssrf.Reason.LOOPBACK),
        ("http://2130706433:{port}/", ssrf.Reason.NUMERIC_TRICK),
        ("http://[::ffff:127.0.0.1]:{port}/", ssrf.Reason.IPV4_IN_IPV6),
        ("ftp://127.0.0.1:{port}/", ssrf.Reason.SCHEME),
    ],
)
async def test_a_refused_url_makes_no_connection(template: str, reason: ssrf.Reason) -> None:
    async with listener() as (port, accepted), OutboundSender(NOTHING, resolver=resolver({})) as sender:
        result = await sender.attempt(post(template.format(port=port)))
    assert result.reason is FailureReason.DESTINATION_REFUSED and result.refused is reason
    assert not result.retriable  # the URL itself is refused: it will be refused again
    assert accepted == []


async def test_a_name_resolving_to_loopback_is_refused_unless_allowed() -> None:
    names = {"hooks.example": ["127.0.0.1"]}
    async with receiver() as r:
        url = f"{r.base('hooks.example')}/ok"
        async with OutboundSender(NOTHING, resolver=resolver(names)) as sender:
            refused = await sender.attempt(post(url))
        assert refused.reason is FailureReason.DESTINATION_REFUSED
        assert refused.refused is ssrf.Reason.LOOPBACK and refused.retriable
        assert r.requests == []
        async with OutboundSender(LOOPBACK, resolver=resolver(names)) as sender:
            delivered = await sender.attempt(post(url))
        assert delivered.outcome is Outcome.SUCCESS and len(r.requests) == 1


#: One address (or two) of each class the guard refuses, with its reason.
REFUSED_ADDRESSES = [
    ("127.0.0.1", ssrf.Reason.LOOPBACK),
    ("::1", ssrf.Reason.LOOPBACK),
    ("10.0.0.5", ssrf.Reason.PRIVATE),
    ("172.16.3.4", ssrf.Reason.PRIVATE),
    ("192.168.1.1", ssrf.Reason.PRIVATE),
    ("100.64.0.1", ssrf.Reason.PRIVATE),
    ("fd12:3456::1", ssrf.Reason.PRIVATE),
    ("169.254.1.1", ssrf.Reason.LINK_LOCAL),
    ("fe80::1", ssrf.Reason.LINK_LOCAL),
    ("224.0.0.1", ssrf.Reason.MULTICAST),
    ("ff02::1", ssrf.Reason.MULTICAST),
    ("0.0.0.0", ssrf.Reason.UNSPECIFIED),
    ("::", ssrf.Reason.UNSPECIFIED),
    ("240.0.0.1", ssrf.Reason.RESERVED),
    ("192.0.2.10", ssrf.Reason.RESERVED),
    ("2001:db8::1", ssrf.Reason.RESERVED),
    ("169.254.169.254", ssrf.Reason.METADATA),
    ("fd00:ec2::254", ssrf.Reason.METADATA),
    ("::ffff:127.0.0.1", ssrf.Reason.IPV4_IN_IPV6),
    ("64:ff9b::7f00:1", ssrf.Reason.IPV4_IN_IPV6),
]


@pytest.mark.parametrize(("address", "reason"), REFUSED_ADDRESSES)
async def test_each_refused_class_at_delivery_time_literal_and_resolved(
    address: str, reason: ssrf.Reason, only_loopback: list[Any]
) -> None:
    """The same classes the save-time check refuses, refused again by the sender itself: as the URL's
    literal host (for good: not retriable) and as what a name resolves to (retriable: DNS may change).
    No connection is attempted either way."""
    host = f"[{address}]" if ":" in address else address
    asked: list[str] = []
    names = {"hooks.example": [address]}
    async with OutboundSender(NOTHING, resolver=resolver(names, asked)) as sender:
        literal = await sender.attempt(post(f"http://{host}:8080/hook"))
        resolved = await sender.attempt(post("http://hooks.example:8080/hook"))
    assert literal.reason is FailureReason.DESTINATION_REFUSED and literal.refused is reason
    assert not literal.retriable and literal.status is None
    assert resolved.reason is FailureReason.DESTINATION_REFUSED and resolved.refused is reason
    assert resolved.retriable and resolved.status is None
    assert asked == ["hooks.example"]  # the literal was never resolved
    assert only_loopback == []


async def test_the_system_resolver_name_for_loopback_is_refused_unless_allowed() -> None:
    """This machine's own host name resolved by the default resolver (getaddrinfo, /etc/hosts): when
    it gives a loopback address, the sender refuses it without the allow-list and delivers with it."""
    name = socket.gethostname().lower()
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(name, 80, type=socket.SOCK_STREAM)
    except OSError:
        pytest.skip(f"{name!r} does not resolve here")
    addresses = {str(i[4][0]) for i in infos}
    if not addresses or not all(a.startswith("127.") for a in addresses):
        pytest.skip(f"{name!r} resolves to {addresses}, not only to IPv4 loopback")
    if isinstance(ssrf.check_url(f"http://{name}/", NOTHING), ssrf.Refused):
        pytest.skip(f"{name!r} is refused by name already")
    async with receiver() as r:
        # the receiver listens on 127.0.0.1; the name may map to another 127/8 address
        if "127.0.0.1" not in addresses:
            pytest.skip(f"{name!r} resolves to {addresses}, the receiver listens on 127.0.0.1")
        url = f"http://{name}:{r.port}/ok"
        async with OutboundSender(NOTHING) as sender:
            refused = await sender.attempt(post(url))
        assert refused.reason is FailureReason.DESTINATION_REFUSED
        assert refused.refused is ssrf.Reason.LOOPBACK and refused.retriable
        assert r.requests == []
        async with OutboundSender(LOOPBACK) as sender:
            delivered = await sender.attempt(post(url))
        assert delivered.outcome is Outcome.SUCCESS and len(r.requests) == 1
        assert r.requests[0].headers["host"] == f"{name}:{r.port}"


async def test_a_redirect_to_a_private_address_counts_as_a_failure_on_a_literal_url() -> None:
    """A 302 from an allowed receiver to a private, a metadata and another allowed address: a
    retriable redirect failure each time, and nothing else is contacted."""
    async with receiver() as r, receiver() as elsewhere, OutboundSender(LOOPBACK) as sender:
        results = [
            await sender.attempt(post(f"{r.base()}/status/302?location={location}"))
            for location in (
                "http://192.168.1.1/hook",
                "http://169.254.169.254/latest/meta-data/",
                f"{elsewhere.base()}/ok",
            )
        ]
    for result in results:
        assert result.outcome is Outcome.FAILURE and result.reason is FailureReason.REDIRECT
        assert result.status == 302 and result.retriable
    assert len(r.requests) == 3 and elsewhere.requests == []


async def test_one_bad_answer_refuses_every_address(only_loopback: list[Any]) -> None:
    names = {"hooks.example": ["93.184.216.34", "127.0.0.1"], "meta.example": ["169.254.169.254"]}
    async with OutboundSender(NOTHING, resolver=resolver(names)) as sender:
        mixed = await sender.attempt(post("http://hooks.example/"))
        metadata = await sender.attempt(post("http://meta.example/"))
    assert mixed.refused is ssrf.Reason.LOOPBACK and metadata.refused is ssrf.Reason.METADATA
    assert only_loopback == []  # not even the public answer was tried


async def test_the_receiver_gets_the_exact_body_headers_and_host() -> None:
    secret = signing.generate_secret(lambda n: bytes(range(n)))
    body = '{"event":"conversion.tracked","value":"12.50","note":"é"}'.encode()
    headers = signing.signed_headers("msg_1", 1_700_000_000, body, [secret])
    names = {"hooks.example": ["127.0.0.1"]}
    async with receiver() as r, OutboundSender(LOOPBACK, resolver=resolver(names)) as sender:
        result = await sender.attempt(
            post(f"{r.base('hooks.example')}/ok?a=1", body, **headers, Host="evil.example")
        )
    assert result.outcome is Outcome.SUCCESS
    [got] = r.requests
    assert got.method == "POST" and got.path_qs == "/ok?a=1" and got.body == body
    assert got.headers["host"] == f"hooks.example:{r.port}"
    assert got.headers["content-type"] == "application/json"
    for name, value in headers.items():
        assert got.headers[name] == value
    assert signing.verify(got.body, got.headers, secret, now=1_700_000_000) == "msg_1"


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A self-signed certificate for ``hooks.example`` only: (server context, client context)."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=hooks.example",
            "-addext",
            "subjectAltName=DNS:hooks.example",
        ],
        check=True,
        capture_output=True,
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    return server, ssl.create_default_context(cafile=str(cert))


async def test_https_checks_the_certificate_for_the_original_name(
    certificate: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server, client = certificate
    names = {"hooks.example": ["127.0.0.1"], "other.example": ["127.0.0.1"]}
    async with (
        receiver(server) as r,
        OutboundSender(LOOPBACK, resolver=resolver(names), ssl_context=client) as sender,
    ):
        good = await sender.attempt(post(f"https://hooks.example:{r.port}/ok"))
        wrong_name = await sender.attempt(post(f"https://other.example:{r.port}/ok"))
    assert good.outcome is Outcome.SUCCESS  # connected to 127.0.0.1, verified as hooks.example (SNI)
    assert wrong_name.reason is FailureReason.TLS and wrong_name.retriable
    assert [q.headers["host"] for q in r.requests] == [f"hooks.example:{r.port}"]


# --- per-host limits ----------------------------------------------------------------------------------


async def test_a_slow_host_does_not_delay_another_host() -> None:
    names = {"slow.example": ["127.0.0.1"], "fast.example": ["127.0.0.1"]}
    async with receiver() as slow, receiver() as fast:
        sender = OutboundSender(
            LOOPBACK, max_in_flight_per_host=2, rate_per_host=1000, resolver=resolver(names)
        )
        async with sender:
            held = [
                asyncio.create_task(sender.attempt(post(f"{slow.base('slow.example')}/hold")))
                for _ in range(4)
            ]
            await asyncio.wait_for(slow.wait_held(2), 30)  # the cap is full; two more wait for a slot
            fast_results = await asyncio.wait_for(
                asyncio.gather(*(sender.attempt(post(f"{fast.base('fast.example')}/ok")) for _ in range(20))),
                30,
            )
            assert all(r.outcome is Outcome.SUCCESS for r in fast_results)
            assert not any(t.done() for t in held)  # every slow attempt is still pending
            assert slow.held == 2 and len(slow.requests) == 2  # the others wait on the host's cap
            slow.release.set()
            slow_results = await asyncio.wait_for(asyncio.gather(*held), 30)
        assert all(r.outcome is Outcome.SUCCESS for r in slow_results)
        assert slow.max_held == 2 and len(slow.requests) == 4


def test_token_bucket_paces_after_its_burst() -> None:
    now = [100.0]
    bucket = TokenBucket(rate=10.0, burst=2.0, clock=lambda: now[0])
    assert [bucket.take(), bucket.take()] == [0.0, 0.0]
    assert bucket.take() == pytest.approx(0.1)
    assert bucket.take() == pytest.approx(0.2)  # waiters queue behind each other
    now[0] += 0.2
    assert bucket.take() == pytest.approx(0.1)
    now[0] += 10
    assert bucket.full and bucket.take() == 0.0


def test_retry_after_reads_seconds_and_dates() -> None:
    assert parse_retry_after("30", now=0) == 30
    assert parse_retry_after("Thu, 01 Jan 1970 00:01:00 GMT", now=0) == 60
    assert parse_retry_after("soon", now=0) is None and parse_retry_after(None, now=0) is None


async def test_misuse_raises_not_retriable() -> None:
    with pytest.raises(SenderError) as bad:
        OutboundRequest("DELETE", "http://hooks.example/")
    assert bad.value.retriable is False
    sender = OutboundSender(LOOPBACK)
    await sender.close()
    with pytest.raises(SenderError) as closed:
        await sender.attempt(post("http://127.0.0.1:1/"))
    assert closed.value.retriable is False
    with pytest.raises(SenderError):
        OutboundSender(LOOPBACK, rate_per_host=0)
