"""Keyed state for the stages: a tiny key -> bytes interface, and the staging that orders state writes.

A stage reads and writes its state through :class:`StagedStore`: writes are held back until the runner
calls ``commit()``, which it does only after the batch's rows are in ClickHouse and its messages are on
their topics. So state that survived a crash always describes output that was delivered.

Values are ``8-byte big-endian expiry (unix ms)`` + the state's JSON; :func:`expired_keys` finds keys
past their expiry without decoding them.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

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
    """Holds a batch's state writes back until ``commit()``.

    Stages may stage a decoded state object instead of bytes (:meth:`put_object`): it is kept as is, handed
    back by :meth:`get_object` for the rest of the batch (no decode), and encoded once, when the batch
    commits (or when someone reads its bytes). So a key touched several times in a batch is decoded once
    and encoded once."""

    def __init__(self, backing: KeyValueStore):
        self.backing = backing
        #: the backing store reads many keys at once (``get_many``: SQLite): ``prefetch`` is worth calling
        self.reads_ahead = hasattr(backing, "get_many")
        self.staged: dict[str, bytes | None] = {}
        self.fetched: dict[str, bytes | None] = {}  # read ahead by prefetch (None: absent), this batch
        # key -> (state, its encoder, expiry): no closure per key (fewer objects for the collector)
        self.objects: dict[str, tuple[Any, Callable[[Any], bytes], int]] = {}

    def get(self, key: str) -> bytes | None:
        if key in self.objects:
            return self._encode(key)
        if key in self.staged:
            return self.staged[key]
        if key in self.fetched:
            return self.fetched[key]
        return self.backing.get(key)

    def prefetch(self, keys: Iterable[str]) -> None:
        """Read ``keys`` from a backing store that reads many at once (``get_many``: SQLite) in one go,
        for this batch's later ``get``s (a no-op for other stores)."""
        get_many = getattr(self.backing, "get_many", None)
        if get_many is None:
            return
        wanted = [
            k for k in set(keys) if k not in self.objects and k not in self.staged and k not in self.fetched
        ]
        if wanted:
            found = get_many(wanted)
            for k in wanted:
                self.fetched[k] = found.get(k)

    def put(self, key: str, value: bytes) -> None:
        self.objects.pop(key, None)
        self.staged[key] = value

    def delete(self, key: str) -> None:
        self.objects.pop(key, None)
        self.staged[key] = None

    def get_object(self, key: str) -> Any | None:
        """The state object staged for ``key`` in this batch, if any (it is live: see put_object)."""
        held = self.objects.get(key)
        return None if held is None else held[0]

    def put_object(self, key: str, state: Any, encode: Callable[[Any], bytes], expires_ms: int) -> None:
        """Stage ``state`` for ``key``; ``encode(state)`` makes its bytes at commit time (stored with
        ``expires_ms``: see :func:`pack`). The caller must ``put_object`` again after any later change to
        the object (and never change it otherwise)."""
        self.staged.pop(key, None)
        self.objects[key] = (state, encode, expires_ms)

    def _encode(self, key: str) -> bytes:
        state, encode, expires_ms = self.objects[key]
        return _EXP.pack(expires_ms) + encode(state)

    def items(self) -> Iterator[tuple[str, bytes]]:
        seen = set()
        for k in list(self.objects):
            seen.add(k)
            yield k, self._encode(k)
        for k, v in list(self.staged.items()):
            if k in seen:
                continue
            seen.add(k)
            if v is not None:
                yield k, v
        for k, v in self.backing.items():
            if k not in seen:
                yield k, v

    def commit(self) -> int:
        """Apply the staged writes to the backing store; return how many."""
        for k in self.objects:
            self.staged[k] = self._encode(k)
        self.objects.clear()
        self.fetched.clear()
        n = len(self.staged)
        write_many = getattr(self.backing, "write_many", None)
        if write_many is not None:  # SQLite: two statements for the batch, not one per key
            write_many(
                [(k, v) for k, v in self.staged.items() if v is not None],
                [k for k, v in self.staged.items() if v is None],
            )
        else:
            for k, v in self.staged.items():
                if v is None:
                    self.backing.delete(k)
                else:
                    self.backing.put(k, v)
        self.staged.clear()
        return n

    def discard(self) -> None:
        self.staged.clear()
        self.objects.clear()
        self.fetched.clear()


def pack(expires_ms: int, payload: bytes) -> bytes:
    return _EXP.pack(expires_ms) + payload


def unpack(value: bytes) -> tuple[int, bytes]:
    return _EXP.unpack_from(value)[0], value[_EXP.size :]


def expired_keys(store: KeyValueStore, now_ms: int) -> list[str]:
    return [k for k, v in store.items() if _EXP.unpack_from(v)[0] < now_ms]


#: Expired state is swept when stream time moved on by an hour.
SWEEP_EVERY_MS = 3_600_000


class Sweeper:
    """Deletes expired keys of each store once stream time moved on by ``every_ms`` since its last sweep
    (the deletes are staged like any write and committed with the batch). One per runtime, shared by
    its stages."""

    def __init__(self, every_ms: int = SWEEP_EVERY_MS):
        self.every_ms = every_ms
        self._swept_ms: dict[str, int] = {}

    def maybe_sweep(self, name: str, store: KeyValueStore, now_ms: int) -> int:
        if now_ms - self._swept_ms.get(name, 0) < self.every_ms:
            return 0
        self._swept_ms[name] = now_ms
        expired = expired_keys(store, now_ms)
        for key in expired:
            store.delete(key)
        return len(expired)
