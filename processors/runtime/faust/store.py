"""How the Faust worker reads and writes a table's storage: the memory store, or one RocksDB per partition.

Every record and every state key goes to the partition :func:`partition_for` computes (Kafka's default
partitioner), so a key's state lives in the changelog partition of its input partition. A batch holds
keys of many partitions, so the writes cannot go through Faust's own ``table[key] = value``: its RocksDB
store puts the value into the database of the *current event's* partition.

:class:`MemoryState` writes the table's dict and sends the changelog record (what Faust does for a
memory table). :class:`RocksDBState` writes to the database of the key's partition, and only once the
changelog record is acknowledged, together with that partition's persisted changelog offset (one
RocksDB write batch): the database never holds state the changelog lacks, and the offset never claims
state the database lacks. After a restart Faust's recovery reads the changelog from that offset on, so
a crash between the acknowledgement and the write is repaired from the changelog. (Faust's own
``send_changelog`` would store the offset from its send callback, before our write: not used here; nor
for the memory store, see :class:`KafkaChangelog`.) A batch's changelog records are sent when the batch
commits, one Kafka record batch per partition.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import rocksdict
from faust.stores.rocksdb import Store as RocksDBStore

from processors.runtime.faust import private
from schemas.partitioning import partition_for

#: A changelog write: (partition, key, value); value None is a deletion (a tombstone).
Pending = tuple[int, bytes, bytes | None]


class KafkaChangelog:
    """Sends a table's changelog records straight to the app's Kafka producer, one record batch per
    partition (a new one whenever a batch is full), instead of Faust's ``send_changelog``: that hands each
    record to the producer on its own through a buffer task, which cost the worker ~70 us of its event
    loop per key (~6,000 keys per 10k-event batch across the stages; decision 160)."""

    def __init__(self, table: Any, producer: Callable[[], Any] | None = None):
        self.table = table
        # the app's aiokafka producer exists once the app started: looked up at each send
        self.producer = producer or (lambda: private.kafka_producer(table.app))

    async def send(self, partition: int, records: Sequence[tuple[bytes, bytes | None]]) -> list[Any]:
        """Queue ``records`` for ``partition``; return ``(future, n)`` per record batch: the future gives
        the batch's first offset once the broker acknowledged it, ``n`` its records."""
        producer = self.producer()
        topic = self.table.changelog_topic.get_topic_name()
        acks: list[Any] = []
        batch, n = producer.create_batch(), 0
        for k, v in records:
            if batch.append(key=k, value=v, timestamp=None) is None:  # full
                acks.append((await producer.send_batch(batch, topic, partition=partition), n))
                batch, n = producer.create_batch(), 0
                if batch.append(key=k, value=v, timestamp=None) is None:
                    raise ValueError(f"{topic}: a changelog record of {len(v or b'')} bytes fits no batch")
            n += 1
        if n:
            acks.append((await producer.send_batch(batch, topic, partition=partition), n))
        return acks


async def send_all(changelog: Any, sent: Sequence[Pending]) -> dict[int, int]:
    """Send ``sent`` (in order per partition) and wait for every acknowledgement; return each partition's
    highest changelog offset."""
    by_part: dict[int, list[tuple[bytes, bytes | None]]] = defaultdict(list)
    for part, k, v in sent:
        by_part[part].append((k, v))
    acks = [(part, ack) for part, records in by_part.items() for ack in await changelog.send(part, records)]
    offsets: dict[int, int] = {}
    for part, (fut, n) in acks:
        meta = await fut
        offsets[part] = max(offsets.get(part, -1), meta.offset + n - 1)
    return offsets


class MemoryState:
    """A table with Faust's memory store: ``table.data`` is a dict of bytes keys and values.
    ``changelog``: where the changelog records go (default: :class:`KafkaChangelog`)."""

    def __init__(self, table: Any, partitions: int, changelog: Any = None):
        self.table = table
        self.partitions = partitions
        self.changelog = changelog if changelog is not None else KafkaChangelog(table)

    def get(self, key: str) -> bytes | None:
        value = self.table.data.get(key.encode())
        return None if value is None else bytes(value)

    def put(self, key: str, value: bytes) -> Pending:
        """Write ``key``; return its changelog record, for :meth:`delivered`."""
        k = key.encode()
        self.table.data[k] = value
        return partition_for(key, self.partitions), k, value

    def delete(self, key: str) -> Pending | None:
        """Delete ``key`` if present; return its tombstone for :meth:`delivered`, None if it was absent."""
        k = key.encode()
        if k not in self.table.data:
            return None
        del self.table.data[k]
        return partition_for(key, self.partitions), k, None

    def items(self) -> Iterator[tuple[str, bytes]]:
        """Every stored key of every partition this process has (the caller filters owned keys)."""
        for k, v in list(self.table.data.items()):
            if v is not None:
                yield (k.decode() if isinstance(k, bytes) else str(k)), bytes(v)

    async def delivered(self, sent: Sequence[Pending]) -> None:
        """Send the changelog records ``sent`` (from put/delete) and wait until all are acknowledged."""
        await send_all(self.changelog, sent)


class RocksDBState(MemoryState):
    """A table with Faust's RocksDB store (one database per changelog partition).

    :meth:`put` and :meth:`delete` only return the changelog record; :meth:`delivered` sends them, waits
    for the acknowledgements, then writes the values and each partition's newest acknowledged offset in
    one write batch per partition database. Until then the new values are not readable: the runner reads
    state only between batches (the stage's staged store holds a batch's writes), and waits for
    ``delivered`` before the next batch."""

    def __init__(self, table: Any, partitions: int, changelog: Any = None):
        super().__init__(table, partitions, changelog)
        self.store = table.data

    def get(self, key: str) -> bytes | None:
        db = private.rocksdb_for_partition(self.store, partition_for(key, self.partitions))
        value = db.get(key.encode())
        return None if value is None else bytes(value)

    def put(self, key: str, value: bytes) -> Pending:
        return partition_for(key, self.partitions), key.encode(), value

    def delete(self, key: str) -> Pending | None:
        k = key.encode()
        part = partition_for(key, self.partitions)
        if private.rocksdb_for_partition(self.store, part).get(k) is None:
            return None
        return part, k, None

    def items(self) -> Iterator[tuple[str, bytes]]:
        offset_key = self.store.offset_key
        for _partition, db in private.rocksdb_databases(self.store):
            for k, v in db.items():
                if k != offset_key and v is not None:
                    yield bytes(k).decode(), bytes(v)

    async def delivered(self, sent: Sequence[Pending]) -> None:
        offsets = await send_all(self.changelog, sent)
        batches: dict[int, Any] = defaultdict(lambda: rocksdict.WriteBatch(raw_mode=True))
        deleted: list[bytes] = []
        for part, k, value in sent:
            if value is None:
                batches[part].delete(k)
                deleted.append(k)
            else:
                batches[part].put(k, value)
        for part, batch in batches.items():
            batch.put(self.store.offset_key, str(offsets[part]).encode())
            private.rocksdb_for_partition(self.store, part).write(batch)
        private.forget_key_partitions(self.store, deleted)  # a put would cost ~6 us; deletes only


def table_state(table: Any, partitions: int, changelog: Any = None) -> MemoryState:
    """The adapter for ``table``'s store: :class:`RocksDBState` for RocksDB, else :class:`MemoryState`."""
    if isinstance(table.data, RocksDBStore):
        return RocksDBState(table, partitions, changelog)
    return MemoryState(table, partitions, changelog)
