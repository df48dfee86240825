"""Embedded mode's state backend: the stage states and the input offset in one SQLite file.

A batch's state changes and the log offset it reached are written in one transaction (WAL,
``synchronous=FULL``), after its rows are stored in ClickHouse. After a crash the state is exactly the
state of the committed offset, and the log is replayed from there: nothing is applied twice or lost.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS state (stage TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,
                                  PRIMARY KEY (stage, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


class StateError(Exception):
    """A SQLite operation failed. ``retriable``: the condition can pass (a full disk, a locked or busy
    database, an I/O error); the batch is then retried from the committed state."""

    def __init__(self, message: str, *, retriable: bool):
        super().__init__(message)
        self.retriable = retriable


@contextmanager
def _sqlite_errors(what: str) -> Iterator[None]:
    try:
        yield
    except sqlite3.OperationalError as exc:  # SQLITE_FULL, SQLITE_IOERR, SQLITE_BUSY, SQLITE_LOCKED, ...
        raise StateError(f"state {what} failed: {exc}", retriable=True) from exc
    except sqlite3.DatabaseError as exc:  # corruption, constraint violations: not going to pass by itself
        raise StateError(f"state {what} failed: {exc}", retriable=False) from exc


class _StageTable:
    def __init__(self, owner: SqliteState, stage: str):
        self.owner = owner
        self.stage = stage

    def get(self, key: str) -> bytes | None:
        with self.owner.lock, _sqlite_errors("read"):
            row = self.owner.conn.execute(
                "SELECT value FROM state WHERE stage = ? AND key = ?", (self.stage, key)
            ).fetchone()
        return None if row is None else bytes(row[0])

    def get_many(self, keys: list[str]) -> dict[str, bytes]:
        """The values of those of ``keys`` that exist: one query per 500 keys instead of one per key."""
        found: dict[str, bytes] = {}
        with self.owner.lock, _sqlite_errors("read"):
            for lo in range(0, len(keys), 500):
                chunk = keys[lo : lo + 500]
                rows = self.owner.conn.execute(
                    f"SELECT key, value FROM state WHERE stage = ? AND key IN ({','.join('?' * len(chunk))})",
                    (self.stage, *chunk),
                ).fetchall()
                found.update((str(k), bytes(v)) for k, v in rows)
        return found

    def write_many(self, puts: list[tuple[str, bytes]], deletes: list[str]) -> None:
        """Several puts and deletes of distinct keys, in two statements."""
        with self.owner.lock, _sqlite_errors("write"):
            if puts:
                self.owner.conn.executemany(
                    "INSERT OR REPLACE INTO state (stage, key, value) VALUES (?, ?, ?)",
                    [(self.stage, k, v) for k, v in puts],
                )
            if deletes:
                self.owner.conn.executemany(
                    "DELETE FROM state WHERE stage = ? AND key = ?", [(self.stage, k) for k in deletes]
                )

    def put(self, key: str, value: bytes) -> None:
        with self.owner.lock, _sqlite_errors("write"):
            self.owner.conn.execute(
                "INSERT OR REPLACE INTO state (stage, key, value) VALUES (?, ?, ?)", (self.stage, key, value)
            )

    def delete(self, key: str) -> None:
        with self.owner.lock, _sqlite_errors("write"):
            self.owner.conn.execute("DELETE FROM state WHERE stage = ? AND key = ?", (self.stage, key))

    def items(self) -> Iterator[tuple[str, bytes]]:
        with self.owner.lock, _sqlite_errors("read"):
            rows = self.owner.conn.execute(
                "SELECT key, value FROM state WHERE stage = ?", (self.stage,)
            ).fetchall()
        return iter([(str(k), bytes(v)) for k, v in rows])


class SqliteState:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        # used from the runner's executor threads, one at a time (serialized by ``lock``)
        self.conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level="DEFERRED")
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.executescript(_SCHEMA)
        self.conn.commit()

    def store(self, stage: str) -> _StageTable:
        """A stage's table (or another step's: the counting step's ``counting``)."""
        return _StageTable(self, stage)

    def offset(self) -> int | None:
        with self.lock:
            row = self.conn.execute("SELECT value FROM meta WHERE name = 'offset'").fetchone()
        return None if row is None else int(row[0])

    def commit(self, offset: int) -> None:
        with self.lock, _sqlite_errors("commit"):
            self.conn.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('offset', ?)", (offset,))
            self.conn.commit()

    def commit_writes(self) -> None:
        """Make writes made outside a batch durable (the offset unchanged): the counting step's origin."""
        with self.lock, _sqlite_errors("commit"):
            self.conn.commit()

    def rollback(self) -> None:
        with self.lock, _sqlite_errors("rollback"):
            self.conn.rollback()

    def close(self) -> None:
        with self.lock:
            self.conn.close()
