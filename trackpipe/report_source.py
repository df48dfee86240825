"""ReportSource over a ClickHouse backend: runs the (blocking) report queries in an executor."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor

from schemas.reports import TopEventsQuery, TopEventsReport
from sinks import reports
from sinks.backend import ClickHouseBackend


class BackendReports:
    def __init__(self, backend: Callable[[], ClickHouseBackend], executor: Executor):
        self._backend = backend  # resolved per call: the backend may be created after the app
        self._executor = executor

    async def top_events(self, query: TopEventsQuery) -> TopEventsReport:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, reports.top_events, self._backend(), query)
