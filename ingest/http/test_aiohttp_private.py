"""Fails loudly when aiohttp changes under the private member ingest/http/aiohttp_private.py replaces (the
behaviour itself is checked end to end by tests/integration/test_fuzz_edge.py and test_edge_requests.py)."""

from importlib.metadata import version

from aiohttp import web_urldispatcher

from ingest.http.aiohttp_private import CHECKED_AIOHTTP_VERSION, install_expect_handler


def test_the_installed_aiohttp_is_the_one_the_patch_was_checked_against():
    assert version("aiohttp") == CHECKED_AIOHTTP_VERSION, "aiohttp changed: re-check aiohttp_private.py"


def test_the_default_expect_handler_is_ours_once_installed():
    install_expect_handler()
    assert web_urldispatcher._default_expect_handler.__module__ == "ingest.http.aiohttp_private"
