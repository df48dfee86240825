"""Whether the embedded runner keeps the Top-5 counters (issue 16 item 5; docs/decisions.md 150-153).

Counters are only right for a project whose every row they counted, so the runner counts only in a
database it saw empty: the first start with counting decides it once (nothing committed in the state,
no row in ``events_raw`` or ``conversions``) and records the parameters it counts with in the counting
store (``#origin``: "<horizon days>/<retention days>", or "off"). A later start with other parameters,
or with counting turned off, withdraws every mark the runner made (the projects go back to the exact
reading) and stops counting in this database for good: counters with a gap would answer wrong numbers.
"""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

from processors.counting import NEVER_MS, CountingConfig
from processors.pipeline import COUNTING
from processors.runtime.sqlite_state import SqliteState
from processors.store import pack, unpack
from sinks import report_counters
from sinks.backend import ClickHouseBackend
from trackpipe.settings import Settings

log = logging.getLogger(__name__)

ORIGIN = "#origin"
OFF = "off"
_HAS_ROWS = "SELECT (SELECT count() FROM events_raw) + (SELECT count() FROM conversions)"


def counting_for(settings: Settings, backend: ClickHouseBackend, state: SqliteState) -> CountingConfig | None:
    """The counting step's parameters, or None: no counters in this database (see the module's doc).
    Called at the start, before the runner, on the chdb executor."""
    horizon, retention = settings.report_counter_days, settings.retention_days
    wanted = f"{horizon}/{retention}" if horizon else OFF
    store = state.store(COUNTING)
    raw = store.get(ORIGIN)
    if raw is None:
        fresh = state.offset() is None and not int(backend.query(_HAS_ROWS)[0][0])
        origin = wanted if fresh else OFF
        if not fresh and horizon:
            log.info("report counters: this database has data counted without them; the exact reading stays")
        store.put(ORIGIN, pack(NEVER_MS, origin.encode()))
        state.commit_writes()
    else:
        origin = unpack(raw)[1].decode()
    if origin == wanted and origin != OFF:
        return CountingConfig(horizon, retention, settings.processing_config().lateness)
    if origin != OFF:
        log.warning(
            "report counters: kept with %s (horizon/retention days), now %s: withdrawn, the exact reading "
            "answers this database's reports from now on",
            origin,
            wanted,
        )
        for key, value in store.items():
            if key.startswith("p\x1f") and unpack(value)[1] == b"1":
                report_counters.mark_ready(backend, key[2:], False)
        store.put(ORIGIN, pack(NEVER_MS, OFF.encode()))
        state.commit_writes()
    return None


_WRITTEN_AFTER = {
    "gd": "SELECT DISTINCT project_id, goal_id, day, currency FROM report_goal_days",
    "gp": "SELECT DISTINCT project_id, goal_id, day, prev_day FROM report_goal_pairs",
    "vp": "SELECT DISTINCT project_id, day, prev_day FROM report_visit_pairs WHERE kind = 'all' AND",
}
_EPOCH = date(1970, 1, 1)


def uncommitted_counters(backend: ClickHouseBackend, writer: str, last_batch: int) -> set[tuple[Any, ...]]:
    """The counters rows of a batch written after the last committed one hold (a crash between the write
    and the commit): the counting step writes their committed values again with its next batch
    (decision 153)."""
    found: set[tuple[Any, ...]] = set()
    for kind, sql in _WRITTEN_AFTER.items():
        where = " WHERE" if "WHERE" not in sql else ""
        rows = backend.query(
            f"{sql}{where} writer = {{writer:String}} AND version > {{batch:UInt64}}",
            {"writer": writer, "batch": last_batch},
        )
        for row in rows:
            found.add((kind, *(((v - _EPOCH).days if isinstance(v, date) else str(v)) for v in row)))
    if found:
        log.warning("report counters: %d counters of an uncommitted batch are written again", len(found))
    return found
