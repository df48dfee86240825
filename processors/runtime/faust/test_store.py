"""The table-state adapters on real Faust stores (RocksDB in a temp dir, memory). The changelog topic is a
recorder whose sends the test acknowledges; tests/integration/test_processing_rocksdb.py uses the broker."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from pathlib import Path
from typing import Any

import faust
import pytest
from faust.types import TP
from faust.types.tuples import RecordMetadata

from processors.runtime.faust.store import MemoryState, RocksDBState, partition_for, table_state

PARTITIONS = 4
KEYS = [f"key-{i}" for i in range(20)]


class Changelog:
    """Stands in for the table's changelog on Kafka: acknowledges each batch it is sent (offsets counted
    per partition) unless it holds the key ``fail``."""

    def __init__(self, fail: bytes | None = None) -> None:
        self.sent: list[tuple[int, bytes, bytes | None]] = []
        self.batches = 0
        self.next_offset: dict[int, int] = defaultdict(int)
        self.fail = fail

    def get_topic_name(self) -> str:
        return "app-t-changelog"

    async def send(self, partition: int, records: list[tuple[bytes, bytes | None]]) -> list[Any]:
        fut = asyncio.get_running_loop().create_future()
        self.batches += 1
        self.sent.extend((partition, k, v) for k, v in records)
        if any(k == self.fail for k, _ in records):
            fut.set_exception(RuntimeError("not acknowledged"))
        else:
            tp = TP(self.get_topic_name(), partition)
            fut.set_result(RecordMetadata(tp.topic, partition, tp, self.next_offset[partition]))
            self.next_offset[partition] += len(records)
        return [(fut, len(records))]


def make_table(tmp_path: Path, store: str) -> tuple[Any, Changelog]:
    app = faust.App(f"app-{tmp_path.name}", store=store, datadir=str(tmp_path), autodiscover=False)
    table = app.Table(
        "t", default=None, key_type=bytes, value_type=bytes, partitions=PARTITIONS, use_partitioner=True
    )
    return table, Changelog()


def stored(table: Any) -> dict[int, dict[bytes, bytes]]:
    """What each partition database holds (the persisted offset left out)."""
    store = table.data
    return {
        p: {bytes(k): bytes(v) for k, v in store._db_for_partition(p).items() if k != store.offset_key}
        for p in range(PARTITIONS)
    }


async def test_rocksdb_writes_land_in_the_keys_partition_after_the_ack(tmp_path: Path) -> None:
    table, changelog = make_table(tmp_path, "rocksdb://")
    state = table_state(table, PARTITIONS, changelog)
    assert isinstance(state, RocksDBState)
    sent = [state.put(k, k.encode() + b"=1") for k in KEYS]
    assert [p for p, *_ in sent] == [partition_for(k, PARTITIONS) for k in KEYS]
    assert state.get(KEYS[0]) is None and not changelog.sent  # not before the changelog has it
    await state.delivered(sent)
    assert sorted(changelog.sent, key=repr) == sorted(sent, key=repr)
    assert changelog.batches == len({p for p, *_ in sent})  # one record batch per partition

    want: dict[int, dict[bytes, bytes]] = {p: {} for p in range(PARTITIONS)}
    for k in KEYS:
        want[partition_for(k, PARTITIONS)][k.encode()] = k.encode() + b"=1"
    assert stored(table) == want
    assert len({p for p, kv in want.items() if kv}) > 1  # the keys span several partitions
    assert all(state.get(k) == k.encode() + b"=1" for k in KEYS)
    assert sorted(state.items()) == sorted((k, k.encode() + b"=1") for k in KEYS)
    for p in range(PARTITIONS):  # each database says which changelog records it holds
        held = table.data.persisted_offset(TP("app-t-changelog", p))
        assert held == (changelog.next_offset[p] - 1 if want[p] else None)
    assert table.data[KEYS[0].encode()] == KEYS[0].encode() + b"=1"  # Faust's own read agrees
    assert table.data._key_index[KEYS[0].encode()] == partition_for(KEYS[0], PARTITIONS)

    # delete: a tombstone for a present key, nothing for an absent one
    n = len(changelog.sent)
    tombstone = state.delete(KEYS[0])
    assert tombstone is not None and state.delete("absent") is None
    sent = [tombstone, state.put(KEYS[1], b"v2")]
    await state.delivered(sent)
    assert (
        len(changelog.sent) == n + 2
        and (partition_for(KEYS[0], PARTITIONS), KEYS[0].encode(), None) in changelog.sent
    )
    assert state.get(KEYS[0]) is None and state.get(KEYS[1]) == b"v2"
    assert KEYS[0].encode() not in table.data._key_index
    assert KEYS[0] not in dict(state.items())


async def test_rocksdb_nothing_is_written_when_an_ack_fails(tmp_path: Path) -> None:
    table, changelog = make_table(tmp_path, "rocksdb://")
    changelog.fail = KEYS[3].encode()
    state = table_state(table, PARTITIONS, changelog)
    sent = [state.put(k, b"v") for k in KEYS[:6]]
    with pytest.raises(RuntimeError, match="not acknowledged"):
        await state.delivered(sent)
    assert stored(table) == {p: {} for p in range(PARTITIONS)}
    assert all(table.data.persisted_offset(TP("app-t-changelog", p)) is None for p in range(PARTITIONS))


async def test_memory_store_writes_at_once_and_sends_the_changelog(tmp_path: Path) -> None:
    table, changelog = make_table(tmp_path, "memory://")
    state = table_state(table, PARTITIONS, changelog)
    assert type(state) is MemoryState
    sent = [state.put(k, b"v") for k in KEYS[:3]]
    assert state.get(KEYS[0]) == b"v" and table.data[KEYS[0].encode()] == b"v"
    tombstone = state.delete(KEYS[0])
    assert tombstone is not None and state.delete("absent") is None
    sent.append(tombstone)
    await state.delivered(sent)
    assert sorted(changelog.sent, key=repr) == sorted(sent, key=repr)
    assert sorted(state.items()) == [(KEYS[1], b"v"), (KEYS[2], b"v")]
