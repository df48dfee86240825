"""The interface our ClickHouse sinks write through, with two implementations.

* :class:`sinks.server_backend.ServerBackend` - a ClickHouse server over HTTP (clickhouse-connect).
* :class:`sinks.chdb_backend.ChdbBackend` - chdb's in-process engine on a local path.

All methods are synchronous and may block; async callers run them in an executor. Implementations are
safe to share between threads.

Contract common to both backends:

* ``database`` is the default database for ``command``/``query`` and the target of ``insert_arrow``.
  It is created (``CREATE DATABASE IF NOT EXISTS``) on first use if it does not exist yet.
* ``params`` are bound by the engine (server-side ``{name:Type}`` placeholders), never formatted into
  the SQL text. Values are rendered with clickhouse-connect's bind formatting in both backends, so a
  given Python value means the same thing for both.
* ``insert_arrow`` matches Arrow columns to table columns by name. With ``dedup_token`` the insert is
  idempotent: a retry with the same token (and the same data) is dropped by the engine. This needs
  ``non_replicated_deduplication_window`` > 0 on plain MergeTree-family tables (Replicated tables
  deduplicate by default). Materialized views only deduplicate if their target table has a
  deduplication window too (``deduplicate_blocks_in_dependent_materialized_views`` is sent as 1).
* Every failure is raised as :class:`BackendError`; ``retriable`` tells a sink whether retrying the
  same call (with the same dedup token) can succeed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import pyarrow

__all__ = [
    "RETRIABLE_ERROR_CODES",
    "BackendError",
    "ClickHouseBackend",
    "error_code_from_message",
    "quote_identifier",
]

#: ClickHouse error codes for conditions that can go away by themselves (overload, network, timeouts,
#: replication/keeper trouble, unknown insert outcome, a full disk, and a schema behind this release:
#: a missing table, column or database waits for `trackpipe migrate` instead of quarantining data,
#: decision 72). Everything else (syntax, types, access) is permanent for the same request.
RETRIABLE_ERROR_CODES: frozenset[int] = frozenset(
    {
        16,  # NO_SUCH_COLUMN_IN_TABLE
        60,  # UNKNOWN_TABLE
        81,  # UNKNOWN_DATABASE
        3,  # UNEXPECTED_END_OF_FILE
        32,  # ATTEMPT_TO_READ_AFTER_EOF
        159,  # TIMEOUT_EXCEEDED
        201,  # QUOTA_EXCEEDED
        202,  # TOO_MANY_SIMULTANEOUS_QUERIES
        203,  # NO_FREE_CONNECTION
        209,  # SOCKET_TIMEOUT
        210,  # NETWORK_ERROR
        225,  # NO_ZOOKEEPER
        236,  # ABORTED
        241,  # MEMORY_LIMIT_EXCEEDED
        243,  # NOT_ENOUGH_SPACE (a full disk: retried until space returns, issue 11)
        242,  # TABLE_IS_READ_ONLY
        252,  # TOO_MANY_PARTS
        279,  # ALL_CONNECTION_TRIES_FAILED
        285,  # TOO_FEW_LIVE_REPLICAS
        319,  # UNKNOWN_STATUS_OF_INSERT
        394,  # QUERY_WAS_CANCELLED
        425,  # SYSTEM_ERROR
        439,  # CANNOT_SCHEDULE_TASK
        735,  # QUERY_WAS_CANCELLED_BY_CLIENT
        999,  # KEEPER_EXCEPTION
        1000,  # POCO_EXCEPTION
    }
)

_CODE_RE = re.compile(r"\bCode:\s*(\d+)")


def error_code_from_message(message: str) -> int | None:
    """The first ``Code: N`` in a ClickHouse error message, if any."""
    match = _CODE_RE.search(message)
    return int(match.group(1)) if match else None


def quote_identifier(name: str) -> str:
    """Quote a database/table/column name for ClickHouse SQL (backticks, escaped)."""
    if not name:
        raise ValueError("empty identifier")
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


class BackendError(Exception):
    """A ClickHouse operation failed.

    :ivar retriable: True if retrying the same operation may succeed (server down or overloaded,
        timeouts, network errors); False for errors in the request itself (syntax, types, unknown table).
    :ivar code: the ClickHouse error code, when known.
    """

    def __init__(self, message: str, *, retriable: bool, code: int | None = None) -> None:
        super().__init__(message)
        self.retriable = retriable
        self.code = code

    @classmethod
    def from_code(cls, message: str, code: int | None, *, default_retriable: bool = False) -> BackendError:
        retriable = code in RETRIABLE_ERROR_CODES if code is not None else default_retriable
        return cls(message, retriable=retriable, code=code)

    def __repr__(self) -> str:
        return f"BackendError({str(self)!r}, retriable={self.retriable}, code={self.code})"


@runtime_checkable
class ClickHouseBackend(Protocol):
    """What a sink needs from ClickHouse. See the module docstring for the shared contract."""

    database: str

    def command(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        """Run a statement that returns no rows (DDL, INSERT ... SELECT, OPTIMIZE, ...)."""
        ...

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Run a SELECT; rows as tuples of Python values (``{name:Type}`` params bound server-side)."""
        ...

    def insert_arrow(self, table: str, data: pyarrow.Table, *, dedup_token: str | None = None) -> None:
        """Insert ``data`` into ``database.table`` (``table`` unqualified), optionally idempotently."""
        ...

    def server_version(self) -> str:
        """The engine's version string, e.g. ``26.9.2.1``."""
        ...

    def close(self) -> None:
        """Release connections/engine handles. Idempotent."""
        ...
