"""ClickHouseBackend on chdb's in-process engine (``chdb.session.Session`` on a persistent path).

Findings for chdb 4.4.0 / chdb-core 26.9 that shape this module:

Query parameters
    ``Session.query(sql, fmt, params={...})`` binds ``{name:Type}`` placeholders in the engine, like
    the server's HTTP ``param_*`` values (text in ClickHouse's escaped format, parsed as the declared
    type). Placeholders also work inside ``SETTINGS`` (used for the dedup token). To give values the
    same meaning as in :class:`sinks.server_backend.ServerBackend`, params are rendered with
    clickhouse-connect's own server-side bind logic (``bind_query``), and a call whose SQL has no
    ``{name:Type}`` placeholder for its params is rejected instead of falling back to client-side
    formatting. No value is ever formatted into SQL text.

Arrow inserts: ``INSERT INTO db.t (cols) SELECT cols FROM Python(name)``
    chdb resolves ``name`` when the query is submitted, on the calling thread: it extracts the names
    used in ``Python(...)`` from the SQL and walks the Python call stack from the innermost frame
    outwards (``inspect.currentframe()`` / ``f_back``), checking each frame's ``f_locals`` then
    ``f_globals`` for an object with that name that is a PyReader, DataFrame, Arrow table, has
    ``__arrow_c_stream__`` or has ``__getitem__``. The first match wins, so a common name could be
    captured by an unrelated variable of chdb's own wrapper frames (``query``/``params`` are str/dict,
    which have ``__getitem__``), and newer chdb versions share a binding between in-flight queries
    that use the same name. Hence every insert uses a fresh ``__trackpipe_arrow_<uuid>`` name, bound
    as a global of a throw-away function object (same code object, private globals dict) that makes
    the ``Session.query`` call - so it sits on the stack exactly for the duration of the call and is
    visible to nothing else. Measured: ~2-4 M rows/s for a mixed 7-column table.

    Arrow fields without nulls are marked non-nullable first: ``Python()`` types nullable fields as
    ``Nullable(T)``, and ClickHouse converts a Nullable source leniently on INSERT ... SELECT (a String
    that does not parse as the target type silently becomes the column default). With non-nullable
    sources the conversion is strict, matching the server's Arrow input. (Remaining difference: in a
    column that *has* nulls, an unparsable value still becomes the default instead of an error.)

Results
    Queries run with output format ``Native`` and are decoded by clickhouse-connect's own Native
    decoder (``tz_mode="schema"``), so rows have the same Python types as ServerBackend's (Enum ->
    str, IPv4 -> IPv4Address, Int128 -> int, Map -> dict, ...). chdb's Arrow output would give
    DateTime as an int, Enum/IPv4 as ints and is much slower to turn into rows. Difference left:
    chdb's Native output drops the zone of ``DateTime('tz')`` (not ``DateTime64('tz')``) columns, so
    those decode as naive UTC datetimes where the server gives aware ones.

Dedup
    ``insert_deduplication_token`` is honoured by chdb as by a server (MergeTree family tables with
    ``non_replicated_deduplication_window`` > 0). The SELECT runs with ``max_threads = 1`` so that a
    retry splits the data into the same blocks (tokens are per block: ``token_0``, ``token_1``...).

Concurrency and processes
    One process can have only one chdb path open at a time; another process opening the same path
    fails with "Cannot lock file .../status" until this backend is closed (closing releases the lock).
    ``Session`` is thread-safe except for streaming; this class additionally serializes all calls
    with a lock, so one instance can be shared by executor threads.

``chdb`` is imported lazily, so importing this module does not start an engine.
"""

from __future__ import annotations

import builtins
import datetime
import os
import threading
import types
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pyarrow as pa

from sinks.backend import BackendError, error_code_from_message, quote_identifier

__all__ = ["ChdbBackend", "native_rows"]

_INSERT_SETTINGS = (
    "insert_deduplicate = 1, "
    "deduplicate_blocks_in_dependent_materialized_views = 1, "
    "async_insert = 0, "
    "max_threads = 1, "
    "use_structure_from_insertion_table_in_table_functions = 0"
)
_DEDUP_PARAM = "__trackpipe_dedup_token"


def _call_in_frame(run: Callable[[], Any]) -> Any:
    """Code object reused by :func:`_run_with_bound_name` under a private globals dict."""
    return run()


def _run_with_bound_name(name: str, obj: Any, run: Callable[[], Any]) -> Any:
    """Call ``run()`` from a frame whose ``f_globals`` holds ``obj`` under ``name`` (for ``Python(name)``)."""
    scope: dict[str, Any] = {"__builtins__": builtins, name: obj}
    frame_fn = types.FunctionType(_call_in_frame.__code__, scope, "_trackpipe_chdb_python_scope")
    return frame_fn(run)


def _bind_params(sql: str, params: Mapping[str, Any] | None) -> dict[str, str]:
    """Render params as the engine's ``{name:Type}`` values (no ``param_`` prefix), server-side only."""
    if not params:
        return {}
    from clickhouse_connect.driver.binding import bind_query

    try:
        bound_sql, bound = bind_query(sql, dict(params), datetime.UTC)
    except Exception as exc:  # clickhouse-connect rejects malformed parameter usage
        raise BackendError(f"invalid query parameters: {exc}", retriable=False) from exc
    if not bound or not isinstance(bound_sql, str):
        raise BackendError(
            "params need {name:Type} placeholders in the SQL (values are bound by the engine, "
            "never formatted into the SQL)",
            retriable=False,
        )
    return {key.removeprefix("param_"): value for key, value in bound.items()}


def _non_nullable_where_no_nulls(data: pa.Table) -> pa.Table:
    """Mark Arrow fields without nulls non-nullable (zero-copy), so ``Python()`` types them non-Nullable.

    ``Python()`` types a nullable Arrow field as ``Nullable(T)``, and ClickHouse converts Nullable source
    columns leniently on INSERT ... SELECT (``insert_null_as_default``): a String that does not parse as
    the target type becomes NULL and then the column default - silently. Non-Nullable sources convert
    strictly (an error), as the server's Arrow input does.
    """
    fields = list(data.schema)
    changed = False
    for i, field in enumerate(fields):
        if field.nullable and data.column(i).null_count == 0:
            fields[i] = field.with_nullable(False)
            changed = True
    if not changed:
        return data
    return pa.Table.from_arrays(data.columns, schema=pa.schema(fields, metadata=data.schema.metadata))


def _bind_value(value: Any) -> str:
    from clickhouse_connect.driver.binding import format_bind_value

    return str(format_bind_value(value, datetime.UTC))


class _NativeBytes:
    """Single-chunk byte source in the shape clickhouse-connect's response buffer reads."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.last_message: bytes | None = None
        self.exception_tag: str | None = None

    @property
    def gen(self) -> Iterator[bytes]:
        yield self.data

    def close(self) -> None:
        return None


def native_rows(data: bytes) -> list[tuple[Any, ...]]:
    """Decode ClickHouse ``Native`` output with clickhouse-connect's decoder (as ServerBackend does)."""
    if not data:
        return []
    from clickhouse_connect.driver import ctypes as cc_ctypes
    from clickhouse_connect.driver.query import QueryContext, QueryResult
    from clickhouse_connect.driver.transform import NativeTransform

    result = NativeTransform.parse_response(
        cc_ctypes.RespBuffCls(_NativeBytes(data)), QueryContext(tz_mode="schema")
    )
    if not isinstance(result, QueryResult):  # only numpy contexts produce anything else
        raise TypeError(f"unexpected result type {type(result).__name__}")
    return [tuple(row) for row in result.result_rows]


class ChdbBackend:
    """chdb engine on ``path``; ``database`` is created if missing and made the session default."""

    def __init__(self, path: str, database: str) -> None:
        self.path = os.path.realpath(path)
        self.database = database
        self._lock = threading.RLock()
        self._session: Any = None
        try:
            os.makedirs(self.path, exist_ok=True)
            from chdb import session as chdb_session

            self._session = chdb_session.Session(self.path)
        except Exception as exc:
            raise self._wrap(exc, f"cannot open chdb at {self.path}") from exc
        try:
            quoted = quote_identifier(database)
            self._execute(f"CREATE DATABASE IF NOT EXISTS {quoted}")
            self._execute(f"USE {quoted}")
        except BaseException:
            self.close()
            raise

    # -- ClickHouseBackend ------------------------------------------------------------------------

    def command(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        self._execute(sql, _bind_params(sql, params))

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        result = self._execute(sql, _bind_params(sql, params), fmt="Native")
        try:
            return native_rows(result.bytes())
        except Exception as exc:
            raise BackendError(f"cannot decode the result: {exc}", retriable=False) from exc

    def insert_arrow(self, table: str, data: pa.Table, *, dedup_token: str | None = None) -> None:
        if data.num_rows == 0:
            return
        data = _non_nullable_where_no_nulls(data)
        columns = ", ".join(quote_identifier(name) for name in data.column_names)
        target = f"{quote_identifier(self.database)}.{quote_identifier(table)}"
        settings = _INSERT_SETTINGS
        params: dict[str, str] = {}
        if dedup_token is not None:
            settings += f", insert_deduplication_token = {{{_DEDUP_PARAM}:String}}"
            params[_DEDUP_PARAM] = _bind_value(dedup_token)
        name = f"__trackpipe_arrow_{uuid.uuid4().hex}"
        sql = f"INSERT INTO {target} ({columns}) SETTINGS {settings} SELECT {columns} FROM Python({name})"
        with self._lock:
            session = self._require_open()
            try:
                _run_with_bound_name(name, data, lambda: session.query(sql, "CSV", params=params))
            except Exception as exc:
                raise self._wrap(exc, f"insert into {target} failed") from exc

    def server_version(self) -> str:
        rows = self.query("SELECT version()")
        return str(rows[0][0])

    def close(self) -> None:
        with self._lock:
            session, self._session = self._session, None
            if session is not None:
                session.close()

    # -- helpers ------------------------------------------------------------------------------

    def __enter__(self) -> ChdbBackend:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ChdbBackend(path={self.path!r}, database={self.database!r})"

    def _require_open(self) -> Any:
        if self._session is None:
            raise BackendError("ChdbBackend is closed", retriable=False)
        return self._session

    def _execute(self, sql: str, params: Mapping[str, str] | None = None, fmt: str = "CSV") -> Any:
        with self._lock:
            session = self._require_open()
            try:
                return session.query(sql, fmt, params=dict(params or {}))
            except Exception as exc:
                raise self._wrap(exc, "query failed") from exc

    @staticmethod
    def _wrap(exc: BaseException, context: str) -> BackendError:
        if isinstance(exc, BackendError):
            return exc
        message = str(exc)
        code = error_code_from_message(message)
        return BackendError.from_code(f"{context}: {message}", code, default_retriable=False)
