"""``trackpipe``: the one command that wires edge, processors and sinks together."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from trackpipe.cli_alerts import alerts_app
from trackpipe.cli_deliveries import deliveries_app
from trackpipe.cli_ops import ops_app
from trackpipe.cluster import cluster_app
from trackpipe.settings import Settings

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False)
report_app = typer.Typer(help="Reports over the stored conversions.", no_args_is_help=True)
topics_app = typer.Typer(help="Kafka topic administration.", no_args_is_help=True)
fx_app = typer.Typer(help="Exchange rates; the currency reports convert into.", no_args_is_help=True)
app.add_typer(report_app, name="report")
app.add_typer(topics_app, name="topics")
app.add_typer(fx_app, name="fx")
app.add_typer(deliveries_app, name="deliveries")
app.add_typer(alerts_app, name="alerts")
app.add_typer(ops_app, name="ops")
app.add_typer(cluster_app, name="cluster")

DataDirOption = Annotated[
    Path | None,
    typer.Option(help="use the embedded data dir (stop `trackpipe run` first); default: the server"),
]


def _settings(**overrides: Any) -> Settings:
    """The settings, or exit 2 naming each bad one by its environment variable (never its value)."""
    from pydantic import ValidationError

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        typer.echo("invalid settings:", err=True)
        for err in exc.errors(include_url=False, include_input=False):
            name = "TRACKPIPE_" + "__".join(str(p) for p in err["loc"]).upper()
            typer.echo(f"  {name}: {err['msg']}", err=True)
        raise typer.Exit(2) from None


def _logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _access_log(settings: Settings) -> dict[str, Any]:
    """aiohttp's per-request access log only when ``TRACKPIPE_EDGE__ACCESS_LOG=true`` (default off)."""
    return {} if settings.edge.access_log else {"access_log": None}


def _event_loop(settings: Settings) -> asyncio.AbstractEventLoop:
    """The HTTP process's loop: uvloop unless ``TRACKPIPE_EDGE__EVENT_LOOP=asyncio`` (decision 55)."""
    if settings.edge.event_loop == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


@app.command()
def run(
    port: Annotated[int | None, typer.Option(help="HTTP port (default 8080)")] = None,
    host: Annotated[str | None, typer.Option(help="bind address (default 127.0.0.1)")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="where data lives (default ./var)")] = None,
) -> None:
    """Embedded default: edge + processors + embedded ClickHouse (chdb) in one process."""
    from aiohttp import web

    from trackpipe.embedded import build_embedded_app

    settings = _settings(port=port, host=host, data_dir=data_dir)
    _logging(settings.log_level)
    url = f"http://{settings.host}:{settings.port}"
    print(f"trackpipe embedded: {url}  (data in {settings.data_dir.resolve()})", flush=True)
    print(
        f"try: curl -A demo -H 'Content-Type: application/json' --data "
        f'\'{{"cid":"1","pid":"1","vid":"v1","ev":[{{"evt":"hitGoal","goals":[7]}}]}}\' '
        f"{url}/track",
        flush=True,
    )
    web.run_app(
        build_embedded_app(settings),
        host=settings.host,
        port=settings.port,
        print=None,
        loop=_event_loop(settings),
        **_access_log(settings),
    )


@app.command()
def edge(
    port: Annotated[int | None, typer.Option()] = None,
    host: Annotated[str | None, typer.Option()] = None,
    reuse_port: Annotated[
        bool,
        typer.Option(
            "--reuse-port",
            help="bind with SO_REUSEPORT: several edges on one port, the kernel spreads connections",
        ),
    ] = False,
) -> None:
    """Distributed edge: HTTP -> Kafka (acks=all). Serves reports when ClickHouse is reachable."""
    from aiohttp import web

    from trackpipe.distributed import build_distributed_edge
    from trackpipe.kafka_errors import exit_if_unavailable
    from trackpipe.ops.status import startup_layout

    settings = _settings(port=port, host=host)
    _logging(settings.log_level)
    with exit_if_unavailable(settings), _layout_checked():  # a broker refusing us: one line, exit 1
        layout = asyncio.run(startup_layout(settings))
        web.run_app(
            build_distributed_edge(settings, layout),
            host=settings.host,
            port=settings.port,
            print=None,
            loop=_event_loop(settings),
            reuse_port=reuse_port or None,
            **_access_log(settings),
        )


@app.command()
def worker() -> None:
    """Distributed Faust worker: Kafka -> processors -> ClickHouse."""
    from trackpipe.memory_release import keep_pandas_out, use_system_arrow_pool

    use_system_arrow_pool()  # before anything imports pyarrow (decision 172)
    keep_pandas_out()  # pyarrow's first conversion would import it (decision 173)
    from trackpipe.distributed import run_worker
    from trackpipe.kafka_errors import exit_if_unavailable
    from trackpipe.worker_datadir import worker_lock

    settings = _settings()
    _logging(settings.log_level)
    if (refused := worker_lock(settings.worker_store, settings.data_dir)) is not None:
        typer.echo(f"trackpipe: {refused}", err=True)  # another worker's RocksDB directory
        raise typer.Exit(2)
    with exit_if_unavailable(settings), _layout_checked():
        run_worker(settings)


@contextlib.contextmanager
def _layout_checked() -> Iterator[None]:
    """A worker or an edge refusing a mismatched topic layout: what is wrong, the fix, exit 2."""
    from trackpipe.ops.status import LayoutMismatch

    try:
        yield
    except LayoutMismatch as exc:
        typer.echo(f"trackpipe: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command("migrate")
def migrate_cmd() -> None:
    """Create or upgrade the ClickHouse schema (safe to re-run)."""
    from sinks.migrate import migrate
    from sinks.report_retention import apply_retention
    from trackpipe.distributed import server_backend

    settings = _settings()
    backend = server_backend(settings, create_database=True)
    applied = migrate(backend)
    names = ", ".join(m.name for m in applied) or "nothing (up to date)"
    print(f"database {settings.clickhouse_database}: applied {names}")
    retention = apply_retention(backend, settings.retention_days)
    if retention:
        print(f"retention {settings.retention_days or 'none'} days: set on {', '.join(retention)}")


@topics_app.command("create")
def topics_create() -> None:
    """Create every topic the pipeline's layout needs (no-op for those that exist) and, for a new
    pipeline, its layout record (generation 0 with TRACKPIPE_PARTITIONS partitions)."""
    import asyncio

    from trackpipe.kafka_errors import exit_if_unavailable
    from trackpipe.ops.topics import ensure_topics

    settings = _settings()
    with exit_if_unavailable(settings):
        result = asyncio.run(ensure_topics(settings))
    for topic in result.created:
        print(f"topic {topic}: created")
    layout = result.layout
    assert layout is not None
    print(
        f"topic {settings.kafka_topic}: {'created' if result.created else 'exists'}; layout: generation"
        f" {layout.current.generation}, {layout.current.partitions} partitions"
        + (" (written)" if result.layout_written else "")
    )
    if settings.partitions != layout.current.partitions and not result.layout_written:
        print(
            f"TRACKPIPE_PARTITIONS is {settings.partitions} but the pipeline has"
            f" {layout.current.partitions} partitions: topics are never resized in place (keys would move"
            " away from their state). Either set TRACKPIPE_PARTITIONS="
            f"{layout.current.partitions}, or move the pipeline with"
            f" `trackpipe ops rescale --partitions {settings.partitions}`",
            file=sys.stderr,
        )
        raise typer.Exit(2)


@report_app.command("top-events")
def report_top_events(
    project: Annotated[str, typer.Option(help="project id")],
    from_: Annotated[
        datetime | None,
        typer.Option("--from", help="period start, ISO 8601 (UTC if no zone; default: 30 days before --to)"),
    ] = None,
    to: Annotated[
        datetime | None,
        typer.Option(help="period end, ISO 8601, exclusive (default: the start of tomorrow, UTC)"),
    ] = None,
    limit: Annotated[int | None, typer.Option(help="rows (default 5, at most 100)")] = None,
    campaign: Annotated[
        str | None, typer.Option(help="only conversions attributed to this campaign (rate: its visitors)")
    ] = None,
    link: Annotated[
        str | None, typer.Option(help="only conversions attributed to this link (rate: per click)")
    ] = None,
    push: Annotated[
        str | None, typer.Option(help="only conversions attributed to this push msgHash (rate: per open)")
    ] = None,
    experiment: Annotated[str | None, typer.Option(help="with --variation: visitors who saw it")] = None,
    variation: Annotated[str | None, typer.Option(help="with --experiment")] = None,
    currency: Annotated[
        str | None, typer.Option(help="revenue in this currency (default: the project's)")
    ] = None,
    url: Annotated[str, typer.Option(help="a running trackpipe (run or edge)")] = "http://127.0.0.1:8080",
    as_json: Annotated[bool, typer.Option("--json", help="print the JSON answer")] = False,
    key: Annotated[
        str | None,
        typer.Option(
            envvar="TRACKPIPE_REPORT_KEY",
            help="bearer key of the reports: the admin key or a read key (prefer the environment variable; "
            "default: $TRACKPIPE_ADMIN_KEY); none needed on the edge's own host while it has no key set",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Top 5 goals of a project by conversions (at most one filter: campaign, link, push, variation)."""
    from pydantic import ValidationError

    from schemas.reports import TopEventsQuery

    params: dict[str, str] = {"project": project}
    for name, value in (("from", from_), ("to", to)):
        if value is not None:
            params[name] = (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    options = {
        "limit": limit,
        "campaign": campaign,
        "link": link,
        "push": push,
        "experiment": experiment,
        "variation": variation,
        "currency": currency,
    }
    params.update({name: str(value) for name, value in options.items() if value is not None})
    try:
        TopEventsQuery.model_validate(params)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in err["loc"])
        raise typer.BadParameter(f"{where}: {err['msg']}" if where else str(err["msg"])) from None
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https"):
        raise typer.BadParameter("--url must be http(s)://host:port")
    full = url.rstrip("/") + "/api/v1/reports/top-events?" + urllib.parse.urlencode(params)
    key = key or os.environ.get("TRACKPIPE_ADMIN_KEY")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    request = urllib.request.Request(full, headers=headers)  # noqa: S310 - scheme checked above
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310 - scheme checked above
            body = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        typer.echo(f"error {exc.code}: {exc.read().decode(errors='replace')}", err=True)
        if exc.code == 401:
            typer.echo("the edge wants a key: set TRACKPIPE_REPORT_KEY (admin or read key)", err=True)
        raise typer.Exit(1) from None
    except urllib.error.URLError as exc:
        typer.echo(f"cannot reach {url}: {exc.reason}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(body, indent=2))
        return
    typer.echo(f"project {body['project']}  {body['from']} .. {body['to']}  visitors {body['visitors']}")
    if body.get("filter"):
        chosen = ", ".join(f"{k}={v}" for k, v in body["filter"].items())
        typer.echo(f"filter {chosen}  rate base {body['rate_base']} {body['rate_base_count']}")
    money = body.get("currency") or "as sent"
    unconverted = body.get("unconverted_conversions", 0)
    missing = f" ({unconverted} conversions without a rate)" if unconverted else ""
    typer.echo(f"revenue in {money}{missing}")
    typer.echo(f"{'goal':<16}{'conversions':>12}{'converters':>12}{'rate':>10}{'revenue':>14}")
    for r in body["rows"]:
        typer.echo(
            f"{r['goal_id']:<16}{r['conversions']:>12}{r['converters']:>12}"
            f"{r['conversion_rate']:>10.2%}{r['revenue']:>14.2f}"
        )


@report_app.command("processing")
def report_processing(
    project: Annotated[str, typer.Option(help="project id")],
    from_: Annotated[datetime, typer.Option("--from", help="period start, ISO 8601 (UTC if no zone)")],
    to: Annotated[datetime, typer.Option(help="period end, ISO 8601, exclusive")],
    data_dir: Annotated[
        Path | None,
        typer.Option(help="read the embedded data dir (stop `trackpipe run` first); default: the server"),
    ] = None,
    dimension: Annotated[str, typer.Option(help="credit by link_id, campaign, touch_id or push_hash")] = (
        "link_id"
    ),
) -> None:
    """Per goal, per attribution model and per variation (JSON), straight from ClickHouse."""
    from sinks import processing_reports

    if dimension not in ("link_id", "campaign", "touch_id", "push_hash"):
        raise typer.BadParameter("--dimension must be link_id, campaign, touch_id or push_hash")
    start, end = (d if d.tzinfo else d.replace(tzinfo=UTC) for d in (from_, to))
    backend = _backend(data_dir)
    try:
        report = processing_reports.processing_report(
            backend,
            project,
            start,
            end,
            dimension,  # type: ignore[arg-type]
        )
    finally:
        backend.close()
    typer.echo(report.model_dump_json(indent=2))


def _backend(data_dir: Path | None) -> Any:
    """The embedded chdb store of ``data_dir``, or the ClickHouse server of the settings."""
    if data_dir is not None:
        from sinks.chdb_backend import ChdbBackend
        from trackpipe.embedded import EMBEDDED_DATABASE

        return ChdbBackend(str(data_dir / "chdb"), EMBEDDED_DATABASE)
    from trackpipe.distributed import server_backend

    return server_backend(_settings())


def _store(data_dir: Path | None) -> Any:
    """:func:`_backend` with the schema brought up to date (safe to re-run), errors as exit 1."""
    from sinks.backend import BackendError
    from sinks.migrate import migrate

    try:
        backend = _backend(data_dir)
        migrate(backend)
    except BackendError as exc:
        typer.echo(f"cannot open the store: {exc}", err=True)
        raise typer.Exit(1) from None
    return backend


@fx_app.command("load")
def fx_load(
    file: Annotated[Path, typer.Argument(help="CSV with the columns date,base,quote,rate", exists=True)],
    data_dir: DataDirOption = None,
) -> None:
    """Load exchange rates (1 base = rate quote on date); loading a file again changes nothing."""
    from sinks import fx

    try:
        rates = fx.parse_rates(file.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        typer.echo(f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start})", err=True)
        raise typer.Exit(1) from None
    except fx.RatesFileError as exc:
        typer.echo(f"{file}: nothing loaded:\n{exc}", err=True)
        raise typer.Exit(1) from None
    backend = _store(data_dir)
    try:
        done = fx.load_rates(backend, rates)
    finally:
        backend.close()
    typer.echo(
        f"loaded {done.rates} rates ({', '.join(done.pairs)}) from {done.first_day} to {done.last_day}"
    )


@fx_app.command("currency")
def fx_currency(
    project: Annotated[str, typer.Argument(help="project id")],
    currency: Annotated[str, typer.Argument(help="3-letter code, or 'none': no conversion")],
    data_dir: DataDirOption = None,
) -> None:
    """Set the currency the project's reports convert revenue into."""
    from sinks import fx

    code = None if currency.lower() == "none" else currency
    if code is not None and not (len(code) == 3 and code.isascii() and code.isalpha()):
        raise typer.BadParameter(f"{currency!r} is not a 3-letter currency code (or 'none')")
    backend = _store(data_dir)
    try:
        fx.set_project_currency(backend, project, code)
    finally:
        backend.close()
    typer.echo(f"project {project}: reports in {code.upper() if code else 'the currencies as sent'}")


def main() -> None:
    sys.exit(app())


if __name__ == "__main__":
    main()
