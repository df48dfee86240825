"""The client address behind trusted proxies: taken from the right of X-Forwarded-For, never chosen by the
client (pure: strings in, strings out)."""

from __future__ import annotations

from ipaddress import ip_network

import pytest

from ingest.http.forwarding import TrustedProxies, parse_trusted_proxies

LB = "10.0.0.5"
PROXIES = TrustedProxies(parse_trusted_proxies("10.0.0.0/24, 192.168.7.7, fd00::/8"))


@pytest.mark.parametrize(
    ("peer", "xff", "client"),
    [
        # an untrusted peer keeps its own address whatever it writes
        ("203.0.113.9", ["6.6.6.6"], "203.0.113.9"),
        ("203.0.113.9", [], "203.0.113.9"),
        # one trusted proxy: the address it appended, not what the client wrote before it
        (LB, ["6.6.6.6, 198.51.100.4"], "198.51.100.4"),
        (LB, ["198.51.100.4"], "198.51.100.4"),
        # several trusted hops (both written as one header and as several headers)
        (LB, ["6.6.6.6, 198.51.100.4, 192.168.7.7, 10.0.0.9"], "198.51.100.4"),
        (LB, ["6.6.6.6, 198.51.100.4", "192.168.7.7", "10.0.0.9"], "198.51.100.4"),
        # a client pretending to be a trusted proxy gains nothing: its own address stays rightmost-untrusted
        (LB, ["10.0.0.1, 198.51.100.4"], "198.51.100.4"),
        # every hop trusted: the leftmost is where the request started
        (LB, ["10.0.0.7, 192.168.7.7"], "10.0.0.7"),
        # a trusted proxy without the header: the peer
        (LB, [], LB),
        # unreadable entries end the walk at the last address read (nothing chosen by the client)
        (LB, ["198.51.100.4, garbage"], LB),
        (LB, ["6.6.6.6, unknown, 192.168.7.7"], "192.168.7.7"),
        (LB, [""], LB),
        # ports, brackets, IPv6, IPv4-mapped IPv6
        (LB, ["6.6.6.6, 198.51.100.4:5123"], "198.51.100.4"),
        (LB, ["[2001:db8::1]:443"], "2001:db8::1"),
        ("fd00::1", ["2001:db8::2"], "2001:db8::2"),
        ("::ffff:10.0.0.5", ["198.51.100.4"], "198.51.100.4"),
        (LB, ["::ffff:198.51.100.4"], "198.51.100.4"),
    ],
)
def test_client_address(peer, xff, client):
    assert PROXIES.resolve(peer, xff)[0] == client


def test_without_trusted_proxies_the_header_is_ignored():
    nobody = TrustedProxies()
    assert not nobody
    assert nobody.resolve("127.0.0.1", ["6.6.6.6"]) == ("127.0.0.1", None)


def test_resolve_names_the_hop():
    assert PROXIES.resolve(LB, ["6.6.6.6, 198.51.100.4, 10.0.0.9"]) == ("198.51.100.4", 1)
    assert PROXIES.resolve(LB, []) == (LB, None)


def test_parse():
    assert parse_trusted_proxies("") == ()
    assert parse_trusted_proxies(" 10.0.0.0/8 , ::1 ,") == (ip_network("10.0.0.0/8"), ip_network("::1/128"))
    for bad, needle in [
        ("10.0.0.1/8", "host bits"),
        ("proxy.local", "proxy.local"),
        ("0.0.0.0/0", "every address"),
        ("::/0", "every address"),
    ]:
        with pytest.raises(ValueError, match=needle):
            parse_trusted_proxies(bad)
