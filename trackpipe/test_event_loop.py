"""The HTTP processes' event loop follows TRACKPIPE_EDGE__EVENT_LOOP (decision 55)."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from ingest.config.edge import EdgeConfig
from trackpipe.cli import _event_loop
from trackpipe.settings import Settings


@pytest.mark.parametrize(("name", "kind"), [("uvloop", uvloop.Loop), ("asyncio", asyncio.BaseEventLoop)])
def test_the_setting_picks_the_loop(name: str, kind: type) -> None:
    loop = _event_loop(Settings(edge=EdgeConfig(event_loop=name)))
    try:
        assert isinstance(loop, kind)
        assert (name == "uvloop") == isinstance(loop, uvloop.Loop)
        assert loop.run_until_complete(asyncio.sleep(0, result=42)) == 42
    finally:
        loop.close()


def test_uvloop_is_the_default_and_others_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().edge.event_loop == "uvloop"
    monkeypatch.setenv("TRACKPIPE_EDGE__EVENT_LOOP", "tokio")
    with pytest.raises(ValueError, match="event_loop"):
        Settings()
