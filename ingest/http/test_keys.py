"""Access keys: length and characters checked at start-up, read keys parsed per project, grants compared
against every key."""

from __future__ import annotations

import pytest

from ingest.http.keys import AccessKeys, check_key, parse_read_keys

ADMIN = "a" * 32
SHOP = "s" * 40
SHARED = "h" * 33


def test_keys_must_be_long_and_plain():
    assert check_key("K", ADMIN) == ADMIN
    with pytest.raises(ValueError, match=r"K must be at least 32 characters long \(it has 1\)") as info:
        check_key("K", "x")
    assert "token_urlsafe" in str(info.value)
    with pytest.raises(ValueError, match="visible ASCII"):
        check_key("K", "x" * 31 + " y")
    with pytest.raises(ValueError, match="visible ASCII"):
        check_key("K", "é" * 40)
    with pytest.raises(ValueError, match="TRACKPIPE_ADMIN_KEY"):
        AccessKeys(admin="short")


def test_read_keys_are_parsed_per_project_and_never_quoted():
    assert parse_read_keys(f" shop = {SHOP}, blog={SHARED},news={SHARED} ,") == {
        "shop": SHOP,
        "blog": SHARED,
        "news": SHARED,
    }
    assert parse_read_keys("") == {}
    for text, needle in [
        (f"{SHOP}", "item 1 is not 'project=key'"),
        (f"=k{SHOP}", "item 1 is not 'project=key'"),
        (f"shop={SHOP},shop={SHARED}", "listed twice"),
        ("shop=tooshort", "key of project 'shop'"),
    ]:
        with pytest.raises(ValueError, match=needle) as info:
            parse_read_keys(text)
        assert "tooshort" not in str(info.value) and SHOP not in str(info.value)


def test_grants():
    keys = AccessKeys(admin=ADMIN, read={"shop": SHOP, "blog": SHARED, "news": SHARED}, metrics="m" * 32)
    admin = keys.grant(ADMIN.encode())
    assert admin.admin and admin.metrics and admin.reads("anything")
    shop = keys.grant(SHOP.encode())
    assert not shop.admin and not shop.metrics and shop.projects == {"shop"} and not shop.reads("blog")
    assert keys.grant(SHARED.encode()).projects == {"blog", "news"}
    metrics = keys.grant(b"m" * 32)
    assert metrics.metrics and not metrics.reads_anything
    for wrong in (b"", b"a" * 31, ADMIN.encode() + b"x", b"\xff" * 32):
        grant = keys.grant(wrong)
        assert not grant.admin and not grant.metrics and not grant.reads_anything
    assert not AccessKeys().reads_need_key and not AccessKeys().metrics_need_key
    assert AccessKeys(read={"shop": SHOP}).reads_need_key
    assert not AccessKeys(read={"shop": SHOP}).metrics_need_key
