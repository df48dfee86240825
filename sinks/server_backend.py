"""ClickHouseBackend on a ClickHouse server over HTTP(S), using clickhouse-connect.

* The client is created lazily on first use (and again after a failed connect), so constructing the
  backend never touches the network and "server down" surfaces as a retriable :class:`BackendError`
  from the call that needed the server.
* No HTTP session id (``autogenerate_session_id=False``): calls carry no server-side session state,
  so one backend can be used from several threads at once (clickhouse-connect's pool is thread-safe).
* ``database`` is created if missing (checked once, on connect), then sent with every request.
* Params go to clickhouse-connect's ``parameters=`` and are bound server-side (``param_*``); a call
  whose SQL has no ``{name:Type}`` placeholder for its params is rejected rather than letting
  clickhouse-connect fall back to client-side formatting.
* ``insert_arrow`` uses ``client.insert_arrow`` (Arrow format, columns matched by name) with
  ``insert_deduplication_token``, ``insert_deduplicate=1``,
  ``deduplicate_blocks_in_dependent_materialized_views=1`` and ``async_insert=0`` (we batch
  ourselves, and async inserts deduplicate differently).
* DateTime values come back as timezone-aware datetimes when the column has a timezone
  (``tz_mode="schema"``), like the chdb backend's Arrow results.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from sinks.backend import BackendError, error_code_from_message, quote_identifier

__all__ = ["ServerBackend"]


def _check_server_side_params(sql: str, params: Mapping[str, Any]) -> None:
    from clickhouse_connect.driver.binding import bind_query

    try:
        bound_sql, bound = bind_query(sql, dict(params), None)
    except Exception as exc:
        raise BackendError(f"invalid query parameters: {exc}", retriable=False) from exc
    if not bound or not isinstance(bound_sql, str):
        raise BackendError(
            "params need {name:Type} placeholders in the SQL (values are bound by the server, "
            "never formatted into the SQL)",
            retriable=False,
        )


class ServerBackend:
    """A ClickHouse server reached with clickhouse-connect (HTTP interface, ``port`` = HTTP port)."""

    def __init__(
        self,
        host: str,
        port: int,
        database: str,
        username: str = "default",
        password: str = "",
        secure: bool = False,
        connect_timeout: float = 5,
        send_receive_timeout: float = 30,
    ) -> None:
        self.host = host
        self.port = port
        self.database = database
        self.username = username
        self._password = password
        self.secure = secure
        self.connect_timeout = connect_timeout
        self.send_receive_timeout = send_receive_timeout
        self._lock = threading.Lock()
        self._client: Any = None
        self._closed = False

    # -- ClickHouseBackend ------------------------------------------------------------------------

    def command(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        if params:
            _check_server_side_params(sql, params)
        client = self._get_client()
        try:
            client.command(sql, parameters=dict(params) if params else None)
        except Exception as exc:
            raise _wrap(exc, "command failed") from exc

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        if params:
            _check_server_side_params(sql, params)
        client = self._get_client()
        try:
            result = client.query(sql, parameters=dict(params) if params else None)
            return [tuple(row) for row in result.result_rows]
        except Exception as exc:
            raise _wrap(exc, "query failed") from exc

    def insert_arrow(self, table: str, data: pa.Table, *, dedup_token: str | None = None) -> None:
        if data.num_rows == 0:
            return
        settings: dict[str, Any] = {
            "insert_deduplicate": 1,
            "deduplicate_blocks_in_dependent_materialized_views": 1,
            "async_insert": 0,
        }
        if dedup_token is not None:
            settings["insert_deduplication_token"] = dedup_token
        client = self._get_client()
        try:
            client.insert_arrow(table, data, database=self.database, settings=settings)
        except Exception as exc:
            raise _wrap(exc, f"insert into {self.database}.{table} failed") from exc

    def server_version(self) -> str:
        return str(self._get_client().server_version)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            client, self._client = self._client, None
        if client is not None:
            client.close()

    # -- helpers ------------------------------------------------------------------------------

    def __enter__(self) -> ServerBackend:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        scheme = "https" if self.secure else "http"
        return f"ServerBackend({scheme}://{self.host}:{self.port}, database={self.database!r})"

    def _get_client(self) -> Any:
        with self._lock:
            if self._closed:
                raise BackendError("ServerBackend is closed", retriable=False)
            if self._client is None:
                self._client = self._connect()
            return self._client

    def _connect(self) -> Any:
        import clickhouse_connect

        try:
            client = clickhouse_connect.get_client(
                host=self.host,
                port=self.port,
                username=self.username,
                password=self._password,
                secure=self.secure,
                connect_timeout=self.connect_timeout,
                send_receive_timeout=self.send_receive_timeout,
                autogenerate_session_id=False,
                tz_mode="schema",
            )
        except Exception as exc:
            raise _wrap(exc, f"cannot connect to {self!r}") from exc
        try:
            exists = client.query(
                "SELECT count() FROM system.databases WHERE name = {db:String}",
                parameters={"db": self.database},
            ).result_rows[0][0]
            if exists == 0:
                client.command(
                    f"CREATE DATABASE IF NOT EXISTS {quote_identifier(self.database)}", use_database=False
                )
        except Exception as exc:
            client.close()
            raise _wrap(exc, f"cannot prepare database {self.database!r}") from exc
        client.database = self.database
        return client


def _wrap(exc: BaseException, context: str) -> BackendError:
    if isinstance(exc, BackendError):
        return exc
    from clickhouse_connect.driver import exceptions as cc_exc

    message = f"{context}: {exc}"
    code = getattr(exc, "code", None)
    if not isinstance(code, int):
        code = error_code_from_message(str(exc))
    if code is not None:
        return BackendError.from_code(message, code)
    if isinstance(exc, cc_exc.OperationalError | OSError | TimeoutError):
        # connection refused/reset, timeouts, DNS: the request never got a server answer
        return BackendError(message, retriable=True)
    return BackendError(message, retriable=False)
