"""A report asked while ClickHouse is down is a 503 with Retry-After (retry), never a 500."""

from __future__ import annotations

from aiohttp.test_utils import TestClient, TestServer

from tests.scenario import free_port
from trackpipe.distributed import build_distributed_edge, ensure_topics
from trackpipe.settings import Settings


async def test_report_when_clickhouse_is_down(kafka_bootstrap, unique_name):
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap,
        kafka_topic=unique_name("down"),
        clickhouse_port=free_port(),  # nothing listens there
        partitions=1,
    )
    await ensure_topics(settings)
    async with TestClient(TestServer(build_distributed_edge(settings))) as client:
        resp = await client.get("/api/v1/reports/top-events?project=1")
        assert resp.status == 503, await resp.text()
        assert resp.headers["Retry-After"] == "5"
        assert (await resp.json())["error"]["code"] == "unavailable"
