"""Outbound delivery in ``trackpipe worker``: the planner and the delivery loop beside the Faust app.

Started by the worker (a ``mode`` service run by Faust's worker) after the config topic is loaded, so no
batch is planned against an empty configuration and every attempt signs with the goal's current keys.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from mode import Service

from ingest.config.kafka_store import KafkaConfigStore
from processors.runtime.faust.topology import TopologyNames
from schemas.alerts import AlertRule
from schemas.config import StoredAlertRule
from sinks.backend import ClickHouseBackend
from sinks.outbound.schedule import Schedule
from trackpipe.alerting.kafka import AlertEvaluator, TrafficForwarder
from trackpipe.outbound.delivery_log import DeliveryLogObserver
from trackpipe.outbound.digest_store import digest_store
from trackpipe.outbound.kafka_endpoints import KafkaEndpointStore
from trackpipe.outbound.kafka_planner import KafkaOutboundPlanner
from trackpipe.outbound.kafka_queue import KafkaDueStore
from trackpipe.outbound.loop import AttemptObserver, DeliveryLoop, sender_for
from trackpipe.outbound.metrics import OutboundCollector, OutboundCounts
from trackpipe.outbound.planning import goal_lookup, rule_lookup
from trackpipe.settings import Settings

log = logging.getLogger(__name__)


class WorkerOutbound(Service):
    """Config store -> planner -> delivery loop, started and stopped in that order (stopped in reverse)."""

    def __init__(
        self,
        settings: Settings,
        backend: Callable[[], ClickHouseBackend],
        counts: OutboundCounts,
        observers: Sequence[AttemptObserver] = (),
        generation: int = 0,
    ):
        super().__init__()
        self.counts = counts
        self._plain_rules: dict[str, tuple[StoredAlertRule, AlertRule]] = {}
        # the delivery log: its own thread, so inserts never wait behind the sink's batches
        self._log_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="delivery-log")
        self.delivery_log = DeliveryLogObserver(backend, self._log_executor)
        # the traffic forwarder reads the live generation's events topic; the rest are shared topics
        names = TopologyNames(settings.kafka_topic, settings.worker_app_id, generation)
        security = settings.kafka_security()
        self.config = KafkaConfigStore(
            settings.kafka_bootstrap,
            settings.kafka_config_topic(),
            security=security,
            client_id="trackpipe-worker-config",
        )
        goal_of = goal_lookup(lambda goal_id: self.config.state.goal(goal_id))
        rule_of = rule_lookup(lambda link_id: self.config.state.link(link_id), settings.outbound.allow_list)
        self.planner = KafkaOutboundPlanner(
            settings.kafka_bootstrap,
            names,
            settings.partitions,
            f"{settings.worker_app_id}-outbound-plan",
            goal_of,
            rule_of,
            stream_topic=settings.kafka_stream_topic(),
            alert_projects=self.alert_projects,
            security=security,
            digests=digest_store(settings.worker_store, settings.data_dir),
        )
        self.store = KafkaDueStore(
            settings.kafka_bootstrap,
            names.deliveries,
            settings.partitions,
            f"{settings.worker_app_id}-outbound-send",
            security=security,
            keep_finished_s=settings.outbound.keep_finished_s,
        )
        self.endpoint_store = KafkaEndpointStore(settings.kafka_bootstrap, names.endpoints, security=security)
        self.deliveries = DeliveryLoop(
            self.store,
            goal_of,
            sender_for(settings.outbound),
            Schedule.from_setting(settings.outbound.retry_schedule_s),
            observers=[self.delivery_log, counts, *observers],
            endpoint_store=self.endpoint_store,
            rule_of=self.alert_rule_of,
        )
        # alert rules (issue 14): their inputs re-keyed by project, one evaluator per project partition
        self.traffic = TrafficForwarder(
            settings.kafka_bootstrap,
            names,
            settings.partitions,
            f"{settings.worker_app_id}-alert-traffic",
            self.alert_projects,
            security=security,
        )
        self.alerts = AlertEvaluator(
            settings.kafka_bootstrap,
            names,
            settings.partitions,
            f"{settings.worker_app_id}-alerts",
            self.alert_rules,
            settings.kafka_stream_topic(),
            security=security,
        )
        self.endpoint_store.on_change = self.deliveries.endpoints.apply
        self.store.on_change = self.deliveries.wake.set

    def alert_rules(self) -> list[AlertRule]:
        """The enabled alert rules without their secrets (each converted once per version)."""
        out = []
        for stored in self.config.state.alerts():
            if not stored.enabled:
                continue
            cached = self._plain_rules.get(stored.id)
            if cached is None or cached[0] is not stored:
                cached = self._plain_rules[stored.id] = (stored, stored.rule())
            out.append(cached[1])
        return out

    def alert_projects(self) -> set[str]:
        return {r.project for r in self.config.state.alerts() if r.enabled}

    def alert_rule_of(self, project: str, rule_id: str) -> StoredAlertRule | None:
        found = self.config.state.alert(rule_id)
        return found if found is not None and found.project == project else None

    def collector(self) -> OutboundCollector:
        """The worker's /metrics of outbound delivery (attempts, failures, queue depth, oldest due)."""
        return OutboundCollector(self.counts, lambda: self.deliveries.queue_stats)

    async def on_start(self) -> None:
        await self.delivery_log.start()
        await self.config.start()
        await self.planner.start()
        await self.deliveries.start()
        await self.alerts.start()
        await self.traffic.start()
        log.info("outbound: planner, delivery loop and alert evaluator started")

    async def on_stop(self) -> None:
        await self.traffic.close()
        await self.alerts.close()
        await self.deliveries.close()
        await self.endpoint_store.close()
        await self.planner.close()
        await self.config.stop()
        await self.delivery_log.close()
        self._log_executor.shutdown(wait=True)
