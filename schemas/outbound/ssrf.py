"""The destination guard: where an outbound request may go (checked at save time and at delivery time).

- :func:`check_url` (save time, and again before each delivery): http/https only; no userinfo, no
  backslash, whitespace or control characters; a host that is a DNS name or a canonical IP literal.
  Numeric host tricks (``0177.0.0.1``, ``0x7f.1``, ``2130706433``, ``127.1``, anything whose last label
  is a number, as WHATWG URL parsers read it) are refused outright; a literal address is checked like a
  resolved one; the names ``localhost`` (and ``*.localhost``) and cloud metadata names are refused.
- :func:`check_addresses` (delivery time): every address a name resolved to must pass; the caller then
  connects to one of the returned (checked) addresses and never resolves the name again (no DNS
  rebinding), sending the original host name in ``Host`` and TLS SNI, and follows no redirect.

Refused: loopback, private (RFC 1918, CGNAT, ULA, site-local), link-local, multicast, unspecified,
reserved / documentation / benchmark ranges and anything Python does not call global, cloud metadata
addresses, IPv4-mapped / -compatible IPv6 and IPv6 prefixes that embed an IPv4 address (NAT64, 6to4,
Teredo). The allow-list (``TRACKPIPE_OUTBOUND__ALLOW_NETWORKS``, CIDRs, empty by default) lets
on-premise receivers and tests through, except: unspecified, multicast and IPv4-in-IPv6 are never
allowed, and a metadata address only when the allow-list names it as a single host.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import quote, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_URL_LENGTH = 2048


class Reason(StrEnum):
    BAD_URL = "bad_url"
    SCHEME = "scheme"
    USERINFO = "userinfo"
    BAD_HOST = "bad_host"
    BAD_PORT = "bad_port"
    NUMERIC_TRICK = "numeric_trick"
    IPV4_IN_IPV6 = "ipv4_in_ipv6"
    LOOPBACK = "loopback"
    PRIVATE = "private"
    LINK_LOCAL = "link_local"
    MULTICAST = "multicast"
    UNSPECIFIED = "unspecified"
    RESERVED = "reserved"
    METADATA = "metadata"
    UNRESOLVED = "unresolved"


#: Reasons an allow-list entry can never lift.
NEVER_ALLOWED = frozenset({Reason.UNSPECIFIED, Reason.MULTICAST, Reason.IPV4_IN_IPV6})


@dataclass(frozen=True, slots=True)
class Refused:
    reason: Reason
    detail: str
    #: True only when the answer depends on name resolution (it may differ later); a URL refused for
    #: what it says is refused for good.
    retriable: bool = False


@dataclass(frozen=True, slots=True)
class Target:
    """A checked URL. ``host`` is lower-case ASCII (IDNA) or a canonical IP literal (IPv6 unbracketed);
    ``address`` is set when the host is a literal (no resolution needed)."""

    scheme: str
    host: str
    port: int
    target: str  # path and query as sent on the request line ("/" when empty); no fragment
    address: IPAddress | None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        port = "" if self.port == default else f":{self.port}"
        return f"{self.scheme}://{host}{port}{self.target}"


class AllowListError(ValueError):
    """An allow-list setting that cannot be used (named at start-up). Never retriable."""

    retriable = False


@dataclass(frozen=True, slots=True)
class AllowList:
    networks: tuple[IPNetwork, ...] = ()

    def allows(self, addr: IPAddress, reason: Reason) -> bool:
        if reason in NEVER_ALLOWED:
            return False
        if reason is Reason.METADATA:
            return any(n.num_addresses == 1 and addr in n for n in self.networks)
        return any(addr in n for n in self.networks)


def parse_allow_networks(text: str | None) -> AllowList:
    """``"127.0.0.0/8, 10.1.2.3"`` -> AllowList. Host bits must be clear; ``/0`` is refused (it would
    switch the guard off)."""
    nets: list[IPNetwork] = []
    for n, item in enumerate((text or "").split(","), start=1):
        raw = item.strip()
        if not raw:
            continue
        try:
            net = ipaddress.ip_network(raw, strict=True)
        except ValueError as exc:
            raise AllowListError(f"allowed network {n} ({raw!r}) is not a CIDR: {exc}") from None
        if net.prefixlen == 0:
            raise AllowListError(f"allowed network {n} ({raw!r}) would allow every address")
        nets.append(net)
    return AllowList(tuple(nets))


def _nets(reason: Reason, *cidrs: str) -> list[tuple[IPNetwork, Reason]]:
    return [(ipaddress.ip_network(c), reason) for c in cidrs]


METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle instance metadata
        "169.254.170.2",  # AWS ECS task metadata / credentials
        "169.254.169.253",  # AWS VPC DNS
        "169.254.169.123",  # AWS time sync
        "100.100.100.200",  # Alibaba Cloud metadata
        "192.0.0.192",  # Oracle Cloud (legacy) metadata
        "168.63.129.16",  # Azure platform (wireserver); a public address, blocked all the same
        "fd00:ec2::254",  # AWS metadata over IPv6
        "fd00:ec2::253",  # AWS VPC DNS over IPv6
        "fd00:ec2::123",  # AWS time sync over IPv6
    )
)
METADATA_NAMES = frozenset(
    {"metadata", "metadata.google.internal", "metadata.goog", "instance-data", "instance-data.ec2.internal"}
)

#: Checked in order, first match wins (more specific ranges first).
BLOCKED: list[tuple[IPNetwork, Reason]] = [
    *_nets(Reason.UNSPECIFIED, "0.0.0.0/32", "::/128"),
    *_nets(Reason.LOOPBACK, "127.0.0.0/8", "::1/128"),
    *_nets(Reason.IPV4_IN_IPV6, "::ffff:0:0/96", "::/96", "64:ff9b::/96", "64:ff9b:1::/48"),
    *_nets(Reason.IPV4_IN_IPV6, "2002::/16", "2001::/32"),  # 6to4, Teredo
    *_nets(Reason.PRIVATE, "0.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"),
    *_nets(Reason.PRIVATE, "fc00::/7", "fec0::/10"),
    *_nets(Reason.LINK_LOCAL, "169.254.0.0/16", "fe80::/10"),
    *_nets(Reason.MULTICAST, "224.0.0.0/4", "ff00::/8"),
    *_nets(Reason.RESERVED, "192.0.0.0/24", "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"),
    *_nets(Reason.RESERVED, "198.18.0.0/15", "192.88.99.0/24", "240.0.0.0/4"),
    *_nets(Reason.RESERVED, "100::/64", "2001:db8::/32", "2001:2::/48", "2001:10::/28", "2001:20::/28"),
]


def address_problem(addr: IPAddress) -> Reason | None:
    """Why ``addr`` may not be a destination (before the allow-list), or None."""
    if addr in METADATA_ADDRESSES:
        return Reason.METADATA
    for net, reason in BLOCKED:
        if addr.version == net.version and addr in net:
            return reason
    if not addr.is_global:
        return Reason.RESERVED
    return None


def check_address(addr: IPAddress, allow: AllowList) -> Refused | None:
    reason = address_problem(addr)
    if reason is None or allow.allows(addr, reason):
        return None
    return Refused(reason, f"{addr} is {reason.value.replace('_', ' ')}")


def check_addresses(
    addresses: Iterable[str | IPAddress], allow: AllowList
) -> tuple[IPAddress, ...] | Refused:
    """Delivery time: the addresses a name resolved to (``getaddrinfo`` answers, strings or parsed).
    All must pass (one bad answer refuses the lot: a rebinding attacker controls which one is used);
    returns them de-duplicated in order, for the caller to connect to. Refusals are retriable (the
    name may resolve elsewhere later)."""
    checked: list[IPAddress] = []
    for raw in addresses:
        if isinstance(raw, str):
            text, _, scope = raw.partition("%")  # link-local answers carry a scope id
            try:
                addr: IPAddress = ipaddress.ip_address(text)
            except ValueError:
                return Refused(Reason.BAD_HOST, f"{raw!r} is not an address", retriable=True)
            if scope:
                return Refused(Reason.LINK_LOCAL, f"{raw!r} has a scope id", retriable=True)
        else:
            addr = raw
        refused = check_address(addr, allow)
        if refused is not None:
            return Refused(refused.reason, refused.detail, retriable=True)
        if addr not in checked:
            checked.append(addr)
    if not checked:
        return Refused(Reason.UNRESOLVED, "the name resolved to no address", retriable=True)
    return tuple(checked)


_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_DOTTED_QUAD = re.compile(r"^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$")
_NUMBER = re.compile(r"^(0x[0-9a-f]*|\d+)$")
_URL_SAFE = "!$%&'()*+,/:;=?@[]~"
_FORBIDDEN = re.compile(r"[\x00-\x20\x7f\\]")


def _host(raw: str) -> str | Refused:
    """The ASCII host of a URL's authority (no userinfo, no port), checked for shape and tricks."""
    if raw.startswith("["):
        if not raw.endswith("]") or "%" in raw:
            return Refused(Reason.BAD_HOST, "an IPv6 literal is [address] without a zone id")
        try:
            return str(ipaddress.IPv6Address(raw[1:-1]))
        except ValueError:
            return Refused(Reason.BAD_HOST, f"{raw!r} is not an IPv6 address")
    try:
        host = raw.encode("idna").decode("ascii").lower() if not raw.isascii() else raw.lower()
    except UnicodeError:
        return Refused(Reason.BAD_HOST, "the host is not a valid international name")
    host = host[:-1] if host.endswith(".") else host
    if not host or len(host) > 253:
        return Refused(Reason.BAD_HOST, "the URL has no host")
    labels = host.split(".")
    if _NUMBER.match(labels[-1]):  # an IPv4 address to a URL parser, in whatever notation
        if _DOTTED_QUAD.match(host):
            return host
        return Refused(Reason.NUMERIC_TRICK, f"{host!r} is a numeric address in a non-canonical form")
    if not all(_LABEL.match(label) for label in labels):
        return Refused(Reason.BAD_HOST, f"{host!r} is not a host name")
    return host


def check_url(url: str, allow: AllowList) -> Target | Refused:
    """Save time (and before each delivery): may ``url`` be a destination at all?"""
    if not url or len(url) > MAX_URL_LENGTH:
        return Refused(Reason.BAD_URL, f"a URL has 1 to {MAX_URL_LENGTH} characters")
    if _FORBIDDEN.search(url) or not url.isprintable():
        return Refused(Reason.BAD_URL, "the URL has whitespace, control characters or a backslash")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        return Refused(Reason.BAD_URL, f"unreadable URL: {exc}")
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        return Refused(Reason.SCHEME, "only http and https URLs are allowed")
    if not url[len(parts.scheme) :].startswith("://"):
        return Refused(Reason.BAD_URL, "the URL is scheme://host/...")
    netloc = parts.netloc
    if "@" in netloc:
        return Refused(Reason.USERINFO, "credentials in the URL are not allowed")
    host_part, port_text = netloc, ""
    if netloc.startswith("["):
        end = netloc.find("]")
        host_part, rest = netloc[: end + 1], netloc[end + 1 :]
        if end < 0 or (rest and not rest.startswith(":")):
            return Refused(Reason.BAD_HOST, "unreadable IPv6 literal")
        port_text = rest[1:]
    elif ":" in netloc:
        host_part, _, port_text = netloc.rpartition(":")
    if ":" in port_text or (netloc.count(":") > 1 and not netloc.startswith("[")):
        return Refused(Reason.BAD_PORT, "unreadable port")
    port = 443 if scheme == "https" else 80
    if port_text or netloc.endswith(":"):
        if not (port_text.isascii() and port_text.isdigit()) or not 1 <= int(port_text[:6] or "0") <= 65535:
            return Refused(Reason.BAD_PORT, f"port {port_text!r} is not 1..65535")
        port = int(port_text)
    host = _host(host_part)
    if isinstance(host, Refused):
        return host
    # non-ASCII in the path or query is percent-encoded (UTF-8); existing escapes are kept as they are
    target = quote((parts.path or "/") + (f"?{parts.query}" if parts.query else ""), safe=_URL_SAFE)
    address: IPAddress | None = None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None:
        refused = check_address(address, allow)
        if refused is not None:
            return refused
    elif host in METADATA_NAMES:
        return Refused(Reason.METADATA, f"{host!r} is a cloud metadata name")
    elif host == "localhost" or host.endswith(".localhost"):
        loopback = [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
        if not any(check_address(a, allow) is None for a in loopback):
            return Refused(Reason.LOOPBACK, f"{host!r} is loopback")
    return Target(scheme, host, port, target, address)
