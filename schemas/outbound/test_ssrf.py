import ipaddress
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.outbound.ssrf import (
    AllowList,
    AllowListError,
    Reason,
    Refused,
    Target,
    check_addresses,
    check_url,
    parse_allow_networks,
)

NONE = AllowList()
LOCAL = parse_allow_networks("127.0.0.0/8,::1/128")


def reason(url: str, allow: AllowList = NONE) -> Reason | None:
    got = check_url(url, allow)
    if isinstance(got, Refused):
        assert got.retriable is False
        return got.reason
    return None


def test_a_public_url_passes_and_is_normalized() -> None:
    got = check_url("HTTPS://Hooks.Example.COM./in/pvtlnk?a=1&b=%20#frag", NONE)
    assert got == Target("https", "hooks.example.com", 443, "/in/pvtlnk?a=1&b=%20", None)
    assert got.url == "https://hooks.example.com/in/pvtlnk?a=1&b=%20"
    assert check_url("http://example.com:8080", NONE) == Target("http", "example.com", 8080, "/", None)
    lit = check_url("http://[2606:4700::1111]:81/x", NONE)
    assert isinstance(lit, Target) and lit.address == ipaddress.ip_address("2606:4700::1111")
    assert lit.url == "http://[2606:4700::1111]:81/x"
    assert isinstance(check_url("http://8.8.8.8/", NONE), Target)


def test_non_ascii_is_encoded_not_refused() -> None:
    got = check_url("https://bücher.example/päth?q=ü", NONE)
    assert isinstance(got, Target)
    assert got.host == "xn--bcher-kva.example" and got.target == "/p%C3%A4th?q=%C3%BC"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ftp://example.com/", Reason.SCHEME),
        ("file:///etc/passwd", Reason.SCHEME),
        ("gopher://example.com", Reason.SCHEME),
        ("javascript:alert(1)", Reason.SCHEME),
        ("http:example.com", Reason.BAD_URL),
        ("http://user:pw@example.com/", Reason.USERINFO),
        ("http://example.com@127.0.0.1/", Reason.USERINFO),
        ("http://example.com\\@127.0.0.1/", Reason.BAD_URL),
        ("http://exa mple.com/", Reason.BAD_URL),
        ("http://example.com/\r\nX: y", Reason.BAD_URL),
        ("http://example.com:0/", Reason.BAD_PORT),
        ("http://example.com:65536/", Reason.BAD_PORT),
        ("http://example.com:8o/", Reason.BAD_PORT),
        ("http://example.com:/", Reason.BAD_PORT),
        ("http:///path", Reason.BAD_HOST),
        ("http://exa_mple-.com/", Reason.BAD_HOST),
        ("http://127%2e0%2e0%2e1/", Reason.BAD_HOST),
        ("http://[::1%25eth0]/", Reason.BAD_HOST),
        ("http://[zz::1]/", Reason.BAD_URL),
        ("", Reason.BAD_URL),
        ("http://example.com/" + "a" * 2048, Reason.BAD_URL),
    ],
)
def test_malformed_urls_are_refused(url: str, expected: Reason) -> None:
    assert reason(url) is expected


@pytest.mark.parametrize(
    "host",
    [
        "0177.0.0.1",  # octal
        "0x7f.0.0.1",  # hex octet
        "0x7f000001",  # hex integer
        "2130706433",  # decimal integer
        "017700000001",  # octal integer
        "127.1",  # short dotted form
        "127.0.1",
        "10.1",
        "127.000.000.001",
        "169.254.169.254.",  # a trailing dot is dropped: the canonical literal, metadata
        "\uff11\uff12\uff17.0.0.1",  # fullwidth digits (IDNA maps them to ASCII)
        "example.0x1",
        "1.2.3.4.5",
    ],
)
def test_numeric_host_tricks_are_refused(host: str) -> None:
    got = reason(f"http://{host}/")
    assert got is not None
    if host in ("169.254.169.254.",):
        assert got is Reason.METADATA
    elif host == "\uff11\uff12\uff17.0.0.1":
        assert got is Reason.LOOPBACK  # normalized to the canonical literal, then checked
    else:
        assert got is Reason.NUMERIC_TRICK
    # the allow-list never lifts a numeric trick
    if got is Reason.NUMERIC_TRICK:
        assert reason(f"http://{host}/", LOCAL) is Reason.NUMERIC_TRICK


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1", Reason.LOOPBACK),
        ("127.255.0.9", Reason.LOOPBACK),
        ("::1", Reason.LOOPBACK),
        ("10.0.0.5", Reason.PRIVATE),
        ("172.16.3.4", Reason.PRIVATE),
        ("192.168.1.1", Reason.PRIVATE),
        ("100.64.0.1", Reason.PRIVATE),
        ("0.1.2.3", Reason.PRIVATE),
        ("fd12:3456::1", Reason.PRIVATE),
        ("fec0::1", Reason.PRIVATE),
        ("169.254.1.1", Reason.LINK_LOCAL),
        ("fe80::1", Reason.LINK_LOCAL),
        ("224.0.0.1", Reason.MULTICAST),
        ("239.255.255.250", Reason.MULTICAST),
        ("ff02::1", Reason.MULTICAST),
        ("0.0.0.0", Reason.UNSPECIFIED),
        ("::", Reason.UNSPECIFIED),
        ("255.255.255.255", Reason.RESERVED),
        ("240.0.0.1", Reason.RESERVED),
        ("192.0.2.10", Reason.RESERVED),
        ("198.18.0.1", Reason.RESERVED),
        ("2001:db8::1", Reason.RESERVED),
        ("169.254.169.254", Reason.METADATA),
        ("169.254.170.2", Reason.METADATA),
        ("100.100.100.200", Reason.METADATA),
        ("168.63.129.16", Reason.METADATA),
        ("fd00:ec2::254", Reason.METADATA),
        ("::ffff:127.0.0.1", Reason.IPV4_IN_IPV6),
        ("::ffff:8.8.8.8", Reason.IPV4_IN_IPV6),
        ("::127.0.0.1", Reason.IPV4_IN_IPV6),
        ("64:ff9b::7f00:1", Reason.IPV4_IN_IPV6),
        ("2002:7f00:1::1", Reason.IPV4_IN_IPV6),
        ("2001:0:4136:e378::1", Reason.IPV4_IN_IPV6),
    ],
)
def test_each_refused_class_at_save_time_and_at_delivery_time(address: str, expected: Reason) -> None:
    host = f"[{address}]" if ":" in address else address
    assert reason(f"http://{host}:8080/hook") is expected
    got = check_addresses([address], NONE)
    assert isinstance(got, Refused) and got.reason is expected and got.retriable is True


def test_metadata_names_and_localhost_are_refused_at_save_time() -> None:
    assert reason("http://metadata.google.internal/computeMetadata/v1/") is Reason.METADATA
    assert reason("http://instance-data/latest/") is Reason.METADATA
    assert reason("http://localhost:9000/") is Reason.LOOPBACK
    assert reason("http://LOCALHOST./") is Reason.LOOPBACK
    assert reason("http://a.localhost/") is Reason.LOOPBACK
    assert reason("http://localhost:9000/", LOCAL) is None


def test_the_allow_list_lets_on_premise_receivers_and_tests_through() -> None:
    allow = parse_allow_networks(" 127.0.0.0/8 , 10.1.0.0/16,fd00::/8 ")
    assert reason("http://127.0.0.1:8123/hook", allow) is None
    assert reason("http://10.1.2.3/", allow) is None
    assert reason("http://10.2.0.1/", allow) is Reason.PRIVATE
    assert check_addresses(["127.0.0.1", "10.1.9.9"], allow) == (
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("10.1.9.9"),
    )


def test_the_allow_list_never_lifts_unspecified_multicast_mapped_and_only_names_metadata_exactly() -> None:
    broad = parse_allow_networks("0.0.0.0/1,169.254.0.0/16,224.0.0.0/4,::/1")
    assert reason("http://0.0.0.0/", broad) is Reason.UNSPECIFIED
    assert reason("http://224.0.0.1/", broad) is Reason.MULTICAST
    assert reason("http://[::ffff:7f00:1]/", broad) is Reason.IPV4_IN_IPV6
    assert reason("http://169.254.169.254/", broad) is Reason.METADATA
    assert reason("http://169.254.10.10/", broad) is None
    exact = parse_allow_networks("169.254.169.254/32")
    assert reason("http://169.254.169.254/", exact) is None


@pytest.mark.parametrize("text", ["0.0.0.0/0", "::/0", "10.0.0.1/8", "nope", "10.0.0.0/33"])
def test_bad_allow_lists_are_refused_at_start(text: str) -> None:
    with pytest.raises(AllowListError) as info:
        parse_allow_networks(text)
    assert info.value.retriable is False
    assert parse_allow_networks(None) == parse_allow_networks("") == AllowList()


def test_every_resolved_address_must_pass_and_the_checked_ones_are_returned() -> None:
    assert check_addresses(["8.8.8.8", "8.8.8.8", "2606:4700::1111"], NONE) == (
        ipaddress.ip_address("8.8.8.8"),
        ipaddress.ip_address("2606:4700::1111"),
    )
    mixed = check_addresses(["8.8.8.8", "10.0.0.1"], NONE)  # a rebinding answer hidden among good ones
    assert isinstance(mixed, Refused) and mixed.reason is Reason.PRIVATE
    empty = check_addresses([], NONE)
    assert isinstance(empty, Refused) and empty.reason is Reason.UNRESOLVED and empty.retriable
    scoped = check_addresses(["fe80::1%eth0"], NONE)
    assert isinstance(scoped, Refused) and scoped.reason is Reason.LINK_LOCAL
    junk = check_addresses(["not-an-ip"], NONE)
    assert isinstance(junk, Refused) and junk.reason is Reason.BAD_HOST


def test_a_name_resolving_to_loopback_is_refused_at_delivery_time() -> None:
    # getaddrinfo on "localhost" only: no lookup leaves the machine
    answers = [str(info[4][0]) for info in socket.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM)]
    got = check_addresses(answers, NONE)
    assert isinstance(got, Refused) and got.reason is Reason.LOOPBACK
    allowed = check_addresses(answers, LOCAL)
    assert isinstance(allowed, tuple) and all(a.is_loopback for a in allowed)
    literal = [str(info[4][0]) for info in socket.getaddrinfo("127.0.0.1", 80, type=socket.SOCK_STREAM)]
    assert isinstance(check_addresses(literal, NONE), Refused)


@given(st.ip_addresses())
def test_any_address_that_passes_is_global_and_not_mapped(
    addr: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    got = check_addresses([addr], NONE)
    if isinstance(got, tuple):
        assert addr.is_global and not addr.is_multicast
        if isinstance(addr, ipaddress.IPv6Address):
            assert addr.ipv4_mapped is None and addr.sixtofour is None and addr.teredo is None
    host = f"[{addr}]" if addr.version == 6 else str(addr)
    assert isinstance(check_url(f"http://{host}/", NONE), Target) is isinstance(got, tuple)


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_no_integer_or_hex_spelling_of_an_address_passes(n: int) -> None:
    for host in (str(n), hex(n), f"0{n:o}"):
        got = check_url(f"http://{host}/", NONE)
        if isinstance(got, Target):  # only a canonical dotted quad can pass, never these spellings
            raise AssertionError(f"{host} passed")


@given(st.text(max_size=60))
def test_check_url_never_raises(text: str) -> None:
    got = check_url("http://" + text, NONE)
    assert isinstance(got, Target | Refused)
    got = check_url(text, LOCAL)
    assert isinstance(got, Target | Refused)
