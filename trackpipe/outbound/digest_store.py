"""Where a worker's outbound planner keeps the digests of its partitions (decision 168).

The digests (what each conversion has announced: webhooks, postbacks, the public stream) are the state
of :mod:`trackpipe.outbound.kafka_planner`; their truth is the compacted topic ``<events>.outbound-state``,
read into this store when a partition is assigned and written to after each acknowledged batch. There is
one digest per conversion key ever announced, so a store in the heap grows with the conversions a worker
has seen: 390k digests (~110 MB of Python objects) after 1M events of the bench's stream. With the
worker's default ``rocksdb://`` store they live in a RocksDB database in the worker's data directory
instead (bounded buffers, the rest on disk); with ``memory://`` in dicts, as before.

The database is a cache of the topic, never its source: it is emptied when the worker starts (the
directory is the worker's alone, under its ``worker.lock``) and a partition's range is emptied before the
partition is read again, so a crash at any point leaves nothing that is read back. Writes skip the WAL
for the same reason.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Protocol, cast

import rocksdict

#: Two 1 MB memtables and a 2 MB block cache, as the stage tables have (decision 165).
_WRITE_BUFFER_BYTES = 2**20
_BLOCK_CACHE_BYTES = 2 * 2**20


class DigestStore(Protocol):
    """Digests by partition and key (``str``), values as the digests' JSON bytes."""

    def reset(self, partition: int) -> None:
        """Forget everything held for ``partition`` (before it is read again, or when it is revoked)."""

    def apply(self, partition: int, key: str, value: bytes | None) -> None:
        """One record of the state topic: a digest, or ``None`` (a tombstone)."""

    def get_many(self, partition: int, keys: Iterable[str]) -> dict[str, bytes]:
        """The digests held for those of ``keys`` that have one."""

    def put_many(self, partition: int, changed: Mapping[str, bytes]) -> None:
        """Digests acknowledged by the state topic."""

    def close(self) -> None: ...


class MemoryDigests:
    """In the heap (``memory://`` workers, tests)."""

    def __init__(self) -> None:
        self._parts: dict[int, dict[str, bytes]] = {}

    def reset(self, partition: int) -> None:
        self._parts.pop(partition, None)

    def apply(self, partition: int, key: str, value: bytes | None) -> None:
        held = self._parts.setdefault(partition, {})
        if value is None:
            held.pop(key, None)
        else:
            held[key] = value

    def get_many(self, partition: int, keys: Iterable[str]) -> dict[str, bytes]:
        held = self._parts.get(partition, {})
        return {k: v for k in keys if (v := held.get(k)) is not None}

    def put_many(self, partition: int, changed: Mapping[str, bytes]) -> None:
        self._parts.setdefault(partition, {}).update(changed)

    def close(self) -> None:
        self._parts.clear()


def _prefix(partition: int) -> bytes:
    return partition.to_bytes(4, "big")


class RocksDigests:
    """In one RocksDB database, keys prefixed by their partition (``rocksdb://`` workers)."""

    def __init__(self, path: Path):
        shutil.rmtree(path, ignore_errors=True)  # a cache of the topic: never read back after a restart
        path.parent.mkdir(parents=True, exist_ok=True)
        options = rocksdict.Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_write_buffer_size(_WRITE_BUFFER_BYTES)
        options.set_max_write_buffer_number(2)
        table = rocksdict.BlockBasedOptions()
        table.set_block_cache(rocksdict.Cache(_BLOCK_CACHE_BYTES))
        options.set_block_based_table_factory(table)
        self._db = rocksdict.Rdict(str(path), options=options)
        writes = rocksdict.WriteOptions()
        writes.disable_wal = True  # type: ignore[assignment]  # an attribute; rocksdict 0.3.29's stub says method
        self._db.set_write_options(writes)

    def reset(self, partition: int) -> None:
        self._db.delete_range(_prefix(partition), _prefix(partition + 1))

    def apply(self, partition: int, key: str, value: bytes | None) -> None:
        k = _prefix(partition) + key.encode()
        if value is None:
            self._db.delete(k)
        else:
            self._db.put(k, value)

    def get_many(self, partition: int, keys: Iterable[str]) -> dict[str, bytes]:
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}
        prefix = _prefix(partition)
        found = cast(list[bytes | None], self._db.get([prefix + k.encode() for k in wanted]))  # multi-get
        return {k: v for k, v in zip(wanted, found, strict=True) if v is not None}

    def put_many(self, partition: int, changed: Mapping[str, bytes]) -> None:
        if not changed:
            return
        prefix = _prefix(partition)
        batch = rocksdict.WriteBatch(raw_mode=True)
        for k, v in changed.items():
            batch.put(prefix + k.encode(), v)
        self._db.write(batch)

    def close(self) -> None:
        self._db.close()


def digest_store(worker_store: str, data_dir: Path) -> DigestStore:
    """RocksDB under the worker's data directory when its tables are in RocksDB, else the heap."""
    if worker_store.startswith("rocksdb"):
        return RocksDigests(data_dir / "outbound-state")
    return MemoryDigests()
