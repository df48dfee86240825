"""Consumer lag on a worker's ``/metrics`` (issue 15: autoscaling signals): every consumer group of the
pipeline, per topic and partition, refreshed every ``interval_s`` in a thread of its own (an admin
client and an offsets consumer on their own event loop: the worker's loop is never blocked).

``trackpipe_consumer_lag{group, role, stage, topic, partition}``: end offset - committed offset (from
the earliest offset while nothing is committed); ``stage`` names the processing stage a topic feeds
(``visitor`` for the events topic), empty for the other groups. ``trackpipe_consumer_lag_age_seconds``:
how old the figures are (a scrape never waits for Kafka).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from processors.messages import STAGES
from trackpipe.ops.kafka_view import GroupView, KafkaView, pipeline_groups
from trackpipe.ops.status import inspect_layout, names_of
from trackpipe.settings import Settings

log = logging.getLogger(__name__)


def stage_of_topic(settings: Settings, generation: int) -> dict[str, str]:
    names = names_of(settings).at(generation)
    out = {names.events_in: "visitor"}
    for s in STAGES:
        if s != "visitor":
            out[names.stage(s)] = s
    out[names.stage("visitor")] = "visitor"
    return out


class LagCollector(Collector):
    def __init__(self, settings: Settings, interval_s: float = 10.0):
        self.settings = settings
        self.interval_s = interval_s
        self._groups: list[GroupView] = []
        self._stages: dict[str, str] = {}
        self._at = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="consumer-lag", daemon=True)

    def start(self) -> LagCollector:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                asyncio.run(self.refresh())
            except Exception as exc:  # Kafka away: keep the last figures (their age grows)
                log.warning("consumer lag not refreshed: %s", exc)
            self._stop.wait(self.interval_s)

    async def refresh(self) -> None:
        async with KafkaView(self.settings.kafka_bootstrap, self.settings.kafka_security()) as view:
            layout, _, _, facts, _ = await inspect_layout(self.settings, view)
            groups = [
                await view.group(group_id, role, topics, facts)
                for group_id, role, topics in pipeline_groups(names_of(self.settings), layout)
            ]
        stages: dict[str, str] = {}
        for _, gen in layout.generations():
            stages.update(stage_of_topic(self.settings, gen.generation))
        self._groups, self._stages, self._at = groups, stages, time.time()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        lag = GaugeMetricFamily(
            "trackpipe_consumer_lag",
            "Records not yet committed by a consumer group of the pipeline, per topic partition",
            labels=["group", "role", "stage", "topic", "partition"],
        )
        for g in self._groups:
            for p in g.lags:
                stage = self._stages.get(p.topic, "") if g.role.startswith("processing") else ""
                lag.add_metric([g.group_id, g.role, stage, p.topic, str(p.partition)], p.lag)
        yield lag
        age = GaugeMetricFamily(
            "trackpipe_consumer_lag_age_seconds", "Seconds since the consumer lag was last read"
        )
        age.add_metric([], time.time() - self._at if self._at else float("nan"))
        yield age
