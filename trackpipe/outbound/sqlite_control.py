"""The embedded mode's :class:`schemas.outbound.deliveries.DeliveryControl`: a manual retry in the state
database (``outbound_due``), then the delivery loop woken so the retried deliveries go out at once; and
its ``EndpointControl``: the loop's endpoint circuit (listed, re-enabled).

The store is the running :class:`trackpipe.outbound.loop.DeliveryLoop`'s (its own connection and thread),
looked up per call: the loop starts after the edge app is built.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from ingest.errors import Rejected
from schemas.outbound.deliveries import EndpointsList, EndpointState
from sinks.outbound.schedule import Endpoint
from trackpipe.outbound.loop import DeliveryLoop
from trackpipe.outbound.sqlite_store import SqliteDueStore


def endpoint_state(key: str, e: Endpoint) -> EndpointState:
    return EndpointState(
        key=key,
        failures=len(e.failures),
        last_failure_at=e.failures[-1] if e.failures else None,
        disabled_at=e.disabled_at,
        disabled_reason=None if e.disabled_reason is None else e.disabled_reason.value,
    )


class SqliteDeliveryControl:
    def __init__(self, loop: Callable[[], DeliveryLoop | None], clock: Callable[[], float] = time.time):
        self._loop = loop
        self._clock = clock

    def _running(self) -> tuple[DeliveryLoop, SqliteDueStore]:
        loop = self._loop()
        if loop is None or not isinstance(loop.store, SqliteDueStore):
            raise Rejected(503, "deliveries_unavailable", "the delivery loop is not running")
        return loop, loop.store

    async def endpoints(self) -> EndpointsList:
        loop, _ = self._running()
        return EndpointsList(
            endpoints=[endpoint_state(key, e) for key, e in sorted(loop.endpoints.states().items())]
        )

    async def reenable(self, key: str) -> bool:
        loop, _ = self._running()
        return await loop.endpoints.reenable(key)

    async def retry(self, ids: Sequence[str]) -> int:
        loop, store = self._running()
        changed = await store.retry(ids, self._clock())
        if changed:
            loop.wake.set()
        return changed
