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
``send_changelog`` would store the offset from its send callback, before our write: not used here.)
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

import rocksdict
from faust.stores.rocksdb import Store as RocksDBStore

from processors.runtime.faust import private
from schemas.partitioning import partition_for


class MemoryState:
    """A table with Faust's memory store: ``table.data`` is a dict of bytes keys and values."""

    def __init__(self, table: Any, partitions: int):
        self.table = table
        self.partitions = partitions

    def get(self, key: str) -> bytes | None:
        value = self.table.data.get(key.encode())
        return None if value is None else bytes(value)

    def put(self, key: str, value: bytes) -> Any:
        """Write ``key``; return what :meth:`delivered` awaits (the changelog record's future)."""
        k = key.encode()
        self.table.data[k] = value
        return self.table.send_changelog(partition_for(key, self.partitions), k, value)

    def delete(self, key: str) -> Any | None:
        """Delete ``key`` if present; return what :meth:`delivered` awaits, None if nothing was sent."""
        k = key.encode()
        if k not in self.table.data:
            return None
        del self.table.data[k]
        part = partition_for(key, self.partitions)
        return self.table.send_changelog(part, k, None, value_serializer="raw")

    def items(self) -> Iterator[tuple[str, bytes]]:
        """Every stored key of every partition this process has (the caller filters owned keys)."""
        for k, v in list(self.table.data.items()):
            if v is not None:
                yield (k.decode() if isinstance(k, bytes) else str(k)), bytes(v)

    async def delivered(self, sent: Sequence[Any]) -> None:
        """Wait until every changelog record in ``sent`` (from put/delete) is acknowledged."""
        for fut in sent:
            await fut


class RocksDBState(MemoryState):
    """A table with Faust's RocksDB store (one database per changelog partition).

    :meth:`put` and :meth:`delete` send the changelog record and return ``(future, key, value)``;
    :meth:`delivered` waits for the acknowledgements, then writes the values and each partition's
    newest acknowledged offset in one write batch per partition database. Until then the new values are
    not readable: the runner reads state only between batches (the stage's staged store holds a
    batch's writes), and waits for ``delivered`` before the next batch."""

    def __init__(self, table: Any, partitions: int):
        super().__init__(table, partitions)
        self.store = table.data

    def get(self, key: str) -> bytes | None:
        db = private.rocksdb_for_partition(self.store, partition_for(key, self.partitions))
        value = db.get(key.encode())
        return None if value is None else bytes(value)

    def _send(self, key: str, k: bytes, value: bytes | None) -> tuple[Any, bytes, bytes | None]:
        fut = self.table.changelog_topic.send_soon(
            key=k,
            value=value,
            partition=partition_for(key, self.partitions),
            key_serializer="raw",
            value_serializer="raw",
            eager_partitioning=True,
        )
        return fut, k, value

    def put(self, key: str, value: bytes) -> Any:
        return self._send(key, key.encode(), value)

    def delete(self, key: str) -> Any | None:
        k = key.encode()
        if private.rocksdb_for_partition(self.store, partition_for(key, self.partitions)).get(k) is None:
            return None
        return self._send(key, k, None)

    def items(self) -> Iterator[tuple[str, bytes]]:
        offset_key = self.store.offset_key
        for _partition, db in private.rocksdb_databases(self.store):
            for k, v in db.items():
                if k != offset_key and v is not None:
                    yield bytes(k).decode(), bytes(v)

    async def delivered(self, sent: Sequence[Any]) -> None:
        batches: dict[int, Any] = defaultdict(lambda: rocksdict.WriteBatch(raw_mode=True))
        offsets: dict[int, int] = {}
        deleted: list[bytes] = []
        for fut, k, value in sent:
            meta = await fut
            part = meta.partition
            if value is None:
                batches[part].delete(k)
                deleted.append(k)
            else:
                batches[part].put(k, value)
            offsets[part] = max(offsets.get(part, -1), meta.offset)
        for part, batch in batches.items():
            batch.put(self.store.offset_key, str(offsets[part]).encode())
            private.rocksdb_for_partition(self.store, part).write(batch)
        private.forget_key_partitions(self.store, deleted)  # a put would cost ~6 us; deletes only


def table_state(table: Any, partitions: int) -> MemoryState:
    """The adapter for ``table``'s store: :class:`RocksDBState` for RocksDB, else :class:`MemoryState`."""
    if isinstance(table.data, RocksDBStore):
        return RocksDBState(table, partitions)
    return MemoryState(table, partitions)
