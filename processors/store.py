"""Keyed state for the stages: a tiny key -> bytes interface, and the staging that orders state writes.

A stage reads and writes its state through :class:`StagedStore`: writes are held back until the runner
calls ``commit()``, which it does only after the batch's rows are in ClickHouse and its messages are on
their topics. So state that survived a crash always describes output that was delivered.

Values are ``8-byte big-endian expiry (unix ms)`` + the state's JSON; :func:`expired_keys` finds keys
past their expiry without decoding them.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Protocol

_EXP = struct.Struct(">q")


class KeyValueStore(Protocol):
    def get(self, key: str) -> bytes | None: ...

    def put(self, key: str, value: bytes) -> None: ...

    def delete(self, key: str) -> None: ...

    def items(self) -> Iterator[tuple[str, bytes]]:
        """Every key this process owns (for expiry sweeps)."""
        ...


class DictStore:
    """In-memory store (tests, and the base of the embedded SQLite store's cache)."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    def put(self, key: str, value: bytes) -> None:
        self.data[key] = value

    def delete(self, key: str) -> None:
        self.data.pop(key, None)

    def items(self) -> Iterator[tuple[str, bytes]]:
        return iter(list(self.data.items()))


class StagedStore:
    def __init__(self, backing: KeyValueStore):
        self.backing = backing
        self.staged: dict[str, bytes | None] = {}

    def get(self, key: str) -> bytes | None:
        if key in self.staged:
            return self.staged[key]
        return self.backing.get(key)

    def put(self, key: str, value: bytes) -> None:
        self.staged[key] = value

    def delete(self, key: str) -> None:
        self.staged[key] = None

    def items(self) -> Iterator[tuple[str, bytes]]:
        seen = set()
        for k, v in list(self.staged.items()):
            seen.add(k)
            if v is not None:
                yield k, v
        for k, v in self.backing.items():
            if k not in seen:
                yield k, v

    def commit(self) -> int:
        """Apply the staged writes to the backing store; return how many."""
        n = len(self.staged)
        for k, v in self.staged.items():
            if v is None:
                self.backing.delete(k)
            else:
                self.backing.put(k, v)
        self.staged.clear()
        return n

    def discard(self) -> None:
        self.staged.clear()


def pack(expires_ms: int, payload: bytes) -> bytes:
    return _EXP.pack(expires_ms) + payload


def unpack(value: bytes) -> tuple[int, bytes]:
    return _EXP.unpack_from(value)[0], value[_EXP.size :]


def expired_keys(store: KeyValueStore, now_ms: int) -> list[str]:
    return [k for k, v in store.items() if _EXP.unpack_from(v)[0] < now_ms]
