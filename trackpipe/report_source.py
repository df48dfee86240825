"""ReportSource over a ClickHouse backend: runs the (blocking) report queries in an executor."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Executor
from typing import Any, TypeVar

from schemas.outbound.deliveries import DeliveriesList, DeliveriesQuery, RetryFilter
from schemas.report_views import (
    DelayHistogram,
    DelayQuery,
    ListKind,
    ListQuery,
    ListReport,
    SeriesQuery,
    SeriesReport,
)
from schemas.reports import (
    ConversionAnalytics,
    ConversionAnalyticsQuery,
    ExperimentReport,
    ExperimentReportQuery,
    ProjectsQuery,
    ProjectsReport,
    TopEventsQuery,
    TopEventsReport,
)
from sinks import report_views, reports
from sinks.backend import ClickHouseBackend
from sinks.outbound import delivery_reads

R = TypeVar("R")


class BackendReports:
    def __init__(self, backend: Callable[[], ClickHouseBackend], executor: Executor):
        self._backend = backend  # resolved per call: the backend may be created after the app
        self._executor = executor

    async def _run(self, report: Callable[[ClickHouseBackend, Any], R], query: Any) -> R:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, report, self._backend(), query)

    async def top_events(self, query: TopEventsQuery) -> TopEventsReport:
        return await self._run(reports.top_events, query)

    async def projects(self, query: ProjectsQuery, only: Collection[str] | None = None) -> ProjectsReport:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, reports.projects, self._backend(), query, only)

    async def conversion_analytics(self, query: ConversionAnalyticsQuery) -> ConversionAnalytics:
        return await self._run(reports.conversion_analytics, query)

    async def experiment_report(self, query: ExperimentReportQuery) -> ExperimentReport:
        return await self._run(reports.experiment_report, query)

    # the dashboard's further reports (issue 17): schemas.report_views.ViewSource

    async def report_list(self, kind: ListKind, query: ListQuery) -> ListReport:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, report_views.report_list, self._backend(), kind, query
        )

    async def series(self, query: SeriesQuery) -> SeriesReport:
        return await self._run(report_views.series, query)

    async def delays(self, query: DelayQuery) -> DelayHistogram:
        return await self._run(report_views.delays, query)

    # the outbound delivery log (issue 13): schemas.outbound.deliveries.DeliveryLogSource

    async def deliveries(self, query: DeliveriesQuery, ids: Sequence[str] = ()) -> DeliveriesList:
        loop = asyncio.get_running_loop()
        backend = self._backend()
        return await loop.run_in_executor(self._executor, delivery_reads.deliveries, backend, query, ids)

    async def retriable(self, query: RetryFilter) -> list[str]:
        return await self._run(delivery_reads.retriable, query)
