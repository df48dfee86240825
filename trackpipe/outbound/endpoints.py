"""The endpoint circuit of the delivery loop (issue 13): per destination, the streak of failures that
disables it (``sinks.outbound.schedule.Circuit``: 10 consecutive failures within 72 h, or a 410), and
re-enabling by hand.

An endpoint is where a delivery goes, as configured: a goal's ``postback_url`` (key ``goal:<id>``) or a
link's S2S postback (``link:<id>``). The circuit counts deliveries, not attempts: a delivery that dies
(its schedule exhausted, or its URL refused) is a failure, a 410 disables at once, and any successful
attempt ends the streak. So a receiver down for a while, with many deliveries retrying, is not disabled
by the retries themselves; ten deliveries in a row that exhaust their schedule (about 27 h each with the
default schedule) within 72 h are. While one is disabled, its due deliveries become dead
(``endpoint_disabled``) without an attempt; re-enabling it starts a clean slate, and a bulk retry brings
those deliveries back. The state is kept in memory and, when the store can (:class:`EndpointStore`:
the embedded state database), saved on every change and loaded at start.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Protocol, runtime_checkable

from sinks.outbound.delivery_log import POSTBACK_EVENT
from sinks.outbound.schedule import Circuit, Classified, Delivery, DeliveryStatus, Endpoint, Outcome
from sinks.outbound.sender import AttemptResult

log = logging.getLogger(__name__)


@runtime_checkable
class EndpointStore(Protocol):
    """Optional for a ``DueStore``: where endpoint states survive a restart."""

    async def load_endpoints(self) -> dict[str, Endpoint]: ...

    async def save_endpoint(self, key: str, endpoint: Endpoint) -> None: ...


def endpoint_key(event: str, goal_id: str, link_id: str) -> str:
    return f"link:{link_id}" if event == POSTBACK_EVENT else f"goal:{goal_id}"


class EndpointBook:
    def __init__(self, circuit: Circuit, store: object | None = None):
        self.circuit = circuit
        self.store = store if isinstance(store, EndpointStore) else None
        self._endpoints: dict[str, Endpoint] = {}

    async def load(self) -> None:
        if self.store is not None:
            self._endpoints = dict(await self.store.load_endpoints())

    def get(self, key: str) -> Endpoint:
        return self._endpoints.get(key) or Endpoint()

    def disabled(self, key: str) -> bool:
        found = self._endpoints.get(key)
        return found is not None and not found.enabled

    async def _set(self, key: str, new: Endpoint) -> None:
        if new == Endpoint():
            self._endpoints.pop(key, None)
        else:
            self._endpoints[key] = new
        if self.store is not None:
            try:
                await self.store.save_endpoint(key, new)
            except Exception:  # kept in memory; saved again at the next change
                log.exception("outbound: saving endpoint %s failed", key)

    async def record(self, key: str, result: Classified, now: datetime) -> None:
        before = self.get(key)
        after = self.circuit.record(before, result, now)
        if after == before:
            return
        if before.enabled and not after.enabled:
            reason = after.disabled_reason.value if after.disabled_reason else "?"
            log.warning("outbound: endpoint %s disabled (%s); re-enable it to deliver again", key, reason)
        await self._set(key, after)

    async def after_attempt(self, key: str, new: Delivery, result: AttemptResult, now: datetime) -> None:
        """Count what an attempt means for its endpoint (see the module doc)."""
        outcome = result.classified.outcome
        if outcome is Outcome.FAILURE and new.status is not DeliveryStatus.DEAD:
            return  # retried on its schedule: not (yet) a failed delivery
        await self.record(key, result.classified, now)

    async def reenable(self, key: str) -> bool:
        """True when ``key`` was disabled or failing (it starts clean), False when it was fine."""
        if key not in self._endpoints:
            return False
        await self._set(key, Circuit.reenable(self._endpoints[key]))
        return True

    def apply(self, key: str, endpoint: Endpoint) -> None:
        """A change made elsewhere (another worker, an edge's re-enable), already stored."""
        if endpoint == Endpoint():
            self._endpoints.pop(key, None)
        else:
            self._endpoints[key] = endpoint

    def states(self) -> dict[str, Endpoint]:
        """The endpoints disabled or with failures in their current streak."""
        return dict(self._endpoints)
