"""The client's address and scheme behind reverse proxies (``TRACKPIPE_EDGE__TRUSTED_PROXIES``).

``X-Forwarded-For`` is a list each proxy appends its peer to, so only its right end can be believed:
the client is found by walking it from the right, past every address of a trusted proxy, and taking the
first address that is not one. Entries to the left of it were written by the client itself and are never
used. A connection from a peer that is not a trusted proxy keeps its own address whatever headers it
sends, so nobody can choose the IP that attribution by IP + user agent and the per-address limits see.

``X-Forwarded-Proto`` is believed only from a trusted proxy, for the same hop the client address came
from (the visitor cookie is ``Secure`` when the client spoke https to the first proxy).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

from aiohttp import web

Network = IPv4Network | IPv6Network
Address = IPv4Address | IPv6Address

#: Headers that say a request was forwarded on someone else's behalf.
FORWARDING_HEADERS = ("X-Forwarded-For", "Forwarded", "X-Real-IP")


def parse_trusted_proxies(value: str | Iterable[object]) -> tuple[Network, ...]:
    """``"10.0.0.0/8, 192.168.1.7, ::1"`` (or a list of such items) → networks; a bare address is a /32
    (/128). Raises ValueError naming the bad item."""
    items = value.split(",") if isinstance(value, str) else list(value)
    out: list[Network] = []
    for item in items:
        if isinstance(item, IPv4Network | IPv6Network):
            net = item
        else:
            text = str(item).strip()
            if not text:
                continue
            try:
                net = ip_network(text, strict=True)
            except ValueError as exc:
                raise ValueError(f"trusted proxy {text!r} is not an address or CIDR network: {exc}") from None
        if net.prefixlen == 0:
            raise ValueError(
                f"trusted proxy {str(net)!r} would trust every address and let any client choose its IP; "
                "list the proxies' own addresses or networks"
            )
        out.append(net)
    return tuple(out)


def _address(text: str) -> Address | None:
    """An ``X-Forwarded-For`` entry as an address: ``1.2.3.4``, ``1.2.3.4:5678``, ``::1``, ``[::1]:80``;
    IPv4-mapped IPv6 as IPv4. None when it is none of these (``unknown``, an obfuscated name, garbage)."""
    text = text.strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:  # IPv4 with a port
        text = text.partition(":")[0]
    try:
        addr = ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


class TrustedProxies:
    """The configured proxies; answers which address a request came from (pure: strings in, out)."""

    def __init__(self, networks: Iterable[Network] = ()):
        self.networks = tuple(networks)
        self._peers: dict[str, bool] = {}  # the few peer addresses seen (proxies, direct clients)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, addr: Address) -> bool:
        return any(addr in net for net in self.networks)

    def trusts_peer(self, peer: str | None) -> bool:
        if not self.networks or not peer:
            return False
        known = self._peers.get(peer)
        if known is None:
            addr = _address(peer)
            known = addr is not None and self.trusts(addr)
            if len(self._peers) > 10_000:
                self._peers.clear()
            self._peers[peer] = known
        return known

    def resolve(self, peer: str | None, forwarded_for: Sequence[str]) -> tuple[str | None, int | None]:
        """(client address, index of the ``X-Forwarded-For`` entry it is; None: the peer itself).

        ``forwarded_for`` holds the header's values in the order received (several headers are one list).
        """
        if not forwarded_for or not self.trusts_peer(peer):
            return peer, None
        entries = [e for value in forwarded_for for e in value.split(",")]
        nearest: tuple[str | None, int | None] = (peer, None)
        for i in range(len(entries) - 1, -1, -1):
            addr = _address(entries[i])
            if addr is None:  # a broken chain: the last address we could read stands
                return nearest
            nearest = (str(addr), i)
            if not self.trusts(addr):
                return nearest
        return nearest  # every hop is a trusted proxy: the leftmost one is where it started


PROXIES = web.AppKey("trusted_proxies", TrustedProxies)


def _forwarded_for(request: web.Request) -> list[str]:
    return request.headers.getall("X-Forwarded-For", [])


def client_ip(request: web.Request) -> str | None:
    """The client's address: the peer's, or from ``X-Forwarded-For`` when the peer is a trusted proxy."""
    proxies = request.app[PROXIES]
    if not proxies:
        return request.remote
    return proxies.resolve(request.remote, _forwarded_for(request))[0]


def is_https(request: web.Request) -> bool:
    """The client spoke https: to this edge (TLS here), or to the first trusted proxy of the chain."""
    if request.secure:
        return True
    proxies = request.app[PROXIES]
    if not proxies or not proxies.trusts_peer(request.remote):
        return False
    values = request.headers.getall("X-Forwarded-Proto", [])
    protos = [p.strip().lower() for value in values for p in value.split(",")]
    if not protos:
        return False
    entries = [e for value in _forwarded_for(request) for e in value.split(",")]
    _, hop = proxies.resolve(request.remote, _forwarded_for(request))
    # One value per hop: the one of the client's hop; otherwise the value set by the proxy next to us.
    proto = protos[hop] if hop is not None and len(protos) == len(entries) else protos[-1]
    return proto == "https"


def is_local(request: web.Request) -> bool:
    """A client on this host: the resolved client address is loopback, and the request was not forwarded
    on someone else's behalf by an untrusted local process (a proxy not listed as trusted)."""
    ip = client_ip(request)
    addr = _address(ip) if ip else None
    if addr is None or not addr.is_loopback:
        return False
    proxies = request.app[PROXIES]
    if proxies.trusts_peer(request.remote):
        return True
    return not any(name in request.headers for name in FORWARDING_HEADERS)
