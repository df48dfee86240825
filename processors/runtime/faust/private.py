"""Every use of faust-streaming's private members, in one place.

Written against **faust-streaming 0.15.3** (pinned in pyproject.toml); ``test_private.py`` fails when the
installed version differs, so an upgrade re-checks each item below against the new source first.

Consumer (faust.transport.consumer.Consumer, aiokafka driver):

* ``_committed_offset``, ``_acked``, ``_gap`` are read, and ``_new_offset`` is overridden by
  ``consumer.GaplessConsumer``: Faust commits past records nobody processed when the committed offset is
  0/None or a one-record gap heads the acknowledged offsets (faust-streaming issues #606 "Wrong offset
  commit in case of gaps" and #312; records reordered around a rebalance: #221). Decision 51.
* ``_paused_partitions`` and ``_get_active_partitions()`` are read by ``consumer.StallWatchdog`` for its
  log line only (a partition left out of the fetched set after a rebalance; same family as #221).

Producer (faust.transport.drivers.aiokafka.Producer):

* ``_ensure_producer()`` gives the aiokafka producer under the app's Faust producer, whose
  ``create_batch`` / ``send_batch`` ``store.KafkaChangelog`` uses: Faust's own sends take one record
  each, through a buffer task (decision 160).

RocksDB store (faust.stores.rocksdb.Store):

* ``_db_for_partition``, ``_dbs`` and ``_key_index`` are used by ``store.RocksDBState``: with
  ``use_partitioner=True`` Faust's store writes a key into the database of the *current event's*
  partition, not the key's (faust-streaming PR #130/#144 fixed reads only; robinhood/faust PR #478,
  never merged), so our batches write each key to its own partition's database directly.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP

#: The faust-streaming version every access below was checked against.
CHECKED_FAUST_VERSION = "0.15.3"


# ------------------------------------------------------------------ consumer


def committed_offset(consumer: Any, tp: TP) -> int | None:
    """The offset Faust last committed for ``tp`` (the next record to read), if any."""
    found: int | None = consumer._committed_offset.get(tp)
    return found


def acked_offsets(consumer: Any, tp: TP) -> list[int]:
    """The acknowledged, not yet committed offsets of ``tp``."""
    acked: list[int] = consumer._acked[tp]
    return acked


def gap_intervals(consumer: Any, tp: TP, start: int, end: int) -> Iterable[Any] | None:
    """Intervals of offsets Faust recorded as absent from the log (compaction, transaction markers)
    overlapping ``start``..``end``; None when it recorded none for ``tp``."""
    gap = consumer._gap.get(tp)
    if not gap:
        return None
    found: Iterable[Any] = gap.overlap(start, end)
    return found


def faust_new_offset(consumer: Any, tp: TP) -> int | None:
    """Faust's own ``_new_offset`` (what it would commit for ``tp``), for an override to fall back on."""
    offset: int | None = aiokafka_driver.Consumer._new_offset(consumer, tp)
    return offset


def fetch_state(consumer: Any, tp: TP) -> tuple[bool, bool]:
    """(actively fetched, paused) for ``tp``: for logs only."""
    return tp in consumer._get_active_partitions(), tp in consumer._paused_partitions


# ------------------------------------------------------------------ producer


def kafka_producer(app: Any) -> Any:
    """The started aiokafka ``AIOKafkaProducer`` of ``app``'s producer (raises Faust's NotReady before)."""
    return app.producer._ensure_producer()


# ------------------------------------------------------------------ RocksDB store


def rocksdb_for_partition(store: Any, partition: int) -> Any:
    """The RocksDB database of ``partition`` (opened on first use)."""
    return store._db_for_partition(partition)


def rocksdb_databases(store: Any) -> Iterator[tuple[int, Any]]:
    """Every open partition database."""
    return iter(list(store._dbs.items()))


def forget_key_partitions(store: Any, keys: Iterable[bytes]) -> None:
    """Drop ``keys`` from Faust's key -> partition cache (its own reads use it; ours compute the
    partition). A key never changes partition, so entries only need to go when a key is deleted."""
    index = store._key_index
    for k in keys:
        index.pop(k, None)
