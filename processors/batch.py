"""The one per-batch protocol both runtimes drive: process -> sink write -> deliver outputs -> commit.

The embedded runner (local log + SQLite state) and the Faust worker (Kafka + changelog tables) each
supply a :class:`BatchPort` with their I/O; :class:`BatchRunner` owns the order of the steps, retries,
the poison policy and the outcome counts. Nothing here imports Faust, aiohttp or a database driver.

Order (a batch is committed only after everything it produced is durable)::

    process (pure core) -> write rows (idempotent under the batch token) -> deliver outputs (stage
    messages, output rows, dead letters) -> commit (state, and the input position where the runtime
    owns it; Faust acks the offsets when the batch returns)

Any failure discards the batch's state changes and runs the batch again from the committed state:

* **retriable** (``exc.retriable`` true; without the attribute: OS errors, timeouts): retried with
  exponential backoff for as long as it takes (backpressure: nothing is skipped), shown by ``health()``.
* **non-retriable** (``exc.retriable`` false, or an exception that says nothing, e.g. a core bug on one
  record): retried ``rejected_attempts`` times, then the batch is split in halves that run on their own,
  down to the single records that still fail; those are **quarantined**: their original bytes go to the
  dead-letter sink with reason ``sink_rejected`` and the runner moves on.
* A sink that refuses everything is not a poison record: after ``max_consecutive_quarantines``
  quarantines with no committed batch in between, the runner stops quarantining and retries the batch
  until it goes through (processing pauses, ``health()`` says why, nothing more is dead-lettered).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from processors.outcome import DeadLetter, DeadLetterReason, DropReason
from schemas.rows import ProcessedBatch

log = logging.getLogger(__name__)

R = TypeVar("R")
R_in = TypeVar("R_in", contravariant=True)
W = TypeVar("W", bound="Work")


class Work(Protocol):
    """What processing a batch produced (the runtime's own type may carry more, e.g. stage messages)."""

    @property
    def rows(self) -> ProcessedBatch: ...

    @property
    def dropped(self) -> Counter[DropReason]: ...

    @property
    def merged(self) -> int: ...

    @property
    def dead_letters(self) -> list[DeadLetter]: ...


class BatchPort(Protocol[R_in, W]):
    """The I/O of one runtime for batches of its records ``R``."""

    def process(self, records: Sequence[R_in]) -> W:
        """Run the pure core; state changes stay staged until :meth:`commit`."""

    def token(self, records: Sequence[R_in]) -> str:
        """A deterministic id of the batch (the sink drops a repeated insert with the same token)."""

    def raw(self, record: R_in) -> bytes:
        """The record's original bytes (what a dead letter keeps)."""

    async def write(self, rows: ProcessedBatch, token: str) -> None: ...

    async def deliver(self, work: W) -> None:
        """Send what the batch produced besides rows (stage messages, output rows, dead letters) and wait
        until it is durable."""

    async def commit(self, records: Sequence[R_in]) -> None:
        """Make the staged state durable, and the position after ``records`` where the runtime owns it."""

    def discard(self) -> None:
        """Forget the staged state changes (the batch runs again from the committed state)."""

    async def quarantine(self, letters: Sequence[DeadLetter]) -> None:
        """Write dead letters for records that are given up on, and wait until they are durable."""


def is_retriable(exc: BaseException) -> bool:
    """An error's own ``retriable`` flag; without one, OS-level faults (disk, network, timeouts) are worth
    retrying and anything else (a core bug, bad data) is not."""
    flag = getattr(exc, "retriable", None)
    if isinstance(flag, bool):
        return flag
    return isinstance(exc, OSError | TimeoutError)


@dataclass(frozen=True)
class RetryPolicy:
    first_backoff_s: float = 0.1
    max_backoff_s: float = 5.0
    rejected_attempts: int = 3  # tries of a batch that fails non-retriably before it is split
    max_consecutive_quarantines: int = 10


@dataclass
class OutcomeCounts:
    """Everything the runners did, by stage: the numbers behind ``trackpipe_processing_*`` (the wiring
    exports them to Prometheus; this module knows nothing of it)."""

    records: Counter[str] = field(default_factory=Counter)  # stage -> input records committed
    outcomes: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # (stage, outcome, reason)
    rows: Counter[str] = field(default_factory=Counter)  # table -> rows written
    batches: Counter[tuple[str, str]] = field(default_factory=Counter)  # (stage, result)

    def committed(self, stage: str, records: int, work: Work) -> None:
        self.records[stage] += records
        self.batches[(stage, "committed")] += 1
        # a runtime that runs several stages in one batch says what each did (``stage_counts``)
        per_stage = getattr(work, "stage_counts", None) or {stage: work}
        for name, part in per_stage.items():
            for reason, n in part.dropped.items():
                self.outcomes[(name, "dropped", str(reason))] += n
            if part.merged:
                self.outcomes[(name, "merged", "")] += part.merged
        for letter in work.dead_letters:
            self.outcomes[(stage, "dead_letter", str(letter.reason))] += 1
        rows = work.rows
        for table, n in (
            ("events", len(rows.events)),
            ("conversions", len(rows.conversions)),
            ("sessions", len(rows.sessions)),
            ("exposures", len(rows.exposures)),
        ):
            if n:
                self.rows[table] += n

    def failed(self, stage: str, retriable: bool) -> None:
        self.batches[(stage, "retried" if retriable else "rejected")] += 1

    def quarantined(self, stage: str, records: int) -> None:
        self.batches[(stage, "quarantined")] += 1
        self.outcomes[(stage, "dead_letter", str(DeadLetterReason.SINK_REJECTED))] += records


class BatchRunner(Generic[R, W]):
    """Runs batches of one stage through a :class:`BatchPort` (see the module docstring)."""

    def __init__(
        self,
        port: BatchPort[R, W],
        stage: str,
        counts: OutcomeCounts,
        policy: RetryPolicy | None = None,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ):
        self.port = port
        self.stage = stage
        self.counts = counts
        self.policy = policy or RetryPolicy()
        self._sleep = sleep
        self.last_error: str | None = None
        self.failing_since: float | None = None
        self._quarantines_in_a_row = 0

    def health(self) -> str | None:
        """None while batches go through; else what stops them."""
        if self.last_error is None:
            return None
        since = 0.0 if self.failing_since is None else time.monotonic() - self.failing_since
        return f"{self.stage} processing stalled for {since:.0f}s: {self.last_error}"

    @property
    def paused(self) -> bool:
        """The sink refused too many records in a row: nothing more is quarantined."""
        return self._quarantines_in_a_row >= self.policy.max_consecutive_quarantines

    async def run(self, records: Sequence[R]) -> None:
        """Commit ``records`` (possibly split, possibly quarantining poison records). Returns only once
        every record is committed or dead-lettered; raises only on cancellation."""
        if records:
            await self._run(records, self.policy.rejected_attempts)

    async def _run(self, records: Sequence[R], attempts: int) -> None:
        backoff = self.policy.first_backoff_s
        rejected = 0
        while True:
            try:
                work = await self._attempt(records)
            except asyncio.CancelledError:
                self.port.discard()
                raise
            except Exception as exc:
                self.port.discard()
                retriable = is_retriable(exc)
                self.counts.failed(self.stage, retriable)
                self._failing(exc, retriable, backoff)
                if not retriable and not self.paused:
                    rejected += 1
                    if rejected >= attempts:
                        await self._give_up_on(records, exc)
                        return
                await self._sleep(backoff)
                backoff = min(backoff * 2, self.policy.max_backoff_s)
                continue
            self.counts.committed(self.stage, len(records), work)
            self._quarantines_in_a_row = 0
            if self.last_error is not None:
                log.warning("%s processing resumed", self.stage)
                self.last_error = self.failing_since = None
            return

    async def _attempt(self, records: Sequence[R]) -> W:
        work = self.port.process(records)
        if not work.rows.is_empty:
            await self.port.write(work.rows, self.port.token(records))
        await self.port.deliver(work)
        await self.port.commit(records)
        return work

    async def _give_up_on(self, records: Sequence[R], exc: Exception) -> None:
        if len(records) > 1:  # find the records that fail: each half runs (and commits) on its own
            half = len(records) // 2
            log.warning(
                "%s batch of %d records refused (%s): splitting it to isolate the records that fail",
                self.stage,
                len(records),
                exc,
            )
            await self._run(records[:half], 1)
            await self._run(records[half:], 1)
            return
        detail = f"{type(exc).__name__}: {exc}"
        letters = [DeadLetter(DeadLetterReason.SINK_REJECTED, detail, self.port.raw(r)) for r in records]
        # Writing the dead letter and committing past the record go through the same retries.
        await self._durably(lambda: self.port.quarantine(letters))
        await self._durably(lambda: self.port.commit(records))
        self.counts.quarantined(self.stage, len(records))
        self._quarantines_in_a_row += 1
        log.critical("%s record quarantined to the dead letters (%s)", self.stage, detail)
        if self.paused:
            log.critical(
                "%s: %d records in a row refused; the sink seems broken, not the data: processing pauses "
                "and retries instead of dead-lettering more",
                self.stage,
                self._quarantines_in_a_row,
            )

    async def _durably(self, step: Callable[[], Awaitable[None]]) -> None:
        backoff = self.policy.first_backoff_s
        while True:
            try:
                await step()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._failing(exc, True, backoff)
                await self._sleep(backoff)
                backoff = min(backoff * 2, self.policy.max_backoff_s)

    def _failing(self, exc: BaseException, retriable: bool, backoff: float) -> None:
        detail = f"{type(exc).__name__}: {exc} (retriable={retriable})"
        if detail != self.last_error:
            # once per distinct fault with its traceback; repeats only as warnings
            log.error("%s batch failed, retrying: %s", self.stage, detail, exc_info=exc)
        else:
            log.warning("%s batch still failing, retry in %.1fs: %s", self.stage, backoff, detail)
        if self.failing_since is None:
            self.failing_since = time.monotonic()
        self.last_error = detail
